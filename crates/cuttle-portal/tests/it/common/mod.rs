//! A real Cuttle server in-process (the API with the portal merged in, as
//! `cuttle server` serves it) on a loopback port, over SQLite or a scratch
//! PostgreSQL database. Data is made through the REST API; the portal is
//! driven as a browser would, with cookies and forms, never following
//! redirects by itself so tests can see them.

#![allow(dead_code)]

use cuttle_service::auth::bootstrap_admin;
use cuttle_service::{Instance, InstanceConfig};
use cuttle_store::testing::ScratchPostgres;
use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub const ADMIN_KEY: &str = "API-PORTALTESTPORTALTESTPORTALTEST01";
pub const ADMIN_PASSWORD: &str = "portal-test-password";

pub struct Server {
    pub url: String,
    pub inst: Arc<Instance>,
    pub backend: &'static str,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
    _pg: Option<ScratchPostgres>,
}

/// A response as a browser sees it.
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// The message shown under the input with this id (`{id}-error`).
    pub fn error_under(&self, id: &str) -> String {
        let marker = format!(r#"id="{id}-error">"#);
        let at = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no error under #{id} in:\n{}", self.body));
        let rest = &self.body[at + marker.len()..];
        rest[..rest.find("</p>").unwrap()].to_owned()
    }

    pub fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    }

    /// The value of the Set-Cookie for `name`, if this response set one.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().into_iter().find_map(|c| {
            let first = c.split(';').next()?.to_owned();
            let (k, v) = first.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    }

    /// The value of the first hidden `csrf` field on the page.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find(r#"name="csrf" value=""#)
            .unwrap_or_else(|| panic!("no csrf field in:\n{}", self.body));
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

/// A signed-in browser: its session cookie and the session's CSRF token.
pub struct Browser<'a> {
    pub server: &'a Server,
    pub cookie: String,
    pub csrf: String,
}

impl Browser<'_> {
    pub async fn get(&self, path: &str) -> Page {
        self.server.get_page(path, Some(&self.cookie)).await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.server.post_form(path, form, Some(&self.cookie)).await
    }
}

impl Server {
    async fn start(pg: Option<ScratchPostgres>, backend: &'static str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = InstanceConfig::new(dir.path().to_path_buf());
        config.database_url = pg.as_ref().map(|p| p.url.clone());
        config.default_script_timeout = Duration::from_secs(60);
        // Two hashes at once, as on a small server, whatever this machine's
        // cores: the sign-in flood test counts on the queue it makes.
        config.max_concurrent_password_hashes = 2;
        // Where isolation is not required, scripts run without it (and the
        // isolation tests say so); where it is, its absence fails them.
        config.builtin_worker.allow_unisolated =
            std::env::var_os("CUTTLE_TEST_REQUIRE_ISOLATION").is_none();
        let inst = Instance::open(config).await.unwrap();
        bootstrap_admin(
            &inst.store,
            dir.path(),
            Some(ADMIN_PASSWORD),
            Some(ADMIN_KEY),
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = inst.clone();
        tokio::spawn(async move {
            let _ = cuttle_api::serve(listener, serving, async {
                let _ = stopped.await;
            })
            .await;
        });
        Server {
            url,
            inst,
            backend,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            stop: Some(stop),
            _dir: dir,
            _pg: pg,
        }
    }

    async fn page(resp: reqwest::Response) -> Page {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap();
        Page {
            status,
            headers,
            body,
        }
    }

    pub async fn get_page(&self, path: &str, cookie: Option<&str>) -> Page {
        let mut req = self.client.get(format!("{}{path}", self.url));
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        Self::page(req.send().await.unwrap()).await
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)], cookie: Option<&str>) -> Page {
        let mut req = self.client.post(format!("{}{path}", self.url)).form(form);
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        Self::page(req.send().await.unwrap()).await
    }

    /// Signs in through the sign-in form, as a browser does.
    pub async fn sign_in(&self) -> Browser<'_> {
        self.sign_in_as("admin", ADMIN_PASSWORD).await
    }

    /// Signs in as `username`, who may see no more than their own keys.
    pub async fn sign_in_as(&self, username: &str, password: &str) -> Browser<'_> {
        let form = self.get_page("/signin", None).await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let signin = form.cookie("cuttle_signin").expect("a sign-in cookie");
        let token = form.csrf();
        let done = self
            .post_form(
                "/signin",
                &[
                    ("csrf", &token),
                    ("next", "/"),
                    ("username", username),
                    ("password", password),
                ],
                Some(&format!("cuttle_signin={signin}")),
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        let session = done.cookie("cuttle_session").expect("a session cookie");
        let cookie = format!("cuttle_session={session}");
        let home = self
            .get_page("/configuration/api-keys", Some(&cookie))
            .await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.body);
        Browser {
            server: self,
            cookie,
            csrf: home.csrf(),
        }
    }

    /// Calls the REST API with the administrator's key.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.url))
            .header("X-Octopus-ApiKey", ADMIN_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn create(&self, path: &str, body: Value) -> Value {
        let (status, reply) = self.api(Method::POST, path, Some(body)).await;
        assert!(
            status.is_success(),
            "{} POST {path} → {status}: {reply}",
            self.backend
        );
        reply
    }

    pub async fn environment(&self, name: &str) {
        let (_, found) = self
            .api(Method::GET, &format!("/api/environments?name={name}"), None)
            .await;
        if found["TotalResults"] == 0 {
            self.create("/api/environments", json!({ "Name": name }))
                .await;
        }
    }

    /// A project in the default group whose process is `steps`; returns its id.
    pub async fn project(&self, name: &str, steps: Vec<Value>) -> String {
        let project = self
            .create(
                "/api/projects",
                json!({"Name": name, "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
            )
            .await;
        let id = project["Id"].as_str().unwrap().to_owned();
        let (status, reply) = self
            .api(
                Method::PUT,
                &format!("/api/projects/{id}/deploymentprocesses"),
                Some(json!({"Version": 0, "Steps": steps})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        id
    }

    /// Cuts `version` of `project` and deploys it to `environment`; returns the task id.
    pub async fn deploy(&self, project: &str, version: &str, environment: &str) -> String {
        self.create(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": project, "ReleaseVersion": version}),
        )
        .await;
        let d = self
            .create(
                "/api/Spaces-1/deployments/create/untenanted/v1",
                json!({"ProjectName": project, "ReleaseVersion": version, "EnvironmentNames": [environment]}),
            )
            .await;
        d["DeploymentServerTasks"][0]["ServerTaskId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn task(&self, id: &str) -> Value {
        self.api(Method::GET, &format!("/api/tasks/{id}"), None)
            .await
            .1
    }

    /// Polls a task until `done` says so (bounded), returning it.
    pub async fn wait_task(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..1500 {
            let t = self.task(id).await;
            if done(&t) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{}: task {id} was not {what} within 30 s: {}",
            self.backend,
            self.task(id).await
        );
    }

    pub async fn wait_done(&self, id: &str) -> Value {
        self.wait_task(id, "complete", |t| t["IsCompleted"] == true)
            .await
    }

    pub async fn wait_pending(&self, id: &str) -> Value {
        self.wait_task(id, "waiting for a person", |t| {
            t["HasPendingInterruptions"] == true
        })
        .await
    }

    /// Where `needle` is stored as plain text: files of the data directory
    /// (the SQLite database with its journal, blobs), or PostgreSQL tables.
    pub async fn stored_in_the_clear(&self, needle: &str) -> Vec<String> {
        let mut found = match &self._pg {
            Some(pg) => pg.tables_containing(needle).await,
            None => vec![],
        };
        let mut dirs = vec![self._dir.path().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if let Ok(bytes) = std::fs::read(&path) {
                    if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        found.push(path.display().to_string());
                    }
                }
            }
        }
        found
    }

    pub async fn pending_interruptions(&self, task: &str) -> Vec<Value> {
        let (_, list) = self
            .api(
                Method::GET,
                &format!("/api/Spaces-1/interruptions?regarding={task}&pendingOnly=true"),
                None,
            )
            .await;
        list["Items"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn script_step(name: &str, body: &str) -> Value {
    json!({"Name": name, "Actions": [{"Name": name, "ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": body, "Octopus.Action.Script.Syntax": "Bash"}}]})
}

pub fn manual_step(name: &str, instructions: &str) -> Value {
    json!({"Name": name, "Actions": [{"Name": name, "ActionType": "Octopus.Manual",
    "Properties": {
        "Octopus.Action.Manual.Instructions": instructions,
        "Octopus.Action.Manual.BlockConcurrentDeployments": "False",
        "Octopus.Action.RunOnServer": "true"
    }}]})
}

/// Runs `scenario` on SQLite, then on PostgreSQL when
/// CUTTLE_TEST_DATABASE_URL is set (saying so when it is skipped).
pub async fn on_both<F, Fut>(name: &str, scenario: F)
where
    F: Fn(Server) -> Fut,
    Fut: Future<Output = ()>,
{
    scenario(Server::start(None, "sqlite").await).await;
    if let Some(pg) = ScratchPostgres::create(name).await {
        scenario(Server::start(Some(pg), "postgres").await).await;
    }
}
