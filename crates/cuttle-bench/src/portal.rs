//! Portal render times on a busy server: a real server is filled through
//! its API with projects in groups, environments, releases and real
//! deployments (each runs a one-line script), then every main portal page
//! is fetched repeatedly by a signed-in browser session and timed from
//! request to the last byte.

use super::{ms, Api, Server, Stats};
use anyhow::{ensure, Context, Result};
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Client, Method, StatusCode};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(clap::Args)]
pub struct PortalArgs {
    /// Projects, spread over five project groups.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    projects: u32,
    /// Environments every release is deployed to.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    environments: u32,
    /// Deployments in all (rounded down to whole releases of every project).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    deployments: u32,
    /// Timed fetches of each page.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    samples: u32,
}

const GROUPS: u32 = 5;
/// Deployment requests in flight while filling the server.
const IN_FLIGHT: usize = 8;
const PASSWORD: &str = "bench-password";

pub async fn run(cuttle: &Path, http: &Client, args: &PortalArgs) -> Result<()> {
    let data = tempfile::Builder::new().prefix("cuttle-bench-").tempdir()?;
    let (server, _) = Server::start(
        cuttle,
        data.path(),
        None,
        http,
        &["--max-concurrent-tasks", "8"],
    )
    .await?;
    let api = Api {
        http,
        base: &server.base,
    };
    let releases = (args.deployments / (args.projects * args.environments)).max(1);
    let total = releases * args.projects * args.environments;
    println!(
        "cuttle-bench portal: {} projects in {GROUPS} groups × {} environments, {releases} releases each, \
         {total} deployments, SQLite; {} fetches per page",
        args.projects, args.environments, args.samples
    );

    let environments: Vec<String> = (1..=args.environments)
        .map(|i| format!("Env {i:02}"))
        .collect();
    let mut environment_ids = vec![];
    for e in &environments {
        let created = api
            .call(
                Method::POST,
                "/api/Spaces-1/environments",
                Some(json!({ "Name": e })),
            )
            .await?;
        environment_ids.push(created["Id"].clone());
    }
    // One phase holding every environment: each release goes everywhere at once.
    let lifecycle = api
        .call(
            Method::POST,
            "/api/Spaces-1/lifecycles",
            Some(json!({"Name": "Anywhere", "Phases": [
                {"Name": "All", "OptionalDeploymentTargets": environment_ids}]})),
        )
        .await?;
    let lifecycle = lifecycle["Id"].as_str().context("no lifecycle Id")?;
    let mut groups = vec![];
    for g in 1..=GROUPS {
        let group = api
            .call(
                Method::POST,
                "/api/Spaces-1/projectgroups",
                Some(json!({ "Name": format!("Group {g}") })),
            )
            .await?;
        groups.push(group["Id"].as_str().context("no group Id")?.to_owned());
    }
    let mut projects = vec![];
    for p in 0..args.projects {
        let name = format!("Service {:02}", p + 1);
        let group = &groups[(p % GROUPS) as usize];
        let id = create_project(&api, &name, group, lifecycle).await?;
        projects.push((id, name));
    }

    let filled = Instant::now();
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    for r in 1..=releases {
        let version = format!("1.0.{r}");
        let mut queued = tokio::task::JoinSet::new();
        for (_, name) in &projects {
            api.call(
                Method::POST,
                "/api/Spaces-1/releases/create/v1",
                Some(json!({"ProjectName": name, "ReleaseVersion": version})),
            )
            .await?;
            for env in &environments {
                let permit = gate.clone().acquire_owned().await?;
                let (http, base) = (http.clone(), server.base.clone());
                let body = json!({"ProjectName": name, "ReleaseVersion": version, "EnvironmentNames": [env]});
                queued.spawn(async move {
                    let api = Api {
                        http: &http,
                        base: &base,
                    };
                    let done = api
                        .call(
                            Method::POST,
                            "/api/Spaces-1/deployments/create/untenanted/v1",
                            Some(body),
                        )
                        .await;
                    drop(permit);
                    done.map(|_| ())
                });
            }
        }
        while let Some(done) = queued.join_next().await {
            done??;
        }
        wait_idle(&api).await?;
        eprint!(
            "\r  {} of {total} deployments done",
            r * args.projects * args.environments
        );
    }
    eprintln!();
    let failed = api
        .call(Method::GET, "/api/tasks?states=Failed&take=1", None)
        .await?;
    ensure!(
        failed["TotalResults"] == 0,
        "some deployments failed: {failed}"
    );
    println!(
        "filled in {:.1} s ({:.0} deployments/s)",
        filled.elapsed().as_secs_f64(),
        f64::from(total) / filled.elapsed().as_secs_f64()
    );

    let browser = Browser::sign_in(&server.base).await?;
    let (first, first_name) = &projects[0];
    let task = api
        .call(
            Method::GET,
            &format!("/api/tasks?project={first}&take=1"),
            None,
        )
        .await?;
    let task_id = task["Items"][0]["Id"].as_str().context("no task")?;
    let last = format!("1.0.{releases}");
    let pages = [
        "/".to_owned(),
        "/projects".to_owned(),
        format!("/projects/{first}"),
        format!("/projects/{first}/process"),
        format!("/projects/{first}/variables"),
        format!("/projects/{first}/releases"),
        format!("/projects/{first}/releases/{last}"),
        format!("/projects/{first}/releases/{last}/deploy"),
        "/tasks".to_owned(),
        format!("/tasks?state=Success&project={first}"),
        format!("/tasks/{task_id}"),
        "/infrastructure/environments".to_owned(),
        "/infrastructure/targets".to_owned(),
        "/library".to_owned(),
        "/configuration/users".to_owned(),
    ];
    println!(
        "{:<44} {:>12} {:>10} {:>10}",
        "page", "median", "p95", "size"
    );
    for page in &pages {
        let bytes = browser.get(page).await?;
        let mut times = vec![];
        for _ in 0..args.samples {
            let t0 = Instant::now();
            browser.get(page).await?;
            times.push(ms(t0.elapsed()));
        }
        let s = Stats::of(times);
        println!(
            "{:<44} {:>9.1} ms {:>7.1} ms {:>7} KiB",
            page.replace(first.as_str(), first_name.as_str()),
            s.median,
            s.p95,
            bytes / 1024
        );
    }
    drop(server);
    Ok(())
}

pub(crate) async fn create_project(
    api: &Api<'_>,
    name: &str,
    group: &str,
    lifecycle: &str,
) -> Result<String> {
    let project = api
        .call(
            Method::POST,
            "/api/Spaces-1/projects",
            Some(json!({"Name": name, "ProjectGroupId": group, "LifecycleId": lifecycle})),
        )
        .await?;
    let id = project["Id"].as_str().context("the project has no Id")?;
    let step = json!({"Name": "Roll out", "Actions": [{"Name": "Roll out", "ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": "echo \"rolled out #{Octopus.Release.Number}\"",
            "Octopus.Action.Script.Syntax": "Bash"}}]});
    api.call(
        Method::PUT,
        &format!("/api/Spaces-1/projects/{id}/deploymentprocesses"),
        Some(json!({"Version": 0, "Steps": [step]})),
    )
    .await?;
    Ok(id.to_owned())
}

/// Waits until no task is queued or running.
async fn wait_idle(api: &Api<'_>) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let busy = api
            .call(
                Method::GET,
                "/api/tasks?states=Queued,Executing,Cancelling&take=1",
                None,
            )
            .await?;
        if busy["TotalResults"] == 0 {
            return Ok(());
        }
        ensure!(
            t0.elapsed() < Duration::from_secs(900),
            "deployments still running after 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A signed-in portal session, as a browser holds one.
pub(crate) struct Browser {
    http: Client,
    base: String,
    cookie: String,
}

impl Browser {
    pub(crate) async fn sign_in(base: &str) -> Result<Browser> {
        Browser::sign_in_as(base, "admin", PASSWORD).await
    }

    pub(crate) async fn sign_in_as(base: &str, username: &str, password: &str) -> Result<Browser> {
        let http = Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?;
        let form = http.get(format!("{base}/signin")).send().await?;
        let signin = cookie(&form, "cuttle_signin").context("no sign-in cookie")?;
        let body = form.text().await?;
        let csrf = hidden_csrf(&body).context("no CSRF field on the sign-in form")?;
        let done = http
            .post(format!("{base}/signin"))
            .header(COOKIE, format!("cuttle_signin={signin}"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("next", "/"),
                ("username", username),
                ("password", password),
            ])
            .send()
            .await?;
        ensure!(
            done.status() == StatusCode::SEE_OTHER,
            "sign-in answered {}",
            done.status()
        );
        let session = cookie(&done, "cuttle_session").context("no session cookie")?;
        Ok(Browser {
            http,
            base: base.to_owned(),
            cookie: format!("cuttle_session={session}"),
        })
    }

    /// The session's `Cookie` header.
    pub(crate) fn cookie(&self) -> &str {
        &self.cookie
    }

    /// Fetches a page whole; returns its size.
    pub(crate) async fn get(&self, path: &str) -> Result<usize> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status();
        let body = resp.bytes().await?;
        ensure!(status == StatusCode::OK, "GET {path}: {status}");
        Ok(body.len())
    }
}

fn cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let first = v.to_str().ok()?.split(';').next()?;
        let (k, v) = first.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

fn hidden_csrf(html: &str) -> Option<String> {
    let marker = r#"name="csrf" value=""#;
    let rest = &html[html.find(marker)? + marker.len()..];
    Some(rest[..rest.find('"')?].to_owned())
}
