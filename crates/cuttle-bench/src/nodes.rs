//! Queue pickup latency with one and with three server nodes on one
//! PostgreSQL database: the time from a deployment's QueueTime to its
//! StartTime, one deployment at a time. With three nodes, also queued
//! through a drained node, so that every pickup comes through another
//! node's wake-up by the database's notification.
//!
//! Then takeover: two nodes, the one running a deployment killed with
//! SIGKILL mid-step, timed from the kill to the deployment's next log line,
//! written by the other node once the lease lapsed; with the default task
//! lease and with a short one.
//!
//! Then throughput: many trivial deployments (of as many projects, so none
//! waits for another of its project) queued while every node is drained,
//! then every node undrained at once: from then to the last finished, with
//! 1, 2 and 3 nodes on PostgreSQL and 1 node on SQLite, each node at its
//! default task cap (queuing through the API is not part of the figure).

use super::engine::{create_one_step_project, queue};
use super::{ms, Api, PgDatabase, Server, Stats};
use anyhow::{ensure, Context, Result};
use chrono::DateTime;
use reqwest::{Client, Method};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct NodesArgs {
    /// Deployments timed per setting.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    samples: u32,
    /// Kills timed per task lease in the takeover benchmark.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    takeover_runs: u32,
    /// Deployments queued at once for the throughput figures; 0 skips them.
    #[arg(long, default_value_t = 1000)]
    queued: u32,
    /// Only the throughput figures.
    #[arg(long)]
    throughput_only: bool,
    /// The PostgreSQL server to create the scratch databases on.
    #[arg(long, env = "CUTTLE_BENCH_DATABASE_URL", hide_env_values = true)]
    postgres: String,
}

pub async fn run(cuttle: &Path, http: &Client, args: &NodesArgs) -> Result<()> {
    if !args.throughput_only {
        pickup_and_takeover(cuttle, http, args).await?;
    }
    if args.queued > 0 {
        println!(
            "throughput: {} one-step deployments of as many projects queued with every node drained, undrain to last finished, each node at its default task cap",
            args.queued
        );
        for (nodes, postgres) in [(1, false), (1, true), (2, true), (3, true)] {
            throughput(cuttle, http, args, nodes, postgres).await?;
        }
    }
    Ok(())
}

async fn pickup_and_takeover(cuttle: &Path, http: &Client, args: &NodesArgs) -> Result<()> {
    println!(
        "cuttle-bench nodes: queue pickup (QueueTime to StartTime), {} one-step deployments per setting, PostgreSQL",
        args.samples
    );
    for (nodes, drained) in [(1, false), (3, false), (3, true)] {
        scenario(cuttle, http, args, nodes, drained).await?;
    }
    println!(
        "takeover: SIGKILL of the node running a deployment to its next log line on the other node, {} kills per lease",
        args.takeover_runs
    );
    let default_lease = cuttle_engine::runner::DEFAULT_TASK_LEASE.as_secs();
    for lease in [default_lease, 2] {
        takeover(cuttle, http, args, lease).await?;
    }
    Ok(())
}

/// Starts node `i` of a takeover cluster on its own data directory.
async fn takeover_node(
    cuttle: &Path,
    http: &Client,
    root: &Path,
    database: &str,
    i: usize,
    lease: &str,
) -> Result<Server> {
    let dir = root.join(format!("node-{i}"));
    std::fs::create_dir_all(&dir)?;
    if i > 0 && !dir.join("master.key").exists() {
        std::fs::copy(root.join("node-0/master.key"), dir.join("master.key"))?;
    }
    let name = format!("bench-{i}");
    let extra = ["--node-name", name.as_str(), "--task-lease", lease];
    Ok(Server::start(cuttle, &dir, Some(database), http, &extra)
        .await?
        .0)
}

async fn takeover(cuttle: &Path, http: &Client, args: &NodesArgs, lease_secs: u64) -> Result<()> {
    let db = PgDatabase::create(&args.postgres)?;
    let root = tempfile::Builder::new().prefix("cuttle-bench-").tempdir()?;
    let lease = lease_secs.to_string();
    let mut servers = vec![];
    for i in 0..2 {
        servers.push(takeover_node(cuttle, http, root.path(), &db.url, i, &lease).await?);
    }
    let first = Api {
        http,
        base: &servers[0].base,
    };
    first
        .call(
            Method::POST,
            "/api/Spaces-1/environments",
            Some(json!({"Name": "Bench"})),
        )
        .await?;
    super::engine::create_script_project(&first, "Takeover", "echo started; sleep 600").await?;
    let mut gaps = vec![];
    // The node deployments are queued through: one that is alive.
    let mut front = 0;
    for _ in 0..args.takeover_runs {
        let api = Api {
            http,
            base: &servers[front].base,
        };
        let id = queue(&api, "Takeover").await?;
        let raw = format!("/api/tasks/{id}/raw");
        let t0 = Instant::now();
        let owner = loop {
            let t = api
                .call(Method::GET, &format!("/api/tasks/{id}"), None)
                .await?;
            let log = api.text(&raw).await?;
            if log.contains("started") {
                break t["ServerNode"].as_str().unwrap_or_default().to_owned();
            }
            ensure!(
                t0.elapsed() < Duration::from_secs(60),
                "task {id} did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let dead: usize = owner
            .strip_prefix("bench-")
            .and_then(|n| n.parse().ok())
            .context("the task names no node")?;
        let alive = 1 - dead;
        let lines_before = api.text(&raw).await?.lines().count();
        servers[dead].child.kill()?;
        let killed = Instant::now();
        servers[dead].child.wait()?;
        let api = Api {
            http,
            base: &servers[alive].base,
        };
        loop {
            let log = api.text(&raw).await?;
            if log.lines().count() > lines_before && log.contains("took this deployment over") {
                gaps.push(ms(killed.elapsed()));
                break;
            }
            ensure!(
                killed.elapsed() < Duration::from_secs(120),
                "task {id} was not taken over"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        loop {
            let t = api
                .call(Method::GET, &format!("/api/tasks/{id}"), None)
                .await?;
            if t["IsCompleted"] == true {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let again = takeover_node(cuttle, http, root.path(), &db.url, dead, &lease).await?;
        drop(std::mem::replace(&mut servers[dead], again));
        front = alive;
    }
    let s = Stats::of(gaps);
    println!(
        "task lease {lease_secs:>2} s{:<24} kill to next log line median {:7.0} ms (min {:.0}, max {:.0})",
        if lease_secs == cuttle_engine::runner::DEFAULT_TASK_LEASE.as_secs() {
            " (the default)"
        } else {
            ""
        },
        s.median,
        s.min,
        s.max
    );
    drop(servers);
    drop(db);
    Ok(())
}

/// `nodes` servers on one database (a scratch PostgreSQL one, or SQLite in
/// the first node's data directory), the data directory kept alive by the
/// returned guard.
async fn cluster(
    cuttle: &Path,
    http: &Client,
    args: &NodesArgs,
    nodes: usize,
    postgres: bool,
) -> Result<(Vec<Server>, Option<PgDatabase>, tempfile::TempDir)> {
    let db = if postgres {
        Some(PgDatabase::create(&args.postgres)?)
    } else {
        None
    };
    let root = tempfile::Builder::new().prefix("cuttle-bench-").tempdir()?;
    let mut servers = vec![];
    for i in 0..nodes {
        let dir = root.path().join(format!("node-{i}"));
        std::fs::create_dir_all(&dir)?;
        if i > 0 {
            std::fs::copy(
                root.path().join("node-0/master.key"),
                dir.join("master.key"),
            )?;
        }
        let name = format!("bench-{i}");
        let url = db.as_ref().map(|d| d.url.as_str());
        let (server, _) = Server::start(cuttle, &dir, url, http, &["--node-name", &name]).await?;
        servers.push(server);
    }
    Ok((servers, db, root))
}

async fn throughput(
    cuttle: &Path,
    http: &Client,
    args: &NodesArgs,
    nodes: usize,
    postgres: bool,
) -> Result<()> {
    let (servers, db, _root) = cluster(cuttle, http, args, nodes, postgres).await?;
    let api = Api {
        http,
        base: &servers[0].base,
    };
    api.call(
        Method::POST,
        "/api/Spaces-1/environments",
        Some(json!({"Name": "Bench"})),
    )
    .await?;
    let n = args.queued as usize;
    for i in 0..n {
        create_one_step_project(&api, &format!("Many {i}")).await?;
    }
    // Each node drained (or undrained) through itself applies it at once.
    let drain = |on: bool| {
        let servers = &servers;
        async move {
            for (i, server) in servers.iter().enumerate() {
                Api {
                    http,
                    base: &server.base,
                }
                .call(
                    Method::PUT,
                    &format!("/api/octopusservernodes/OctopusServerNodes-bench-{i}"),
                    Some(json!({"IsInMaintenanceMode": on})),
                )
                .await?;
            }
            anyhow::Ok(())
        }
    };
    drain(true).await?;
    let queuing = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    // Queued through every node in turn, as a load balancer would.
    for i in 0..n {
        let through = Api {
            http,
            base: &servers[i % nodes].base,
        };
        tasks.push(queue(&through, &format!("Many {i}")).await?);
    }
    let queued = queuing.elapsed();
    let t0 = Instant::now();
    drain(false).await?;
    let mut ran_on: BTreeMap<String, usize> = BTreeMap::new();
    // Roughly in queue order: wait for each in turn.
    for id in &tasks {
        let task = loop {
            let t = api
                .call(Method::GET, &format!("/api/tasks/{id}"), None)
                .await?;
            if t["IsCompleted"] == true {
                break t;
            }
            ensure!(
                t0.elapsed() < Duration::from_secs(1800),
                "the queued deployments did not finish in 30 minutes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        ensure!(
            task["State"] == "Success",
            "task {id} ended {}",
            task["State"]
        );
        let node = task["ServerNode"].as_str().unwrap_or("?").to_owned();
        *ran_on.entry(node).or_default() += 1;
    }
    let took = t0.elapsed();
    let setting = format!(
        "{nodes} node{} on {}",
        if nodes == 1 { "" } else { "s" },
        if postgres { "PostgreSQL" } else { "SQLite" }
    );
    println!(
        "{setting:<22} {n} deployments in {:6.1} s: {:5.1} deployments/s (queued beforehand in {:.1} s); ran on {ran_on:?}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        queued.as_secs_f64()
    );
    drop(servers);
    drop(db);
    Ok(())
}

async fn scenario(
    cuttle: &Path,
    http: &Client,
    args: &NodesArgs,
    nodes: usize,
    drain_first: bool,
) -> Result<()> {
    let db = PgDatabase::create(&args.postgres)?;
    let root = tempfile::Builder::new().prefix("cuttle-bench-").tempdir()?;
    let mut servers = vec![];
    for i in 0..nodes {
        let dir = root.path().join(format!("node-{i}"));
        std::fs::create_dir_all(&dir)?;
        if i > 0 {
            // One installation, one master key.
            std::fs::copy(
                root.path().join("node-0/master.key"),
                dir.join("master.key"),
            )?;
        }
        let name = format!("bench-{i}");
        let (server, _) =
            Server::start(cuttle, &dir, Some(&db.url), http, &["--node-name", &name]).await?;
        servers.push(server);
    }
    let api = Api {
        http,
        base: &servers[0].base,
    };
    api.call(
        Method::POST,
        "/api/Spaces-1/environments",
        Some(json!({"Name": "Bench"})),
    )
    .await?;
    let n = args.samples as usize;
    for i in 0..=n {
        create_one_step_project(&api, &format!("Pickup {i}")).await?;
    }
    if drain_first {
        // Applied at once: the node answering is the one drained.
        api.call(
            Method::PUT,
            "/api/octopusservernodes/OctopusServerNodes-bench-0",
            Some(json!({"IsInMaintenanceMode": true})),
        )
        .await?;
    }
    let mut pickups = vec![];
    let mut ran_on: BTreeMap<String, usize> = BTreeMap::new();
    // The first is a warm-up, untimed.
    for i in 0..=n {
        let id = queue(&api, &format!("Pickup {i}")).await?;
        let t0 = Instant::now();
        let task = loop {
            let t = api
                .call(Method::GET, &format!("/api/tasks/{id}"), None)
                .await?;
            if t["IsCompleted"] == true {
                break t;
            }
            ensure!(
                t0.elapsed() < Duration::from_secs(120),
                "task {id} did not finish"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        ensure!(
            task["State"] == "Success",
            "task {id} ended {}",
            task["State"]
        );
        if i == 0 {
            continue;
        }
        let time = |field: &str| -> Result<chrono::DateTime<chrono::FixedOffset>> {
            let text = task[field].as_str().context("missing task time")?;
            Ok(DateTime::parse_from_rfc3339(text)?)
        };
        let waited = (time("StartTime")? - time("QueueTime")?)
            .to_std()
            .unwrap_or_default();
        pickups.push(ms(waited));
        let node = task["ServerNode"].as_str().unwrap_or("?").to_owned();
        *ran_on.entry(node).or_default() += 1;
    }
    let s = Stats::of(pickups);
    let setting = match (nodes, drain_first) {
        (1, _) => "1 node".to_owned(),
        (n, false) => format!("{n} nodes"),
        (n, true) => format!("{n} nodes, queued through a drained one"),
    };
    println!(
        "{setting:<38} pickup median/p95 {:6.1} / {:.1} ms (min {:.1}, max {:.1}); ran on {ran_on:?}",
        s.median, s.p95, s.min, s.max
    );
    drop(servers);
    drop(db);
    Ok(())
}
