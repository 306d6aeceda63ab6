//! Queue pickup latency with one and with three server nodes on one
//! PostgreSQL database: the time from a deployment's QueueTime to its
//! StartTime, one deployment at a time. With three nodes, also queued
//! through a drained node, so that every pickup comes through another
//! node's wake-up by the database's notification.

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
    /// The PostgreSQL server to create the scratch databases on.
    #[arg(long, env = "CUTTLE_BENCH_DATABASE_URL", hide_env_values = true)]
    postgres: String,
}

pub async fn run(cuttle: &Path, http: &Client, args: &NodesArgs) -> Result<()> {
    println!(
        "cuttle-bench nodes: queue pickup (QueueTime to StartTime), {} one-step deployments per setting, PostgreSQL",
        args.samples
    );
    for (nodes, drained) in [(1, false), (3, false), (3, true)] {
        scenario(cuttle, http, args, nodes, drained).await?;
    }
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
