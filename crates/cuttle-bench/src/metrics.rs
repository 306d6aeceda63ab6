//! What metrics cost: `/metrics` scrape time on a server with 1,000
//! machines and 10,000 deployment tasks in its history, and the trivial
//! deployment's end-to-end time with counting and the audit log each on
//! and off.

use super::{create_project, deploy, ms, Api, Server, Stats};
use crate::history::fixture;
use crate::history::generator::Generator;
use anyhow::{ensure, Context, Result};
use reqwest::{Client, Method};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

#[derive(clap::Args)]
pub struct MetricsArgs {
    /// Deployments timed with counting on and with it off (after a warm-up each).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    deployments: u32,
    /// Machines registered before scraping.
    #[arg(long, default_value_t = 1_000)]
    machines: u32,
    /// Deployment tasks in the history before scraping.
    #[arg(long, default_value_t = 10_000)]
    tasks: u64,
    /// Scrapes timed.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    scrapes: u32,
}

/// The settings compared: what the server counts and records.
const SETTINGS: [(&str, bool, bool); 4] = [
    ("metrics on, audit on", true, true),
    ("metrics off, audit on", false, true),
    ("metrics on, audit off", true, false),
    ("metrics off, audit off", false, false),
];

pub async fn run(cuttle: &Path, http: &Client, args: &MetricsArgs) -> Result<()> {
    println!(
        "cuttle-bench metrics: SQLite, {} deployments per setting, {} scrapes at {} machines and {} tasks",
        args.deployments, args.scrapes, args.machines, args.tasks
    );
    // Alternating rounds, so that drift in the machine's load falls on all.
    let mut samples: Vec<Vec<f64>> = vec![vec![]; SETTINGS.len()];
    for _ in 0..2 {
        for (i, (_, counted, audited)) in SETTINGS.iter().enumerate() {
            let n = args.deployments.div_ceil(2);
            samples[i].extend(deployments(cuttle, http, *counted, *audited, n).await?);
        }
    }
    let base = Stats::of(samples[0].clone()).median;
    for ((label, _, _), samples) in SETTINGS.iter().zip(samples) {
        let s = Stats::of(samples);
        println!(
            "trivial deployment, {label:<22} e2e median {:6.1} ms, p95 {:6.1} ms, {:5.2}x of all on",
            s.median,
            s.p95,
            s.median / base
        );
    }
    scrape_time(cuttle, http, args).await
}

/// End-to-end times of trivial deployments on a fresh server.
async fn deployments(
    cuttle: &Path,
    http: &Client,
    counted: bool,
    audited: bool,
    n: u32,
) -> Result<Vec<f64>> {
    let data = tempfile::Builder::new().prefix("cuttle-bench-").tempdir()?;
    let flag = |on: bool| if on { "true" } else { "false" };
    let (server, _) = Server::start(
        cuttle,
        data.path(),
        None,
        http,
        &[
            "--count-metrics",
            flag(counted),
            "--record-audit-events",
            flag(audited),
        ],
    )
    .await?;
    let api = Api {
        http,
        base: &server.base,
    };
    create_project(&api).await?;
    deploy(&api).await.context("warm-up deployment")?;
    let mut samples = vec![];
    for _ in 0..n {
        samples.push(deploy(&api).await?.e2e);
    }
    drop(server);
    Ok(samples)
}

async fn scrape_time(cuttle: &Path, http: &Client, args: &MetricsArgs) -> Result<()> {
    let data = tempfile::Builder::new()
        .prefix("cuttle-bench-metrics-")
        .tempdir()?;
    let url = cuttle_store::Store::sqlite_url(&data.path().join("cuttle.db"));
    let (mut server, _) = Server::start(cuttle, data.path(), None, http, &[]).await?;
    let api = Api {
        http,
        base: &server.base,
    };
    let made = fixture::create(&api, 10)
        .await
        .context("could not set up the projects and environments")?;
    let environment = made.environments[0].0.clone();
    server.stop()?;
    drop(server);
    let t0 = Instant::now();
    let mut generator = Generator::load(&url, &made, args.tasks).await?;
    generator.grow_to(args.tasks).await?;
    eprintln!(
        "wrote {} deployments in {:.1} s",
        args.tasks,
        t0.elapsed().as_secs_f64()
    );

    let (server, _) = Server::start(cuttle, data.path(), None, http, &[]).await?;
    let api = Api {
        http,
        base: &server.base,
    };
    // Listening targets on a port nothing listens on: their health is
    // whatever the checks find, which the scrape counts by status.
    for i in 0..args.machines {
        api.call(
            Method::POST,
            "/api/Spaces-1/machines",
            Some(json!({
                "Name": format!("web{i:04}"),
                "Roles": ["web"],
                "EnvironmentIds": [environment],
                "Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": "https://127.0.0.1:9/",
                    "Thumbprint": "0000000000000000000000000000000000000000000000000000000000000000"}
            })),
        )
        .await?;
    }
    let metrics = format!("{}/metrics", server.base);
    let mut times = vec![];
    let mut size = 0;
    for _ in 0..=args.scrapes {
        let t0 = Instant::now();
        let resp = http.get(&metrics).send().await?;
        ensure!(
            resp.status().is_success(),
            "GET /metrics: {}",
            resp.status()
        );
        let text = resp.text().await?;
        times.push(ms(t0.elapsed()));
        size = text.len();
        ensure!(
            text.contains("cuttle_agents{status=\"Unknown\"}")
                || text.contains("cuttle_agents{status=\"Unavailable\"}"),
            "the scrape counts no machines"
        );
    }
    // The first one warms the connection.
    times.remove(0);
    let s = Stats::of(times);
    println!(
        "/metrics at {} machines, {} tasks: median {:.2} ms, p95 {:.2} ms, max {:.2} ms, {size} bytes",
        args.machines, args.tasks, s.median, s.p95, s.max
    );
    drop(server);
    Ok(())
}
