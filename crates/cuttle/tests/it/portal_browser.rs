//! The web portal in a real browser: Debian's headless Chromium, driven
//! through chromedriver's WebDriver HTTP API (plain requests, no client
//! crate), against a real `cuttle server` process. Two journeys: sign in,
//! follow a deployment's log live to success, and watch the dashboard turn
//! green by itself; then answer a manual intervention from the task page.
//! Screenshots go to `target/portal-screenshots/` for a person to look at.
//!
//! Without chromium and chromedriver the test says it is skipped, unless
//! `CI` is set, where it fails: CI installs them (`.ci/run`).

use crate::support;

use serde_json::{json, Value};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{ServerProcess, KEY, PASSWORD};

/// How long any one thing may take to appear in the browser.
const PATIENCE: Duration = Duration::from_secs(30);
/// The key WebDriver names element references by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Decodes standard base64 (WebDriver's screenshots); no crate for 20 lines.
fn base64_decode(text: &str) -> Vec<u8> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A chromedriver process and one browser session in it; both end on drop.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    shots: PathBuf,
}

impl Browser {
    async fn start(chromedriver: &Path, chromium: Option<&Path>, shots: PathBuf) -> Browser {
        let port = free_port();
        // A process group of its own, so that the browsers it starts can be
        // ended with it.
        let driver = Command::new(chromedriver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(r) = ready {
                let status: Value = r.json().await.unwrap_or(Value::Null);
                if status["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut options = json!({"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
            "--disable-dev-shm-usage", "--lang=en-GB",
        ]});
        if let Some(c) = chromium {
            options["binary"] = json!(c.to_string_lossy());
        }
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
            shots,
        };
        let created = browser
            .call(
                "POST",
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": options,
                }}})),
            )
            .await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_owned();
        browser
    }

    /// One WebDriver command; returns its `value`, panicking on an error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let reply = self.try_call(method, path, body).await;
        assert!(
            reply.get("error").is_none(),
            "WebDriver {method} {path}: {reply}"
        );
        reply
    }

    async fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let mut req = self
            .http
            .request(method.parse().expect("an HTTP method"), url);
        if let Some(b) = body {
            req = req.json(&b);
        } else if method == "POST" {
            req = req.json(&json!({}));
        }
        let resp = req.send().await.expect("talk to chromedriver");
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    async fn current_url(&self) -> String {
        self.call("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    async fn source(&self) -> String {
        self.call("GET", "/source", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .call(
                "POST",
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
            .collect()
    }

    /// Waits for an element matching `css` to exist; returns it.
    async fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(e) = self.find_all(css).await.into_iter().next() {
                return e;
            }
            if Instant::now() > deadline {
                self.screenshot("failure").await;
                panic!(
                    "no element {css} within {PATIENCE:?} at {}:\n{}",
                    self.current_url().await,
                    self.source().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the text of an element matching `css` to contain `text`.
    async fn wait_for_text(&self, css: &str, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            for e in self.find_all(css).await {
                let t = self.text(&e).await;
                if t.contains(text) {
                    return t;
                }
            }
            if Instant::now() > deadline {
                self.screenshot("failure").await;
                panic!(
                    "no {css} saying {text:?} within {PATIENCE:?} at {}:\n{}",
                    self.current_url().await,
                    self.source().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&self, element: &str) -> String {
        self.try_call("GET", &format!("/element/{element}/text"), None)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    async fn attribute(&self, element: &str, name: &str) -> Option<String> {
        self.call("GET", &format!("/element/{element}/attribute/{name}"), None)
            .await
            .as_str()
            .map(str::to_owned)
    }

    async fn click(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/click"), None)
            .await;
    }

    async fn type_into(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Empties a text input (before typing a value of one's own).
    async fn clear(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/clear"), None)
            .await;
    }

    /// Clears `css`'s input and types `text` into it.
    async fn fill(&self, css: &str, text: &str) {
        let e = self.wait_for(css).await;
        self.clear(&e).await;
        self.type_into(&e, text).await;
    }

    /// Waits for the address bar to contain `part`; returns the address.
    async fn wait_for_url(&self, part: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = self.current_url().await;
            if now.contains(part) {
                return now;
            }
            if Instant::now() > deadline {
                self.screenshot("failure").await;
                panic!(
                    "the browser did not reach {part} within {PATIENCE:?}; at {now}:\n{}",
                    self.source().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Saves the viewport as `<name>.png` in the screenshot directory.
    async fn screenshot(&self, name: &str) {
        let png = self.try_call("GET", "/screenshot", None).await;
        if let Some(b64) = png.as_str() {
            let path = self.shots.join(format!("{name}.png"));
            std::fs::write(&path, base64_decode(b64)).expect("write a screenshot");
            eprintln!("screenshot: {}", path.display());
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes its browser; killing the driver alone
        // would leave the browser's processes running.
        if !self.session.is_empty() {
            let address = self.base.trim_start_matches("http://").to_owned();
            if let Ok(mut conn) = std::net::TcpStream::connect(&address) {
                use std::io::{Read, Write};
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let request = format!(
                    "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n",
                    self.session
                );
                if conn.write_all(request.as_bytes()).is_ok() {
                    let _ = conn.read_to_end(&mut Vec::new());
                }
            }
        }
        // And whatever is left of the driver's process group.
        if let Ok(pgid) = i32::try_from(self.driver.id()) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        let _ = self.driver.wait();
    }
}

/// The administrator's REST calls, to set up what the browser looks at.
struct Api {
    url: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(
                method.parse().expect("an HTTP method"),
                format!("{}{path}", self.url),
            )
            .header("X-Octopus-ApiKey", KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("call the API");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path} → {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A person who signs in with `password`; with a role, through a team
    /// of Spaces-1 holding it narrowed to the projects and environments
    /// given. Returns their id.
    async fn person(
        &self,
        name: &str,
        password: &str,
        role: Option<(&str, Value, Value)>,
    ) -> Value {
        let id = self
            .call(
                "POST",
                "/api/users",
                Some(json!({"Username": name, "Password": password})),
            )
            .await["Id"]
            .clone();
        if let Some((role, projects, environments)) = role {
            let team = self
                .call(
                    "POST",
                    "/api/teams",
                    Some(json!({"Name": format!("{name}'s team"), "SpaceId": "Spaces-1", "MemberUserIds": [id]})),
                )
                .await;
            self.call(
                "POST",
                "/api/scopeduserroles",
                Some(
                    json!({"TeamId": team["Id"], "UserRoleId": role, "SpaceId": "Spaces-1",
                    "ProjectIds": projects, "EnvironmentIds": environments}),
                ),
            )
            .await;
        }
        id
    }

    async fn project(&self, name: &str, steps: Value) {
        let p = self
            .call(
                "POST",
                "/api/projects",
                Some(json!({"Name": name, "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"})),
            )
            .await;
        let id = p["Id"].as_str().expect("a project id");
        self.call(
            "PUT",
            &format!("/api/projects/{id}/deploymentprocesses"),
            Some(json!({"Version": 0, "Steps": steps})),
        )
        .await;
    }

    /// Cuts a release and deploys it to Dev; returns the task id.
    async fn deploy(&self, project: &str, version: &str) -> String {
        self.call(
            "POST",
            "/api/Spaces-1/releases/create/v1",
            Some(json!({"ProjectName": project, "ReleaseVersion": version})),
        )
        .await;
        let d = self
            .call(
                "POST",
                "/api/Spaces-1/deployments/create/untenanted/v1",
                Some(json!({"ProjectName": project, "ReleaseVersion": version, "EnvironmentNames": ["Dev"]})),
            )
            .await;
        d["DeploymentServerTasks"][0]["ServerTaskId"]
            .as_str()
            .expect("a task id")
            .to_owned()
    }

    async fn task(&self, id: &str) -> Value {
        self.call("GET", &format!("/api/tasks/{id}"), None).await
    }
}

fn script(name: &str, body: &str) -> Value {
    json!({"Name": name, "Actions": [{"Name": name, "ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": body, "Octopus.Action.Script.Syntax": "Bash"}}]})
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("portal-screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_in_a_real_browser() {
    let chromedriver = find_program(&["chromedriver"]);
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
    let (Some(chromedriver), Some(chromium)) = (chromedriver, chromium) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but chromium or chromedriver is missing (apt-get install chromium chromium-driver)"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: the portal browser test needs chromium and chromedriver \
             (apt-get install chromium chromium-driver)"
        );
        return;
    };

    let server = ServerProcess::sqlite();
    let url = server.url().to_owned();
    let api = Api {
        url: url.clone(),
        http: reqwest::Client::new(),
    };
    // Journey 2's project is set up through the API; journey 1 builds its
    // own, and the environments both deploy to, through the portal.
    api.project(
        "Billing API",
        json!([
            script("Migrate", "echo migrating; sleep 0.5; echo migrated"),
            {"Name": "Approve", "Actions": [{"Name": "Approve", "ActionType": "Octopus.Manual",
                "Properties": {
                    "Octopus.Action.Manual.Instructions": "Check that the #{Octopus.Environment.Name} change window is open.",
                    "Octopus.Action.Manual.BlockConcurrentDeployments": "False",
                    "Octopus.Action.RunOnServer": "true"}}]},
            script("Go live", "echo \"live with notes: #{Octopus.Action[Approve].Output.Manual.Notes}\""),
        ]),
    )
    .await;

    let b = Browser::start(&chromedriver, Some(&chromium), screenshot_dir()).await;

    // Signed out, the dashboard sends the browser to sign in.
    b.go(&format!("{url}/")).await;
    let username = b.wait_for("#username").await;
    assert!(b.current_url().await.contains("/signin"));
    b.screenshot("sign-in").await;
    // A wrong password first: the form again, saying why.
    b.type_into(&username, "admin").await;
    b.type_into(&b.wait_for("#password").await, "not the password")
        .await;
    b.click(&b.wait_for("button[type=submit]").await).await;
    b.wait_for_text(".alert", "not correct").await;
    b.screenshot("sign-in-refused").await;
    b.type_into(&b.wait_for("#password").await, PASSWORD).await;
    b.click(&b.wait_for("button[type=submit]").await).await;
    b.wait_for_text("h1", "Dashboard").await;
    assert_eq!(b.current_url().await, format!("{url}/"));
    b.screenshot("dashboard-empty").await;

    // Journey 1, all in the browser: environments, a project, its steps and
    // a scoped variable, a release, and its deployment followed live.
    for env in ["Dev", "Production"] {
        b.go(&format!("{url}/infrastructure/environments")).await;
        b.fill("#environment-name", env).await;
        b.click(&b.wait_for("#create-environment").await).await;
        b.wait_for_text("main table", env).await;
    }
    b.screenshot("environments").await;

    b.go(&format!("{url}/projects")).await;
    b.fill("#project-name", "Web shop").await;
    b.click(&b.wait_for("#create-project").await).await;
    let process = b.wait_for_url("/process").await;
    let project = process
        .split("/projects/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the project's id in the address")
        .to_owned();

    // Slow enough that the browser sees it running, and lines arrive live.
    let steps = [
        (
            "Prepare",
            "echo \"preparing release #{Octopus.Release.Number}: #{Greeting}\"\nsleep 3",
        ),
        (
            "Roll out",
            "for i in 1 2 3 4 5; do echo \"rolled out part $i of 5\"; sleep 0.3; done\necho 'all parts <live>'",
        ),
    ];
    for (name, body) in steps {
        b.go(&format!(
            "{url}/projects/{project}/process/steps/new?kind=script"
        ))
        .await;
        b.fill("#step-name", name).await;
        b.fill("#script-body", body).await;
        b.click(&b.wait_for("#run-on-server").await).await;
        if name == "Prepare" {
            b.screenshot("step-form").await;
        }
        b.click(&b.wait_for("#save-step").await).await;
        b.wait_for_url(&format!("/projects/{project}/process"))
            .await;
        b.wait_for_text("main", name).await;
    }
    b.screenshot("process").await;

    b.go(&format!("{url}/projects/{project}/variables")).await;
    b.fill("#var-name-new", "Greeting").await;
    b.fill("#var-value-new", "hello from <Dev>").await;
    let dev = api.call("GET", "/api/environments?name=Dev", None).await["Items"][0]["Id"]
        .as_str()
        .expect("Dev's id")
        .to_owned();
    b.click(
        &b.wait_for(&format!("#var-env-new option[value='{dev}']"))
            .await,
    )
    .await;
    b.click(&b.wait_for("#save-variables").await).await;
    b.wait_for_text("main", "Saved").await;
    b.screenshot("variables").await;
    let set = api
        .call("GET", &format!("/api/projects/{project}"), None)
        .await["VariableSetId"]
        .as_str()
        .expect("the project's variable set")
        .to_owned();
    let saved = api
        .call("GET", &format!("/api/variables/{set}"), None)
        .await;
    let greeting = saved["Variables"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["Name"] == "Greeting")
        .unwrap_or_else(|| panic!("no Greeting variable: {saved}"));
    assert_eq!(greeting["Scope"]["Environment"], json!([dev]), "{greeting}");

    b.go(&format!("{url}/projects/{project}/releases/new"))
        .await;
    b.fill("#release-version", "1.4.2").await;
    b.fill("#release-notes", "First cut <b>not bold</b>").await;
    b.click(&b.wait_for("#create-release").await).await;
    b.wait_for_url("/releases/1.4.2").await;
    b.wait_for_text("main", "First cut <b>not bold</b>").await;
    b.screenshot("release").await;

    b.go(&format!("{url}/projects/{project}/releases/1.4.2/deploy"))
        .await;
    b.click(&b.wait_for(&format!("#deploy-env-{dev}")).await)
        .await;
    // The plan first: nothing is queued by a preview.
    b.click(&b.wait_for("#preview-deploy").await).await;
    b.wait_for_text("section.plan", "Roll out").await;
    b.screenshot("deploy-preview").await;
    assert_eq!(
        api.call("GET", "/api/tasks?take=1", None).await["TotalResults"],
        0
    );
    let tick = b.wait_for(&format!("#deploy-env-{dev}")).await;
    if b.attribute(&tick, "checked").await.is_none() {
        b.click(&tick).await;
    }
    b.click(&b.wait_for("#deploy").await).await;
    let task_url = b.wait_for_url("/tasks/ServerTasks-").await;
    let task = task_url.rsplit('/').next().expect("a task id").to_owned();
    let page = b.wait_for("#task").await;
    assert_eq!(
        b.attribute(&page, "data-completed").await.as_deref(),
        Some("false"),
        "the page must load while the deployment runs, so what follows is streamed"
    );
    b.wait_for_text(".line .msg", "preparing release 1.4.2: hello from <Dev>")
        .await;
    b.wait_for_text(".badge", "Running").await;
    b.screenshot("task-running").await;
    // The last lines arrive through the stream, then the summary.
    b.wait_for_text(".line .msg", "rolled out part 5 of 5")
        .await;
    let summary = b
        .wait_for_text("#task-header .summary", "Deployed release 1.4.2 to Dev")
        .await;
    assert!(summary.contains("Finished"), "{summary}");
    b.wait_for_text(".badge", "Success").await;
    let steps = b.find_all("#log-tree details.act.status-success").await;
    assert!(steps.len() >= 3, "the task and its steps succeeded");
    assert!(
        b.find_all(".task-head button.danger").await.is_empty(),
        "no Cancel once done"
    );
    b.screenshot("task-finished").await;
    assert_eq!(api.task(&task).await["State"], "Success");
    b.go(&format!("{url}/")).await;
    b.wait_for(&format!("a.cell.state-success[href$='/{task}']"))
        .await;

    // The dashboard refreshes itself while something runs: a second
    // deployment shows running, then green, without a reload.
    let second = api.deploy("Web shop", "1.4.3").await;
    b.go(&format!("{url}/")).await;
    // Seen running first, so the green that follows came from a refresh.
    b.wait_for(&format!("a.cell.state-running[href$='/{second}']"))
        .await;
    b.screenshot("dashboard-running").await;
    let green = b
        .wait_for(&format!("a.cell.state-success[href$='/{second}']"))
        .await;
    assert_eq!(api.task(&second).await["State"], "Success");
    let cell_text = b.text(&green).await;
    assert!(
        cell_text.contains("1.4.3") && cell_text.contains("Success"),
        "{cell_text}"
    );
    b.screenshot("dashboard").await;
    // A click opens the task page.
    b.click(&green).await;
    b.wait_for_text("#task-header h1", "Deploy Web shop release 1.4.3 to Dev")
        .await;
    assert_eq!(b.current_url().await, format!("{url}/tasks/{second}"));

    // Journey 2: a manual intervention answered from the task page.
    let gated = api.deploy("Billing API", "2.0.0").await;
    b.go(&format!("{url}/tasks/{gated}")).await;
    let notes = b.wait_for("textarea[name=Notes]").await;
    b.wait_for_text(
        ".interruption .instructions",
        "Check that the Dev change window is open.",
    )
    .await;
    b.wait_for_text(".badge", "Waiting for intervention").await;
    b.screenshot("task-waiting").await;
    b.go(&format!("{url}/")).await;
    b.wait_for("a.cell.state-waiting").await;
    b.screenshot("dashboard-waiting").await;
    b.resize(390, 844).await;
    b.screenshot("dashboard-phone").await;
    b.go(&format!("{url}/tasks/{gated}")).await;
    let notes_phone = b.wait_for("textarea[name=Notes]").await;
    b.screenshot("task-waiting-phone").await;
    b.resize(1280, 900).await;
    let _ = notes;
    b.type_into(&notes_phone, "window confirmed by <ops>").await;
    b.click(&b.wait_for("button[name=Result][value=Proceed]").await)
        .await;
    let summary = b
        .wait_for_text("#task-header .summary", "Deployed release 2.0.0 to Dev")
        .await;
    assert!(summary.contains("Finished"), "{summary}");
    b.wait_for_text(".line .msg", "live with notes: window confirmed by <ops>")
        .await;
    b.wait_for_text(".line .msg", "chose Proceed").await;
    assert!(b.find_all(".interruption").await.is_empty());
    assert_eq!(api.task(&gated).await["State"], "Success");
    b.screenshot("task-proceeded").await;
    b.resize(390, 844).await;
    b.screenshot("task-finished-phone").await;
    b.resize(1280, 900).await;

    // Infrastructure: two real agents, their health checked from the page.
    let agents_dir = tempfile::tempdir().expect("a directory for agents");
    let mut agents = vec![];
    for (name, mode) in [
        ("web-01", support::agents::Mode::Listening(&["web"])),
        ("web-02", support::agents::Mode::Polling(&["web", "cache"])),
    ] {
        let dir = agents_dir.path().join(name);
        let out = support::agents::register(&server, &dir, name, mode);
        assert!(out.status.success(), "{out:?}");
        agents.push(support::agents::Agent::start(&dir));
    }
    b.go(&format!("{url}/infrastructure/targets")).await;
    b.click(&b.wait_for("#check-health").await).await;
    b.wait_for_url("/tasks/ServerTasks-").await;
    b.wait_for_text(".badge", "Success").await;
    b.go(&format!("{url}/infrastructure/targets")).await;
    b.wait_for_text("main table", "web-02").await;
    let healthy = b.find_all("[data-health=Healthy]").await;
    assert_eq!(healthy.len(), 2, "both agents are healthy");
    b.screenshot("infrastructure").await;

    // The other main pages, for a person to look at.
    b.go(&format!("{url}/projects/{project}")).await;
    b.wait_for_text("main", "1.4.3").await;
    b.screenshot("project-overview").await;
    b.go(&format!("{url}/projects")).await;
    b.wait_for_text("main", "Billing API").await;
    b.screenshot("projects").await;
    b.go(&format!("{url}/library")).await;
    b.wait_for("#package-file").await;
    b.screenshot("library").await;
    b.go(&format!("{url}/audit")).await;
    b.wait_for_text("table.audit", "DeploymentSucceeded").await;
    b.screenshot("audit").await;
    b.go(&format!("{url}/configuration/api-keys")).await;
    b.fill("#api-key-purpose", "CI plugin").await;
    b.click(&b.wait_for("#create-api-key").await).await;
    let key = b
        .attribute(&b.wait_for("#new-api-key").await, "value")
        .await
        .unwrap_or_default();
    assert!(key.starts_with("API-"), "{key}");
    b.screenshot("api-key-created").await;
    drop(agents);

    // The tasks list, filtered.
    b.go(&format!("{url}/tasks?state=Success")).await;
    b.wait_for_text("table.tasks", "Billing API").await;
    b.screenshot("tasks").await;

    // 1.4.3 promoted to Production: the dashboard with every state it has.
    let promoted = api
        .call(
            "POST",
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": "Web shop", "ReleaseVersion": "1.4.3", "EnvironmentNames": ["Production"]})),
        )
        .await;
    let promoted = promoted["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .expect("a task id")
        .to_owned();
    // The project's overview follows it without a reload, as the dashboard does.
    b.go(&format!("{url}/projects/{project}")).await;
    let board = b.wait_for("#project-board").await;
    assert_eq!(
        b.attribute(&board, "data-live").await.as_deref(),
        Some("true"),
        "loaded while the promotion runs"
    );
    b.wait_for(&format!(
        "#project-board a.cell.state-success[href$='/{promoted}']"
    ))
    .await;
    b.go(&format!("{url}/")).await;
    b.wait_for(&format!("a.cell.state-success[href$='/{promoted}']"))
        .await;
    b.screenshot("dashboard-promoted").await;

    // Signing out ends it: the dashboard asks to sign in again.
    b.go(&format!("{url}/")).await;
    b.click(&b.wait_for("form.signout button").await).await;
    b.wait_for("#username").await;
    b.go(&format!("{url}/tasks/{gated}")).await;
    b.wait_for("#username").await;
    assert!(
        b.current_url().await.contains("next=%2Ftasks%2F"),
        "{}",
        b.current_url().await
    );

    // A person who may deploy Billing API to Dev and nothing else walks the
    // main pages and sees only that; then the rest of the permission
    // fixture: a viewer of the whole space, the manager of another space, a
    // disabled person.
    let deployer = (
        "userroles-projectdeployer",
        json!(["Projects-1"]),
        json!(["Environments-1"]),
    );
    api.person("dana", "billing-in-dev-42", Some(deployer))
        .await;
    let viewer = ("userroles-projectviewer", json!([]), json!([]));
    api.person("vic", "views-everything-42", Some(viewer.clone()))
        .await;
    let mona = api.person("mona", "manages-elsewhere-42", None).await;
    api.call(
        "POST",
        "/api/spaces",
        Some(json!({"Name": "Elsewhere", "SpaceManagersTeamMembers": [mona]})),
    )
    .await;
    let dave = api.person("dave", "was-here-once-42", Some(viewer)).await;
    api.call(
        "PUT",
        &format!("/api/users/{}", dave.as_str().unwrap_or_default()),
        Some(json!({"IsActive": false})),
    )
    .await;
    let sign_in_as = |name: &'static str, password: &'static str| {
        let b = &b;
        let url = &url;
        async move {
            b.go(&format!("{url}/")).await;
            if b.find_all("form.signout button").await.is_empty() {
                b.go(&format!("{url}/signin")).await;
            } else {
                b.click(&b.wait_for("form.signout button").await).await;
            }
            b.type_into(&b.wait_for("#username").await, name).await;
            b.type_into(&b.wait_for("#password").await, password).await;
            b.click(&b.wait_for("button[type=submit]").await).await;
        }
    };
    sign_in_as("dana", "billing-in-dev-42").await;
    b.wait_for_text("h1", "Dashboard").await;
    b.wait_for_text("main", "Billing API").await;
    let seen = b.text(&b.wait_for("main").await).await;
    assert!(!seen.contains("Web shop"), "{seen}");
    b.screenshot("dashboard-narrowed").await;
    b.go(&format!("{url}/projects")).await;
    b.wait_for_text("main", "Billing API").await;
    let seen = b.text(&b.wait_for("main").await).await;
    assert!(!seen.contains("Web shop"), "{seen}");
    b.go(&format!("{url}/tasks")).await;
    b.wait_for_text("table.tasks", "Billing API").await;
    let seen = b.text(&b.wait_for("table.tasks").await).await;
    assert!(
        !seen.contains("Web shop") && !seen.contains("Production"),
        "{seen}"
    );
    b.screenshot("tasks-narrowed").await;
    b.go(&format!("{url}/projects/{project}")).await;
    b.wait_for_text("h1", "Not Found").await;
    b.go(&format!("{url}/infrastructure/targets")).await;
    b.wait_for_text("body", "MachineView").await;
    b.screenshot("refused-narrowed").await;
    sign_in_as("vic", "views-everything-42").await;
    b.wait_for_text("h1", "Dashboard").await;
    b.wait_for_text("main", "Web shop").await;
    b.wait_for_text("main", "Billing API").await;
    b.go(&format!("{url}/infrastructure/targets")).await;
    b.wait_for_text("body", "MachineView").await;
    sign_in_as("mona", "manages-elsewhere-42").await;
    b.wait_for_text("body", "ProjectView").await;
    // Refused everywhere here, the page still lets her sign out.
    b.wait_for("form.signout button").await;
    let seen = b.text(&b.wait_for("body").await).await;
    assert!(
        !seen.contains("Web shop") && !seen.contains("Billing API"),
        "{seen}"
    );
    b.screenshot("another-space-manager").await;
    sign_in_as("dave", "was-here-once-42").await;
    b.wait_for_text(".alert", "not correct").await;
    assert!(b.current_url().await.contains("/signin"));
    drop(server);
}
