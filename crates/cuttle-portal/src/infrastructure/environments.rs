//! Environments in their promotion order, each with how many deployment
//! targets it has: create, move up or down, delete. The order is changed
//! through `sort_environments`, as `PUT /api/environments/sortorder` does;
//! deleting one the service refuses (targets still in it) shows its reason
//! above the list. An environment's own page changes its name, description
//! and guided-failure default, and lists the targets in it.

use super::{head, health_badge, name_field, page, tabs, CsrfOnly, Tab};
use crate::error::PortalError;
use crate::forms::{self, Problems};
use crate::session::Viewer;
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use cuttle_model::space::DEFAULT_SPACE_ID;
use cuttle_model::Permission;
use cuttle_model::{Environment, Machine};
use cuttle_service::machines::{self, MachineFilters};
use cuttle_service::resources as svc;
use cuttle_service::Instance;
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::HashMap;

const HERE: &str = "/infrastructure/environments";

/// The create form as posted (and as re-rendered after a mistake).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewEnvironment {
    csrf: Option<String>,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Description")]
    description: String,
}

/// The environments in order, and how many targets each has.
struct Listing {
    environments: Vec<Environment>,
    targets: HashMap<String, usize>,
}

/// The environments in their order (the store lists them by it).
async fn in_order(inst: &Instance) -> Result<Vec<Environment>, PortalError> {
    Ok(
        svc::list::<Environment>(&inst.store, &crate::default_space())
            .await?
            .items,
    )
}

/// The environments and their target counts, as far as `viewer` may see.
async fn load(inst: &Instance, viewer: &Viewer) -> Result<Listing, PortalError> {
    let mut environments = in_order(inst).await?;
    environments.retain(|e| viewer.sees_environment(&e.id));
    let mut machines = machines::list_machines(
        &inst.store,
        crate::default_space(),
        &MachineFilters::default(),
    )
    .await?;
    machines.retain(|m| viewer.sees_machine(m));
    let mut targets = HashMap::new();
    for id in machines.iter().flat_map(|m| &m.environment_ids) {
        *targets.entry(id.clone()).or_insert(0) += 1;
    }
    Ok(Listing {
        environments,
        targets,
    })
}

/// `GET /infrastructure/environments`
pub async fn list(State(inst): State<AppState>, viewer: Viewer) -> Result<Markup, PortalError> {
    let listing = load(&inst, &viewer).await?;
    Ok(render(
        &viewer,
        &listing,
        &NewEnvironment::default(),
        &Problems::none(),
        &Problems::none(),
    ))
}

/// `POST /infrastructure/environments`: creates one, at the end of the order.
pub async fn create(
    State(inst): State<AppState>,
    viewer: Viewer,
    Form(f): Form<NewEnvironment>,
) -> Response {
    let shown = async {
        viewer.check_csrf(f.csrf.as_deref())?;
        let env = Environment {
            name: f.name.clone(),
            description: f.description.clone(),
            ..Default::default()
        };
        let user = &viewer.actor;
        let Err(err) = svc::create_environment(&inst.store, user, DEFAULT_SPACE_ID, env).await
        else {
            return Ok(Redirect::to(HERE).into_response());
        };
        let (status, problems) = Problems::from_error(err, name_field)?;
        let listing = load(&inst, &viewer).await?;
        let page = render(&viewer, &listing, &f, &problems, &Problems::none());
        Ok::<_, PortalError>((status, page).into_response())
    };
    shown.await.unwrap_or_else(|e| e.page(Some(HERE)))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct MoveForm {
    csrf: Option<String>,
    direction: String,
}

/// `POST /infrastructure/environments/{id}/move`: swaps it with its
/// neighbour above (`direction=up`) or below (`down`).
pub async fn move_one(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(f): Form<MoveForm>,
) -> Response {
    let done = async {
        viewer.check_csrf(f.csrf.as_deref())?;
        let mut ids: Vec<String> = in_order(&inst).await?.into_iter().map(|e| e.id).collect();
        let at = ids
            .iter()
            .position(|e| *e == id)
            .ok_or_else(|| cuttle_service::ServiceError::not_found("environment", &id))?;
        let other = match f.direction.as_str() {
            "up" => at.checked_sub(1),
            "down" => Some(at + 1).filter(|o| *o < ids.len()),
            d => {
                return Err(PortalError::BadRequest(format!(
                    "'{d}' is not a direction; use up or down"
                )))
            }
        };
        // Already first (or last): nothing to change.
        if let Some(other) = other {
            ids.swap(at, other);
            let user = &viewer.actor;
            svc::sort_environments(&inst.store, user, DEFAULT_SPACE_ID, &ids).await?;
        }
        Ok::<_, PortalError>(())
    };
    match done.await {
        Ok(()) => Redirect::to(HERE).into_response(),
        Err(e) => e.page(Some(HERE)),
    }
}

/// `POST /infrastructure/environments/{id}/delete`: when the service
/// refuses (the environment still has targets), the list again with its
/// reason at the top.
pub async fn delete(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let shown = async {
        viewer.check_csrf(f.csrf.as_deref())?;
        visible(&inst, &viewer, &id).await?;
        viewer.require_in_environment(Permission::EnvironmentDelete, &id)?;
        let user = &viewer.actor;
        let Err(err) = svc::delete_environment(&inst.store, user, DEFAULT_SPACE_ID, &id).await
        else {
            return Ok(Redirect::to(HERE).into_response());
        };
        let (status, refused) = Problems::from_error(err, |_| None)?;
        let listing = load(&inst, &viewer).await?;
        let empty = NewEnvironment::default();
        let page = render(&viewer, &listing, &empty, &Problems::none(), &refused);
        Ok::<_, PortalError>((status, page).into_response())
    };
    shown.await.unwrap_or_else(|e| e.page(Some(HERE)))
}

fn render(
    viewer: &Viewer,
    listing: &Listing,
    form: &NewEnvironment,
    problems: &Problems,
    refused: &Problems,
) -> Markup {
    let body = html! {
        (head(Tab::Environments, "Environments",
            "Where releases are deployed, in the order the default lifecycle promotes them.",
            html! {}))
        (refused.summary())
        div.infra-split {
            section aria-labelledby="environments-title" {
                h2.sr-only #environments-title { "Environments in order" }
                (table(viewer, listing))
            }
            (create_form(viewer, form, problems))
        }
    };
    page(viewer, "Environments", body)
}

fn table(viewer: &Viewer, listing: &Listing) -> Markup {
    let last = listing.environments.len().saturating_sub(1);
    html! {
        @if listing.environments.is_empty() {
            div.panel.empty {
                h2 { "No environments yet" }
                p { "Create the first one, such as Development, with the form." }
            }
        } @else {
            div.table-wrap {
                table.environments {
                    thead {
                        tr {
                            th scope="col" { "#" }
                            th scope="col" { "Name" }
                            th.count scope="col" { "Deployment targets" }
                            th scope="col" { span.sr-only { "Actions" } }
                        }
                    }
                    tbody {
                        @for (i, e) in listing.environments.iter().enumerate() {
                            tr #(format!("env-{}", e.id)) data-id=(e.id) {
                                td.order { (i + 1) }
                                td {
                                    a.env-name href=(format!("{HERE}/{}", e.id)) { (e.name) }
                                    @if !e.description.is_empty() {
                                        p.muted.description { (e.description) }
                                    }
                                }
                                td.count { (listing.targets.get(&e.id).copied().unwrap_or(0)) }
                                td.row-actions { (row_actions(viewer, e, i == 0, i == last)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn row_actions(viewer: &Viewer, e: &Environment, first: bool, last: bool) -> Markup {
    let move_to = format!("{HERE}/{}/move", e.id);
    html! {
        form.inline method="post" action=(move_to) {
            (forms::csrf(viewer.csrf()))
            button.small type="submit" name="direction" value="up" disabled[first]
                { "Move up" span.sr-only { " " (e.name) } }
            button.small type="submit" name="direction" value="down" disabled[last]
                { "Move down" span.sr-only { " " (e.name) } }
        }
        form.inline method="post" action=(format!("{HERE}/{}/delete", e.id)) {
            (forms::csrf(viewer.csrf()))
            button.small.danger type="submit"
                aria-label=(format!("Delete {}", e.name))
                data-confirm=(format!("Delete the environment {}?", e.name)) { "Delete" }
        }
    }
}

fn create_form(viewer: &Viewer, form: &NewEnvironment, problems: &Problems) -> Markup {
    html! {
        section.panel.infra-form aria-labelledby="create-environment-title" {
            h2 #create-environment-title { "Add an environment" }
            form method="post" action=(HERE) {
                (forms::csrf(viewer.csrf()))
                (problems.summary())
                (forms::text_field(problems, "environment-name", "Name", "Name", &form.name, None))
                (forms::text_area(problems, "environment-description", "Description", "Description", &form.description, 2))
                div.form-actions {
                    button.primary #create-environment type="submit" { "Create environment" }
                }
            }
        }
    }
}

/// The edit form as posted; an unticked checkbox sends nothing.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct EditEnvironment {
    csrf: Option<String>,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Description")]
    description: String,
    #[serde(rename = "UseGuidedFailure")]
    use_guided_failure: Option<String>,
}

impl EditEnvironment {
    fn of(e: &Environment) -> Self {
        EditEnvironment {
            csrf: None,
            name: e.name.clone(),
            description: e.description.clone(),
            use_guided_failure: e.use_guided_failure.then(|| "true".into()),
        }
    }
}

/// The deployment targets in an environment.
async fn targets_in(inst: &Instance, env: &Environment) -> Result<Vec<Machine>, PortalError> {
    let filters = MachineFilters {
        environment_ids: Some(env.id.clone()),
        ..Default::default()
    };
    Ok(machines::list_machines(&inst.store, crate::default_space(), &filters).await?)
}

/// The environment `id`, or the same 404 as a missing one for a person
/// who may not see it.
async fn visible(inst: &Instance, viewer: &Viewer, id: &str) -> Result<Environment, PortalError> {
    let env: Environment = svc::get_in_space(&inst.store, DEFAULT_SPACE_ID, id).await?;
    match viewer.sees_environment(&env.id) {
        true => Ok(env),
        false => Err(cuttle_service::ServiceError::not_found("environment", id).into()),
    }
}

/// `GET /infrastructure/environments/{id}`
pub async fn detail(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Markup, PortalError> {
    let env = visible(&inst, &viewer, &id).await?;
    let mut targets = targets_in(&inst, &env).await?;
    targets.retain(|m| viewer.sees_machine(m));
    Ok(render_one(
        &viewer,
        &env,
        &targets,
        &EditEnvironment::of(&env),
        &Problems::none(),
    ))
}

/// `POST /infrastructure/environments/{id}`: keeps its place in the order
/// and whatever the form does not show.
pub async fn update(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(f): Form<EditEnvironment>,
) -> Response {
    let shown = async {
        viewer.check_csrf(f.csrf.as_deref())?;
        let env = visible(&inst, &viewer, &id).await?;
        viewer.require_in_environment(Permission::EnvironmentEdit, &id)?;
        let changed = Environment {
            name: f.name.clone(),
            description: f.description.clone(),
            use_guided_failure: f.use_guided_failure.is_some(),
            ..env.clone()
        };
        let user = &viewer.actor;
        let Err(err) =
            svc::update_environment(&inst.store, user, DEFAULT_SPACE_ID, &id, changed).await
        else {
            return Ok(Redirect::to(HERE).into_response());
        };
        let (status, problems) = Problems::from_error(err, name_field)?;
        let targets = targets_in(&inst, &env).await?;
        let page = render_one(&viewer, &env, &targets, &f, &problems);
        Ok::<_, PortalError>((status, page).into_response())
    };
    shown
        .await
        .unwrap_or_else(|e| e.page(Some(&format!("{HERE}/{id}"))))
}

fn render_one(
    viewer: &Viewer,
    env: &Environment,
    targets: &[Machine],
    form: &EditEnvironment,
    problems: &Problems,
) -> Markup {
    let body = html! {
        div.page-head {
            p.crumbs {
                a href="/infrastructure" { "Infrastructure" } " / "
                a href=(HERE) { "Environments" } " / " (env.name)
            }
            div.title-row { h1 { (env.name) } }
            (tabs(Tab::Environments))
        }
        div.infra-split {
            section aria-labelledby="environment-targets-title" {
                h2 #environment-targets-title { "Deployment targets in " (env.name) }
                @if targets.is_empty() {
                    div.panel.empty { p { "None yet. " a href="/infrastructure/targets#add-target" { "Add a deployment target" } } }
                } @else {
                    div.table-wrap {
                        table.machines {
                            thead { tr { th scope="col" { "Name" } th scope="col" { "Health" } th scope="col" { "Roles" } } }
                            tbody {
                                @for m in targets {
                                    tr data-id=(m.id) {
                                        td.machine-name { (m.name) }
                                        td { (health_badge(m.health_status)) }
                                        td { ul.chips { @for r in &m.roles { li.chip { (r) } } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section.panel.infra-form aria-labelledby="edit-environment-title" {
                h2 #edit-environment-title { "Change the environment" }
                form method="post" action=(format!("{HERE}/{}", env.id)) {
                    (forms::csrf(viewer.csrf()))
                    (problems.summary())
                    (forms::text_field(problems, "edit-environment-name", "Name", "Name", &form.name, None))
                    (forms::text_area(problems, "edit-environment-description", "Description", "Description", &form.description, 3))
                    div.field.check-field {
                        label for="edit-environment-guided-failure" {
                            input #edit-environment-guided-failure type="checkbox" name="UseGuidedFailure" value="true"
                                checked[form.use_guided_failure.is_some()];
                            " Use guided failure by default"
                        }
                        p.hint { "A failed step waits for someone to retry, ignore or abort it." }
                    }
                    div.form-actions {
                        button.primary #save-environment type="submit" { "Save environment" }
                        a href=(HERE) { "Back to the environments" }
                    }
                }
            }
        }
    };
    page(viewer, &env.name, body)
}
