//! Agent fan-out: one trivial script step (`echo hello`) deployed to 10, 50
//! and 200 real `cuttle agent` processes on 127.0.0.1, listening and
//! polling, against the floor of spawning the same script that many times
//! straight from this process; the agents' idle resident memory; and, when
//! `ansible-playbook` is on PATH, the same command run by Ansible on as many
//! `connection: local` hosts.

use super::{ms, Api, Server, Stats};
use anyhow::{bail, ensure, Context, Result};
use chrono::{DateTime, FixedOffset};
use reqwest::{Client, Method};
use serde_json::{json, Value};
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct AgentsArgs {
    /// How many agents each deployment reaches, per mode (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10,50,200",
          value_parser = clap::value_parser!(u32).range(1..))]
    sizes: Vec<u32>,
    /// Deployments timed per mode and size (after one untimed warm-up).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Leave out the Ansible comparison even when `ansible-playbook` is on PATH.
    #[arg(long)]
    no_ansible: bool,
}

const SCRIPT: &str = "echo hello";
pub(crate) const ENVIRONMENT: &str = "Dev";
/// `cuttle agent init` and `register` run this many at a time.
const SETUP_BATCH: usize = 8;
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(120);
const TASK_TIMEOUT: Duration = Duration::from_secs(600);
const TASK_POLL: Duration = Duration::from_millis(5);
/// Agents whose resident memory is read, at most, per configuration.
const RSS_SAMPLE: usize = 20;

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    Listening,
    Polling,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Listening => "listening",
            Mode::Polling => "polling",
        }
    }
}

/// What one mode and size measured, in milliseconds and KiB.
struct Row {
    mode: Mode,
    agents: usize,
    health: f64,
    wall: Stats,
    run: Stats,
    floor: f64,
    agent_rss_kib: f64,
    server_rss_kib: u64,
}

pub async fn run(cuttle: &Path, http: &Client, args: &AgentsArgs) -> Result<()> {
    let mut sizes: Vec<usize> = args.sizes.iter().map(|&n| n as usize).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let largest = *sizes.last().context("--sizes is empty")?;

    // The floors first, while no agent is running.
    let floors = sizes
        .iter()
        .map(|&n| {
            let samples = (0..args.runs)
                .map(|_| spawn_floor(n, true))
                .collect::<Result<Vec<_>>>()?;
            Ok((n, Stats::of(samples).median))
        })
        .collect::<Result<Vec<_>>>()?;
    let sequential = Stats::of(
        (0..args.runs)
            .map(|_| spawn_floor(largest, false))
            .collect::<Result<Vec<_>>>()?,
    )
    .median;

    let data = tempfile::Builder::new().prefix("cuttle-bench-").tempdir()?;
    let (server, _) = Server::start(cuttle, data.path(), None, http, &[]).await?;
    let api = Api {
        http,
        base: &server.base,
    };
    api.call(
        Method::POST,
        "/api/Spaces-1/environments",
        Some(json!({ "Name": ENVIRONMENT })),
    )
    .await?;
    println!(
        "cuttle-bench agents: one `{SCRIPT}` step on every agent at once, {} timed deployments per row (after a warm-up), SQLite",
        args.runs
    );
    println!(
        "{:<10} {:>6} {:>10} {:>16} {:>10} {:>12} {:>11} {:>12} {:>10} {:>10}",
        "mode",
        "agents",
        "health",
        "wall median/min",
        "server run",
        "wall/agent",
        "floor",
        "over/agent",
        "agent RSS",
        "server RSS"
    );

    let mut rows = Vec::new();
    for mode in [Mode::Listening, Mode::Polling] {
        for &(n, floor) in &floors {
            let row = configuration(cuttle, &api, server.child.id(), mode, n, floor, args.runs)
                .await
                .with_context(|| format!("{} agents, {}", n, mode.label()))?;
            print_row(&row);
            rows.push(row);
        }
    }
    println!(
        "health:     one health check of the row's agents, from the API call to its task completed\n\
         wall:       the deploy API call to the task completed, as a client polling every {} ms sees it\n\
         server run: the task's StartTime to CompletedTime\n\
         floor:      `bash --noprofile --norc -c {SCRIPT:?}` spawned that many times at once by this process, median of {}\n\
         over/agent: (wall median - floor) / agents\n\
         RSS:        VmRSS of the idle agents after the health check (median of up to {RSS_SAMPLE}), and of the server after the row",
        TASK_POLL.as_millis(),
        args.runs,
    );
    println!(
        "floor in sequence: {largest} scripts one after another {:.1} ms ({:.2} ms each, median of {})",
        sequential,
        sequential / largest as f64,
        args.runs
    );
    drop(server);

    if args.no_ansible {
        return Ok(());
    }
    let cuttle_at_largest: Vec<(Mode, f64)> = rows
        .iter()
        .filter(|r| r.agents == largest)
        .map(|r| (r.mode, r.wall.median))
        .collect();
    ansible(largest, &cuttle_at_largest)
}

fn print_row(r: &Row) {
    let n = r.agents as f64;
    println!(
        "{:<10} {:>6} {:>7.0} ms {:>7.0} / {:>5.0} ms {:>7.0} ms {:>9.2} ms {:>8.1} ms {:>9.2} ms {:>6.1} MiB {:>6.1} MiB",
        r.mode.label(),
        r.agents,
        r.health,
        r.wall.median,
        r.wall.min,
        r.run.median,
        r.wall.median / n,
        r.floor,
        (r.wall.median - r.floor) / n,
        r.agent_rss_kib / 1024.0,
        r.server_rss_kib as f64 / 1024.0,
    );
}

/// Starts `n` agents in `mode`, checks their health, deploys to them `runs`
/// times after a warm-up, and stops them.
async fn configuration(
    cuttle: &Path,
    api: &Api<'_>,
    server_pid: u32,
    mode: Mode,
    n: usize,
    floor: f64,
    runs: u32,
) -> Result<Row> {
    let role = format!("web-{}-{n}", mode.label());
    eprintln!("cuttle-bench: starting {n} {} agents…", mode.label());
    let fleet = Fleet::start(cuttle, api.base, mode, n, &role)?;

    let t0 = Instant::now();
    let task = api
        .call(
            Method::POST,
            "/api/tasks",
            Some(json!({"Name": "Health", "Arguments": {"MachineIds": fleet.machine_ids}})),
        )
        .await?;
    let id = task["Id"].as_str().context("the health task has no Id")?;
    wait_task(api, id, t0)
        .await
        .context("the health check of the agents")?;
    let health = ms(t0.elapsed());

    // Let the connections settle before reading the idle footprint.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let agent_rss_kib = Stats::of(
        fleet
            .agents
            .iter()
            .take(RSS_SAMPLE)
            .map(|a| rss_kib(a.id()).map(|k| k as f64))
            .collect::<Result<Vec<_>>>()?,
    )
    .median;

    let project = format!("Fan-out {} {n}", mode.label());
    create_project(api, &project, &role).await?;
    let warm_up = deploy(api, &project).await.context("warm-up deployment")?;
    let greeted = raw_log(api, &warm_up.task)
        .await?
        .lines()
        .filter(|l| l.trim_end().ends_with("hello"))
        .count();
    ensure!(
        greeted == n,
        "the warm-up deployment printed `hello` {greeted} times, not once on each of the {n} agents"
    );
    let mut walls = Vec::new();
    let mut server_runs = Vec::new();
    for i in 0..runs {
        let d = deploy(api, &project)
            .await
            .with_context(|| format!("deployment {}", i + 1))?;
        walls.push(d.wall);
        server_runs.push(d.run);
    }
    let server_rss_kib = rss_kib(server_pid)?;
    fleet.stop(api).await?;
    Ok(Row {
        mode,
        agents: n,
        health,
        wall: Stats::of(walls),
        run: Stats::of(server_runs),
        floor,
        agent_rss_kib,
        server_rss_kib,
    })
}

/// Agents' processes, killed when dropped, and their machines on the server.
pub(crate) struct Fleet {
    agents: Vec<Child>,
    pub(crate) machine_ids: Vec<String>,
    /// Declared last so that it is removed after the agents are killed.
    _dir: tempfile::TempDir,
}

impl Fleet {
    pub(crate) fn start(
        cuttle: &Path,
        server: &str,
        mode: Mode,
        n: usize,
        role: &str,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("cuttle-bench-agents-")
            .tempdir()?;
        let dirs: Vec<PathBuf> = (0..n).map(|i| dir.path().join(format!("a{i}"))).collect();
        let cli = |args: &[&str]| {
            let mut cmd = Command::new(cuttle);
            cmd.args(args)
                .env("CUTTLE_SERVER", server)
                .env("CUTTLE_API_KEY", super::API_KEY)
                .env("NO_PROXY", "127.0.0.1,localhost")
                .env_remove("CUTTLE_AGENT_DATA_DIR")
                .env_remove("CUTTLE_SPACE")
                .stdin(Stdio::null());
            cmd
        };

        // Distinct ports: every listener is held until all are chosen.
        let ports: Vec<u16> = if mode == Mode::Listening {
            let held = (0..n)
                .map(|_| TcpListener::bind("127.0.0.1:0"))
                .collect::<std::io::Result<Vec<_>>>()
                .context("could not find free ports for the agents")?;
            held.iter()
                .map(|l| l.local_addr().map(|a| a.port()))
                .collect::<std::io::Result<_>>()?
        } else {
            Vec::new()
        };

        batched(&dirs, |i, d| {
            let d = path_str(d)?;
            Ok((
                cli(&["agent", "init", "--data-dir", d]),
                format!("agent init of agent {i}"),
            ))
        })?;
        batched(&dirs, |i, d| {
            let d = path_str(d)?;
            let name = format!("{role}-{i}");
            let mut args = vec![
                "agent",
                "register",
                "--data-dir",
                d,
                "--name",
                &name,
                "--environment",
                ENVIRONMENT,
                "--role",
                role,
            ];
            let listen = ports.get(i).map(|p| format!("127.0.0.1:{p}"));
            match &listen {
                Some(listen) => args.extend(["--listen", listen.as_str()]),
                None => args.push("--polling"),
            }
            Ok((cli(&args), format!("agent register of {name}")))
        })?;
        let machine_ids = dirs
            .iter()
            .map(|d| machine_id(d))
            .collect::<Result<Vec<_>>>()?;

        let mut fleet = Fleet {
            agents: Vec::with_capacity(n),
            machine_ids,
            _dir: dir,
        };
        for d in &dirs {
            let log = File::create(d.join("bench.log"))?;
            let child = cli(&["agent", "run", "--data-dir", path_str(d)?])
                .env("RUST_LOG", "warn")
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("could not start {}", cuttle.display()))?;
            fleet.agents.push(child);
        }
        fleet.wait_ready(&dirs)?;
        Ok(fleet)
    }

    /// The directory that holds agent `i`'s data directory, `a{i}`.
    pub(crate) fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Waits until every agent has said that it listens or polls.
    fn wait_ready(&mut self, dirs: &[PathBuf]) -> Result<()> {
        let deadline = Instant::now() + AGENT_READY_TIMEOUT;
        let mut waiting: Vec<usize> = (0..dirs.len()).collect();
        while !waiting.is_empty() {
            let mut still = Vec::new();
            for i in waiting {
                let log = std::fs::read_to_string(dirs[i].join("bench.log")).unwrap_or_default();
                if log.contains("is listening on https://") || log.contains(" is polling ") {
                    continue;
                }
                if let Some(status) = self.agents[i].try_wait()? {
                    bail!("agent {i} exited ({status}) before it was ready: {log}");
                }
                still.push(i);
            }
            waiting = still;
            ensure!(
                Instant::now() < deadline,
                "{} agents were not ready within {AGENT_READY_TIMEOUT:?}",
                waiting.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Kills the agents and deletes their machines, so that later rows'
    /// health checks and deployments do not meet them.
    pub(crate) async fn stop(mut self, api: &Api<'_>) -> Result<()> {
        self.kill();
        for id in &self.machine_ids {
            let path = format!("/api/Spaces-1/machines/{id}");
            let resp = api
                .http
                .delete(format!("{}{path}", api.base))
                .send()
                .await
                .with_context(|| format!("DELETE {path}"))?;
            ensure!(
                resp.status().is_success(),
                "DELETE {path}: {}",
                resp.status()
            );
        }
        Ok(())
    }

    fn kill(&mut self) {
        for agent in &mut self.agents {
            let _ = agent.kill();
        }
        for agent in &mut self.agents {
            let _ = agent.wait();
        }
        self.agents.clear();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the commands `make` gives for each directory, [`SETUP_BATCH`] at a
/// time, and fails on the first that does not succeed.
fn batched(
    dirs: &[PathBuf],
    make: impl Fn(usize, &Path) -> Result<(Command, String)>,
) -> Result<()> {
    let indexed: Vec<(usize, &PathBuf)> = dirs.iter().enumerate().collect();
    for chunk in indexed.chunks(SETUP_BATCH) {
        let mut running = Vec::with_capacity(chunk.len());
        for &(i, d) in chunk {
            let (mut cmd, what) = make(i, d)?;
            let child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("could not start {what}"))?;
            running.push((child, what));
        }
        // Each is waited for, even after a failure, so that none is left behind.
        let results: Vec<(std::io::Result<Output>, String)> = running
            .into_iter()
            .map(|(child, what)| (child.wait_with_output(), what))
            .collect();
        for (out, what) in results {
            let out = out.with_context(|| format!("{what} did not finish"))?;
            ensure!(
                out.status.success(),
                "{what} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

pub(crate) fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

/// The machine id `register` wrote into the agent's configuration.
fn machine_id(dir: &Path) -> Result<String> {
    let path = dir.join("agent.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("could not read {}", path.display()))?;
    let config: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    config["MachineId"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no MachineId in {}", path.display()))
}

fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

/// Spawns `n` copies of the script, all at once or one after another, as
/// the agents' script host does (one interpreter each, output captured); ms.
fn spawn_floor(n: usize, parallel: bool) -> Result<f64> {
    let script = || {
        let mut cmd = Command::new("bash");
        cmd.args(["--noprofile", "--norc", "-c", SCRIPT])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    let check = |out: std::io::Result<Output>| -> Result<()> {
        let out = out.context("could not run bash")?;
        ensure!(out.status.success(), "bash -c {SCRIPT:?} failed: {out:?}");
        Ok(())
    };
    let t0 = Instant::now();
    if parallel {
        let children = (0..n)
            .map(|_| script().spawn())
            .collect::<std::io::Result<Vec<_>>>()
            .context("could not start bash")?;
        for child in children {
            check(child.wait_with_output())?;
        }
    } else {
        for _ in 0..n {
            check(script().output())?;
        }
    }
    Ok(ms(t0.elapsed()))
}

async fn create_project(api: &Api<'_>, name: &str, role: &str) -> Result<()> {
    let project = api
        .call(
            Method::POST,
            "/api/Spaces-1/projects",
            Some(json!({"Name": name, "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"})),
        )
        .await?;
    let id = project["Id"].as_str().context("the project has no Id")?;
    let steps = json!([{"Name": "Greet", "Properties": {"Octopus.Action.TargetRoles": role}, "Actions": [{
        "Name": "Greet", "ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": SCRIPT, "Octopus.Action.Script.Syntax": "Bash"}}]}]);
    api.call(
        Method::PUT,
        &format!("/api/Spaces-1/projects/{id}/deploymentprocesses"),
        Some(json!({"Version": 0, "Steps": steps})),
    )
    .await?;
    api.call(
        Method::POST,
        "/api/Spaces-1/releases/create/v1",
        Some(json!({"ProjectName": name, "ReleaseVersion": "1.0.0"})),
    )
    .await?;
    Ok(())
}

struct Deployment {
    task: String,
    /// The client's view: the deploy call to the completed task; ms.
    wall: f64,
    /// The server's view: the task's StartTime to CompletedTime; ms.
    run: f64,
}

async fn deploy(api: &Api<'_>, project: &str) -> Result<Deployment> {
    let t0 = Instant::now();
    let created = api
        .call(
            Method::POST,
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": project, "ReleaseVersion": "1.0.0", "EnvironmentNames": [ENVIRONMENT]})),
        )
        .await?;
    let task = created["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .context("no DeploymentServerTasks[0].ServerTaskId in the response")?
        .to_owned();
    let done = wait_task(api, &task, t0).await?;
    let wall = ms(t0.elapsed());
    let time = |field: &str| -> Result<DateTime<FixedOffset>> {
        let text = done[field]
            .as_str()
            .with_context(|| format!("task {task} has no {field}"))?;
        DateTime::parse_from_rfc3339(text)
            .with_context(|| format!("task {task}: bad {field} {text:?}"))
    };
    let run = (time("CompletedTime")? - time("StartTime")?)
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1000.0;
    Ok(Deployment { task, wall, run })
}

/// Polls a task until it completes; it must succeed.
pub(crate) async fn wait_task(api: &Api<'_>, id: &str, t0: Instant) -> Result<Value> {
    let path = format!("/api/tasks/{id}");
    loop {
        let task = api.call(Method::GET, &path, None).await?;
        if task["IsCompleted"] == true {
            if task["State"] != "Success" {
                let log = raw_log(api, id).await.unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                bail!(
                    "task {id} ended {}: {}; its log ends:\n{}",
                    task["State"],
                    task["ErrorMessage"],
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            return Ok(task);
        }
        ensure!(
            t0.elapsed() < TASK_TIMEOUT,
            "task {id} did not finish within {TASK_TIMEOUT:?}: {}",
            task["State"]
        );
        tokio::time::sleep(TASK_POLL).await;
    }
}

pub(crate) async fn raw_log(api: &Api<'_>, id: &str) -> Result<String> {
    let path = format!("/api/tasks/{id}/raw");
    let resp = api
        .http
        .get(format!("{}{path}", api.base))
        .send()
        .await
        .with_context(|| format!("GET {path}"))?;
    ensure!(resp.status().is_success(), "GET {path}: {}", resp.status());
    resp.text().await.with_context(|| format!("GET {path}"))
}

/// Runs `echo hello` with Ansible on `hosts` local hosts, with the default
/// forks and with 50, once each, and prints the ratio to Cuttle's medians.
fn ansible(hosts: usize, cuttle: &[(Mode, f64)]) -> Result<()> {
    let Some(playbook) = on_path("ansible-playbook") else {
        println!("ansible: `ansible-playbook` was not found on PATH, so the comparison is skipped");
        return Ok(());
    };
    let version = Command::new(&playbook)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "ansible-playbook".into());
    let dir = tempfile::Builder::new()
        .prefix("cuttle-bench-ansible-")
        .tempdir()?;
    let mut inventory = String::from("[fleet]\n");
    for i in 1..=hosts {
        inventory.push_str(&format!("h{i}\n"));
    }
    inventory.push_str(
        "[fleet:vars]\nansible_connection=local\nansible_python_interpreter={{ ansible_playbook_python }}\n",
    );
    std::fs::write(dir.path().join("hosts.ini"), inventory)?;
    std::fs::write(
        dir.path().join("play.yml"),
        format!(
            "- hosts: fleet\n  gather_facts: false\n  tasks:\n    - name: greet\n      command: {SCRIPT}\n"
        ),
    )?;
    println!(
        "ansible: {version}, {hosts} hosts h1..h{hosts} with ansible_connection=local and the controller's Python, \
         `command: {SCRIPT}`, gather_facts: false (facts off, as Cuttle gathers none), one run each"
    );
    for forks in [None, Some(50)] {
        let mut cmd = Command::new(&playbook);
        cmd.args(["-i", "hosts.ini", "play.yml"])
            .current_dir(dir.path())
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let label = match forks {
            Some(f) => {
                cmd.args(["-f", &f.to_string()]);
                format!("forks {f}")
            }
            None => "forks 5 (default)".to_owned(),
        };
        let t0 = Instant::now();
        let out = cmd.output();
        let took = ms(t0.elapsed());
        match out {
            Ok(out) if out.status.success() => {
                let ratios: Vec<String> = cuttle
                    .iter()
                    .map(|(mode, wall)| format!("{} {:.3}x", mode.label(), wall / took))
                    .collect();
                println!(
                    "ansible {label:<18} {:>8.1} s   Cuttle/Ansible: {}",
                    took / 1000.0,
                    ratios.join(", ")
                );
            }
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout);
                let tail: Vec<&str> = text.lines().rev().take(10).collect();
                println!(
                    "ansible {label}: failed ({}), skipped: {}{}",
                    out.status,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Err(e) => println!("ansible {label}: could not run {}: {e}", playbook.display()),
        }
    }
    Ok(())
}

pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
