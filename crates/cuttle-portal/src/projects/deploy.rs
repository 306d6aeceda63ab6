//! Deploying a release: choose among the environments its lifecycle allows
//! now, answer its prompted variables, optionally preview the plan, then
//! queue the deployments (all or none) through the service the API uses.

use super::releases::{crumbs, release_href};
use super::{failed, project};
use crate::error::PortalError;
use crate::forms::{self, Problems};
use crate::layout::{self, Nav, ProjectTab};
use crate::session::{Viewer, CSRF_FIELD};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use cuttle_model::progression::Refusal;
use cuttle_model::space::DEFAULT_SPACE_ID;
use cuttle_model::{Environment, Project, Release, Variable};
use cuttle_service::deployments::{self as svc, NewDeployment};
use cuttle_service::preview::{preview_deployment, DeploymentPreview};
use cuttle_service::progression;
use cuttle_service::releases::find_release;
use cuttle_service::resources::list;
use cuttle_service::Instance;
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The prefix of the fields carrying prompted variables' values, followed
/// by the variable's id (as the API's `FormValues` keys them).
const PROMPT_PREFIX: &str = "Prompt:";

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/projects/{id}/releases/{version}/deploy",
        get(page).post(submit),
    )
}

/// What the page shows besides the form's own values.
struct Context {
    project: Project,
    release: Release,
    environments: Vec<Environment>,
    /// The environments the lifecycle allows now, in sort order.
    allowed: Vec<String>,
    /// Why each other lifecycle environment is not allowed yet.
    refused: Vec<(String, String)>,
    prompts: Vec<Variable>,
}

async fn context(inst: &Instance, id: &str, version: &str) -> Result<Context, PortalError> {
    let store = &inst.store;
    let project = project(inst, id).await?;
    let release = find_release(store, &project, version).await?;
    let evaluated = progression::evaluate(store, &release, &project).await?;
    let environments = list::<Environment>(store, &crate::default_space())
        .await?
        .items;
    let allowed = evaluated.progression.allowed();
    // Environments outside the lifecycle are not worth a line.
    let refused = environments
        .iter()
        .filter_map(|e| match evaluated.progression.check(&e.id) {
            Err(why @ Refusal::PhaseIncomplete { .. }) => Some((
                e.name.clone(),
                why.message(&release.version, &evaluated.lifecycle.name),
            )),
            _ => None,
        })
        .collect();
    let prompts = svc::prompted_variables(store, &release, &[]).await?;
    Ok(Context {
        project,
        release,
        environments,
        allowed,
        refused,
        prompts,
    })
}

/// The form as typed.
#[derive(Default)]
struct Typed {
    environments: Vec<String>,
    /// Values by variable id.
    prompts: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PageQuery {
    environment: Option<String>,
}

/// `GET /projects/{id}/releases/{version}/deploy`; `?environment=` ticks one.
async fn page(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path((id, version)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Response {
    match context(&inst, &id, &version).await {
        Ok(c) => {
            let typed = Typed {
                environments: q.environment.into_iter().collect(),
                prompts: BTreeMap::new(),
            };
            view(&viewer, &c, &typed, &Problems::none(), &[]).into_response()
        }
        Err(e) => failed(e, &format!("/projects/{id}/releases")),
    }
}

/// `POST /projects/{id}/releases/{version}/deploy`: `action=preview` shows
/// the plan, anything else deploys.
async fn submit(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path((id, version)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let back = format!("/projects/{id}/releases/{version}");
    let csrf = fields
        .iter()
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.as_str());
    if let Err(e) = viewer.check_csrf(csrf) {
        return e.page(Some(&back));
    }
    let c = match context(&inst, &id, &version).await {
        Ok(c) => c,
        Err(e) => return failed(e, &back),
    };
    let typed = typed(&fields);
    let preview = fields.iter().any(|(k, v)| k == "action" && v == "preview");
    if typed.environments.is_empty() {
        let mut problems = Problems::none();
        problems.on("EnvironmentId", "Choose at least one environment");
        return (
            StatusCode::BAD_REQUEST,
            view(&viewer, &c, &typed, &problems, &[]),
        )
            .into_response();
    }
    if preview {
        return show_preview(&inst, &viewer, &c, &typed, &back).await;
    }
    deploy(&inst, &viewer, &c, &typed, &back).await
}

fn typed(fields: &[(String, String)]) -> Typed {
    let mut t = Typed::default();
    for (k, v) in fields {
        if k == "EnvironmentId" && !v.is_empty() && !t.environments.contains(v) {
            t.environments.push(v.clone());
        } else if let Some(var) = k.strip_prefix(PROMPT_PREFIX) {
            t.prompts.insert(var.to_owned(), v.clone());
        }
    }
    t
}

async fn show_preview(
    inst: &Instance,
    viewer: &Viewer,
    c: &Context,
    typed: &Typed,
    back: &str,
) -> Response {
    let mut plans = vec![];
    for e in &typed.environments {
        match preview_deployment(&inst.store, DEFAULT_SPACE_ID, &c.release.id, e).await {
            Ok(p) => plans.push(p),
            Err(err) => return show_refusal(err, viewer, c, typed, &plans, back),
        }
    }
    view(viewer, c, typed, &Problems::none(), &plans).into_response()
}

async fn deploy(
    inst: &Instance,
    viewer: &Viewer,
    c: &Context,
    typed: &Typed,
    back: &str,
) -> Response {
    let new = typed
        .environments
        .iter()
        .map(|e| {
            let here = std::slice::from_ref(e);
            let form_values = typed
                .prompts
                .iter()
                // A browser sends every input; an empty one means "not
                // given", so a prompt's default still applies. Only the
                // prompts that apply there: the service refuses others.
                .filter(|(k, v)| {
                    !v.is_empty()
                        && c.prompts
                            .iter()
                            .any(|a| &a.id == *k && svc::prompt_applies(a, here))
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            NewDeployment {
                release_id: c.release.id.clone(),
                environment_id: e.clone(),
                project_id: Some(c.project.id.clone()),
                form_values,
                ..Default::default()
            }
        })
        .collect();
    match svc::create_deployments(inst, &viewer.actor, DEFAULT_SPACE_ID, new).await {
        Ok(done) => match done.as_slice() {
            [(_, task)] => Redirect::to(&format!("/tasks/{}", task.id)).into_response(),
            _ => Redirect::to(back).into_response(),
        },
        Err(err) => show_refusal(err, viewer, c, typed, &[], back),
    }
}

/// The form again with the service's reason a preview or deployment was
/// refused, or an error page when the reason is not about the form.
fn show_refusal(
    err: impl Into<PortalError>,
    viewer: &Viewer,
    c: &Context,
    typed: &Typed,
    plans: &[DeploymentPreview],
    back: &str,
) -> Response {
    match Problems::from_error(err, environment_field) {
        Ok((status, problems)) => {
            (status, view(viewer, c, typed, &problems, plans)).into_response()
        }
        Err(err) => err.page(Some(back)),
    }
}

/// The field of the deploy form a service message is about.
fn environment_field(message: &str) -> Option<&'static str> {
    let about_environment = message.starts_with("EnvironmentId")
        || message.starts_with("The environment")
        || message.starts_with("The lifecycle")
        || (message.starts_with("Release ") && message.contains("cannot be deployed"));
    let about_prompt = message.starts_with("The prompted variable") || message.contains("prompted");
    if about_environment {
        Some("EnvironmentId")
    } else if about_prompt {
        Some("Prompts")
    } else {
        None
    }
}

fn view(
    viewer: &Viewer,
    c: &Context,
    typed: &Typed,
    problems: &Problems,
    plans: &[DeploymentPreview],
) -> Markup {
    let p = &c.project;
    let r = &c.release;
    let release_link = html! { a href=(release_href(p, &r.version)) { (r.version) } " / Deploy" };
    let body = html! {
        (layout::project_head(p, ProjectTab::Releases, crumbs(p, Some(release_link))))
        section.panel.deploy-form aria-labelledby="deploy-title" {
            h2 #deploy-title { "Deploy release " (r.version) }
            form method="post" action=(format!("{}/deploy", release_href(p, &r.version))) {
                (forms::csrf(viewer.csrf()))
                (problems.summary())
                (environment_choices(c, typed, problems))
                (prompt_inputs(c, typed, problems))
                div.form-actions {
                    button #preview-deploy type="submit" name="action" value="preview" { "Preview" }
                    button.primary #deploy type="submit" name="action" value="deploy" { "Deploy" }
                    a href=(release_href(p, &r.version)) { "Cancel" }
                }
            }
        }
        @for plan in plans { (plan_view(plan)) }
    };
    layout::page(
        viewer,
        &format!("Deploy {} {}", p.name, r.version),
        Nav::Projects,
        body,
    )
}

fn environment_choices(c: &Context, typed: &Typed, problems: &Problems) -> Markup {
    let invalid = problems.has("EnvironmentId");
    html! {
        fieldset.environments.field.invalid[invalid]
            aria-describedby=[invalid.then_some("deploy-env-error")] {
            legend { "Environments" }
            @if c.allowed.is_empty() {
                p.muted { "The lifecycle allows no environment for this release now." }
            }
            @for e in c.environments.iter().filter(|e| c.allowed.contains(&e.id)) {
                @let id = format!("deploy-env-{}", e.id);
                div.check {
                    input #(id) type="checkbox" name="EnvironmentId" value=(e.id)
                        checked[typed.environments.contains(&e.id)];
                    label for=(id) { (e.name) }
                }
            }
            @if !c.refused.is_empty() {
                ul.refused {
                    @for (name, why) in &c.refused {
                        li.muted { strong { (name) } ": " (why) }
                    }
                }
            }
            (problems.under("deploy-env", "EnvironmentId"))
        }
    }
}

fn prompt_inputs(c: &Context, typed: &Typed, problems: &Problems) -> Markup {
    html! {
        @if !c.prompts.is_empty() {
            fieldset.prompts {
                legend { "Prompted variables" }
                @for v in &c.prompts {
                    (prompt_input(v, typed))
                }
                (problems.under("prompts", "Prompts"))
            }
        }
    }
}

fn prompt_input(v: &Variable, typed: &Typed) -> Markup {
    let Some(prompt) = &v.prompt else {
        return html! {};
    };
    let id = format!("prompt-{}", v.id);
    let label = if prompt.label.is_empty() {
        &v.name
    } else {
        &prompt.label
    };
    // A secret typed once is not sent back into the page.
    let value = if v.sensitive() {
        ""
    } else {
        typed
            .prompts
            .get(&v.id)
            .map(String::as_str)
            .or(v.value.as_deref())
            .unwrap_or_default()
    };
    html! {
        div.field {
            label for=(id) {
                (label)
                @if prompt.required { " " span.tag { "required" } }
            }
            input #(id) type=(if v.sensitive() { "password" } else { "text" })
                name=(format!("{PROMPT_PREFIX}{}", v.id)) value=(value)
                aria-describedby=[(!prompt.description.is_empty()).then(|| format!("{id}-hint"))];
            @if !prompt.description.is_empty() {
                p.hint id=(format!("{id}-hint")) { (prompt.description) }
            }
        }
    }
}

fn plan_view(plan: &DeploymentPreview) -> Markup {
    html! {
        section.panel.plan aria-labelledby=(format!("plan-{}", plan.environment_id)) {
            h3 #(format!("plan-{}", plan.environment_id)) { "Plan for " (plan.environment_name) }
            @if let Some(why) = &plan.blocked_reason { div.alert role="alert" { (why) } }
            @for w in &plan.warnings { p.plan-warning { (w) } }
            @if plan.steps.is_empty() {
                p.muted { "The release's process has no steps." }
            }
            ol.plan-steps {
                @for s in &plan.steps {
                    li {
                        span.step-name { (s.number) ". " (s.name) }
                        @if let Some(n) = &s.condition_note { " " span.muted { "(" (n) ")" } }
                        ul.plan-actions {
                            @for a in &s.actions {
                                li.skipped[!a.runs] {
                                    (a.name)
                                    @if a.runs {
                                        span.muted { " runs on " (a.targets.join(", ")) }
                                    } @else {
                                        " " span.tag { "skipped" }
                                        @if let Some(why) = &a.skip_reason { " " span.muted { (why) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
