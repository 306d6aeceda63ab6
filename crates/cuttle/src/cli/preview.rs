//! `cuttle deploy --preview`: prints the plan a deployment would follow —
//! steps in order and parallel groups, where each runs, what is skipped and
//! why — without deploying.

use super::api::Api;
use anyhow::Context;
use reqwest::Method;
use serde::Deserialize;
use std::io::Write;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Identified {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Page {
    items: Vec<Named>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Named {
    id: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Preview {
    release_version: String,
    environment_name: String,
    allowed: bool,
    blocked_reason: Option<String>,
    steps: Vec<Step>,
    warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Step {
    number: usize,
    name: String,
    group: usize,
    condition_note: Option<String>,
    actions: Vec<Action>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Action {
    name: String,
    runs: bool,
    targets: Vec<String>,
    skip_reason: Option<String>,
}

/// Prints the preview of deploying `release` of `project` to each environment.
pub(crate) async fn run(
    api: &Api,
    space: &str,
    project: &str,
    release: &str,
    environments: &[String],
    out: &mut (dyn Write + Send),
) -> anyhow::Result<i32> {
    let found: Identified = api
        .send(api.request(
            Method::GET,
            &["api", space, "projects", project, "releases", release],
        ))
        .await
        .with_context(|| format!("finding release {release} of {project}"))?;
    for name in environments {
        let page: Page = api
            .send(
                api.request(Method::GET, &["api", space, "environments"])
                    .query(&[("name", name.as_str())]),
            )
            .await?;
        let Some(env) = page
            .items
            .into_iter()
            .find(|e| e.name.eq_ignore_ascii_case(name))
        else {
            anyhow::bail!("no environment is named {name:?}");
        };
        let p: Preview = api
            .send(api.request(
                Method::GET,
                &[
                    "api",
                    space,
                    "releases",
                    &found.id,
                    "deployments",
                    "preview",
                    &env.id,
                ],
            ))
            .await?;
        print_preview(&p, out)?;
    }
    Ok(0)
}

fn print_preview(p: &Preview, out: &mut (dyn Write + Send)) -> std::io::Result<()> {
    writeln!(
        out,
        "Deploying release {} to {} would run:",
        p.release_version, p.environment_name
    )?;
    let mut last_group = 0;
    for step in &p.steps {
        let joins = step.group == last_group;
        last_group = step.group;
        let marker = if joins {
            "  ∥ with the previous step"
        } else {
            ""
        };
        writeln!(out, "  Step {}: {}{marker}", step.number, step.name)?;
        if let Some(note) = &step.condition_note {
            writeln!(out, "      ({note})")?;
        }
        for a in &step.actions {
            if a.runs {
                writeln!(out, "      {} on {}", a.name, a.targets.join(", "))?;
            } else {
                let why = a.skip_reason.as_deref().unwrap_or("skipped");
                writeln!(out, "      {} skipped: {why}", a.name)?;
            }
        }
    }
    if !p.allowed {
        let why = p
            .blocked_reason
            .as_deref()
            .unwrap_or("the lifecycle does not allow it yet");
        writeln!(out, "  Not deployable now: {why}")?;
    }
    for w in &p.warnings {
        writeln!(out, "  Warning: {w}")?;
    }
    Ok(())
}
