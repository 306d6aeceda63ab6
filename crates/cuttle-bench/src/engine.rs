//! Engine overhead: a real server deploys a process of 20 trivial script
//! steps (in sequence, then as 5 parallel groups of 4), compared with running
//! the same 20 scripts straight from a shell script (the floor); and the
//! throughput of 100 queued deployments of different projects under a task cap.

use super::{ms, Api, Server, Stats};
use anyhow::{ensure, Context, Result};
use chrono::{DateTime, FixedOffset};
use reqwest::{Client, Method};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct EngineArgs {
    /// Deployments timed per process shape (after one untimed warm-up).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Deployments queued at once for the throughput figure.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    queued: u32,
    /// The server's task cap for the throughput figure.
    #[arg(long, default_value_t = 10)]
    cap: u32,
}

const STEPS: usize = 20;
const GROUP: usize = 4;
const SCRIPT: &str = "true";

pub async fn run(cuttle: &Path, http: &Client, args: &EngineArgs) -> Result<()> {
    let data = tempfile::Builder::new().prefix("cuttle-bench-").tempdir()?;
    let cap = args.cap.to_string();
    let (server, _) = Server::start(
        cuttle,
        data.path(),
        None,
        http,
        &["--max-concurrent-tasks", &cap],
    )
    .await?;
    let api = Api {
        http,
        base: &server.base,
    };
    api.call(
        Method::POST,
        "/api/Spaces-1/environments",
        Some(json!({"Name": "Bench"})),
    )
    .await?;
    println!(
        "cuttle-bench engine: {STEPS} `{SCRIPT}` steps, {} timed deployments per shape, SQLite",
        args.runs
    );

    let floor_dir = tempfile::tempdir()?;
    for (shape, parallel) in [("sequence", false), ("5 groups of 4", true)] {
        let name = if parallel { "Parallel" } else { "Sequence" };
        create_project(&api, name, parallel).await?;
        deploy(&api, name).await.context("warm-up deployment")?;
        let mut runs = vec![];
        let mut e2e = vec![];
        for _ in 0..args.runs {
            let s = deploy(&api, name).await?;
            runs.push(s.run);
            e2e.push(s.e2e);
        }
        let floor = Stats::of(
            (0..args.runs)
                .map(|_| shell_floor(floor_dir.path(), parallel))
                .collect::<Result<Vec<_>>>()?,
        );
        let run = Stats::of(runs);
        let e2e = Stats::of(e2e);
        println!(
            "{shape:<14} server run median/p95 {:7.1} / {:.1} ms, e2e median {:.1} ms, shell floor median {:.1} ms, ratio {:.2}x",
            run.median,
            run.p95,
            e2e.median,
            floor.median,
            run.median / floor.median
        );
    }

    // Throughput: many projects, each deployed once, all queued together.
    let n = args.queued as usize;
    for i in 0..n {
        create_one_step_project(&api, &format!("Many {i}")).await?;
    }
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tasks.push(queue(&api, &format!("Many {i}")).await?);
    }
    let mut pending = tasks.clone();
    while !pending.is_empty() {
        let mut still = vec![];
        for id in pending {
            let t = api
                .call(Method::GET, &format!("/api/tasks/{id}"), None)
                .await?;
            if t["IsCompleted"] != true {
                still.push(id);
            } else {
                ensure!(t["State"] == "Success", "task {id} ended {}", t["State"]);
            }
        }
        pending = still;
        ensure!(
            t0.elapsed() < Duration::from_secs(600),
            "the queued deployments did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t0.elapsed();
    println!(
        "throughput     {n} queued deployments of {n} projects at a cap of {}: {:.1} s, {:.1} deployments/s",
        args.cap,
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    drop(server);
    Ok(())
}

/// The same 20 scripts run by a shell script, one interpreter each, as the
/// built-in worker runs them: the floor the engine's overhead is measured over.
fn shell_floor(dir: &Path, parallel: bool) -> Result<f64> {
    for i in 0..STEPS {
        std::fs::write(dir.join(format!("step-{i}.sh")), SCRIPT)?;
    }
    let driver = if parallel {
        format!(
            "for g in $(seq 0 {}); do for s in $(seq 0 {}); do bash --noprofile --norc step-$((g*{GROUP}+s)).sh & done; wait; done",
            STEPS / GROUP - 1,
            GROUP - 1
        )
    } else {
        format!(
            "for i in $(seq 0 {}); do bash --noprofile --norc step-$i.sh; done",
            STEPS - 1
        )
    };
    let t0 = Instant::now();
    let status = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", &driver])
        .current_dir(dir)
        .status()?;
    ensure!(status.success(), "the shell floor script failed");
    Ok(ms(t0.elapsed()))
}

fn step(i: usize, parallel: bool) -> Value {
    let trigger = if parallel && !i.is_multiple_of(GROUP) {
        "StartWithPrevious"
    } else {
        "StartAfterPrevious"
    };
    json!({"Name": format!("Step {}", i + 1), "StartTrigger": trigger, "Actions": [{
        "ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": SCRIPT, "Octopus.Action.Script.Syntax": "Bash"}}]})
}

async fn create_project(api: &Api<'_>, name: &str, parallel: bool) -> Result<()> {
    let steps: Vec<Value> = (0..STEPS).map(|i| step(i, parallel)).collect();
    create_with_steps(api, name, steps).await
}

pub(crate) async fn create_one_step_project(api: &Api<'_>, name: &str) -> Result<()> {
    create_with_steps(api, name, vec![step(0, false)]).await
}

/// A project whose one step runs `script`, released as 1.0.0.
pub(crate) async fn create_script_project(api: &Api<'_>, name: &str, script: &str) -> Result<()> {
    let step = json!({"Name": "Run", "Actions": [{"ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": script, "Octopus.Action.Script.Syntax": "Bash"}}]});
    create_with_steps(api, name, vec![step]).await
}

async fn create_with_steps(api: &Api<'_>, name: &str, steps: Vec<Value>) -> Result<()> {
    let project = api
        .call(
            Method::POST,
            "/api/Spaces-1/projects",
            Some(json!({"Name": name, "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"})),
        )
        .await?;
    let id = project["Id"].as_str().context("the project has no Id")?;
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

pub(crate) async fn queue(api: &Api<'_>, project: &str) -> Result<String> {
    let created = api
        .call(
            Method::POST,
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": project, "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Bench"]})),
        )
        .await?;
    created["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .map(str::to_owned)
        .context("no ServerTaskId in the response")
}

struct Timing {
    run: f64,
    e2e: f64,
}

/// Deploys and waits, returning the server's own run time (start to
/// completion, from the task) and the client's end-to-end time.
async fn deploy(api: &Api<'_>, project: &str) -> Result<Timing> {
    let t0 = Instant::now();
    let id = queue(api, project).await?;
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
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let e2e = ms(t0.elapsed());
    ensure!(
        task["State"] == "Success",
        "task {id} ended {}: {}",
        task["State"],
        task["ErrorMessage"]
    );
    let time = |field: &str| -> Result<DateTime<FixedOffset>> {
        let text = task[field].as_str().context("missing task time")?;
        Ok(DateTime::parse_from_rfc3339(text)?)
    };
    let run = (time("CompletedTime")? - time("StartTime")?)
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1000.0;
    Ok(Timing { run, e2e })
}
