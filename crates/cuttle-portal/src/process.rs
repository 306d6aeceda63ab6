//! A project's deployment process: the list of its steps, with small forms
//! to move, disable, enable and delete one, and the form that adds or
//! edits a step (in [`step`]).
//!
//! Every change loads the process, changes the steps and saves them all
//! with `projects::update_process`, passing the version the person's page
//! was rendered from: a change someone else saved in between is refused
//! as a conflict and shown, never silently overwritten.

mod step;

use crate::error::PortalError;
use crate::forms::{self, Problems};
use crate::layout::{self, Nav, ProjectTab};
use crate::session::Viewer;
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use cuttle_model::interruption::MANUAL_ACTION_TYPE;
use cuttle_model::process::PACKAGE_ACTION_TYPE;
use cuttle_model::process::{PROP_CONDITION_EXPRESSION, PROP_RUN_ON_SERVER, SCRIPT_ACTION_TYPE};
use cuttle_model::space::DEFAULT_SPACE_ID;
use cuttle_model::{Action, DeploymentProcess, Project, Step};
use cuttle_service::projects::{self, ProcessUpdate};
use cuttle_service::{Instance, ServiceError};
use maud::{html, Markup};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/projects/{id}/process", get(page))
        .route("/projects/{id}/process/steps/new", get(step::new_form))
        .route("/projects/{id}/process/steps", post(step::create))
        .route(
            "/projects/{id}/process/steps/{step}",
            get(step::edit_form).post(step::update),
        )
        .route("/projects/{id}/process/steps/{step}/move", post(move_step))
        .route(
            "/projects/{id}/process/steps/{step}/disable",
            post(disable_step),
        )
        .route(
            "/projects/{id}/process/steps/{step}/enable",
            post(enable_step),
        )
        .route(
            "/projects/{id}/process/steps/{step}/delete",
            post(delete_step),
        )
}

/// What a step does, read from its first action's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Script,
    Package,
    Manual,
    /// An action type the editor has no form for; its common settings can
    /// still be edited, the rest is kept as it is.
    Other,
}

impl Kind {
    /// The kinds a new step can be, by their `?kind=` value.
    fn parse(key: &str) -> Option<Kind> {
        match key {
            "script" => Some(Kind::Script),
            "package" => Some(Kind::Package),
            "manual" => Some(Kind::Manual),
            _ => None,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Kind::Script => "script",
            Kind::Package => "package",
            Kind::Manual => "manual",
            Kind::Other => "other",
        }
    }

    fn of(step: &Step) -> Kind {
        match step.actions.first().map(|a| a.action_type.as_str()) {
            Some(SCRIPT_ACTION_TYPE) => Kind::Script,
            Some(PACKAGE_ACTION_TYPE) => Kind::Package,
            Some(MANUAL_ACTION_TYPE) => Kind::Manual,
            _ => Kind::Other,
        }
    }

    fn action_type(self) -> &'static str {
        match self {
            Kind::Script | Kind::Other => SCRIPT_ACTION_TYPE,
            Kind::Package => PACKAGE_ACTION_TYPE,
            Kind::Manual => MANUAL_ACTION_TYPE,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Script => "Run a script",
            Kind::Package => "Deploy a package",
            Kind::Manual => "Manual intervention",
            Kind::Other => "Other action",
        }
    }
}

/// The project and its process, from the default space.
async fn load(inst: &Instance, id: &str) -> Result<(Project, DeploymentProcess), PortalError> {
    let project = projects::find_project(&inst.store, DEFAULT_SPACE_ID, id).await?;
    let process = projects::process_of_project(&inst.store, DEFAULT_SPACE_ID, &project.id).await?;
    Ok((project, process))
}

/// Saves `steps` as the process, provided it is still at `version`.
async fn save(
    inst: &Instance,
    viewer: &Viewer,
    process: &DeploymentProcess,
    version: i64,
    steps: Vec<Step>,
) -> Result<DeploymentProcess, ServiceError> {
    let update = ProcessUpdate {
        version: Some(version),
        steps,
    };
    projects::update_process(
        &inst.store,
        &viewer.actor,
        &process.space_id,
        &process.id,
        update,
    )
    .await
}

/// The `Version` a form carries. Without it a save could overwrite someone
/// else's change unnoticed, so a form lacking it is refused.
fn parse_version(raw: &str) -> Result<i64, PortalError> {
    raw.trim().parse().map_err(|_| {
        PortalError::BadRequest(
            "The form did not say which version of the process it was based on; reload the page and try again."
                .into(),
        )
    })
}

fn process_path(project_id: &str) -> String {
    format!("/projects/{project_id}/process")
}

/// A step is disabled when none of its actions runs.
fn is_disabled(step: &Step) -> bool {
    !step.actions.is_empty() && step.actions.iter().all(|a| a.is_disabled)
}

fn runs_on_server(action: &Action) -> bool {
    action
        .property(PROP_RUN_ON_SERVER)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// `GET /projects/{id}/process`
async fn page(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Markup, PortalError> {
    let (project, process) = load(&inst, &id).await?;
    Ok(list_page(&viewer, &project, &process, &Problems::none()))
}

fn list_page(
    viewer: &Viewer,
    project: &Project,
    process: &DeploymentProcess,
    problems: &Problems,
) -> Markup {
    let new_step = |kind: &str| format!("/projects/{}/process/steps/new?kind={kind}", project.id);
    let body = html! {
        (layout::project_head(project, ProjectTab::Process, html! {}))
        (problems.summary())
        div.process-toolbar {
            h2 { "Deployment process" }
            div.add-step {
                span.muted { "Add a step:" }
                a.button.primary href=(new_step("script")) { "Run a script" }
                a.button href=(new_step("package")) { "Deploy a package" }
                a.button href=(new_step("manual")) { "Manual intervention" }
            }
        }
        @if process.steps.is_empty() {
            div.panel.empty {
                h2 { "No steps yet" }
                p { "A process is the list of steps a deployment runs, in order. Add the first one above." }
            }
        } @else {
            ol.process-steps {
                @for (i, s) in process.steps.iter().enumerate() {
                    (step_card(project, process, i, s, viewer.csrf()))
                }
            }
        }
    };
    layout::page(
        viewer,
        &format!("{} · Process", project.name),
        Nav::Projects,
        body,
    )
}

fn step_card(
    project: &Project,
    process: &DeploymentProcess,
    index: usize,
    step: &Step,
    csrf: &str,
) -> Markup {
    let disabled = is_disabled(step);
    let base = format!("/projects/{}/process/steps/{}", project.id, step.id);
    let last = index + 1 == process.steps.len();
    let version = process.version.to_string();
    let hidden = html! {
        (forms::csrf(csrf))
        input type="hidden" name="Version" value=(version);
    };
    html! {
        li.step.disabled[disabled] data-step=(step.id) {
            span.step-number { (index + 1) }
            div.step-body {
                div.step-title {
                    a.step-name href=(base) { (step.name) }
                    @if disabled { span.badge.state-canceled { "Disabled" } }
                    @if index > 0 && step.start_trigger == "StartWithPrevious" {
                        span.badge.state-running.with-previous { "Runs with previous" }
                    }
                }
                dl.step-facts {
                    div { dt { "Does" } dd { (Kind::of(step).label()) } }
                    div { dt { "Runs" } dd { (placement(step)) } }
                    div { dt { "When" } dd { (condition_text(step)) } }
                }
                @if step.actions.len() > 1 {
                    p.muted.more-actions { (step.actions.len()) " actions" }
                }
            }
            div.step-actions {
                a.button.small href=(base) aria-label=(format!("Edit step {}", step.name)) { "Edit" }
                form method="post" action=(format!("{base}/move")) {
                    (hidden)
                    button.small.move-up type="submit" name="Direction" value="up" disabled[index == 0]
                        aria-label=(format!("Move {} up", step.name)) { "↑ Up" }
                    button.small.move-down type="submit" name="Direction" value="down" disabled[last]
                        aria-label=(format!("Move {} down", step.name)) { "↓ Down" }
                }
                @if disabled {
                    form method="post" action=(format!("{base}/enable")) {
                        (hidden)
                        button.small.enable-step type="submit" { "Enable" }
                    }
                } @else {
                    form method="post" action=(format!("{base}/disable")) {
                        (hidden)
                        button.small.disable-step type="submit" { "Disable" }
                    }
                }
                form method="post" action=(format!("{base}/delete")) {
                    (hidden)
                    button.small.danger.delete-step type="submit"
                        data-confirm=(format!("Delete the step '{}'? This cannot be undone.", step.name)) {
                        "Delete"
                    }
                }
            }
        }
    }
}

/// Where a step runs: on the targets with its roles, or not on targets.
fn placement(step: &Step) -> Markup {
    let roles = step.target_roles();
    let on_server = step.actions.first().is_some_and(runs_on_server);
    html! {
        @if roles.is_empty() || on_server {
            span.muted { "On the server or a worker" }
        } @else {
            span.chips {
                "Targets with "
                @for r in &roles { span.chip { (r) } " " }
            }
        }
    }
}

fn condition_text(step: &Step) -> Markup {
    html! {
        @match step.condition.as_str() {
            "Failure" => "Only when a previous step failed",
            "Always" => "Always",
            "Variable" => {
                "When " code { (step.property(PROP_CONDITION_EXPRESSION).unwrap_or_default()) } " is true"
            },
            _ => "When every previous step succeeded",
        }
    }
}

/// The fields every small form on the list posts.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ListForm {
    csrf: Option<String>,
    #[serde(rename = "Version")]
    version: String,
    #[serde(rename = "Direction")]
    direction: String,
}

/// A change to the list of steps, applied to the current steps.
enum ListChange {
    Move { up: bool },
    Disable(bool),
    Delete,
}

impl ListChange {
    fn apply(&self, steps: &mut Vec<Step>, index: usize) {
        match self {
            ListChange::Move { up: true } if index > 0 => steps.swap(index, index - 1),
            ListChange::Move { up: false } if index + 1 < steps.len() => {
                steps.swap(index, index + 1)
            }
            ListChange::Move { .. } => {}
            ListChange::Disable(off) => {
                for a in &mut steps[index].actions {
                    a.is_disabled = *off;
                }
            }
            ListChange::Delete => {
                steps.remove(index);
            }
        }
    }
}

/// `POST …/steps/{step}/move` with `Direction` up or down.
async fn move_step(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path((id, step)): Path<(String, String)>,
    Form(f): Form<ListForm>,
) -> Response {
    let change = match f.direction.as_str() {
        "up" => Ok(ListChange::Move { up: true }),
        "down" => Ok(ListChange::Move { up: false }),
        _ => Err(PortalError::BadRequest(
            "Say which way to move the step: up or down".into(),
        )),
    };
    match change {
        Ok(c) => change_list(&inst, &viewer, &id, &step, &f, c).await,
        Err(e) => e.page(Some(&process_path(&id))),
    }
}

/// `POST …/steps/{step}/disable`
async fn disable_step(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path((id, step)): Path<(String, String)>,
    Form(f): Form<ListForm>,
) -> Response {
    change_list(&inst, &viewer, &id, &step, &f, ListChange::Disable(true)).await
}

/// `POST …/steps/{step}/enable`
async fn enable_step(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path((id, step)): Path<(String, String)>,
    Form(f): Form<ListForm>,
) -> Response {
    change_list(&inst, &viewer, &id, &step, &f, ListChange::Disable(false)).await
}

/// `POST …/steps/{step}/delete`
async fn delete_step(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path((id, step)): Path<(String, String)>,
    Form(f): Form<ListForm>,
) -> Response {
    change_list(&inst, &viewer, &id, &step, &f, ListChange::Delete).await
}

/// Applies `change` to the step and saves. A refused save (someone else
/// changed the process, or the result breaks a rule) shows the list as it
/// now stands with the reason above it.
async fn change_list(
    inst: &Instance,
    viewer: &Viewer,
    id: &str,
    step_id: &str,
    f: &ListForm,
    change: ListChange,
) -> Response {
    let back = process_path(id);
    let attempt = async {
        viewer.check_csrf(f.csrf.as_deref())?;
        let version = parse_version(&f.version)?;
        let (project, process) = load(inst, id).await?;
        let mut steps = process.steps.clone();
        let index = step_index(&steps, step_id)?;
        change.apply(&mut steps, index);
        match save(inst, viewer, &process, version, steps).await {
            Ok(_) => Ok::<_, PortalError>(None),
            Err(e) => {
                let (status, problems) = Problems::from_error(e, |_| None)?;
                let (_, now) = load(inst, id).await?;
                Ok(Some((status, list_page(viewer, &project, &now, &problems))))
            }
        }
    };
    match attempt.await {
        Ok(None) => Redirect::to(&back).into_response(),
        Ok(Some((status, page))) => (status, page).into_response(),
        Err(e) => e.page(Some(&back)),
    }
}

fn step_index(steps: &[Step], step_id: &str) -> Result<usize, PortalError> {
    steps.iter().position(|s| s.id == step_id).ok_or_else(|| {
        ServiceError::NotFound(format!(
            "The step '{step_id}' is not in the process; someone may have deleted it. Reload the process to see it as it is now."
        ))
        .into()
    })
}
