//! `cuttle-bench history`: whether a server with a long history answers as
//! fast as a new one. A fresh server is given 50 projects and 20
//! environments through its API; then, with the server stopped, a history of
//! deployments (each with a finished task and a short log) and a few
//! million-line logs are written straight through the store; the server is
//! started on it and measured. The same database then grows to the next
//! size. Each database gets a table: a column per size, the ratio of the
//! largest size's figure to the smallest's, and the goals of the issue.

pub(crate) mod fixture;
pub(crate) mod generator;
mod probe;
pub(crate) mod table;

use crate::{ms, Api, PgDatabase, Server};
use anyhow::{bail, ensure, Context, Result};
use fixture::{Fixture, CHATTY, CHATTY_RELEASE, ENVIRONMENTS, PROJECTS};
use generator::Generator;
use probe::{Failure, Probe};
use reqwest::{Client, Method};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use table::{thousands, Figure, Goal, Table, Unit};

/// Everything happens in the default space.
pub const SPACE: &str = "Spaces-1";

#[derive(clap::Args)]
pub struct HistoryArgs {
    /// Deployments in the history at each measurement, ascending; the same
    /// database grows from one size to the next.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<u64>,
    /// Timed requests per figure (the median is shown).
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u32).range(1..))]
    samples: u32,
    /// Lines of each large log, and of the log the storing figure writes.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    log_lines: u32,
    /// Large logs written with the history.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    large_logs: u32,
    /// The server's task cap, and `xargs -P` of the queue's floor.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    cap: u32,
    /// Successive batches of 1,000 queued deployments (50 projects × 20 environments) at each size.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..))]
    batches: u32,
    /// Seconds the bench waits for one answer before it shows the figure as timed out.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    /// Also measure PostgreSQL, in a database created on this server and dropped afterwards.
    #[arg(long, env = "CUTTLE_BENCH_DATABASE_URL", hide_env_values = true)]
    postgres: Option<String>,
    /// Measure PostgreSQL only.
    #[arg(long, requires = "postgres")]
    skip_sqlite: bool,
}

pub async fn run(cuttle: &Path, args: &HistoryArgs) -> Result<()> {
    check_sizes(&args.sizes)?;
    println!(
        "cuttle-bench history: {PROJECTS} projects × {ENVIRONMENTS} environments, {} deployments, \
         {} logs of {} lines; medians of {} requests; task cap {}",
        args.sizes
            .iter()
            .map(|s| thousands(*s))
            .collect::<Vec<_>>()
            .join(" / "),
        args.large_logs,
        thousands(u64::from(args.log_lines)),
        args.samples,
        args.cap
    );
    // Each table is printed as soon as its database is done: a run on a
    // million deployments takes long.
    if !args.skip_sqlite {
        let table = database(cuttle, None, args).await?;
        println!("\n{}", table.render("sqlite"));
    }
    if let Some(admin_url) = &args.postgres {
        let db = PgDatabase::create(admin_url)?;
        let table = database(cuttle, Some(&db.url), args).await?;
        println!("\n{}", table.render("postgres"));
    }
    Ok(())
}

fn check_sizes(sizes: &[u64]) -> Result<()> {
    ensure!(!sizes.is_empty(), "--sizes needs at least one size");
    ensure!(
        sizes.iter().all(|s| *s > 0),
        "--sizes must be positive numbers of deployments (got {sizes:?})"
    );
    for pair in sizes.windows(2) {
        ensure!(
            pair[0] < pair[1],
            "--sizes must grow, since the same history grows from one to the next (got {} then {})",
            pair[0],
            pair[1]
        );
    }
    Ok(())
}

/// Builds the history on one database size by size, measuring at each.
async fn database(cuttle: &Path, postgres: Option<&str>, args: &HistoryArgs) -> Result<Table> {
    let label = if postgres.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let data = tempfile::Builder::new()
        .prefix("cuttle-bench-history-")
        .tempdir()?;
    let url = match postgres {
        Some(url) => url.to_owned(),
        None => cuttle_store::Store::sqlite_url(&data.path().join("cuttle.db")),
    };
    let http = client(Duration::from_secs(args.timeout))?;
    let cap = args.cap.to_string();
    let server_args = ["--max-concurrent-tasks", cap.as_str()];

    let (mut server, _) = Server::start(cuttle, data.path(), postgres, &http, &server_args).await?;
    let fixture = fixture::create(
        &Api {
            http: &http,
            base: &server.base,
        },
        args.log_lines,
    )
    .await
    .context("could not set up the projects and environments")?;
    server.stop()?;
    drop(server);

    let largest = args.sizes.last().copied().unwrap_or(0);
    let mut generator = Generator::load(&url, &fixture, largest).await?;
    let t0 = Instant::now();
    let large_logs = generator
        .write_large_logs(args.large_logs, args.log_lines)
        .await?;
    eprintln!(
        "{label}: wrote {} logs of {} lines in {:.1} s",
        args.large_logs,
        thousands(u64::from(args.log_lines)),
        t0.elapsed().as_secs_f64()
    );
    let large_log = large_logs.first().context("no large log")?.clone();

    let mut table = Table::new(&args.sizes);
    let mut previous = 0;
    for (column, &size) in args.sizes.iter().enumerate() {
        let t0 = Instant::now();
        generator.grow_to(size).await?;
        let took = t0.elapsed().as_secs_f64();
        eprintln!(
            "{label}: grew the history from {} to {} deployments in {took:.1} s ({:.0} deployments/s)",
            thousands(previous),
            thousands(size),
            (size - previous) as f64 / took
        );
        previous = size;

        let (server, ready) =
            Server::start(cuttle, data.path(), postgres, &http, &server_args).await?;
        let at = At {
            table: &mut table,
            column,
        };
        let measured = measure(
            at,
            Measured {
                server: &server,
                ready,
                http: &http,
                fixture: &fixture,
                generator: &generator,
                large_log: &large_log,
                args,
                data: data.path(),
            },
        )
        .await;
        let peak = server.peak_rss_kib();
        drop(server);
        measured.with_context(|| format!("{label} at {} deployments", thousands(size)))?;
        table.put(
            column,
            "server peak RSS",
            Unit::MiB,
            Goal::AtMost(100.0),
            true,
            Figure::Value(peak? as f64 / 1024.0),
        );
        eprintln!("{label}: measured at {} deployments", thousands(size));
    }
    Ok(table)
}

fn client(timeout: Duration) -> Result<Client> {
    // Proxies are ignored so that only the local server is ever contacted.
    Ok(Client::builder()
        .no_proxy()
        .timeout(timeout)
        .default_headers(
            [("X-Octopus-ApiKey".parse()?, crate::API_KEY.parse()?)]
                .into_iter()
                .collect(),
        )
        .build()?)
}

/// Where a size's figures go.
struct At<'a> {
    table: &'a mut Table,
    column: usize,
}

impl At<'_> {
    /// A time that must stay flat as history grows.
    fn time(&mut self, label: &str, goal: Goal, f: Figure) {
        self.table.put(self.column, label, Unit::Ms, goal, true, f);
    }

    fn put(&mut self, label: &str, unit: Unit, goal: Goal, flat: bool, f: Figure) {
        self.table.put(self.column, label, unit, goal, flat, f);
    }
}

struct Measured<'a> {
    server: &'a Server,
    ready: Duration,
    http: &'a Client,
    fixture: &'a Fixture,
    generator: &'a Generator,
    large_log: &'a str,
    args: &'a HistoryArgs,
    data: &'a Path,
}

async fn measure(mut at: At<'_>, m: Measured<'_>) -> Result<()> {
    let args = m.args;
    let timeout = Duration::from_secs(args.timeout);
    let api = Probe {
        http: m.http.clone(),
        base: m.server.base.clone(),
        cookie: None,
        samples: args.samples,
        budget: Duration::from_secs(20),
        timeout,
    };
    let portal = Probe {
        http: Client::builder()
            .no_proxy()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        cookie: Some(
            crate::portal::Browser::sign_in(&m.server.base)
                .await?
                .cookie()
                .to_owned(),
        ),
        ..api.clone()
    };
    at.time(
        "server start to ready",
        Goal::None,
        Figure::Value(ms(m.ready)),
    );

    let (project, _) = &m.fixture.projects[0];
    let (environment, env_name) = &m.fixture.environments[0];
    let release = m.generator.newest_release(0).clone();
    let task = some_task(&api, project).await?;
    let gets: Vec<(&str, String)> = vec![
        ("GET projects", format!("/api/{SPACE}/projects")),
        ("GET tasks", "/api/tasks".into()),
        (
            "GET tasks?states=Success",
            "/api/tasks?states=Success".into(),
        ),
        (
            "GET tasks?project=",
            format!("/api/tasks?project={project}"),
        ),
        (
            "GET tasks?environment=",
            format!("/api/tasks?environment={environment}"),
        ),
        ("GET tasks?name=Deploy", "/api/tasks?name=Deploy".into()),
        ("GET deployments", format!("/api/{SPACE}/deployments")),
        (
            "GET deployments?projects=",
            format!("/api/{SPACE}/deployments?projects={project}"),
        ),
        (
            "GET deployments?environments=",
            format!("/api/{SPACE}/deployments?environments={environment}"),
        ),
        (
            "GET deployments?taskState=Success",
            format!("/api/{SPACE}/deployments?taskState=Success"),
        ),
        (
            "GET deployments?taskState=Failed",
            format!("/api/{SPACE}/deployments?taskState=Failed"),
        ),
        ("GET events", format!("/api/{SPACE}/events")),
        (
            "GET release progression",
            format!("/api/{SPACE}/releases/{}/progression", release.id),
        ),
        (
            "GET release deployments",
            format!("/api/{SPACE}/releases/{}/deployments", release.id),
        ),
        ("GET a task", format!("/api/tasks/{task}")),
    ];
    for (label, path) in &gets {
        at.time(label, Goal::None, api.get(path).await);
    }
    at.time(
        "GET dashboard (API)",
        Goal::AtMost(20.0),
        api.get(&format!("/api/{SPACE}/dashboard")).await,
    );
    at.time(
        "dashboard (portal page)",
        Goal::AtMost(20.0),
        portal.get("/").await,
    );

    deploy_calls(
        &mut at,
        &api,
        &m.fixture.projects[0].1,
        &release.version,
        env_name,
    )
    .await?;

    let big = m.large_log;
    let lines = thousands(u64::from(args.log_lines));
    at.time(
        &format!("task page, {lines}-line log (portal)"),
        Goal::None,
        portal.get(&format!("/tasks/{big}")).await,
    );
    at.time(
        &format!("GET /details, {lines}-line log"),
        Goal::None,
        api.get(&format!("/api/tasks/{big}/details")).await,
    );
    at.time(
        &format!("GET /raw, {lines}-line log"),
        Goal::None,
        api.get(&format!("/api/tasks/{big}/raw")).await,
    );

    let small = format!("/api/tasks/{task}");
    at.time(
        "GET a task, p99 alone",
        Goal::None,
        api.p99_while(&small, None, 200).await,
    );
    at.time(
        "GET a task, p99 during /raw",
        Goal::None,
        api.p99_while(&small, Some(&format!("/api/tasks/{big}/raw")), 100)
            .await,
    );
    at.time(
        "GET a task, p99 during taskState=Success",
        Goal::None,
        api.p99_while(
            &small,
            Some(&format!("/api/{SPACE}/deployments?taskState=Success")),
            100,
        )
        .await,
    );

    queued_batches(&mut at, &api, m.generator, m.fixture, args, m.data).await?;
    long_log(&mut at, &api, m.fixture, args, m.data).await?;
    Ok(())
}

/// A finished deployment task of `project`, for the small request.
async fn some_task(api: &Probe, project: &str) -> Result<String> {
    let page = api
        .json(
            Method::GET,
            &format!("/api/tasks?project={project}&take=1"),
            None,
        )
        .await?;
    page["Items"][0]["Id"]
        .as_str()
        .map(str::to_owned)
        .context("the project has no task")
}

/// The deploy call (POST to its answer) and the same deployment end to end
/// (to its task's success), one at a time.
async fn deploy_calls(
    at: &mut At<'_>,
    api: &Probe,
    project: &str,
    version: &str,
    environment: &str,
) -> Result<()> {
    let mut calls = vec![];
    let mut ends = vec![];
    let body = json!({"ProjectName": project, "ReleaseVersion": version, "EnvironmentNames": [environment]});
    let path = format!("/api/{SPACE}/deployments/create/untenanted/v1");
    let started = Instant::now();
    let mut failure = None;
    while calls.len() < api.samples as usize && (calls.is_empty() || started.elapsed() < api.budget)
    {
        let t0 = Instant::now();
        let created = match api.send(Method::POST, &path, Some(&body), true).await {
            Ok((_, Some(v))) => v,
            Ok(_) => bail!("POST {path}: no answer"),
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        calls.push(ms(t0.elapsed()));
        let id = created["DeploymentServerTasks"][0]["ServerTaskId"]
            .as_str()
            .context("no ServerTaskId in the answer")?;
        fixture::wait_task(&api_of(api), id, fixture::FAST_POLL).await?;
        ends.push(ms(t0.elapsed()));
    }
    let figure = |times: Vec<f64>| match &failure {
        Some(Failure::TimedOut) => Figure::TimedOut,
        Some(Failure::NotFound) => Figure::NoRoute,
        Some(Failure::Other(e)) => Figure::Failed(e.clone()),
        None => Figure::Value(crate::Stats::of(times).median),
    };
    at.time("deploy call", Goal::AtMost(10.0), figure(calls));
    at.time("trivial deployment, end to end", Goal::None, figure(ends));
    Ok(())
}

fn api_of(p: &Probe) -> Api<'_> {
    Api {
        http: &p.http,
        base: &p.base,
    }
}

/// Batches of one deployment per project and environment (1,000), all
/// queued at once, each timed from the first call to the last task's end;
/// and the floor: `xargs -P cap` running the same script as many times.
async fn queued_batches(
    at: &mut At<'_>,
    api: &Probe,
    generator: &Generator,
    fixture: &Fixture,
    args: &HistoryArgs,
    data: &Path,
) -> Result<()> {
    if args.batches == 0 {
        return Ok(());
    }
    let n = PROJECTS * ENVIRONMENTS;
    let environments: Vec<&str> = fixture
        .environments
        .iter()
        .map(|(_, e)| e.as_str())
        .collect();
    let client = api_of(api);
    let mut first: Option<f64> = None;
    let mut slowest: f64 = 0.0;
    for b in 1..=args.batches {
        let label = format!("{} queued deployments, batch {b}", thousands(n as u64));
        // A batch that fails is shown failed; the figures after it still count.
        let took = match queue_batch(&client, generator, fixture, &environments).await {
            Ok(took) => took,
            Err(e) => {
                at.put(
                    &label,
                    Unit::Seconds,
                    Goal::None,
                    true,
                    Figure::Failed(format!("{e:#}")),
                );
                break;
            }
        };
        at.put(&label, Unit::Seconds, Goal::None, true, Figure::Value(took));
        slowest = slowest.max(took);
        let first = *first.get_or_insert(took);
        if b == args.batches && b > 1 {
            at.put(
                &format!("batch {b} / batch 1"),
                Unit::Times,
                Goal::AtMost(1.5),
                false,
                Figure::Value(took / first),
            );
        }
    }
    // The same script the projects' step runs, once per deployment.
    let release = &generator.newest_release(0).version;
    let script = format!("echo \"rolled out {release}\"");
    let out = data.join("xargs-floor.out");
    let t0 = Instant::now();
    let status = Command::new("bash")
        .args([
            "--noprofile",
            "--norc",
            "-c",
            &format!(
                "seq {n} | xargs -P {} -n 1 bash --noprofile --norc -c '{script}' > {}",
                args.cap,
                out.display()
            ),
        ])
        .stdin(Stdio::null())
        .status()?;
    ensure!(status.success(), "the xargs floor failed");
    let floor = t0.elapsed().as_secs_f64();
    at.put(
        &format!("xargs -P {} floor, {n} scripts", args.cap),
        Unit::Seconds,
        Goal::None,
        false,
        Figure::Value(floor),
    );
    at.put(
        "slowest batch / xargs floor",
        Unit::Times,
        Goal::AtMost(3.0),
        false,
        if first.is_some() {
            Figure::Value(slowest / floor)
        } else {
            Figure::Failed("no batch finished".into())
        },
    );
    Ok(())
}

/// One deployment of every project to every environment, queued at once;
/// the seconds from the first call to the last task's end.
async fn queue_batch(
    client: &Api<'_>,
    generator: &Generator,
    fixture: &Fixture,
    environments: &[&str],
) -> Result<f64> {
    let t0 = Instant::now();
    let mut tasks = vec![];
    for (p, (_, name)) in fixture.projects.iter().enumerate() {
        let version = &generator.newest_release(p).version;
        tasks.extend(fixture::queue(client, name, version, environments).await?);
    }
    for id in &tasks {
        fixture::wait_task(client, id, fixture::SLOW_POLL).await?;
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// A step printing the long log, deployed end to end, against bash writing
/// the same lines to a file.
async fn long_log(
    at: &mut At<'_>,
    api: &Probe,
    fixture: &Fixture,
    args: &HistoryArgs,
    data: &Path,
) -> Result<()> {
    let client = api_of(api);
    let lines = thousands(u64::from(args.log_lines));
    let env = &fixture.environments[0].1;
    let stored = async {
        let t0 = Instant::now();
        let task = fixture::queue(&client, CHATTY, CHATTY_RELEASE, &[env]).await?;
        let task = task.first().context("no task was queued")?;
        fixture::wait_task(&client, task, fixture::SLOW_POLL).await?;
        anyhow::Ok(t0.elapsed().as_secs_f64())
    };
    let (took, rate) = match stored.await {
        Ok(took) => (
            Figure::Value(took),
            Figure::Value(f64::from(args.log_lines) / took),
        ),
        Err(e) => {
            let f = Figure::Failed(format!("{e:#}"));
            (f.clone(), f)
        }
    };
    at.put(
        &format!("{lines}-line log stored, end to end"),
        Unit::Seconds,
        Goal::None,
        true,
        took,
    );
    at.put(
        "log lines stored per second",
        Unit::LinesPerSecond,
        Goal::AtLeast(500_000.0),
        true,
        rate,
    );
    let out = data.join("long-log-floor.out");
    let t0 = Instant::now();
    let status = Command::new("bash")
        .args([
            "--noprofile",
            "--norc",
            "-c",
            &format!(
                "{} > {}",
                fixture::chatty_script(args.log_lines),
                out.display()
            ),
        ])
        .stdin(Stdio::null())
        .status()?;
    ensure!(status.success(), "the long log floor failed");
    at.put(
        &format!("bash writing {lines} lines to a file"),
        Unit::Seconds,
        Goal::None,
        false,
        Figure::Value(t0.elapsed().as_secs_f64()),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_sizes;

    #[test]
    fn sizes_must_be_positive_and_grow() {
        assert!(check_sizes(&[1_000, 10_000]).is_ok());
        assert!(check_sizes(&[5]).is_ok());
        let err = |sizes: &[u64]| check_sizes(sizes).unwrap_err().to_string();
        assert!(err(&[]).contains("at least one"));
        assert!(err(&[0, 10]).contains("positive"));
        assert!(err(&[10_000, 1_000]).contains("must grow"));
        assert!(err(&[1_000, 1_000]).contains("must grow"));
    }
}
