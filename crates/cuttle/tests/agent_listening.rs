//! Listening agents as operators run them: a real server, `cuttle agent
//! init`, `register` and `run` as real processes on 127.0.0.1, and the
//! server's `Health` task dialling them over pinned mutual TLS. Runs on
//! SQLite, and on PostgreSQL when CUTTLE_TEST_DATABASE_URL is set.

mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{on_both, ServerProcess, BIN, KEY};

fn request(server: &ServerProcess, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", server.url))
            .header("X-Octopus-ApiKey", KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}

fn api(server: &ServerProcess, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, v) = request(server, method, path, body);
    assert!(
        (200..300).contains(&status),
        "{method} {path} → {status}: {v}"
    );
    v
}

/// A task's log as text.
fn raw_log(server: &ServerProcess, task_id: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/api/tasks/{task_id}/raw", server.url))
            .header("X-Octopus-ApiKey", KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

fn agent_cli(server: &ServerProcess, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("CUTTLE_SERVER", &server.url)
        .env("CUTTLE_API_KEY", KEY)
        .env_remove("CUTTLE_AGENT_DATA_DIR")
        .env_remove("CUTTLE_SPACE")
        .output()
        .expect("run cuttle")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Creates and registers an agent in `dir` listening on a free port.
fn register(server: &ServerProcess, dir: &Path, name: &str) -> Output {
    let listen = format!("127.0.0.1:{}", free_port());
    let d = dir.to_str().unwrap();
    let init = agent_cli(server, &["agent", "init", "--data-dir", d]);
    assert!(init.status.success(), "{init:?}");
    agent_cli(
        server,
        &[
            "agent",
            "register",
            "--data-dir",
            d,
            "--name",
            name,
            "--environment",
            "Dev",
            "--role",
            "web",
            "--listen",
            &listen,
        ],
    )
}

/// A running `cuttle agent run`, stopped when dropped.
struct Agent(Child);

impl Agent {
    fn start(dir: &Path) -> Agent {
        let mut child = Command::new(BIN)
            .args(["agent", "run", "--data-dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the agent");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("is listening on https://") {
                    let _ = tx.send(());
                }
            }
        });
        let agent = Agent(child);
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the agent announces that it listens");
        agent
    }

    fn terminate(mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn machine_named(server: &ServerProcess, name: &str) -> Value {
    let page = api(server, "GET", &format!("/api/machines?name={name}"), None);
    page["Items"][0].clone()
}

/// Queues a health check of one machine and waits for it to finish.
fn health(server: &ServerProcess, machine_id: &str) -> Value {
    let task = api(
        server,
        "POST",
        "/api/tasks",
        Some(json!({"Name": "Health", "Arguments": {"MachineIds": [machine_id]}})),
    );
    let id = task["Id"].as_str().unwrap().to_owned();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let t = api(server, "GET", &format!("/api/tasks/{id}"), None);
        if t["IsCompleted"] == true {
            return t;
        }
        assert!(
            Instant::now() < until,
            "the health check did not finish: {t}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn listening_agents_register_answer_health_checks_and_refuse_strangers() {
    on_both("agent_listening", |data_dir, db| {
        let server = ServerProcess::start(&data_dir, db.as_deref(), &[]);
        api(
            &server,
            "POST",
            "/api/environments",
            Some(json!({"Name": "Dev"})),
        );
        let server_thumbprint = api(&server, "GET", "/api/agents/server-thumbprint", None)
            ["Thumbprint"]
            .as_str()
            .unwrap()
            .to_owned();
        let tmp = tempfile::tempdir().unwrap();

        // An agent registered with the server and trusting it is healthy.
        let dir_a = tmp.path().join("a");
        let registered = register(&server, &dir_a, "web-a");
        assert!(registered.status.success(), "{registered:?}");
        let config: Value =
            serde_json::from_slice(&std::fs::read(dir_a.join("agent.json")).unwrap()).unwrap();
        assert_eq!(
            config["TrustedServerThumbprints"],
            json!([server_thumbprint])
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir_a.join("agent.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the agent's configuration is private");
        let agent_a = Agent::start(&dir_a);
        let machine = machine_named(&server, "web-a");
        let id = machine["Id"].as_str().unwrap().to_owned();
        let task = health(&server, &id);
        assert_eq!(task["State"], "Success", "{task}");
        let m = api(&server, "GET", &format!("/api/machines/{id}"), None);
        assert_eq!(m["HealthStatus"], "Healthy", "{m}");
        assert_eq!(m["AgentVersion"], env!("CARGO_PKG_VERSION"));
        assert_eq!(m["OperatingSystem"], std::env::consts::OS);
        assert!(m["LastSeen"].is_string(), "{m}");
        let log = raw_log(&server, task["Id"].as_str().unwrap());
        assert!(log.contains("web-a is healthy"), "{log}");

        // Registering the same name again is the server's conflict, exit 1.
        let again = agent_cli(
            &server,
            &[
                "agent",
                "register",
                "--data-dir",
                dir_a.to_str().unwrap(),
                "--name",
                "web-a",
                "--environment",
                "Dev",
                "--listen",
                "127.0.0.1:1",
            ],
        );
        assert_eq!(again.status.code(), Some(1), "{again:?}");
        let stderr = String::from_utf8_lossy(&again.stderr);
        assert!(
            stderr.contains("(409)") && stderr.contains("web-a"),
            "{stderr}"
        );

        // The machine pinned to another certificate: the agent is refused, and
        // the certificate it presented is named.
        let real = m["Endpoint"]["Thumbprint"].as_str().unwrap().to_owned();
        let wrong = "AB".repeat(32);
        let mut edited = m.clone();
        edited["Endpoint"]["Thumbprint"] = json!(wrong);
        api(&server, "PUT", &format!("/api/machines/{id}"), Some(edited));
        let task = health(&server, &id);
        assert_eq!(task["State"], "Failed", "{task}");
        let m = api(&server, "GET", &format!("/api/machines/{id}"), None);
        assert_eq!(m["HealthStatus"], "Unavailable", "{m}");
        let summary = m["StatusSummary"].as_str().unwrap();
        assert!(
            summary.contains(&real) && summary.contains(&wrong),
            "{summary}"
        );
        let log = raw_log(&server, task["Id"].as_str().unwrap());
        assert!(log.contains("web-a is unavailable"), "{log}");

        // An agent that trusts another server refuses this one.
        let dir_b = tmp.path().join("b");
        let registered = register(&server, &dir_b, "web-b");
        assert!(registered.status.success(), "{registered:?}");
        let path = dir_b.join("agent.json");
        let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["TrustedServerThumbprints"] = json!(["CD".repeat(32)]);
        std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
        let agent_b = Agent::start(&dir_b);
        let id_b = machine_named(&server, "web-b")["Id"]
            .as_str()
            .unwrap()
            .to_owned();
        let task = health(&server, &id_b);
        assert_eq!(task["State"], "Failed", "{task}");
        let m = api(&server, "GET", &format!("/api/machines/{id_b}"), None);
        assert_eq!(m["HealthStatus"], "Unavailable", "{m}");
        let summary = m["StatusSummary"].as_str().unwrap();
        assert!(
            summary.contains("refused") && summary.contains(&server_thumbprint),
            "{summary}"
        );

        // Both stop on SIGTERM.
        for agent in [agent_a, agent_b] {
            let status = agent.terminate().expect("the agent stops on SIGTERM");
            assert!(status.success(), "{status}");
        }
    });
}

#[test]
fn register_needs_an_identity_and_says_so() {
    let server = ServerProcess::sqlite();
    let tmp = tempfile::tempdir().unwrap();
    let out = agent_cli(
        &server,
        &[
            "agent",
            "register",
            "--data-dir",
            tmp.path().to_str().unwrap(),
            "--name",
            "x",
            "--environment",
            "Dev",
            "--listen",
            "127.0.0.1:10933",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("agent init"),
        "{out:?}"
    );

    let out = agent_cli(
        &server,
        &[
            "agent",
            "register",
            "--data-dir",
            tmp.path().to_str().unwrap(),
            "--name",
            "x",
            "--environment",
            "Dev",
            "--polling",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not supported yet"),
        "{out:?}"
    );
}
