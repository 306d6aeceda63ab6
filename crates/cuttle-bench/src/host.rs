//! `cuttle host`: provisioning time (a control-plane create until the new
//! instance's `/api` answers 200 through its host name); the host's
//! resident memory with no instance and with N idle ones, awake and
//! hibernated; the host's CPU while every instance is awake and idle; how long the first request to a hibernated instance takes
//! (its wake); and the noisy neighbour: instance B's trivial deployment
//! alone and while instance A runs as many long ones as its task cap lets.

use super::{ms, Stats, READY_TIMEOUT};
use anyhow::{bail, ensure, Context, Result};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "cuttle-bench-host-control-token-0123";
const DOMAIN: &str = "bench.test";

#[derive(clap::Args)]
pub struct HostArgs {
    /// Instances created and timed.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    instances: u32,
    /// Also on PostgreSQL: the host's registry and every instance's database
    /// are made on this server (in databases named for a scratch one).
    #[arg(long, env = "CUTTLE_BENCH_DATABASE_URL", hide_env_values = true)]
    postgres: Option<String>,
    /// Instances on PostgreSQL: each holds connections (up to 5 while busy),
    /// and the server's max_connections is shared.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    postgres_instances: u32,
    /// Skips the noisy neighbour, which takes long with many instances awake.
    #[arg(long)]
    no_neighbour: bool,
    /// Seconds over which the host's CPU is measured while every instance
    /// is awake and idle; at least a minute takes in the looks idle
    /// instances take once a minute.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    cpu_window: u64,
}

pub async fn run(cuttle: &Path, args: &HostArgs) -> Result<()> {
    println!("cuttle-bench host: instances created one after another through the control plane");
    let cpu_window = Duration::from_secs(args.cpu_window);
    scenario(cuttle, args.instances, None, !args.no_neighbour, cpu_window).await?;
    if let Some(admin) = &args.postgres {
        let db = super::PgDatabase::create(admin)?;
        let outcome = scenario(
            cuttle,
            args.postgres_instances,
            Some(&db.url),
            !args.no_neighbour,
            cpu_window,
        )
        .await;
        // Each instance's database, named for the scratch one.
        drop_instance_databases(admin, &digest8(&db.url));
        outcome?;
    }
    Ok(())
}

/// Drops the databases `cuttle_*_<digest>` one at a time (DROP DATABASE
/// cannot run inside a function or transaction).
fn drop_instance_databases(admin: &str, digest: &str) {
    let listed = Command::new("psql")
        .args(["-X", "-w", "-At", "-c"])
        .arg(format!(
            "SELECT datname FROM pg_database WHERE datname LIKE 'cuttle\\_%\\_{digest}'"
        ))
        .arg(admin)
        .output();
    let Ok(listed) = listed else { return };
    for name in String::from_utf8_lossy(&listed.stdout).lines() {
        if let Err(e) = super::psql(
            admin,
            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        ) {
            eprintln!("cuttle-bench: could not drop {name}: {e:#}");
        }
    }
}

/// As the host names instances' databases: the first 8 hex of the SHA-256
/// of its registry database's name.
fn digest8(url: &str) -> String {
    use sha2::Digest as _;
    let path = url.split('?').next().unwrap_or(url);
    let name = path.rsplit('/').next().unwrap_or_default();
    hex::encode(sha2::Sha256::digest(name.as_bytes()))[..8].to_owned()
}

struct HostProcess {
    child: Child,
    public: String,
    control: String,
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl HostProcess {
    fn start(
        cuttle: &Path,
        dir: &Path,
        database_url: Option<&str>,
        idle_after: &str,
    ) -> Result<HostProcess> {
        let mut cmd = Command::new(cuttle);
        cmd.args([
            "host",
            "--listen",
            "127.0.0.1:0",
            "--control-listen",
            "127.0.0.1:0",
            "--domain",
            DOMAIN,
            "--idle-after",
            idle_after,
            // An instance has no built-in worker: its deployments run on
            // these (two: the noisy neighbour and its victim).
            "--hosted-workers",
            "2",
            "--shutdown-timeout",
            "5",
            "--data-dir",
        ])
        .arg(dir)
        .env("CUTTLE_HOST_CONTROL_TOKEN", TOKEN)
        .env("CUTTLE_BUILTIN_WORKER_UNISOLATED", "true")
        .env("RUST_LOG", "warn")
        .env_remove("CUTTLE_HOST_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        let mut child = cmd.spawn().context("could not start cuttle host")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let url = line[at + "listening on ".len()..].trim().to_owned();
                    let _ = tx.send((line.contains("control plane"), url));
                }
            }
        });
        let (mut public, mut control) = (None, None);
        let until = Instant::now() + READY_TIMEOUT;
        while public.is_none() || control.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((true, url)) => control = Some(url),
                Ok((false, url)) => public = Some(url),
                Err(_) => {
                    let _ = child.kill();
                    bail!("cuttle host did not announce its listeners");
                }
            }
        }
        Ok(HostProcess {
            child,
            public: public.unwrap_or_default(),
            control: control.unwrap_or_default(),
        })
    }

    fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS")
    }

    /// CPU seconds the host process has used so far (user and system, its
    /// own threads; not its children's, such as hosted workers).
    fn cpu_seconds(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // The command name may hold spaces: fields count from after it.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("no command name in /proc/PID/stat")?
            .1
            .split_whitespace()
            .collect();
        // utime and stime are fields 14 and 15; the state (3) is index 0.
        let ticks = |i: usize| -> Result<u64> {
            fields
                .get(i)
                .and_then(|v| v.parse().ok())
                .context("no CPU times in /proc/PID/stat")
        };
        Ok((ticks(11)? + ticks(12)?) as f64 / clock_ticks_per_second())
    }
}

/// The kernel's clock ticks per second that /proc reports times in.
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

async fn scenario(
    cuttle: &Path,
    instances: u32,
    database_url: Option<&str>,
    neighbour: bool,
    cpu_window: Duration,
) -> Result<()> {
    let label = if database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let dir = tempfile::Builder::new()
        .prefix("cuttle-bench-host-")
        .tempdir()?;
    // First with an idle time longer than the run: every instance awake.
    let host = HostProcess::start(cuttle, dir.path(), database_url, "1h")?;
    let http = Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_empty = host.rss_kib()?;
    let mut took = vec![];
    let mut keys = vec![];
    for i in 0..instances {
        let name = format!("bench{i}");
        let t0 = Instant::now();
        let created = http
            .post(format!("{}/instances", host.control))
            .bearer_auth(TOKEN)
            .json(&json!({"Name": name, "TaskCap": 2}))
            .send()
            .await?;
        ensure!(
            created.status() == StatusCode::CREATED,
            "creating {name} answered {}",
            created.status()
        );
        let created: Value = created.json().await?;
        let key = created["ApiKey"].as_str().context("no ApiKey")?.to_owned();
        first_answer(&http, &host, &name, &key).await?;
        took.push(ms(t0.elapsed()));
        keys.push((name, key));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_full = host.rss_kib()?;
    let s = Stats::of(took);
    println!(
        "  {label:<8} provisioning (create → 200 from /api): median {:.0} ms, p95 {:.0} ms, min {:.0} ms, max {:.0} ms",
        s.median, s.p95, s.min, s.max
    );
    let per = (idle_full.saturating_sub(idle_empty)) as f64 / f64::from(instances) / 1024.0;
    println!(
        "  {label:<8} host RSS idle: {:.1} MiB with 0 instances, {:.1} MiB with {} awake ({per:.1} MiB each)",
        idle_empty as f64 / 1024.0,
        idle_full as f64 / 1024.0,
        instances
    );
    // Nobody asks anything meanwhile: what the instances do by themselves.
    let (cpu0, t0) = (host.cpu_seconds()?, Instant::now());
    tokio::time::sleep(cpu_window).await;
    let (cpu1, took) = (host.cpu_seconds()?, t0.elapsed());
    let per_minute = (cpu1 - cpu0) / took.as_secs_f64() * 60.0;
    println!(
        "  {label:<8} host CPU while all {instances} awake and idle: {per_minute:.2} CPU-s per minute ({:.1}% of a core; {:.2} CPU-s over {:.0} s)",
        per_minute / 60.0 * 100.0,
        cpu1 - cpu0,
        took.as_secs_f64()
    );
    if let ([a, b, ..], true) = (keys.as_slice(), neighbour) {
        noisy_neighbour(&http, &host, label, a, b).await?;
    }
    drop(host);

    // Then with a short idle time: a restarted host starts every instance
    // asleep; each is woken by its first request, and falls asleep again.
    let host = HostProcess::start(cuttle, dir.path(), database_url, "3s")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asleep_at_start = host.rss_kib()?;
    let mut wakes = vec![];
    for (name, key) in &keys {
        let t0 = Instant::now();
        first_answer(&http, &host, name, key).await?;
        wakes.push(ms(t0.elapsed()));
    }
    let w = Stats::of(wakes);
    println!(
        "  {label:<8} wake (first request to a hibernated instance → 200 from /api): median {:.0} ms, p95 {:.0} ms, min {:.0} ms, max {:.0} ms",
        w.median, w.p95, w.min, w.max
    );
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let list: Value = http
            .get(format!("{}/instances", host.control))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json()
            .await?;
        let asleep = list["Items"]
            .as_array()
            .map_or(0, |i| i.iter().filter(|v| v["State"] == "Asleep").count());
        if asleep == keys.len() {
            break;
        }
        ensure!(
            Instant::now() < until,
            "only {asleep} instances fell asleep"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asleep_again = host.rss_kib()?;
    println!(
        "  {label:<8} host RSS hibernated: {:.1} MiB with {} asleep from the start, {:.1} MiB once each was woken and fell asleep again",
        asleep_at_start as f64 / 1024.0,
        instances,
        asleep_again as f64 / 1024.0,
    );
    Ok(())
}

/// Asks instance `name` for `/api` until it answers 200.
async fn first_answer(http: &Client, host: &HostProcess, name: &str, key: &str) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let r = http
            .get(format!("{}/api", host.public))
            .header("Host", format!("{name}.{DOMAIN}"))
            .header("X-Octopus-ApiKey", key)
            .send()
            .await?;
        if r.status() == StatusCode::OK {
            return Ok(());
        }
        ensure!(t0.elapsed() < READY_TIMEOUT, "{name} never answered /api");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A request to instance `name` that must succeed; its JSON.
async fn call(
    http: &Client,
    host: &HostProcess,
    (name, key): &(String, String),
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut req = http
        .request(method.clone(), format!("{}{path}", host.public))
        .header("Host", format!("{name}.{DOMAIN}"))
        .header("X-Octopus-ApiKey", key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await?;
    let status = r.status();
    let text = r.text().await?;
    ensure!(
        status.is_success(),
        "{name}: {method} {path} → {status}: {text}"
    );
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Project `project` in Dev whose one step runs `script` on the built-in
/// worker, with release 1.0.0.
async fn project(
    http: &Client,
    host: &HostProcess,
    who: &(String, String),
    project: &str,
    script: &str,
) -> Result<()> {
    use reqwest::Method;
    let p = call(
        http,
        host,
        who,
        Method::POST,
        "/api/projects",
        Some(json!({"Name": project, "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"})),
    )
    .await?;
    let id = p["Id"].as_str().context("no project id")?;
    let process = json!({"Version": 0, "Steps": [{"Name": "Run", "Actions": [{"ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": script, "Octopus.Action.Script.Syntax": "Bash"}}]}]});
    call(
        http,
        host,
        who,
        Method::PUT,
        &format!("/api/projects/{id}/deploymentprocesses"),
        Some(process),
    )
    .await?;
    call(
        http,
        host,
        who,
        Method::POST,
        "/api/Spaces-1/releases/create/v1",
        Some(json!({"ProjectName": project, "ReleaseVersion": "1.0.0"})),
    )
    .await?;
    Ok(())
}

/// Deploys `project`'s release to Dev; the task id.
async fn deploy(
    http: &Client,
    host: &HostProcess,
    who: &(String, String),
    project: &str,
) -> Result<String> {
    let d = call(
        http,
        host,
        who,
        reqwest::Method::POST,
        "/api/Spaces-1/deployments/create/untenanted/v1",
        Some(
            json!({"ProjectName": project, "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev"]}),
        ),
    )
    .await?;
    Ok(d["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .context("no deployment task")?
        .to_owned())
}

/// Deploys `project` and waits for its task to succeed; how long it took.
async fn timed_deployment(
    http: &Client,
    host: &HostProcess,
    who: &(String, String),
    project: &str,
) -> Result<f64> {
    let t0 = Instant::now();
    let task = deploy(http, host, who, project).await?;
    loop {
        let t = call(
            http,
            host,
            who,
            reqwest::Method::GET,
            &format!("/api/tasks/{task}"),
            None,
        )
        .await?;
        if t["IsCompleted"] == true {
            ensure!(
                t["State"] == "Success",
                "{}: {task} ended {}",
                who.0,
                t["State"]
            );
            return Ok(ms(t0.elapsed()));
        }
        ensure!(
            t0.elapsed() < READY_TIMEOUT,
            "{}: {task} did not finish",
            who.0
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Instance B's trivial deployment, 10 times alone, then 10 times while
/// instance A (task cap 2) has two long deployments running and two more
/// queued behind them.
async fn noisy_neighbour(
    http: &Client,
    host: &HostProcess,
    label: &str,
    a: &(String, String),
    b: &(String, String),
) -> Result<()> {
    use reqwest::Method;
    for who in [a, b] {
        call(
            http,
            host,
            who,
            Method::POST,
            "/api/environments",
            Some(json!({"Name": "Dev"})),
        )
        .await?;
    }
    project(http, host, b, "Quick", "echo quick").await?;
    for i in 0..4 {
        project(http, host, a, &format!("Long{i}"), "sleep 120").await?;
    }
    let mut alone = vec![];
    for _ in 0..10 {
        alone.push(timed_deployment(http, host, b, "Quick").await?);
    }
    let mut long = vec![];
    for i in 0..4 {
        long.push(deploy(http, host, a, &format!("Long{i}")).await?);
    }
    // A at its cap: two running.
    let until = Instant::now() + READY_TIMEOUT;
    loop {
        let running = call(
            http,
            host,
            a,
            Method::GET,
            "/api/tasks?states=Executing",
            None,
        )
        .await?;
        if running["TotalResults"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        ensure!(
            Instant::now() < until,
            "A's deployments never ran: {running}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut beside = vec![];
    for _ in 0..10 {
        beside.push(timed_deployment(http, host, b, "Quick").await?);
    }
    for task in long {
        let _ = call(
            http,
            host,
            a,
            Method::POST,
            &format!("/api/tasks/{task}/cancel"),
            None,
        )
        .await;
    }
    let (alone, beside) = (Stats::of(alone), Stats::of(beside));
    println!(
        "  {label:<8} noisy neighbour, B's trivial deployment (deploy → task done): alone median {:.0} ms, p95 {:.0} ms; while A runs at its cap median {:.0} ms, p95 {:.0} ms",
        alone.median, alone.p95, beside.median, beside.p95
    );
    Ok(())
}
