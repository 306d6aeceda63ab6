//! Agents as operators run them: `cuttle agent init`, `register` and `run`
//! as real processes on 127.0.0.1, plus the API calls tests make about them.

use super::{ServerProcess, BIN, KEY};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn request(
    server: &ServerProcess,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
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

/// A request that must succeed; its JSON answer.
pub fn api(server: &ServerProcess, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, v) = request(server, method, path, body);
    assert!(
        (200..300).contains(&status),
        "{method} {path} → {status}: {v}"
    );
    v
}

/// A task's log as text.
pub fn raw_log(server: &ServerProcess, task_id: &str) -> String {
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

/// Waits for a task to finish; its resource.
pub fn wait_task(server: &ServerProcess, id: &str, limit: Duration) -> Value {
    let until = Instant::now() + limit;
    loop {
        let t = api(server, "GET", &format!("/api/tasks/{id}"), None);
        if t["IsCompleted"] == true {
            return t;
        }
        assert!(
            Instant::now() < until,
            "the task did not finish: {t}\n{}",
            raw_log(server, id)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Deploys an existing release of `project` to Dev; the task id.
pub fn deploy_to_dev(server: &ServerProcess, project: &str, version: &str) -> String {
    let d = api(
        server,
        "POST",
        "/api/Spaces-1/deployments/create/untenanted/v1",
        Some(
            json!({"ProjectName": project, "ReleaseVersion": version, "EnvironmentNames": ["Dev"]}),
        ),
    );
    d["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `cuttle …` as a user runs it against `server`.
pub fn agent_cli(server: &ServerProcess, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("CUTTLE_SERVER", &server.url)
        .env("CUTTLE_API_KEY", KEY)
        .env_remove("CUTTLE_AGENT_DATA_DIR")
        .env_remove("CUTTLE_SPACE")
        .output()
        .expect("run cuttle")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How an agent is registered.
pub enum Mode<'a> {
    /// A listening deployment target in Dev with these roles.
    Listening(&'a [&'a str]),
    /// A polling deployment target in Dev with these roles.
    Polling(&'a [&'a str]),
    /// A polling worker in this pool.
    PollingWorker(&'a str),
}

/// Creates an identity in `dir` and registers it; the `register` output.
pub fn register(server: &ServerProcess, dir: &Path, name: &str, mode: Mode<'_>) -> Output {
    let d = dir.to_str().unwrap();
    let init = agent_cli(server, &["agent", "init", "--data-dir", d]);
    assert!(init.status.success(), "{init:?}");
    let mut args: Vec<String> = ["agent", "register", "--data-dir", d, "--name", name]
        .map(String::from)
        .to_vec();
    let roles = match mode {
        Mode::Listening(roles) => {
            args.extend(["--listen".into(), format!("127.0.0.1:{}", free_port())]);
            roles
        }
        Mode::Polling(roles) => {
            args.push("--polling".into());
            roles
        }
        Mode::PollingWorker(pool) => {
            args.extend(["--polling", "--worker", "--pool", pool].map(String::from));
            &[]
        }
    };
    if !matches!(mode, Mode::PollingWorker(_)) {
        args.extend(["--environment".into(), "Dev".into()]);
    }
    for r in roles {
        args.extend(["--role".into(), r.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    agent_cli(server, &args)
}

/// A running `cuttle agent run`, killed when dropped.
pub struct Agent(pub Child);

impl Agent {
    /// Starts the agent in `dir` and waits until it says it listens or polls.
    pub fn start(dir: &Path) -> Agent {
        let mut child = Command::new(BIN)
            .args(["agent", "run", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the agent");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("is listening on https://") || line.contains(" is polling ") {
                    let _ = tx.send(());
                }
            }
        });
        let agent = Agent(child);
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the agent announces that it listens or polls");
        agent
    }

    /// SIGTERM, then waits up to 10 s for it to exit.
    pub fn terminate(mut self) -> Option<std::process::ExitStatus> {
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

    /// SIGKILL, as a crash or a pulled plug would.
    pub fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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

pub fn machine_named(server: &ServerProcess, name: &str) -> Value {
    let page = api(server, "GET", &format!("/api/machines?name={name}"), None);
    page["Items"][0].clone()
}

/// Queues a health check of these machines and waits for it to finish.
pub fn health(server: &ServerProcess, machine_ids: &[&str]) -> Value {
    let task = api(
        server,
        "POST",
        "/api/tasks",
        Some(json!({"Name": "Health", "Arguments": {"MachineIds": machine_ids}})),
    );
    wait_task(
        server,
        task["Id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
}
