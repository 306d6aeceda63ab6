//! Deployment targets and workers: the machines running the Cuttle agent,
//! with their health, how they are reached and when they were last seen;
//! health checks queued through `tasks::queue_health` (as `POST /api/tasks`
//! with `Name: Health` does); and the `cuttle agent` commands that add a
//! new one, filled with this server's address. No API key is ever put in
//! the page: the commands carry a placeholder and point to where keys are
//! made.

use super::{head, health_badge, page, shell_word, CsrfOnly, Tab};
use crate::error::PortalError;
use crate::forms;
use crate::layout;
use crate::session::{self, Viewer};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use cuttle_model::machine::CommunicationStyle;
use cuttle_model::space::DEFAULT_SPACE_ID;
use cuttle_model::{Endpoint, Environment, Timestamp, WorkerPool};
use cuttle_service::machines::{self, MachineFilters};
use cuttle_service::{resources, workers, Instance};
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

const TARGETS: &str = "/infrastructure/targets";
const WORKERS: &str = "/infrastructure/workers";
const API_KEY_PLACEHOLDER: &str = "API-YOUR-API-KEY";
const DEFAULT_ROLE: &str = "web-server";

/// What the person chose for the registration commands (a GET form, so
/// the commands update without any script).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CommandQuery {
    environment: Option<String>,
    role: Option<String>,
    pool: Option<String>,
}

/// `GET /infrastructure/targets`
pub async fn targets(
    State(inst): State<AppState>,
    viewer: Viewer,
    parts: Parts,
    Query(q): Query<CommandQuery>,
) -> Result<Markup, PortalError> {
    let mut machines = machines::list_machines(
        &inst.store,
        crate::default_space(),
        &MachineFilters::default(),
    )
    .await?;
    machines.retain(|m| viewer.sees_machine(m));
    // In their order: the store lists them by it.
    let mut environments = resources::list::<Environment>(&inst.store, &crate::default_space())
        .await?
        .items;
    environments.retain(|e| viewer.sees_environment(&e.id));
    let env_names: HashMap<&str, &str> = environments
        .iter()
        .map(|e| (e.id.as_str(), e.name.as_str()))
        .collect();
    let now = Timestamp::now();
    let actions = html! {
        @if !machines.is_empty() {
            form.inline method="post" action=(format!("{TARGETS}/check-health")) {
                (forms::csrf(viewer.csrf()))
                button.primary #check-health type="submit" { "Check health" }
            }
        }
        a.button href="#add-target" { "Add a deployment target" }
    };
    let body = html! {
        (head(Tab::Targets, "Deployment targets",
            "Machines running the Cuttle agent that deployments run on, chosen by environment and role.",
            actions))
        @if machines.is_empty() {
            div.panel.empty {
                h2 { "No deployment targets yet" }
                p { "Install the Cuttle agent on a machine and register it with the commands below." }
            }
        } @else {
            div.table-wrap {
                table.machines #targets {
                    thead {
                        tr {
                            th scope="col" { "Name" }
                            th scope="col" { "Health" }
                            th scope="col" { "Environments" }
                            th scope="col" { "Roles" }
                            th scope="col" { "Communication" }
                            th scope="col" { "Agent" }
                            th scope="col" { "Last seen" }
                            th scope="col" { span.sr-only { "Actions" } }
                        }
                    }
                    tbody {
                        @for m in &machines {
                            tr data-id=(m.id) {
                                td { (machine_name(&m.name, m.is_disabled, &m.status_summary)) }
                                td { (health_badge(m.health_status)) }
                                td.env-names {
                                    @for (i, e) in m.environment_ids.iter().enumerate() {
                                        @if i > 0 { ", " }
                                        (env_names.get(e.as_str()).copied().unwrap_or(e))
                                    }
                                }
                                td { ul.chips { @for r in &m.roles { li.chip { (r) } } } }
                                td { (communication(&m.endpoint)) }
                                td { (agent(&m.agent_version, &m.operating_system, &m.architecture)) }
                                td { (last_seen(m.last_seen, now)) }
                                td.row-actions {
                                    (check_one(&viewer, &format!("{TARGETS}/{}/check-health", m.id), &m.name))
                                }
                            }
                        }
                    }
                }
            }
        }
        (add_target(&inst, &parts, &environments, &q))
    };
    Ok(page(&viewer, "Deployment targets", body))
}

/// `GET /infrastructure/workers`
pub async fn workers(
    State(inst): State<AppState>,
    viewer: Viewer,
    parts: Parts,
    Query(q): Query<CommandQuery>,
) -> Result<Markup, PortalError> {
    let workers = workers::list_workers(
        &inst.store,
        crate::default_space(),
        &MachineFilters::default(),
    )
    .await?;
    let mut pools = resources::list::<WorkerPool>(&inst.store, &crate::default_space())
        .await?
        .items;
    pools.sort_by_key(|p| (!p.is_default, p.sort_order, p.id.clone()));
    let pool_names: HashMap<&str, &str> = pools
        .iter()
        .map(|p| (p.id.as_str(), p.name.as_str()))
        .collect();
    let now = Timestamp::now();
    let actions = html! {
        @if !workers.is_empty() {
            form.inline method="post" action=(format!("{WORKERS}/check-health")) {
                (forms::csrf(viewer.csrf()))
                button.primary #check-workers-health type="submit" { "Check health" }
            }
        }
        a.button href="#add-worker" { "Add a worker" }
    };
    let body = html! {
        (head(Tab::Workers, "Workers",
            "Machines running the Cuttle agent that run steps not tied to a deployment target, grouped in pools.",
            actions))
        @if workers.is_empty() {
            div.panel.empty {
                h2 { "No workers yet" }
                p { "Steps run on the server's built-in worker until you add one with the commands below." }
            }
        } @else {
            div.table-wrap {
                table.machines #workers {
                    thead {
                        tr {
                            th scope="col" { "Name" }
                            th scope="col" { "Health" }
                            th scope="col" { "Worker pools" }
                            th scope="col" { "Communication" }
                            th scope="col" { "Agent" }
                            th scope="col" { "Last seen" }
                            th scope="col" { span.sr-only { "Actions" } }
                        }
                    }
                    tbody {
                        @for w in &workers {
                            tr data-id=(w.id) {
                                td { (machine_name(&w.name, w.is_disabled, &w.status_summary)) }
                                td { (health_badge(w.health_status)) }
                                td.pool-names {
                                    @for (i, p) in w.worker_pool_ids.iter().enumerate() {
                                        @if i > 0 { ", " }
                                        (pool_names.get(p.as_str()).copied().unwrap_or(p))
                                    }
                                }
                                td { (communication(&w.endpoint)) }
                                td { (agent(&w.agent_version, &w.operating_system, &w.architecture)) }
                                td { (last_seen(w.last_seen, now)) }
                                td.row-actions {
                                    (check_one(&viewer, &format!("{WORKERS}/{}/check-health", w.id), &w.name))
                                }
                            }
                        }
                    }
                }
            }
        }
        (add_worker(&inst, &parts, &pools, &q))
    };
    Ok(page(&viewer, "Workers", body))
}

fn machine_name(name: &str, disabled: bool, summary: &str) -> Markup {
    html! {
        span.machine-name { (name) }
        @if disabled { " " span.tag { "disabled" } }
        @if !summary.is_empty() { p.muted.summary-line { (summary) } }
    }
}

fn communication(e: &Endpoint) -> Markup {
    html! {
        @match e.communication_style {
            Some(CommunicationStyle::TentaclePassive) => {
                span.style { "Listening" } p.muted.uri { (e.uri) }
            },
            Some(CommunicationStyle::TentacleActive) => span.style { "Polling" },
            None => span.muted { "—" },
        }
    }
}

fn agent(version: &str, os: &str, arch: &str) -> Markup {
    html! {
        @if version.is_empty() {
            span.muted { "Not reported" }
        } @else {
            span.version { (version) }
            @if !os.is_empty() { p.muted.platform { (os) @if !arch.is_empty() { " / " (arch) } } }
        }
    }
}

fn last_seen(at: Option<Timestamp>, now: Timestamp) -> Markup {
    html! {
        @match at {
            Some(t) => (layout::when(t, now)),
            None => span.muted { "Never" },
        }
    }
}

fn check_one(viewer: &Viewer, action: &str, name: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (forms::csrf(viewer.csrf()))
            button.small type="submit" { "Check health" span.sr-only { " of " (name) } }
        }
    }
}

// ---- health checks ----

/// Queues a health check of these machines and shows its task.
async fn queue(
    inst: &Instance,
    viewer: &Viewer,
    csrf: Option<&str>,
    machine_ids: Vec<String>,
    worker_ids: Vec<String>,
    back: &str,
) -> Response {
    let done = async {
        viewer.check_csrf(csrf)?;
        let user = &viewer.actor;
        let task = cuttle_service::tasks::queue_health(
            inst,
            user,
            DEFAULT_SPACE_ID,
            machine_ids,
            worker_ids,
        )
        .await?;
        Ok::<_, PortalError>(task.id)
    };
    match done.await {
        Ok(id) => Redirect::to(&format!("/tasks/{id}")).into_response(),
        Err(e) => e.page(Some(back)),
    }
}

/// `POST /infrastructure/targets/check-health`: every deployment target.
pub async fn check_all(
    State(inst): State<AppState>,
    viewer: Viewer,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let ids =
        match machines::list_machines(&inst.store, crate::default_space(), &Default::default())
            .await
        {
            Ok(all) => all.into_iter().map(|m| m.id).collect(),
            Err(e) => return PortalError::from(e).page(Some(TARGETS)),
        };
    queue(&inst, &viewer, f.csrf.as_deref(), ids, vec![], TARGETS).await
}

/// `POST /infrastructure/workers/check-health`: every worker.
pub async fn check_workers(
    State(inst): State<AppState>,
    viewer: Viewer,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let ids = match workers::list_workers(&inst.store, crate::default_space(), &Default::default())
        .await
    {
        Ok(all) => all.into_iter().map(|w| w.id).collect(),
        Err(e) => return PortalError::from(e).page(Some(WORKERS)),
    };
    queue(&inst, &viewer, f.csrf.as_deref(), vec![], ids, WORKERS).await
}

/// `POST /infrastructure/targets/{id}/check-health`
pub async fn check_target(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    queue(&inst, &viewer, f.csrf.as_deref(), vec![id], vec![], TARGETS).await
}

/// `POST /infrastructure/workers/{id}/check-health`
pub async fn check_worker(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    queue(&inst, &viewer, f.csrf.as_deref(), vec![], vec![id], WORKERS).await
}

// ---- registration commands ----

/// This server's URL as the browser reached it. The Host header is the
/// requester's own, but it still must look like a host before it goes
/// into a command someone may paste into a shell.
fn server_url(parts: &Parts) -> String {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
        .unwrap_or("cuttle.example.com:8080");
    let scheme = if session::is_https(parts) {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

/// How the agent talks to the server.
#[derive(Clone, Copy)]
enum Mode {
    Listening,
    Polling,
}

/// The three commands that set up an agent: its identity, its
/// registration (with `what`: the target's environment and role, or the
/// worker's pool), and running it.
fn commands(server: &str, what: &[(&str, &str)], mode: Mode) -> String {
    let mut register = format!(
        "cuttle agent register --server {} \\\n    --api-key {API_KEY_PLACEHOLDER} \\\n    --name \"$(hostname)\"",
        shell_word(server)
    );
    for (flag, value) in what {
        register.push_str(&format!(" {flag}"));
        if !value.is_empty() {
            register.push_str(&format!(" {}", shell_word(value)));
        }
    }
    match mode {
        Mode::Listening => {
            register.push_str(" \\\n    --listen 0.0.0.0:10933 --public-host \"$(hostname -f)\"")
        }
        Mode::Polling => register.push_str(" \\\n    --polling"),
    }
    format!("cuttle agent init\n{register}\ncuttle agent run\n")
}

/// The listening and polling variants side by side, each with a Copy
/// button (shown by the page script; the text can be selected without it).
fn command_blocks(inst: &Instance, server: &str, what: &[(&str, &str)], prefix: &str) -> Markup {
    let polling_on = inst.polling_port.load(Ordering::Relaxed) != 0;
    let variants = [
        (
            Mode::Listening,
            "Listening",
            "The server connects to the agent on port 10933; the machine must accept that connection.",
        ),
        (
            Mode::Polling,
            "Polling",
            "The agent connects to the server and asks for work; nothing needs to reach the machine.",
        ),
    ];
    html! {
        div.commands {
            @for (mode, label, hint) in variants {
                @let id = format!("{prefix}-{}", label.to_ascii_lowercase());
                div.command {
                    div.command-head {
                        h3 #(format!("{id}-title")) { (label) }
                        button.small.copy type="button" data-copy=(id) hidden { "Copy" span.sr-only { " the " (label.to_ascii_lowercase()) " commands" } }
                    }
                    p.muted { (hint) }
                    @if matches!(mode, Mode::Polling) && !polling_on {
                        p.note { "This server is not accepting polling agents now (its polling endpoint is off)." }
                    }
                    pre.command-text aria-labelledby=(format!("{id}-title")) {
                        code #(id) { (commands(server, what, mode)) }
                    }
                }
            }
        }
    }
}

fn api_key_note() -> Markup {
    html! {
        p.hint {
            "Replace " code { (API_KEY_PLACEHOLDER) } " with an API key: create one under "
            a href="/configuration" { "Configuration" } ". Run the commands on the new machine, in the directory where the agent keeps its identity ("
            code { "./cuttle-agent" } ", or add " code { "--data-dir" } " to each)."
        }
    }
}

fn add_target(
    inst: &Instance,
    parts: &Parts,
    environments: &[Environment],
    q: &CommandQuery,
) -> Markup {
    let chosen = q
        .environment
        .as_deref()
        .and_then(|id| environments.iter().find(|e| e.id == id))
        .or(environments.first());
    let role = q
        .role
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or(DEFAULT_ROLE);
    html! {
        section.panel.add-agent #add-target aria-labelledby="add-target-title" {
            h2 #add-target-title { "Add a deployment target" }
            @match chosen {
                None => p {
                    "A deployment target belongs to at least one environment: "
                    a href="/infrastructure/environments" { "create an environment" } " first."
                },
                Some(env) => {
                    form.command-options method="get" action=(format!("{TARGETS}#add-target")) {
                        div.field {
                            label for="command-environment" { "Environment" }
                            select #command-environment name="environment" {
                                @for e in environments {
                                    option value=(e.id) selected[e.id == env.id] { (e.name) }
                                }
                            }
                        }
                        div.field {
                            label for="command-role" { "Role" }
                            input #command-role type="text" name="role" value=(role);
                        }
                        button type="submit" { "Update the commands" }
                    }
                    (api_key_note())
                    (command_blocks(inst, &server_url(parts),
                        &[("--environment", env.name.as_str()), ("--role", role)], "target-command"))
                    p.hint { "Repeat " code { "--environment" } " or " code { "--role" } " for more than one." }
                },
            }
        }
    }
}

fn add_worker(inst: &Instance, parts: &Parts, pools: &[WorkerPool], q: &CommandQuery) -> Markup {
    let chosen = q
        .pool
        .as_deref()
        .and_then(|id| pools.iter().find(|p| p.id == id))
        .or(pools.first());
    html! {
        section.panel.add-agent #add-worker aria-labelledby="add-worker-title" {
            h2 #add-worker-title { "Add a worker" }
            @match chosen {
                None => p {
                    "A worker belongs to a pool: "
                    a href="/infrastructure/worker-pools" { "create a worker pool" } " first."
                },
                Some(pool) => {
                    form.command-options method="get" action=(format!("{WORKERS}#add-worker")) {
                        div.field {
                            label for="command-pool" { "Worker pool" }
                            select #command-pool name="pool" {
                                @for p in pools {
                                    option value=(p.id) selected[p.id == pool.id] { (p.name) }
                                }
                            }
                        }
                        button type="submit" { "Update the commands" }
                    }
                    (api_key_note())
                    (command_blocks(inst, &server_url(parts),
                        &[("--worker", ""), ("--pool", pool.name.as_str())], "worker-command"))
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_commands() {
        let listening = commands(
            "http://10.0.0.5:8080",
            &[("--environment", "Dev Test"), ("--role", "web")],
            Mode::Listening,
        );
        assert_eq!(
            listening,
            "cuttle agent init\n\
             cuttle agent register --server http://10.0.0.5:8080 \\\n    \
             --api-key API-YOUR-API-KEY \\\n    \
             --name \"$(hostname)\" --environment 'Dev Test' --role web \\\n    \
             --listen 0.0.0.0:10933 --public-host \"$(hostname -f)\"\n\
             cuttle agent run\n"
        );
        let polling = commands(
            "http://h:8080",
            &[("--worker", ""), ("--pool", "Default Worker Pool")],
            Mode::Polling,
        );
        assert!(
            polling.contains("--worker --pool 'Default Worker Pool' \\\n    --polling\n"),
            "{polling}"
        );
    }
}
