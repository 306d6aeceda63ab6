//! The fixed part of the history, made through the API of a fresh server as a
//! person would make it: environments, a lifecycle that allows any of them,
//! projects with a one-step process and a first release, one real deployment
//! whose task every generated one copies, and a project whose step prints a
//! long log.

use super::SPACE;
use crate::portal::create_project;
use crate::Api;
use anyhow::{ensure, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub const PROJECTS: usize = 50;
pub const ENVIRONMENTS: usize = 20;
const GROUPS: usize = 5;
/// The version of each project's first release, made through the API.
pub const FIRST_RELEASE: &str = "0.0.1";
pub const CHATTY: &str = "Chatty";
pub const CHATTY_RELEASE: &str = "1.0.0";
/// How long one real deployment may take before the bench gives up.
const TASK_TIMEOUT: Duration = Duration::from_secs(900);
/// Polling one deployment that is timed end to end.
pub const FAST_POLL: Duration = Duration::from_millis(2);
/// Polling while many deployments or a long one run.
pub const SLOW_POLL: Duration = Duration::from_millis(20);

pub struct Fixture {
    pub user_id: String,
    pub username: String,
    /// Ids and names, in creation order.
    pub projects: Vec<(String, String)>,
    pub environments: Vec<(String, String)>,
    /// A real deployment's task: the first project's first release in the first environment.
    pub template_task: String,
}

pub async fn create(api: &Api<'_>, log_lines: u32) -> Result<Fixture> {
    let me = api.call(Method::GET, "/api/users/me", None).await?;
    let user_id = text(&me, "Id")?;
    let username = text(&me, "Username")?;

    let mut environments = vec![];
    for i in 1..=ENVIRONMENTS {
        let name = format!("Env {i:02}");
        let created = api
            .call(
                Method::POST,
                &format!("/api/{SPACE}/environments"),
                Some(json!({ "Name": name })),
            )
            .await?;
        environments.push((text(&created, "Id")?, name));
    }
    let ids: Vec<&str> = environments.iter().map(|(id, _)| id.as_str()).collect();
    let lifecycle = api
        .call(
            Method::POST,
            &format!("/api/{SPACE}/lifecycles"),
            Some(json!({"Name": "Anywhere", "Phases": [
                {"Name": "All", "OptionalDeploymentTargets": ids}]})),
        )
        .await?;
    let lifecycle = text(&lifecycle, "Id")?;
    let mut groups = vec![];
    for g in 1..=GROUPS {
        let group = api
            .call(
                Method::POST,
                &format!("/api/{SPACE}/projectgroups"),
                Some(json!({ "Name": format!("Group {g}") })),
            )
            .await?;
        groups.push(text(&group, "Id")?);
    }
    let mut projects = vec![];
    for p in 0..PROJECTS {
        let name = format!("Service {:02}", p + 1);
        let id = create_project(api, &name, &groups[p % GROUPS], &lifecycle).await?;
        create_release(api, &name, FIRST_RELEASE).await?;
        projects.push((id, name));
    }

    // A step printing a long log, as fast as the shell can.
    let chatty = create_project(api, CHATTY, &groups[0], &lifecycle).await?;
    let step = json!({"Name": "Print", "Actions": [{"Name": "Print", "ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": chatty_script(log_lines),
            "Octopus.Action.Script.Syntax": "Bash"}}]});
    let process_path = format!("/api/{SPACE}/projects/{chatty}/deploymentprocesses");
    let process = api.call(Method::GET, &process_path, None).await?;
    api.call(
        Method::PUT,
        &process_path,
        Some(json!({"Version": process["Version"], "Steps": [step]})),
    )
    .await
    .context("could not give the Chatty project its step")?;
    create_release(api, CHATTY, CHATTY_RELEASE).await?;

    let task = queue(api, &projects[0].1, FIRST_RELEASE, &[&environments[0].1]).await?;
    let template_task = task.into_iter().next().context("no task was queued")?;
    wait_task(api, &template_task, FAST_POLL).await?;
    Ok(Fixture {
        user_id,
        username,
        projects,
        environments,
        template_task,
    })
}

/// The script of the Chatty project, and the floor's: `lines` short numbered lines.
pub fn chatty_script(lines: u32) -> String {
    format!("seq -f 'line %.0f of a long log' 1 {lines}")
}

async fn create_release(api: &Api<'_>, project: &str, version: &str) -> Result<()> {
    api.call(
        Method::POST,
        &format!("/api/{SPACE}/releases/create/v1"),
        Some(json!({"ProjectName": project, "ReleaseVersion": version})),
    )
    .await?;
    Ok(())
}

/// Deploys a release to environments in one call; returns the tasks' ids.
pub async fn queue(
    api: &Api<'_>,
    project: &str,
    version: &str,
    environments: &[&str],
) -> Result<Vec<String>> {
    let created = api
        .call(
            Method::POST,
            &format!("/api/{SPACE}/deployments/create/untenanted/v1"),
            Some(json!({"ProjectName": project, "ReleaseVersion": version,
                "EnvironmentNames": environments})),
        )
        .await?;
    created["DeploymentServerTasks"]
        .as_array()
        .context("no DeploymentServerTasks in the response")?
        .iter()
        .map(|t| {
            t["ServerTaskId"]
                .as_str()
                .map(str::to_owned)
                .context("a deployment without a ServerTaskId")
        })
        .collect()
}

/// Polls a task every `poll` until it completes; fails unless it succeeded.
/// Waits on many tasks poll slowly, so that the polling does not load the
/// server it measures.
pub async fn wait_task(api: &Api<'_>, id: &str, poll: Duration) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let task = api
            .call(Method::GET, &format!("/api/tasks/{id}"), None)
            .await?;
        if task["IsCompleted"] == true {
            ensure!(
                task["State"] == "Success",
                "task {id} ended {}: {}",
                task["State"],
                task["ErrorMessage"]
            );
            return Ok(());
        }
        ensure!(
            t0.elapsed() < TASK_TIMEOUT,
            "task {id} did not finish within {TASK_TIMEOUT:?}"
        );
        tokio::time::sleep(poll).await;
    }
}

fn text(v: &Value, field: &str) -> Result<String> {
    v[field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no {field} in {v}"))
}
