//! A real Cuttle API on a loopback port, over a real database (SQLite in a
//! temporary directory, or a scratch PostgreSQL database), driven over HTTP.
//!
//! With `CUTTLE_TEST_ON_HOST=1`, each test's instance is made by a host
//! (`cuttle host`'s instances, routing and hosted workers, in-process) and
//! reached through the host's listener by its `Host` header: the whole
//! suite then runs against an instance on a host. Its steps run on hosted
//! workers, which run the `cuttle` binary (`cargo build -p cuttle` first;
//! `CUTTLE_TEST_CUTTLE_BIN` names another).

#![allow(dead_code)]

use cuttle_service::auth::bootstrap_admin;
use cuttle_service::{Instance, InstanceConfig};
use cuttle_store::testing::ScratchPostgres;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub const ADMIN_KEY: &str = "API-TESTTESTTESTTESTTESTTESTTESTTEST01";

/// Whether instances are served by a host (see the module's comment).
pub fn on_host() -> bool {
    std::env::var_os("CUTTLE_TEST_ON_HOST").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Skips the rest of a test that cannot apply to an instance on a host,
/// saying why.
#[macro_export]
macro_rules! not_on_host {
    ($why:expr) => {
        if $crate::common::on_host() {
            eprintln!("skipped on a host: {}", $why);
            return;
        }
    };
}

/// The host name a hosted test instance is reached at.
const HOSTED_NAME: &str = "t.cuttle.test";

pub struct Server {
    pub url: String,
    pub key: String,
    pub inst: Arc<Instance>,
    pub backend: &'static str,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The host serving the instance, when on one.
    hosted: Option<Hosted>,
    _dir: tempfile::TempDir,
    _pg: Option<ScratchPostgres>,
}

/// What a hosted test instance needs beside it.
struct Hosted {
    host: Arc<cuttle::host::instances::Host>,
    /// Where its hosted workers' directories go.
    _scratch: tempfile::TempDir,
    /// Its own PostgreSQL database, made by the host: (server, name).
    database: Option<(String, String)>,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    /// The `ErrorMessage` and `Errors` of an error body, joined for asserting on.
    pub fn error_text(&self) -> String {
        let mut text = self.body["ErrorMessage"].as_str().unwrap_or("").to_owned();
        assert!(
            self.body["Errors"].is_array(),
            "error body without Errors: {}",
            self.body
        );
        for e in self.body["Errors"].as_array().into_iter().flatten() {
            text.push_str(" | ");
            text.push_str(e.as_str().unwrap_or(""));
        }
        text
    }
}

impl Server {
    async fn start(pg: Option<ScratchPostgres>, backend: &'static str, max_tasks: usize) -> Server {
        Server::start_configured(pg, backend, max_tasks, &|_| {}).await
    }

    async fn start_configured(
        pg: Option<ScratchPostgres>,
        backend: &'static str,
        max_tasks: usize,
        configure: &dyn Fn(&mut InstanceConfig),
    ) -> Server {
        if on_host() {
            return Server::start_hosted(pg, backend, max_tasks, configure).await;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut config = InstanceConfig::new(dir.path().to_path_buf());
        config.database_url = pg.as_ref().map(|p| p.url.clone());
        config.default_script_timeout = Duration::from_secs(60);
        // Where isolation is not required, scripts run without it (and the
        // isolation tests say so); where it is, its absence fails them.
        config.builtin_worker.allow_unisolated =
            std::env::var_os("CUTTLE_TEST_REQUIRE_ISOLATION").is_none();
        config.max_concurrent_tasks = max_tasks;
        configure(&mut config);
        let inst = Instance::open(config).await.unwrap();
        bootstrap_admin(
            &inst.store,
            dir.path(),
            Some("admin-password"),
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
            key: ADMIN_KEY.into(),
            inst,
            backend,
            client: client(),
            stop: Some(stop),
            hosted: None,
            _dir: dir,
            _pg: pg,
        }
    }

    /// An instance `t` created by a host in-process, with the host's
    /// configuration of it (no built-in worker; hosted workers; the task
    /// cap `max_tasks`), served on the host's listener.
    async fn start_hosted(
        pg: Option<ScratchPostgres>,
        backend: &'static str,
        max_tasks: usize,
        configure: &dyn Fn(&mut InstanceConfig),
    ) -> Server {
        use cuttle::host::instances::{AdjustInstances, Host, HostConfig, Limits, Slot};
        use cuttle::host::workers::{HostedWorkers, WorkerSettings};
        let dir = tempfile::tempdir().unwrap();
        let data_dir = std::fs::canonicalize(dir.path()).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let unisolated = std::env::var_os("CUTTLE_TEST_REQUIRE_ISOLATION").is_none();
        let workers = HostedWorkers::start(WorkerSettings {
            count: 2,
            idle: Duration::from_secs(600),
            host_data_dir: data_dir.clone(),
            scratch_root: scratch.path().join("workers"),
            allow_unisolated: unisolated,
            wait: Duration::from_secs(60),
            binary: Some(cuttle_binary()),
        })
        .await
        .unwrap();
        // What a test changes of its instance's configuration, the host
        // applies to the configuration it makes: its retries, its timeout.
        let mut wanted = InstanceConfig::new(data_dir.clone());
        wanted.default_script_timeout = Duration::from_secs(60);
        configure(&mut wanted);
        let adjust = AdjustInstances(Arc::new(move |c: &mut InstanceConfig| {
            let server_url = c.subscriptions.server_url.take();
            c.subscriptions = wanted.subscriptions.clone();
            c.subscriptions.server_url = server_url;
            c.default_script_timeout = wanted.default_script_timeout;
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let host = Host::open(HostConfig {
            data_dir: data_dir.clone(),
            domain: "cuttle.test".into(),
            database_url: pg.as_ref().map(|p| p.url.clone()),
            public_scheme: "http".into(),
            public_port: Some(addr.port()),
            builtin_worker_unisolated: unisolated,
            hosted_workers: Some(workers),
            shutdown_timeout: Duration::from_secs(2),
            idle_after: Duration::from_secs(3600),
            polling_port: None,
            adjust_instances: Some(adjust),
        })
        .await
        .unwrap();
        let cap = i64::try_from(max_tasks).unwrap();
        host.create(
            "t",
            Limits {
                task_cap: cap,
                storage_quota_mib: 0,
            },
        )
        .await
        .unwrap();
        let Some(Slot::Serving(served)) = host.slot("t") else {
            panic!("the host does not serve the instance it made");
        };
        let inst = served.instance.clone();
        // The host made the administrator; the suite's key is added to it.
        bootstrap_admin(&inst.store, &host.instance_dir("t"), None, Some(ADMIN_KEY))
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = cuttle::host::routing::router(host.clone());
        tokio::spawn(async move {
            let _ = cuttle_api::connections::serve(
                listener,
                router,
                cuttle_api::HttpLimits::default(),
                async {
                    let _ = stopped.await;
                },
            )
            .await;
        });
        let database = pg
            .as_ref()
            .and_then(|p| Some((p.url.clone(), host.database_name("t")?)));
        Server {
            url: format!("http://{addr}"),
            key: ADMIN_KEY.into(),
            inst,
            backend,
            client: client(),
            stop: Some(stop),
            hosted: Some(Hosted {
                host,
                _scratch: scratch,
                database,
            }),
            _dir: dir,
            _pg: pg,
        }
    }

    /// A client for this server: on a host, one that names the instance
    /// in its `Host` header, as a browser at its URL would.
    pub fn http(&self) -> reqwest::Client {
        self.client.clone()
    }

    /// As [`Server::http`], to be built further.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        client_builder()
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        key: Option<&str>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some(k) = key {
            req = req.header("X-Octopus-ApiKey", k);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call_with(Method::GET, path, None, Some(&self.key))
            .await
    }

    pub async fn send(&self, method: Method, path: &str, body: &Value) -> Reply {
        self.call_with(method, path, Some(&body.to_string()), Some(&self.key))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, &body).await
    }

    /// Pushes a package file to the built-in feed, which must accept it;
    /// returns the package resource.
    pub async fn push_package(&self, file_name: &str, data: &[u8]) -> Value {
        let part = reqwest::multipart::Part::bytes(data.to_vec()).file_name(file_name.to_owned());
        let resp = self
            .client
            .post(format!("{}/api/Spaces-1/packages/raw", self.url))
            .header("X-Octopus-ApiKey", &self.key)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{}", self.backend);
        resp.json().await.unwrap()
    }

    /// POST that must succeed; returns the body.
    pub async fn create(&self, path: &str, body: Value) -> Value {
        let r = self.post(path, body).await;
        assert!(
            r.status.is_success(),
            "{} {path} → {}: {}",
            self.backend,
            r.status,
            r.body
        );
        r.body
    }

    /// An environment, a project with one Bash step, returning the project.
    pub async fn project_with_script(&self, name: &str, script: &str, extra_props: Value) -> Value {
        if self.get("/api/environments?name=Dev").await.body["TotalResults"] == 0 {
            self.create("/api/environments", serde_json::json!({"Name": "Dev"}))
                .await;
        }
        let project = self
            .create(
                "/api/projects",
                serde_json::json!({"Name": name, "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
            )
            .await;
        let mut props = serde_json::json!({
            "Octopus.Action.Script.ScriptBody": script,
            "Octopus.Action.Script.Syntax": "Bash",
        });
        if let (Value::Object(p), Value::Object(extra)) = (&mut props, extra_props) {
            p.extend(extra);
        }
        let process = serde_json::json!({"Version": 0, "Steps": [{"Name": "Run it", "Actions": [{"ActionType": "Octopus.Script", "Properties": props}]}]});
        let path = format!(
            "/api/projects/{}/deploymentprocesses",
            project["Id"].as_str().unwrap()
        );
        let r = self.send(Method::PUT, &path, &process).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        project
    }

    /// A service account made through the API, with a key the
    /// administrator made for it; returns its id and key.
    pub async fn service_account(&self, name: &str) -> (String, String) {
        let user = self
            .create(
                "/api/users",
                serde_json::json!({"Username": name, "IsService": true}),
            )
            .await;
        let id = user["Id"].as_str().unwrap().to_owned();
        let key = self
            .create(
                &format!("/api/users/{id}/apikeys"),
                serde_json::json!({"Purpose": "tests"}),
            )
            .await;
        (id, key["ApiKey"].as_str().unwrap().to_owned())
    }

    /// A team of Spaces-1 with `members`, holding `role` narrowed to the
    /// projects and environments given; returns the team.
    pub async fn team_with_role(
        &self,
        name: &str,
        members: &[&str],
        role: &str,
        projects: &[&str],
        envs: &[&str],
    ) -> Value {
        let t = self
            .create(
                "/api/teams",
                serde_json::json!({"Name": name, "SpaceId": "Spaces-1", "MemberUserIds": members}),
            )
            .await;
        self.create(
            "/api/scopeduserroles",
            serde_json::json!({"TeamId": t["Id"], "UserRoleId": role, "SpaceId": "Spaces-1",
                   "ProjectIds": projects, "EnvironmentIds": envs}),
        )
        .await;
        t
    }

    /// Creates a release and deploys it to Dev; returns the task id.
    pub async fn release_and_deploy(&self, project: &str, version: &str) -> String {
        self.create(
            "/api/Spaces-1/releases/create/v1",
            serde_json::json!({"ProjectName": project, "ReleaseVersion": version}),
        )
        .await;
        let d = self
            .create(
                "/api/Spaces-1/deployments/create/untenanted/v1",
                serde_json::json!({"ProjectName": project, "ReleaseVersion": version, "EnvironmentNames": ["Dev"]}),
            )
            .await;
        d["DeploymentServerTasks"][0]["ServerTaskId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Polls a task until it completes (bounded), returning it.
    pub async fn wait_for_task(&self, id: &str) -> Value {
        for _ in 0..1500 {
            let t = self.get(&format!("/api/tasks/{id}")).await.body;
            if t["IsCompleted"] == true {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{}: task {id} did not complete within 30 s", self.backend);
    }

    /// A user holding `role` in the whole of Spaces-1 (through a team of
    /// their own), with an API key; returns the key.
    pub async fn create_user_in_role(&self, username: &str, role: &str) -> String {
        let key = self.create_user(username).await;
        let me = self
            .call_with(Method::GET, "/api/users/me", None, Some(&key))
            .await
            .body;
        let team = self
            .create(
                "/api/teams",
                serde_json::json!({"Name": format!("{username}'s team"), "SpaceId": "Spaces-1", "MemberUserIds": [me["Id"]]}),
            )
            .await;
        self.create(
            "/api/scopeduserroles",
            serde_json::json!({"TeamId": team["Id"], "UserRoleId": role, "SpaceId": "Spaces-1"}),
        )
        .await;
        key
    }

    /// A second user with an API key, written through the store, holding
    /// no role (see [`Server::create_user_in_role`]); returns the key.
    pub async fn create_user(&self, username: &str) -> String {
        use cuttle_model::ids::Collection;
        let key = cuttle_service::auth::generate_api_key();
        let mut tx = self.inst.store.begin().await.unwrap();
        let user = cuttle_model::User {
            id: tx.next_id(Collection::Users).await.unwrap(),
            username: username.into(),
            display_name: username.into(),
            is_active: true,
            ..Default::default()
        };
        tx.insert_user(&user, None).await.unwrap();
        let record = cuttle_model::ApiKey {
            id: tx.next_id(Collection::ApiKeys).await.unwrap(),
            user_id: user.id.clone(),
            purpose: "tests".into(),
            created: Some(cuttle_model::Timestamp::now()),
            ..Default::default()
        };
        tx.insert_api_key(&record, &cuttle_service::auth::hash_api_key(&key))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        key
    }

    /// Every log line of a task, in tree order.
    pub async fn log_lines(&self, id: &str) -> Vec<(String, String)> {
        fn walk(node: &Value, out: &mut Vec<(String, String)>) {
            for l in node["LogElements"].as_array().into_iter().flatten() {
                out.push((
                    l["Category"].as_str().unwrap_or("").into(),
                    l["MessageText"].as_str().unwrap_or("").into(),
                ));
            }
            for c in node["Children"].as_array().into_iter().flatten() {
                walk(c, out);
            }
        }
        let details = self
            .get(&format!("/api/tasks/{id}/details?verbose=true"))
            .await
            .body;
        let mut out = vec![];
        for a in details["ActivityLogs"].as_array().into_iter().flatten() {
            walk(a, &mut out);
        }
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(hosted) = self.hosted.take() {
            // The instance's own database, beside the scratch one.
            if let Some((server, name)) = hosted.database {
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    rt.block_on(cuttle_store::host::drop_postgres_database(&server, &name))
                        .ok()
                })
                .join();
            }
            drop(hosted.host);
        }
    }
}

/// The client of a hosted instance: every request names it.
fn client() -> reqwest::Client {
    client_builder().build().unwrap()
}

fn client_builder() -> reqwest::ClientBuilder {
    if !on_host() {
        return reqwest::Client::builder();
    }
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::HOST,
        reqwest::header::HeaderValue::from_static(HOSTED_NAME),
    );
    reqwest::Client::builder().default_headers(headers)
}

/// The `cuttle` binary hosted workers run: `CUTTLE_TEST_CUTTLE_BIN`, or
/// the one built beside this test binary (`target/debug/cuttle`).
fn cuttle_binary() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("CUTTLE_TEST_CUTTLE_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/it-… → target/debug/cuttle
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("cuttle"))
        .unwrap();
    assert!(
        bin.is_file(),
        "CUTTLE_TEST_ON_HOST runs steps on hosted workers, which run {}: build it first \
         (cargo build -p cuttle) or name one in CUTTLE_TEST_CUTTLE_BIN",
        bin.display()
    );
    bin
}

/// Runs `scenario` against a server on SQLite, then on PostgreSQL when
/// CUTTLE_TEST_DATABASE_URL is set (saying so when it is skipped).
pub async fn on_both<F, Fut>(name: &str, scenario: F)
where
    F: Fn(Server) -> Fut,
    Fut: Future<Output = ()>,
{
    on_both_with_cap(name, 8, scenario).await
}

/// As [`on_both`], with the instance's configuration changed by `configure`.
pub async fn on_both_configured<F, Fut>(
    name: &str,
    configure: impl Fn(&mut InstanceConfig),
    scenario: F,
) where
    F: Fn(Server) -> Fut,
    Fut: Future<Output = ()>,
{
    scenario(Server::start_configured(None, "sqlite", 8, &configure).await).await;
    if let Some(pg) = ScratchPostgres::create(name).await {
        scenario(Server::start_configured(Some(pg), "postgres", 8, &configure).await).await;
    }
}

/// As [`on_both`], with at most `max_tasks` tasks running at once.
pub async fn on_both_with_cap<F, Fut>(name: &str, max_tasks: usize, scenario: F)
where
    F: Fn(Server) -> Fut,
    Fut: Future<Output = ()>,
{
    scenario(Server::start(None, "sqlite", max_tasks).await).await;
    if let Some(pg) = ScratchPostgres::create(name).await {
        scenario(Server::start(Some(pg), "postgres", max_tasks).await).await;
    }
}
