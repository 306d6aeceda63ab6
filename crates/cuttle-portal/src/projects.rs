//! Projects: the list by project group with a form for a new project, a
//! project's overview (its newest releases against its lifecycle's
//! environments), and in submodules its releases and deploying them.

mod deploy;
mod releases;

use crate::error::PortalError;
use crate::forms::{self, Problems};
use crate::layout::{self, Nav, ProjectTab};
use crate::session::{FragmentViewer, Viewer};
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use cuttle_model::space::DEFAULT_SPACE_ID;
use cuttle_model::{Environment, Lifecycle, Project, ProjectGroup, Timestamp};
use cuttle_service::dashboard::{self as board, ProjectOverview};
use cuttle_service::resources::list;
use cuttle_service::Instance;
use maud::{html, Markup};
use serde::Deserialize;

/// How many releases the overview shows.
const OVERVIEW_RELEASES: i64 = 10;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/projects", get(list_page).post(create))
        .route("/projects/{id}", get(overview))
        .route("/projects/{id}/board", get(board_fragment))
        .merge(releases::routes())
        .merge(deploy::routes())
}

/// A project by the id in the URL (its slug or name also find it).
pub(crate) async fn project(inst: &Instance, id: &str) -> Result<Project, PortalError> {
    Ok(cuttle_service::projects::find_project(&inst.store, DEFAULT_SPACE_ID, id).await?)
}

/// What the project list and its form need.
struct Catalogue {
    groups: Vec<ProjectGroup>,
    lifecycles: Vec<Lifecycle>,
    projects: Vec<Project>,
    environments: usize,
}

/// Whether the person may see `project`.
pub(crate) fn may_view(viewer: &Viewer, project: &Project) -> bool {
    viewer.actor.may(
        cuttle_model::Permission::ProjectView,
        &cuttle_model::Scope::space(&project.space_id)
            .project(&project.id)
            .project_group(&project.project_group_id),
    )
}

/// The projects `viewer` may see, with what the new-project form offers.
async fn catalogue(inst: &Instance, viewer: &Viewer) -> Result<Catalogue, PortalError> {
    let store = &inst.store;
    let mut projects = list::<Project>(store, &crate::default_space()).await?.items;
    projects.retain(|p| may_view(viewer, p));
    projects.sort_by_key(|p| p.name.to_lowercase());
    Ok(Catalogue {
        groups: list::<ProjectGroup>(store, &crate::default_space())
            .await?
            .items,
        lifecycles: list::<Lifecycle>(store, &crate::default_space())
            .await?
            .items,
        projects,
        environments: list::<Environment>(store, &crate::default_space())
            .await?
            .items
            .len(),
    })
}

/// The new-project form as typed.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewProject {
    csrf: Option<String>,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Description")]
    description: String,
    #[serde(rename = "ProjectGroupId")]
    project_group_id: String,
    #[serde(rename = "LifecycleId")]
    lifecycle_id: String,
}

/// `GET /projects`
async fn list_page(State(inst): State<AppState>, viewer: Viewer) -> Response {
    match catalogue(&inst, &viewer).await {
        Ok(c) => {
            let typed = NewProject::default();
            list_view(&viewer, &c, &typed, &Problems::none()).into_response()
        }
        Err(e) => e.page(None),
    }
}

/// `POST /projects`
async fn create(
    State(inst): State<AppState>,
    viewer: Viewer,
    Form(typed): Form<NewProject>,
) -> Response {
    if let Err(e) = viewer.check_csrf(typed.csrf.as_deref()) {
        return e.page(Some("/projects"));
    }
    let new = Project {
        name: typed.name.clone(),
        description: typed.description.trim().to_owned(),
        project_group_id: typed.project_group_id.clone(),
        lifecycle_id: typed.lifecycle_id.clone(),
        ..Default::default()
    };
    let user = &viewer.actor;
    let err =
        match cuttle_service::projects::create_project(&inst.store, user, DEFAULT_SPACE_ID, new)
            .await
        {
            Ok(p) => return Redirect::to(&format!("/projects/{}/process", p.id)).into_response(),
            Err(e) => e,
        };
    let (status, problems) = match Problems::from_error(err, project_field) {
        Ok(found) => found,
        Err(e) => return e.page(Some("/projects")),
    };
    match catalogue(&inst, &viewer).await {
        Ok(c) => (status, list_view(&viewer, &c, &typed, &problems)).into_response(),
        Err(e) => e.page(Some("/projects")),
    }
}

/// The field of the new-project form a service message is about.
fn project_field(message: &str) -> Option<&'static str> {
    if message.starts_with("Name is required")
        || message.starts_with("The project name")
        || message.starts_with("A project named")
    {
        Some("Name")
    } else if message.starts_with("ProjectGroupId") || message.starts_with("The project group") {
        Some("ProjectGroupId")
    } else if message.starts_with("LifecycleId") || message.starts_with("The lifecycle") {
        Some("LifecycleId")
    } else {
        None
    }
}

fn list_view(viewer: &Viewer, c: &Catalogue, typed: &NewProject, problems: &Problems) -> Markup {
    let body = html! {
        div.page-head {
            h1 { "Projects" }
            p.muted { "What you deploy: each project has a deployment process, variables and releases." }
        }
        @if c.environments == 0 {
            div.panel.empty.notice {
                h2 { "No environments yet" }
                p {
                    "Releases are deployed to environments. "
                    a href="/infrastructure/environments" { "Create an environment" }
                    " (Development, Production…) before deploying."
                }
            }
        }
        @if c.projects.is_empty() {
            div.panel.empty {
                h2 { "No projects yet" }
                p { "Create your first project below; you will then add the steps it runs." }
            }
        }
        @for g in &c.groups {
            (group_table(g, &c.projects))
        }
        (orphans(c))
        @if viewer.may(cuttle_model::Permission::ProjectCreate) {
            (new_project_form(viewer, c, typed, problems))
        }
    };
    layout::page(viewer, "Projects", Nav::Projects, body)
}

fn group_table(g: &ProjectGroup, projects: &[Project]) -> Markup {
    let mine: Vec<&Project> = projects
        .iter()
        .filter(|p| p.project_group_id == g.id)
        .collect();
    html! {
        @if !mine.is_empty() {
            section.group aria-labelledby=(format!("group-{}", g.id)) {
                h2 #(format!("group-{}", g.id)) { (g.name) }
                @if !g.description.is_empty() { p.muted { (g.description) } }
                (project_table(&mine))
            }
        }
    }
}

/// Projects whose group is gone still show.
fn orphans(c: &Catalogue) -> Markup {
    let rest: Vec<&Project> = c
        .projects
        .iter()
        .filter(|p| !c.groups.iter().any(|g| g.id == p.project_group_id))
        .collect();
    html! {
        @if !rest.is_empty() {
            section.group aria-labelledby="group-other" {
                h2 #group-other { "Other projects" }
                (project_table(&rest))
            }
        }
    }
}

fn project_table(projects: &[&Project]) -> Markup {
    html! {
        div.table-wrap {
            table.projects {
                thead { tr { th scope="col" { "Project" } th scope="col" { "Description" } } }
                tbody {
                    @for p in projects {
                        tr {
                            th scope="row" {
                                a href=(format!("/projects/{}", p.id)) { (p.name) }
                                @if p.is_disabled { " " span.tag { "disabled" } }
                            }
                            td.muted { (p.description) }
                        }
                    }
                }
            }
        }
    }
}

/// A labelled select of `(value, label)` options with its problems beneath.
pub(crate) fn select_field(
    problems: &Problems,
    id: &str,
    name: &str,
    label: &str,
    options: &[(&str, &str)],
    selected: &str,
) -> Markup {
    let invalid = problems.has(name);
    html! {
        div.field.invalid[invalid] {
            label for=(id) { (label) }
            select #(id) name=(name)
                aria-invalid=[invalid.then_some("true")]
                aria-describedby=[invalid.then(|| format!("{id}-error"))] {
                @for (value, text) in options {
                    option value=(value) selected[*value == selected] { (text) }
                }
            }
            (problems.under(id, name))
        }
    }
}

fn new_project_form(
    viewer: &Viewer,
    c: &Catalogue,
    typed: &NewProject,
    problems: &Problems,
) -> Markup {
    let groups: Vec<(&str, &str)> = c
        .groups
        .iter()
        .map(|g| (g.id.as_str(), g.name.as_str()))
        .collect();
    let lifecycles: Vec<(&str, &str)> = c
        .lifecycles
        .iter()
        .map(|l| (l.id.as_str(), l.name.as_str()))
        .collect();
    html! {
        section.panel.new-project #new-project aria-labelledby="new-project-title" {
            h2 #new-project-title { "New project" }
            form method="post" action="/projects" {
                (forms::csrf(viewer.csrf()))
                (problems.summary())
                (forms::text_field(problems, "project-name", "Name", "Name", &typed.name, None))
                (forms::text_area(problems, "project-description", "Description", "Description", &typed.description, 2))
                div.field-row {
                    (select_field(problems, "project-group", "ProjectGroupId", "Project group", &groups, &typed.project_group_id))
                    (select_field(problems, "project-lifecycle", "LifecycleId", "Lifecycle", &lifecycles, &typed.lifecycle_id))
                }
                div.form-actions {
                    button.primary #create-project type="submit" { "Create project" }
                }
            }
        }
    }
}

/// `GET /projects/{id}`
async fn overview(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    match board::project_overview(&inst, DEFAULT_SPACE_ID, &id, OVERVIEW_RELEASES).await {
        // A project the person may not see is not there for them.
        Ok(o) if !may_view(&viewer, &o.project) => {
            PortalError::from(cuttle_service::ServiceError::not_found("project", &id))
                .page(Some("/projects"))
        }
        Ok(o) => overview_view(&viewer, &o, Timestamp::now()).into_response(),
        Err(e) => PortalError::from(e).page(Some("/projects")),
    }
}

/// `GET /projects/{id}/board`: the releases × environments board alone,
/// which the page script fetches again while a deployment is under way.
async fn board_fragment(
    State(inst): State<AppState>,
    FragmentViewer(_): FragmentViewer,
    Path(id): Path<String>,
) -> Result<Markup, PortalError> {
    let o = board::project_overview(&inst, DEFAULT_SPACE_ID, &id, OVERVIEW_RELEASES).await?;
    Ok(release_board(&o, Timestamp::now()))
}

fn overview_view(viewer: &Viewer, o: &ProjectOverview, now: Timestamp) -> Markup {
    let p = &o.project;
    let body = html! {
        (layout::project_head(p, ProjectTab::Overview, html! {}))
        @if !p.description.is_empty() { p.description { (p.description) } }
        div.form-actions.page-actions {
            a.button.primary #new-release href=(format!("/projects/{}/releases/new", p.id)) { "Create release" }
        }
        @if o.releases.is_empty() {
            div.panel.empty {
                h2 { "No releases yet" }
                p {
                    "A release freezes the "
                    a href=(format!("/projects/{}/process", p.id)) { "deployment process" }
                    " and variables at a version you can then deploy."
                }
            }
        } @else if o.environments.is_empty() {
            div.panel.empty {
                h2 { "No environments to deploy to" }
                p {
                    "The project's lifecycle names no environment yet. "
                    a href="/infrastructure/environments" { "Create an environment" } "."
                }
            }
        } @else {
            (release_board(o, now))
        }
    };
    layout::page(viewer, &p.name, Nav::Projects, body)
}

/// The board, refreshed by the page script (as the dashboard is) while
/// anything on it is queued, running or waiting.
fn release_board(o: &ProjectOverview, now: Timestamp) -> Markup {
    let p = &o.project;
    html! {
        div.table-wrap.board-wrap #project-board data-live=(o.live)
            data-refresh=(format!("/projects/{}/board", p.id)) {
            table.board.release-board {
                thead {
                    tr {
                        th scope="col" { "Release" }
                        @for e in &o.environments { th scope="col" { (e.name) } }
                    }
                }
                tbody {
                    @for row in &o.releases {
                        tr {
                            th scope="row" {
                                a.project-name href=(format!("/projects/{}/releases/{}", p.id, row.release.version)) {
                                    (row.release.version)
                                }
                            }
                            @for (cell, env) in row.cells.iter().zip(&o.environments) {
                                td {
                                    @match cell {
                                        Some(c) => (crate::dashboard::cell_link(c, &env.name, now, false)),
                                        None => span.none title=(format!("Not deployed to {}", env.name)) { "—" },
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

/// Where a service error that is not about the form sends the person back.
pub(crate) fn failed(e: impl Into<PortalError>, back: &str) -> Response {
    e.into().page(Some(back))
}
