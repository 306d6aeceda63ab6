//! A real `cuttle host` process on loopback, its control plane, and
//! requests to its instances by their host names.

use super::{tail, ScratchPostgres, BIN};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "host-test-control-token-0123456789";
pub const DOMAIN: &str = "cuttle.test";

/// A `cuttle host` child process, stopped when dropped.
pub struct TestHost {
    pub child: Child,
    /// The public listener, e.g. `http://127.0.0.1:43123`.
    pub url: String,
    /// The control plane.
    pub control: String,
    output: Arc<Mutex<VecDeque<String>>>,
}

impl TestHost {
    /// A host on `dir`, on SQLite or on the PostgreSQL server `db`.
    pub fn start(dir: &Path, db: Option<&str>) -> TestHost {
        TestHost::start_with_env(dir, db, &[])
    }

    pub fn start_with_env(dir: &Path, db: Option<&str>, env: &[(&str, &str)]) -> TestHost {
        TestHost::start_binary(Path::new(BIN), dir, db, env)
    }

    /// A host run from the `cuttle` binary at `binary`.
    pub fn start_binary(
        binary: &Path,
        dir: &Path,
        db: Option<&str>,
        env: &[(&str, &str)],
    ) -> TestHost {
        TestHost::start_wrapped(&[], binary, dir, db, env)
    }

    /// A host started by `wrapper` (a command and its arguments, which
    /// ends by running the `cuttle` binary it is given after them, as
    /// `exec "$@"` does, so the child is the host itself); none: directly.
    pub fn start_wrapped(
        wrapper: &[&std::ffi::OsStr],
        binary: &Path,
        dir: &Path,
        db: Option<&str>,
        env: &[(&str, &str)],
    ) -> TestHost {
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        if std::env::var_os("CUTTLE_TEST_REQUIRE_ISOLATION").is_none() {
            cmd.env("CUTTLE_BUILTIN_WORKER_UNISOLATED", "true");
        } else {
            cmd.env_remove("CUTTLE_BUILTIN_WORKER_UNISOLATED");
        }
        cmd.args([
            "host",
            "--listen",
            "127.0.0.1:0",
            "--control-listen",
            "127.0.0.1:0",
            "--domain",
            DOMAIN,
            "--shutdown-timeout",
            "2",
            "--data-dir",
        ])
        .arg(dir)
        .env("CUTTLE_HOST_CONTROL_TOKEN", TOKEN)
        .env("CUTTLE_NODE_NAME", "test-node")
        // Instances on a host have no built-in worker: steps run on these.
        .env("CUTTLE_HOSTED_WORKERS", "2")
        .env_remove("CUTTLE_HOST_DATABASE_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if let Some(url) = db {
            cmd.args(["--database-url", url]);
        }
        let mut child = cmd.spawn().expect("start cuttle host");
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        drain(child.stdout.take().unwrap(), output.clone(), Some(tx));
        drain(child.stderr.take().unwrap(), output.clone(), None);
        let (mut url, mut control) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while url.is_none() || control.is_none() {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok((true, address)) => control = Some(address),
                Ok((false, address)) => url = Some(address),
                Err(_) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = child.try_wait() {
                        std::thread::sleep(Duration::from_millis(200));
                        panic!("cuttle host exited ({status}):\n{}", tail(&output));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("cuttle host did not start:\n{}", tail(&output));
                }
            }
        }
        TestHost {
            child,
            url: url.unwrap_or_default(),
            control: control.unwrap_or_default(),
            output,
        }
    }

    pub fn recent_output(&self) -> String {
        tail(&self.output)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A control-plane request with `token` (`None`: no Authorization).
    pub fn control_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| vec![("Authorization", b)])
            .unwrap_or_default();
        let (status, _, text) = call(method, &format!("{}{path}", self.control), &headers, body)
            .expect("the control plane answers");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn control(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.control_as(Some(TOKEN), method, path, body)
    }

    /// Creates instance `name`; panics unless it answers 201.
    pub fn create(&self, name: &str) -> Value {
        let (status, body) = self.control(
            "POST",
            "/instances",
            Some(json!({"Name": name, "TaskCap": 2, "StorageQuotaMiB": 100})),
        );
        assert_eq!(status, StatusCode::CREATED, "creating {name}: {body}");
        body
    }

    /// A request to instance `name` through the public listener.
    pub fn to(
        &self,
        name: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, String) {
        let host = format!("{name}.{DOMAIN}");
        let mut all = vec![("Host", host.as_str())];
        all.extend_from_slice(headers);
        call(method, &format!("{}{path}", self.url), &all, body).expect("the host answers")
    }

    /// As [`TestHost::to`] with an API key; panics unless it succeeds.
    pub fn api(
        &self,
        name: &str,
        key: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let (status, _, text) = self.to(name, method, path, &[("X-Octopus-ApiKey", key)], body);
        assert!(
            status.is_success(),
            "{name}: {method} {path} → {status}: {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- last output of cuttle host ---\n{}",
                self.recent_output()
            );
        }
    }
}

/// One request; `None` when no connection could be made.
pub fn call(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Option<(StatusCode, HeaderMap, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut req = client.request(method.parse().unwrap(), url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.ok()?;
        let (status, headers) = (resp.status(), resp.headers().clone());
        Some((status, headers, resp.text().await.ok()?))
    })
}

/// Signs in to instance `name`'s portal as admin; returns the session
/// cookie (`cuttle_session=…`).
pub fn sign_in(host: &TestHost, name: &str, password: &str) -> String {
    let (status, headers, page) = host.to(name, "GET", "/signin", &[], None);
    assert!(status.is_success(), "GET /signin → {status}");
    let signin_cookie = cookie_pair(&headers, "cuttle_signin").expect("a sign-in cookie");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the form")
        .to_owned();
    let form = format!(
        "csrf={csrf}&next=%2F&username=admin&password={}",
        urlencode(password)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, headers) = rt.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = client
            .post(format!("{}/signin", host.url))
            .header("Host", format!("{name}.{DOMAIN}"))
            .header("Cookie", signin_cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .expect("sign in");
        (resp.status(), resp.headers().clone())
    });
    assert!(status.is_redirection(), "sign-in answered {status}");
    cookie_pair(&headers, "cuttle_session").expect("a session cookie")
}

fn cookie_pair(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with(&format!("{name}=")) && pair.len() > name.len() + 1)
        .map(str::to_owned)
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `scenario` on SQLite, then on a scratch PostgreSQL server database
/// when CUTTLE_TEST_DATABASE_URL is set (said as skipped otherwise).
pub fn on_both_hosts(name: &str, scenario: impl Fn(&Path, Option<&str>)) {
    let dir = tempfile::tempdir().expect("a host directory");
    scenario(dir.path(), None);
    if let Some(db) = super::scratch_postgres(name) {
        let dir = tempfile::tempdir().expect("a host directory");
        scenario(dir.path(), Some(&db.url));
        drop_instance_databases(&db);
    }
}

/// The suffix of a host's instance databases: a digest of its registry's
/// database name, as in `cuttle_NAME_<digest>`.
fn database_suffix(registry_url: &str) -> String {
    use sha2::Digest as _;
    let registry = registry_url.split('?').next().unwrap_or(registry_url);
    let registry = registry.rsplit('/').next().unwrap_or_default();
    let digest = hex::encode(sha2::Sha256::digest(registry.as_bytes()));
    format!("_{}", &digest[..8])
}

/// The PostgreSQL database of instance `name` on a host whose registry is
/// at `registry_url`.
pub fn instance_database(registry_url: &str, name: &str) -> String {
    format!(
        "cuttle_{}{}",
        name.replace('-', "_"),
        database_suffix(registry_url)
    )
}

/// Drops the instances' databases a scenario left on the server (those
/// named for this host's registry database: `cuttle_NAME_<digest>`).
fn drop_instance_databases(db: &ScratchPostgres) {
    use sqlx::{Connection as _, Executor as _};
    let suffix = database_suffix(&db.url);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let Ok(mut conn) = sqlx::PgConnection::connect(&db.url).await else {
            return;
        };
        let names: Vec<(String,)> =
            sqlx::query_as("SELECT datname::text FROM pg_database WHERE datname LIKE 'cuttle\\_%' AND right(datname, 9) = $1")
                .bind(&suffix)
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
        for (name,) in names {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                .await;
        }
    });
}

fn drain(
    stream: impl Read + Send + 'static,
    output: Arc<Mutex<VecDeque<String>>>,
    announce: Option<mpsc::Sender<(bool, String)>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let (Some(tx), Some(at)) = (&announce, line.find("listening on http://")) {
                let url = line[at + "listening on ".len()..].trim().to_owned();
                let _ = tx.send((line.contains("control plane"), url));
            }
            let mut kept = output.lock().unwrap_or_else(|e| e.into_inner());
            if kept.len() == 400 {
                kept.pop_front();
            }
            kept.push_back(line);
        }
    });
}
