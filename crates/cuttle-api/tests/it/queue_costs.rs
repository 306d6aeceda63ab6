//! What a queued deployment costs the database, by shape rather than time:
//! the transactions committed from the deploy call to the task's end. On
//! SQLite each is a flush to disk on the one writer, so under a queue of
//! many deployments their number is what bounds throughput.

use crate::common::{on_both, Server};
use serde_json::json;

/// Deployments measured: their commits are divided among them, so that a
/// background write landing in the window cannot tip the figure.
const DEPLOYMENTS: usize = 4;

/// At most this many commits per trivial deployment, from the deploy call
/// to its task's end: the deploy call's own, the claim, its progress (the
/// activity tree and log lines, stored together in a few batches, however
/// the writer's turns fall), its step's result, and its end with the last
/// of its log. (Each change of an activity committed on its own, and the
/// end apart from the log, made 18 on SQLite.) PostgreSQL's nodes also
/// look for tasks to take over before each claim, in transactions of
/// their own.
fn most_commits(backend: &str) -> u64 {
    match backend {
        "postgres" => 15,
        _ => 12,
    }
}

async fn deploy_and_count(s: &Server) -> u64 {
    s.project_with_script("Costs", "echo trivial", json!({}))
        .await;
    // Warm up: the first deployment of a server reads and caches more.
    let first = s.release_and_deploy("Costs", "1.0.0").await;
    assert_eq!(s.wait_for_task(&first).await["State"], "Success");
    let mut tasks = vec![];
    for i in 0..DEPLOYMENTS {
        let version = format!("1.0.{}", i + 1);
        s.create(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": "Costs", "ReleaseVersion": version}),
        )
        .await;
        tasks.push(version);
    }
    // One at a time: alone, a deployment's writes share no commit with
    // another's, so this is the most a deployment costs.
    let before = s.inst.store.commits();
    for version in &tasks {
        let d = s
            .create(
                "/api/Spaces-1/deployments/create/untenanted/v1",
                json!({"ProjectName": "Costs", "ReleaseVersion": version, "EnvironmentNames": ["Dev"]}),
            )
            .await;
        let id = d["DeploymentServerTasks"][0]["ServerTaskId"]
            .as_str()
            .unwrap()
            .to_owned();
        let task = s.wait_for_task(&id).await;
        assert_eq!(task["State"], "Success", "{}: {task}", s.backend);
    }
    s.inst.store.commits() - before
}

#[tokio::test]
async fn a_trivial_deployment_costs_a_few_commits_from_queue_to_done() {
    crate::not_on_host!(
        "the bound is what a step on the built-in worker costs; on a host each step leases a \
         hosted worker, which writes to the instance too (14.5 commits per deployment seen)"
    );
    on_both("queue_costs", |s| async move {
        let commits = deploy_and_count(&s).await;
        let per_deployment = commits as f64 / DEPLOYMENTS as f64;
        eprintln!(
            "{}: {commits} commits for {DEPLOYMENTS} deployments ({per_deployment:.1} each)",
            s.backend
        );
        let most = most_commits(s.backend);
        assert!(
            commits <= most * DEPLOYMENTS as u64,
            "{}: {DEPLOYMENTS} trivial deployments took {commits} commits, more than {most} each",
            s.backend
        );
        // The counter counts: the deploy calls alone commit.
        assert!(
            commits >= DEPLOYMENTS as u64,
            "{}: {commits} commits",
            s.backend
        );
    })
    .await;
}
