//! The `cuttle` binary as users run it: the server as a real process, the CLI
//! verbs against it, graceful shutdown, and recovery after a crash. Runs on
//! SQLite, and on PostgreSQL when CUTTLE_TEST_DATABASE_URL is set.

use crate::support;

use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::Duration;
use support::{on_both, ServerProcess, BIN, KEY};

fn cli(server: &ServerProcess, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("CUTTLE_SERVER", &server.url)
        .env("CUTTLE_API_KEY", KEY)
        .env("NO_COLOR", "1")
        .output()
        .expect("run the cuttle CLI")
}

/// Sends a request with the administrator's key; returns the status and body text.
fn request(
    server: &ServerProcess,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (reqwest::StatusCode, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client
            .request(method.parse().unwrap(), format!("{}{path}", server.url))
            .header("X-Octopus-ApiKey", KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    })
}

fn api(server: &ServerProcess, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, text) = request(server, method, path, body);
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path} → {status}: {text}");
    v
}

fn make_project(server: &ServerProcess, name: &str, script: &str) {
    if api(server, "GET", "/api/environments?name=Dev", None)["TotalResults"] == 0 {
        api(
            server,
            "POST",
            "/api/environments",
            Some(json!({"Name": "Dev"})),
        );
    }
    let p = api(
        server,
        "POST",
        "/api/projects",
        Some(
            json!({"Name": name, "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
        ),
    );
    let process = json!({"Version": 0, "Steps": [{"Name": "Run", "Actions": [{"ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": script, "Octopus.Action.Script.Syntax": "Bash"}}]}]});
    api(
        server,
        "PUT",
        &format!(
            "/api/projects/{}/deploymentprocesses",
            p["Id"].as_str().unwrap()
        ),
        Some(process),
    );
}

fn wait_task(server: &ServerProcess, id: &str) -> Value {
    for _ in 0..1500 {
        let t = api(server, "GET", &format!("/api/tasks/{id}"), None);
        if t["IsCompleted"] == true {
            return t;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("task {id} did not finish");
}

/// Releases a project, deploys it to Dev, and returns its task once it runs.
fn deploy_and_wait_until_running(server: &ServerProcess, project: &str) -> String {
    api(
        server,
        "POST",
        "/api/Spaces-1/releases/create/v1",
        Some(json!({"ProjectName": project})),
    );
    let body =
        json!({"ProjectName": project, "ReleaseVersion": "0.0.1", "EnvironmentNames": ["Dev"]});
    let d = api(
        server,
        "POST",
        "/api/Spaces-1/deployments/create/untenanted/v1",
        Some(body),
    );
    let task = d["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..500 {
        if api(server, "GET", &format!("/api/tasks/{task}"), None)["State"] == "Executing" {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    task
}

#[test]
fn cli_verbs_release_deploy_and_watch() {
    on_both("cli", |dir, db| {
        let server = ServerProcess::start(&dir, db.as_deref(), &[]);
        make_project(&server, "Hello", "echo \"hello from the walk-through\"");
        make_project(&server, "Broken", "echo going down\nexit 4");

        let out = cli(
            &server,
            &[
                "release",
                "create",
                "--project",
                "Hello",
                "--version",
                "1.0.0",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1.0.0"));

        let out = cli(
            &server,
            &[
                "deploy",
                "--project",
                "Hello",
                "--release",
                "1.0.0",
                "--environment",
                "Dev",
                "--wait",
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("hello from the walk-through"), "{stdout}");
        assert!(stdout.contains("Success"), "{stdout}");

        cli(
            &server,
            &[
                "release",
                "create",
                "--project",
                "Broken",
                "--version",
                "2.0.0",
            ],
        );
        let out = cli(
            &server,
            &[
                "deploy",
                "--project",
                "Broken",
                "--release",
                "2.0.0",
                "--environment",
                "Dev",
                "--wait",
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.contains("going down") && stdout.contains("exited with code 4"),
            "{stdout}"
        );

        // Watching a finished task replays its log; an unknown one is an error.
        let out = cli(&server, &["task", "watch", "ServerTasks-1"]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("hello from the walk-through"));
        let out = cli(&server, &["task", "watch", "ServerTasks-404"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("404"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // A release of a project that does not exist is refused by name.
        let out = cli(
            &server,
            &[
                "release",
                "create",
                "--project",
                "Nope",
                "--version",
                "1.0.0",
            ],
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("Nope"));
    });
}

#[test]
fn sigterm_lets_a_running_step_finish() {
    on_both("shutdown", |dir, db| {
        let mut server = ServerProcess::start(&dir, db.as_deref(), &["--shutdown-timeout", "30"]);
        make_project(&server, "Graceful", "echo begin\nsleep 2\necho end");
        // Once it runs, ask the server to stop.
        let task = deploy_and_wait_until_running(&server, "Graceful");
        server.signal("-TERM");
        let status = server
            .wait_exit(Duration::from_secs(30))
            .expect("server stopped after SIGTERM");
        assert!(status.success(), "{status:?}");

        // Back up on the same database: the task finished while shutting down.
        let server = ServerProcess::start(&dir, db.as_deref(), &[]);
        let t = wait_task(&server, &task);
        assert_eq!(t["State"], "Success", "{t}");
        let raw = cli(&server, &["task", "watch", &task]);
        assert!(String::from_utf8_lossy(&raw.stdout).contains("end"));
    });
}

#[test]
fn a_crashed_server_closes_its_running_tasks_on_restart() {
    on_both("crash", |dir, db| {
        let server = ServerProcess::start(&dir, db.as_deref(), &[]);
        make_project(&server, "Crash", "echo working\nsleep 60");
        let task = deploy_and_wait_until_running(&server, "Crash");
        // Killed while the script runs (on PostgreSQL a step killed before
        // its script started is simply run by the node taking over).
        for _ in 0..1000 {
            if raw_log(&server, &task).contains("working") {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        server.signal("-KILL");
        drop(server);

        let server = ServerProcess::start(&dir, db.as_deref(), &[]);
        let t = wait_task(&server, &task);
        assert_eq!(t["State"], "Failed");
        // SQLite closes the task; on PostgreSQL the restarted node takes
        // it over as any node would, and fails the step its built-in
        // worker was running when it died.
        let why = match db {
            None => "stopped while this task was running",
            Some(_) => "the server node test-node stopped while the step ran",
        };
        assert!(t["ErrorMessage"].as_str().unwrap().contains(why), "{t}");
        // The server still works after recovering.
        let d = api(
            &server,
            "POST",
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(
                json!({"ProjectName": "Crash", "ReleaseVersion": "0.0.1", "EnvironmentNames": ["Dev"]}),
            ),
        );
        let next = d["DeploymentServerTasks"][0]["ServerTaskId"]
            .as_str()
            .unwrap()
            .to_owned();
        api(&server, "POST", &format!("/api/tasks/{next}/cancel"), None);
        assert_eq!(wait_task(&server, &next)["State"], "Canceled");
    });
}

#[test]
fn a_bad_bootstrap_key_refuses_to_start_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("CUTTLE_ADMIN_API_KEY", "API-short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 32 characters"));
    assert!(!dir.path().join("cuttle.db").exists());

    let help = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for verb in ["server", "release", "deploy", "task"] {
        assert!(text.contains(verb), "{text}");
    }
}

#[test]
fn the_server_refuses_a_master_key_other_than_its_own() {
    on_both("master-key", |dir, db| {
        let mut server = ServerProcess::start(&dir, db.as_deref(), &[]);
        server.signal("-TERM");
        assert!(server.wait_exit(Duration::from_secs(20)).is_some());
        let key_file = dir.join("master.key");
        let original = std::fs::read_to_string(&key_file).unwrap();

        let start = |key: Option<&str>| {
            let mut cmd = Command::new(BIN);
            cmd.args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(&dir)
                .env_remove("CUTTLE_DATABASE_URL")
                .env_remove("CUTTLE_MASTER_KEY")
                .stdin(std::process::Stdio::null());
            if let Some(url) = db.as_deref() {
                cmd.args(["--database-url", url]);
            }
            if let Some(k) = key {
                cmd.env("CUTTLE_MASTER_KEY", k);
            }
            cmd.output().unwrap()
        };
        // Another valid key: refused, naming the problem.
        let other = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let out = start(Some(other));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("master key does not match"), "{err}");
        // A malformed key file: refused, and left as it was.
        std::fs::write(&key_file, "not a key").unwrap();
        let out = start(None);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("32 bytes"));
        assert_eq!(std::fs::read_to_string(&key_file).unwrap(), "not a key");
        // With its own key back it starts, and its data is intact.
        std::fs::write(&key_file, &original).unwrap();
        let mut server = ServerProcess::start(&dir, db.as_deref(), &[]);
        let me = api(&server, "GET", "/api/users/me", None);
        assert_eq!(me["Username"], "admin");
        server.signal("-TERM");
        assert!(server.wait_exit(Duration::from_secs(20)).is_some());
    });
}

/// Kills the server (SIGKILL) at several points of a three-step deployment
/// and restarts it each time: every task ends, no step runs twice, and the
/// log keeps what was written before the kill.
#[test]
fn fault_kills_at_any_point_lose_and_repeat_nothing() {
    on_both("crash-points", |dir, db| {
        // Not below /tmp, which is each step's own; writable by every step's
        // uid (a root server runs each as its own), and so are the marks.
        let marks = tempfile::tempdir_in("/var/tmp").unwrap();
        std::fs::set_permissions(marks.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mark = |n: u8| {
            format!(
                "umask 0; echo \"step {n} start\"; echo {n} >> {}/#{{Octopus.Deployment.Id}}; {}; echo \"step {n} end\"",
                marks.path().display(),
                if n == 1 { "true" } else { "sleep 3" }
            )
        };
        let mut server = ServerProcess::start(&dir, db.as_deref(), &[]);
        make_project(&server, "Crashy", &mark(1));
        let p = api(
            &server,
            "GET",
            "/api/projects/Crashy/deploymentprocesses",
            None,
        );
        let mut steps = p["Steps"].as_array().unwrap().clone();
        for n in [2u8, 3] {
            let mut s = steps[0].clone();
            s["Id"] = json!("");
            s["Name"] = json!(format!("Step {n}"));
            s["Actions"][0]["Id"] = json!("");
            s["Actions"][0]["Name"] = json!(format!("Step {n}"));
            s["Actions"][0]["Properties"]["Octopus.Action.Script.ScriptBody"] = json!(mark(n));
            steps.push(s);
        }
        api(
            &server,
            "PUT",
            "/api/projects/Crashy/deploymentprocesses",
            Some(json!({"Version": p["Version"], "Steps": steps})),
        );
        api(
            &server,
            "POST",
            "/api/Spaces-1/releases/create/v1",
            Some(json!({"ProjectName": "Crashy", "ReleaseVersion": "1.0.0"})),
        );

        // Kill points: as soon as the deployment is queued, during step 2, during step 3.
        for kill_after in [None, Some("step 2 start"), Some("step 3 start")] {
            let d = api(
                &server,
                "POST",
                "/api/Spaces-1/deployments/create/untenanted/v1",
                Some(
                    json!({"ProjectName": "Crashy", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev"]}),
                ),
            );
            let task = d["DeploymentServerTasks"][0]["ServerTaskId"]
                .as_str()
                .unwrap()
                .to_owned();
            let deployment = d["DeploymentServerTasks"][0]["DeploymentId"]
                .as_str()
                .unwrap()
                .to_owned();
            if let Some(line) = kill_after {
                let raw = |s: &ServerProcess| raw_log(s, &task);
                let mut seen = false;
                for _ in 0..1000 {
                    if raw(&server).contains(line) {
                        seen = true;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                assert!(seen, "{line} never appeared: {}", raw(&server));
            }
            let before = raw_log(&server, &task);
            server.signal("-KILL");
            let _ = server.wait_exit(Duration::from_secs(10));
            server = ServerProcess::start(&dir, db.as_deref(), &[]);

            let t = wait_task(&server, &task);
            let after = raw_log(&server, &task);
            for line in before.lines().filter(|l| l.contains("step ")) {
                let text = line
                    .split_once("step ")
                    .map(|(_, rest)| rest)
                    .unwrap_or(line);
                assert!(
                    after.contains(text),
                    "{kill_after:?}: the log lost {line:?}:\n{after}"
                );
            }
            let ran = std::fs::read_to_string(marks.path().join(&deployment)).unwrap_or_default();
            let mut steps: Vec<&str> = ran.lines().collect();
            let count = steps.len();
            steps.dedup();
            assert_eq!(
                steps.len(),
                count,
                "{kill_after:?}: a step ran twice: {ran:?}"
            );
            match t["State"].as_str() {
                // Only a deployment still queued at the kill can run whole.
                Some("Success") if kill_after.is_none() => {
                    assert_eq!(steps, ["1", "2", "3"])
                }
                Some("Failed") => {
                    // SQLite closes the task at restart; on PostgreSQL the
                    // restarted node takes it over and fails the step
                    // that was running.
                    let why = match db {
                        None => "stopped while this task was running",
                        Some(_) => "the server node test-node stopped while the step ran",
                    };
                    assert!(t["ErrorMessage"].as_str().unwrap().contains(why), "{t}");
                    assert!(
                        kill_after.is_none() || steps.len() >= 2,
                        "{kill_after:?}: {ran:?}"
                    );
                }
                other => panic!("{kill_after:?}: unexpected end {other:?}: {t}"),
            }
            // The step running at the kill may have printed lines the
            // server had not yet stored; they die with it (lines read before
            // the kill are checked above). Every step before it finished, and
            // its lines must all be there.
            let finished = match t["State"].as_str() {
                Some("Failed") => &steps[..steps.len().saturating_sub(1)],
                _ => &steps[..],
            };
            for n in finished {
                assert!(
                    after.contains(&format!("step {n} start")),
                    "{kill_after:?}: step {n} ran but its log is gone:\n{after}"
                );
            }
        }
        server.signal("-TERM");
        let _ = server.wait_exit(Duration::from_secs(20));
    });
}

fn raw_log(server: &ServerProcess, task: &str) -> String {
    request(server, "GET", &format!("/api/tasks/{task}/raw"), None).1
}
