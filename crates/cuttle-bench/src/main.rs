//! Benchmarks a real Cuttle server process: start-up time to ready, idle
//! resident memory and end-to-end deployment latency, on SQLite and
//! optionally on PostgreSQL. `cuttle-bench vars` instead measures the
//! variable engine's rendering throughput in process.

mod agents;
mod backup;
mod engine;
mod history;
mod host;
mod metrics;
mod nodes;
mod packages;
mod permissions;
mod portal;
mod vars;

use anyhow::{bail, ensure, Context, Result};
use chrono::{DateTime, FixedOffset};
use clap::Parser;
use reqwest::{Client, Method, StatusCode, Url};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const API_KEY: &str = "API-BENCHBENCHBENCHBENCHBENCHBENCH01";
const READY_LINE: &str = "Cuttle is listening on http://";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const TASK_TIMEOUT: Duration = Duration::from_secs(60);
const TASK_POLL: Duration = Duration::from_millis(2);
/// How many lines of the server's stderr to keep for error messages.
const LOG_TAIL_LINES: usize = 40;

#[derive(Parser)]
#[command(about = "Benchmarks a real Cuttle server: start-up, memory, deployment latency")]
struct Args {
    /// The cuttle binary [default: `cuttle` next to this executable].
    #[arg(long)]
    cuttle: Option<PathBuf>,
    /// Deployments timed per database (after one untimed warm-up).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    deployments: u32,
    /// Restarts timed per database.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    restarts: u32,
    /// Also benchmark PostgreSQL, in a database created on this server and dropped afterwards.
    #[arg(long, env = "CUTTLE_BENCH_DATABASE_URL", hide_env_values = true)]
    postgres: Option<String>,
    #[command(subcommand)]
    bench: Option<Bench>,
}

#[derive(clap::Subcommand)]
enum Bench {
    /// Rendering throughput of the variable engine (no server needed).
    Vars(vars::VarsArgs),
    /// Engine overhead against a shell-script floor, and queued throughput.
    Engine(engine::EngineArgs),
    /// One script step fanned out to 10, 50 and 200 agents, listening and polling.
    Agents(agents::AgentsArgs),
    /// Pushing a 200 MiB package, delivering it to 10 agents, a 1% delta, extracting 10,000 files.
    Packages(packages::PackagesArgs),
    /// Portal page render times with 50 projects and 10,000 deployments.
    Portal(portal::PortalArgs),
    /// How request costs grow with history: 10,000 to 1,000,000 deployments written through the store.
    History(history::HistoryArgs),
    /// /metrics scrape time at 1,000 machines and 10,000 tasks; deployments with counting and the audit log on and off.
    Metrics(metrics::MetricsArgs),
    /// The trivial deployment and the dashboard as a scoped user and as the administrator.
    Permissions(permissions::PermissionsArgs),
    /// Backup and restore time and size for 10,000 deployments, beside sqlite3 and pg_dump.
    Backup(backup::BackupArgs),
    /// Queue pickup latency with 1 and 3 server nodes on one PostgreSQL,
    /// takeover after a SIGKILL, and the throughput of queued deployments
    /// with 1, 2 and 3 nodes beside 1 on SQLite.
    Nodes(nodes::NodesArgs),
    /// `cuttle host`: provisioning time to a ready /api, and host memory with 0 and N idle instances.
    Host(host::HostArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cuttle-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    if let Some(Bench::Vars(vars)) = &args.bench {
        return vars::run(vars);
    }
    let cuttle = locate_cuttle(args.cuttle.clone())?;
    let version = Command::new(&cuttle)
        .arg("--version")
        .output()
        .with_context(|| format!("could not run {}", cuttle.display()))?;
    // Proxies are ignored so that only the local server is ever contacted.
    let http = Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .default_headers(
            [("X-Octopus-ApiKey".parse()?, API_KEY.parse()?)]
                .into_iter()
                .collect(),
        )
        .build()?;

    if let Some(Bench::Engine(engine)) = &args.bench {
        return engine::run(&cuttle, &http, engine).await;
    }
    if let Some(Bench::Agents(agents)) = &args.bench {
        return agents::run(&cuttle, &http, agents).await;
    }
    if let Some(Bench::Packages(packages)) = &args.bench {
        return packages::run(&cuttle, &http, packages).await;
    }
    if let Some(Bench::Portal(portal)) = &args.bench {
        return portal::run(&cuttle, &http, portal).await;
    }
    if let Some(Bench::History(history)) = &args.bench {
        return history::run(&cuttle, history).await;
    }
    if let Some(Bench::Permissions(p)) = &args.bench {
        return permissions::run(&cuttle, &http, p).await;
    }
    if let Some(Bench::Metrics(metrics)) = &args.bench {
        return metrics::run(&cuttle, &http, metrics).await;
    }
    if let Some(Bench::Backup(backup)) = &args.bench {
        return backup::run(&cuttle, backup).await;
    }
    if let Some(Bench::Host(host)) = &args.bench {
        return host::run(&cuttle, host).await;
    }
    if let Some(Bench::Nodes(nodes)) = &args.bench {
        return nodes::run(&cuttle, &http, nodes).await;
    }

    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| cuttle.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| cuttle.clone());
    println!(
        "cuttle-bench: {} deployments per database, {} at {}",
        args.deployments,
        String::from_utf8_lossy(&version.stdout)
            .lines()
            .next()
            .unwrap_or("cuttle")
            .trim(),
        shown.display()
    );

    bench("sqlite", &cuttle, None, &args, &http).await?;
    if let Some(admin_url) = &args.postgres {
        let db = PgDatabase::create(admin_url)?;
        bench("postgres", &cuttle, Some(db.url.as_str()), &args, &http).await?;
    }
    Ok(())
}

fn locate_cuttle(given: Option<PathBuf>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("this executable has no directory")?
            .join("cuttle"),
    };
    ensure!(
        path.is_file(),
        "no Cuttle server binary at {}: run `cargo build --release -p cuttle` first, or pass --cuttle PATH",
        path.display()
    );
    Ok(path)
}

/// Runs every measurement against one database and prints its rows.
async fn bench(
    label: &str,
    cuttle: &Path,
    database_url: Option<&str>,
    args: &Args,
    http: &Client,
) -> Result<()> {
    let row = |what: &str, value: String| println!("{label:<9} {what:<26} {value}");
    // Declared before the servers so that it outlives them.
    let data = tempfile::Builder::new().prefix("cuttle-bench-").tempdir()?;

    let (mut server, first) = Server::start(cuttle, data.path(), database_url, http, &[]).await?;
    server.stop()?;
    row("first start to ready", format!("{:7.1} ms", ms(first)));

    let mut restarts = Vec::new();
    for _ in 0..args.restarts {
        server.stop()?;
        let (next, took) = Server::start(cuttle, data.path(), database_url, http, &[]).await?;
        server = next;
        restarts.push(ms(took));
    }
    row(
        "restart to ready (median)",
        format!("{:7.1} ms", Stats::of(restarts).median),
    );

    // Let start-up work settle before reading the idle footprint.
    tokio::time::sleep(Duration::from_secs(1)).await;
    row(
        "idle RSS",
        format!("{:7.1} MiB", server.rss_kib()? as f64 / 1024.0),
    );

    let api = Api {
        http,
        base: &server.base,
    };
    create_project(&api)
        .await
        .context("could not set up the Bench project")?;
    deploy(&api).await.context("warm-up deployment")?;
    let mut samples = Vec::new();
    for i in 0..args.deployments {
        samples.push(
            deploy(&api)
                .await
                .with_context(|| format!("deployment {}", i + 1))?,
        );
    }
    let e2e = Stats::of(samples.iter().map(|s| s.e2e).collect());
    let queue = Stats::of(samples.iter().map(|s| s.queue).collect());
    let run = Stats::of(samples.iter().map(|s| s.run).collect());
    row(
        "deploy e2e median/p95",
        format!(
            "{:7.1} / {:.1} ms  (min {:.1}, max {:.1})",
            e2e.median, e2e.p95, e2e.min, e2e.max
        ),
    );
    row(
        "server queue wait / run",
        format!("{:7.1} / {:.1} ms (median)", queue.median, run.median),
    );
    server.stop()
}

/// A running `cuttle server`; dropping it stops the process.
struct Server {
    child: Child,
    base: String,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    /// Starts a server and returns it with the time from spawn to the first 200 from `GET /api`.
    async fn start(
        cuttle: &Path,
        data_dir: &Path,
        database_url: Option<&str>,
        http: &Client,
        extra: &[&str],
    ) -> Result<(Self, Duration)> {
        let mut cmd = Command::new(cuttle);
        cmd.args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("CUTTLE_ADMIN_API_KEY", API_KEY)
            .env("CUTTLE_ADMIN_PASSWORD", "bench-password")
            // The server would otherwise pick up a database from the caller's environment.
            .env_remove("CUTTLE_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(url) = database_url {
            cmd.arg("--database-url").arg(url);
        }
        cmd.args(extra);
        let t0 = Instant::now();
        let deadline = t0 + READY_TIMEOUT;
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start {}", cuttle.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr_pipe = child.stderr.take().context("no stderr")?;
        let mut server = Server {
            child,
            base: String::new(),
            stderr: Arc::default(),
        };

        // Both pipes are drained for the server's whole life so that it never blocks on a full pipe.
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for_each_line(stdout, |line| {
                if let Some(addr) = line.trim_end().strip_prefix(READY_LINE) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.to_owned());
                    }
                }
            });
        });
        let tail = server.stderr.clone();
        std::thread::spawn(move || {
            for_each_line(stderr_pipe, |line| {
                let mut tail = tail.lock().unwrap();
                tail.push_back(line.to_owned());
                if tail.len() > LOG_TAIL_LINES {
                    tail.pop_front();
                }
            });
        });

        let addr = match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(_)) => bail!("the server exited before listening{}", server.log_tail()),
            Err(_) => bail!(
                "the server did not report its address within {READY_TIMEOUT:?}{}",
                server.log_tail()
            ),
        };
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("unexpected listen address {addr:?}"))?;
        ensure!(
            addr.ip().is_loopback(),
            "the server listens on {addr}, not on the loopback interface"
        );
        server.base = format!("http://{addr}");

        let root = format!("{}/api", server.base);
        loop {
            if let Ok(resp) = http.get(&root).send().await {
                if resp.status() == StatusCode::OK {
                    break;
                }
            }
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "the server exited ({status}) before it was ready{}",
                    server.log_tail()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "GET /api did not return 200 within {READY_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok((server, t0.elapsed()))
    }

    /// Stops the server with SIGTERM (as a service manager would) and waits for a clean exit.
    fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + if sent { STOP_TIMEOUT } else { Duration::ZERO };
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(
                    status.success(),
                    "the server did not exit cleanly on SIGTERM ({status}){}",
                    self.log_tail()
                );
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.child.kill()?;
                self.child.wait()?;
                bail!(
                    "the server did not stop within {STOP_TIMEOUT:?} of SIGTERM, so it was killed"
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn rss_kib(&self) -> Result<u64> {
        self.status_kib("VmRSS")
    }

    /// The most memory the process has held resident since it started.
    fn peak_rss_kib(&self) -> Result<u64> {
        self.status_kib("VmHWM")
    }

    fn status_kib(&self, field: &str) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} in /proc/<pid>/status"))
    }

    fn log_tail(&self) -> String {
        let tail = self.stderr.lock().unwrap();
        if tail.is_empty() {
            String::new()
        } else {
            format!(
                "; its log ends:\n{}",
                tail.iter()
                    .map(String::as_str)
                    .collect::<String>()
                    .trim_end()
            )
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("cuttle-bench: {e:#}");
        }
    }
}

/// Calls `f` with each line read from `r` (lossily decoded) until end of file.
fn for_each_line(r: impl Read, mut f: impl FnMut(&str)) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    while matches!(r.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
        f(&String::from_utf8_lossy(&buf));
        buf.clear();
    }
}

struct Api<'a> {
    http: &'a Client,
    base: &'a str,
}

impl Api<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .with_context(|| format!("{method} {path}"))?;
        ensure!(status.is_success(), "{method} {path}: {status}: {text}");
        serde_json::from_str(&text)
            .with_context(|| format!("{method} {path}: the response is not JSON"))
    }

    /// A GET answered in plain text (a task's raw log).
    async fn text(&self, path: &str) -> Result<String> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status();
        let text = resp.text().await.with_context(|| format!("GET {path}"))?;
        ensure!(status.is_success(), "GET {path}: {status}: {text}");
        Ok(text)
    }
}

/// Creates the environment, project, one-step Bash process and release that every deployment uses.
async fn create_project(api: &Api<'_>) -> Result<()> {
    let first_id = |list: Value, what: &str| -> Result<String> {
        list.get(0)
            .and_then(|item| item["Id"].as_str())
            .map(str::to_owned)
            .with_context(|| format!("the server has no {what}"))
    };
    let group = first_id(
        api.call(Method::GET, "/api/Spaces-1/projectgroups/all", None)
            .await?,
        "project group",
    )?;
    let lifecycle = first_id(
        api.call(Method::GET, "/api/Spaces-1/lifecycles/all", None)
            .await?,
        "lifecycle",
    )?;
    api.call(
        Method::POST,
        "/api/Spaces-1/environments",
        Some(json!({"Name": "Bench"})),
    )
    .await?;
    let project = api
        .call(
            Method::POST,
            "/api/Spaces-1/projects",
            Some(json!({"Name": "Bench", "ProjectGroupId": group, "LifecycleId": lifecycle})),
        )
        .await?;
    let id = project["Id"]
        .as_str()
        .context("the new project has no Id")?;
    let process_path = format!("/api/Spaces-1/projects/{id}/deploymentprocesses");
    let process = api.call(Method::GET, &process_path, None).await?;
    let version = process["Version"]
        .as_i64()
        .context("the deployment process has no Version")?;
    let steps = json!([{"Name": "Echo", "Actions": [{"ActionType": "Octopus.Script", "Properties": {
        "Octopus.Action.Script.ScriptBody": "echo hello",
        "Octopus.Action.Script.Syntax": "Bash"
    }}]}]);
    api.call(
        Method::PUT,
        &process_path,
        Some(json!({"Version": version, "Steps": steps})),
    )
    .await?;
    api.call(
        Method::POST,
        "/api/Spaces-1/releases/create/v1",
        Some(json!({"ProjectName": "Bench", "ReleaseVersion": "1.0.0"})),
    )
    .await?;
    Ok(())
}

/// One deployment's timings, in milliseconds.
struct Sample {
    e2e: f64,
    queue: f64,
    run: f64,
}

/// Deploys the release and polls its task to completion, as a CI client would.
async fn deploy(api: &Api<'_>) -> Result<Sample> {
    let t0 = Instant::now();
    let created = api
        .call(
            Method::POST,
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": "Bench", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Bench"]})),
        )
        .await?;
    let task_id = created["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .context("no DeploymentServerTasks[0].ServerTaskId in the response")?;
    let task_path = format!("/api/tasks/{task_id}");
    let task = loop {
        let task = api.call(Method::GET, &task_path, None).await?;
        if task["IsCompleted"] == true {
            break task;
        }
        ensure!(
            t0.elapsed() < TASK_TIMEOUT,
            "task {task_id} did not finish within {TASK_TIMEOUT:?}: {}",
            task["State"]
        );
        tokio::time::sleep(TASK_POLL).await;
    };
    let e2e = ms(t0.elapsed());
    ensure!(
        task["State"] == "Success",
        "task {task_id} ended {}: {}",
        task["State"],
        task["ErrorMessage"]
    );

    let time = |field: &str| -> Result<DateTime<FixedOffset>> {
        let text = task[field]
            .as_str()
            .with_context(|| format!("task {task_id} has no {field}"))?;
        DateTime::parse_from_rfc3339(text)
            .with_context(|| format!("task {task_id}: bad {field} {text:?}"))
    };
    let (queued, started, completed) = (
        time("QueueTime")?,
        time("StartTime")?,
        time("CompletedTime")?,
    );
    let between = |a: DateTime<FixedOffset>, b: DateTime<FixedOffset>| {
        (b - a).num_microseconds().unwrap_or(0) as f64 / 1000.0
    };
    Ok(Sample {
        e2e,
        queue: between(queued, started),
        run: between(started, completed),
    })
}

struct Stats {
    median: f64,
    p95: f64,
    min: f64,
    max: f64,
}

impl Stats {
    /// `values` must not be empty.
    fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        // Nearest-rank percentile.
        let p95 = values[((n as f64 * 0.95).ceil() as usize).clamp(1, n) - 1];
        Stats {
            median,
            p95,
            min: values[0],
            max: values[n - 1],
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A scratch PostgreSQL database, dropped (with its connections) when this value is.
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    fn create(admin_url: &str) -> Result<Self> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos();
        let name = format!("cuttle_bench_{}_{nanos}", std::process::id());
        let mut url = Url::parse(admin_url).context("--postgres is not a URL")?;
        url.set_path(&format!("/{name}"));
        psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        Ok(PgDatabase {
            admin_url: admin_url.to_owned(),
            name,
            url: url.into(),
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Err(e) = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!(
                "cuttle-bench: could not drop the database {}: {e:#}",
                self.name
            );
        }
    }
}

fn psql(url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        // No password prompt and a connect timeout, so that psql cannot hang the bench.
        .args(["-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-c", sql, url])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .context("could not run psql (is it installed?)")?;
    ensure!(
        out.status.success(),
        "psql -c '{sql}' failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
