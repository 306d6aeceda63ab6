//! The variables editor, for a project's own variables and for library
//! variable sets: one grid form per set (see [`grid`]), saved whole through
//! the same service call as `PUT /api/variables/{id}`. The set's version
//! travels in the form, so a save based on a stale page is refused rather
//! than overwriting someone else's change; the typed grid comes back so
//! nothing is lost.

mod grid;

use crate::error::PortalError;
use crate::forms::{self, CsrfOnly, Problems};
use crate::layout::{self, Nav, ProjectTab};
use crate::session::Viewer;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use cuttle_model::space::DEFAULT_SPACE_ID;
use cuttle_model::{LibraryVariableSet, Project, VariableSet};
use cuttle_service::resources::{self, get_in_space};
use cuttle_service::variables::{self as svc, VariableSetView};
use cuttle_service::Instance;
use cuttle_store::DocumentQuery;
use grid::{Choices, Row};
use maud::{html, Markup};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/projects/{id}/variables",
            get(project_page).post(project_save),
        )
        .route(
            "/library/variable-sets",
            get(library_list).post(library_create),
        )
        .route(
            "/library/variable-sets/{id}",
            get(library_page).post(library_save),
        )
        .route(
            "/library/variable-sets/{id}/settings",
            post(library_settings),
        )
        .route("/library/variable-sets/{id}/delete", post(library_delete))
}

/// Whose variables a page edits.
enum Owner {
    Project(Box<Project>),
    Library(LibraryVariableSet),
}

impl Owner {
    async fn project(inst: &Instance, id: &str) -> Result<Owner, PortalError> {
        let p = get_in_space::<Project>(&inst.store, DEFAULT_SPACE_ID, id).await?;
        Ok(Owner::Project(Box::new(p)))
    }

    async fn library(inst: &Instance, id: &str) -> Result<Owner, PortalError> {
        let l = get_in_space::<LibraryVariableSet>(&inst.store, DEFAULT_SPACE_ID, id).await?;
        Ok(Owner::Library(l))
    }

    fn set_id(&self) -> &str {
        match self {
            Owner::Project(p) => &p.variable_set_id,
            Owner::Library(l) => &l.variable_set_id,
        }
    }

    fn url(&self) -> String {
        match self {
            Owner::Project(p) => format!("/projects/{}/variables", p.id),
            Owner::Library(l) => format!("/library/variable-sets/{}", l.id),
        }
    }

    fn title(&self) -> String {
        match self {
            Owner::Project(p) => format!("Variables · {}", p.name),
            Owner::Library(l) => format!("{} · Library variable sets", l.name),
        }
    }

    fn nav(&self) -> Nav {
        match self {
            Owner::Project(_) => Nav::Projects,
            Owner::Library(_) => Nav::Library,
        }
    }

    fn head(&self) -> Markup {
        match self {
            Owner::Project(p) => {
                layout::project_head(p, ProjectTab::Variables, html! { " / Variables" })
            }
            Owner::Library(l) => html! {
                div.page-head {
                    p.crumbs {
                        a href="/library" { "Library" } " / "
                        a href="/library/variable-sets" { "Variable sets" } " / " (l.name)
                    }
                    h1 { (l.name) }
                    @if !l.description.is_empty() { p.muted { (l.description) } }
                }
            },
        }
    }
}

/// What the page says above the grid.
enum Outcome {
    Loaded,
    Saved,
    /// The service refused the rows; all its messages.
    Invalid(Vec<String>),
    /// Someone saved since the page was loaded.
    Conflict(String),
}

struct Editor<'a> {
    owner: &'a Owner,
    view: &'a VariableSetView,
    version: i64,
    rows: &'a [Row],
    outcome: Outcome,
    /// A library set's settings form as typed, when it came back refused.
    settings: Option<Settings>,
}

/// A library set's own fields, as its settings form shows them.
struct Settings {
    name: String,
    description: String,
    problems: Problems,
}

impl Settings {
    fn of(l: &LibraryVariableSet) -> Settings {
        Settings {
            name: l.name.clone(),
            description: l.description.clone(),
            problems: Problems::none(),
        }
    }
}

fn outcome_banner(o: &Outcome, reload: &str) -> Markup {
    match o {
        Outcome::Loaded => html! {},
        Outcome::Saved => html! { p.notice role="status" { "Saved." } },
        Outcome::Invalid(messages) => html! {
            div.alert role="alert" {
                p { "Nothing was saved: fix the problems below and save again." }
                ul { @for m in messages { li { (m) } } }
            }
        },
        Outcome::Conflict(detail) => html! {
            div.alert.conflict role="alert" {
                p { strong { "Someone else changed these variables" } " since you loaded this page. "
                    "Nothing was saved, and nothing of theirs was overwritten: your edits are still below." }
                p { a href=(reload) { "Reload the current variables" }
                    " and apply your changes again (copy anything you typed first)." }
                p.muted { (detail) }
            }
        },
    }
}

fn editor_form(e: &Editor, csrf: &str) -> Markup {
    let choices = Choices {
        values: &e.view.scope_values,
        project: matches!(e.owner, Owner::Project(_)),
    };
    let url = e.owner.url();
    html! {
        (outcome_banner(&e.outcome, &url))
        form.var-editor method="post" action=(url) {
            (forms::csrf(csrf))
            input type="hidden" name=(grid::VERSION_FIELD) value=(e.version);
            (grid::table(e.rows, &choices))
            p.hint.muted {
                "Sensitive values are never shown; leave one blank to keep it. "
                "Scope a value to environments, roles or targets to use it only there."
            }
            div.form-actions {
                button #save-variables.primary type="submit" name="action" value="save" { "Save variables" }
                button #add-variable type="submit" name="action" value="add" { "Add variable" }
            }
        }
    }
}

/// Library sets a project includes, linking to where they are edited.
async fn included_sets(inst: &Instance, owner: &Owner) -> Result<Markup, PortalError> {
    let Owner::Project(p) = owner else {
        return Ok(html! {});
    };
    let ids = &p.included_library_variable_set_ids;
    // No ids would mean no filter: every set.
    let found = match ids.is_empty() {
        true => vec![],
        false => {
            let q = DocumentQuery {
                ids: ids.clone(),
                ..crate::default_space()
            };
            resources::list::<LibraryVariableSet>(&inst.store, &q)
                .await?
                .items
        }
    };
    // In the order the project includes them; one since deleted is left out.
    let sets: Vec<&LibraryVariableSet> = ids
        .iter()
        .filter_map(|id| found.iter().find(|l| &l.id == id))
        .collect();
    Ok(html! {
        section.panel.included aria-labelledby="included-title" {
            h2 #included-title { "Included library variable sets" }
            @if sets.is_empty() {
                p.muted { "This project includes no library variable sets." }
            } @else {
                p.muted { "Their variables apply too; at equal scope, the project's own win." }
                ul {
                    @for l in sets {
                        li { a href=(format!("/library/variable-sets/{}", l.id)) { (l.name) } }
                    }
                }
            }
        }
    })
}

async fn render(
    inst: &Instance,
    viewer: &Viewer,
    editor: Editor<'_>,
    status: StatusCode,
) -> Result<Response, PortalError> {
    let aside = match editor.owner {
        Owner::Project(_) => included_sets(inst, editor.owner).await?,
        Owner::Library(l) => {
            let settings = editor.settings.as_ref();
            library_aside(inst, viewer.csrf(), l, settings).await?
        }
    };
    let body = html! {
        (editor.owner.head())
        div.variables {
            (editor_form(&editor, viewer.csrf()))
            (aside)
        }
    };
    let page = layout::page(viewer, &editor.owner.title(), editor.owner.nav(), body);
    Ok((status, page).into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Shown {
    saved: Option<String>,
}

impl Shown {
    fn outcome(&self) -> Outcome {
        if self.saved.is_some() {
            Outcome::Saved
        } else {
            Outcome::Loaded
        }
    }
}

/// The editor on the stored set.
async fn show(
    inst: &Instance,
    viewer: &Viewer,
    owner: &Owner,
    outcome: Outcome,
    settings: Option<Settings>,
    status: StatusCode,
) -> Result<Response, PortalError> {
    let mut view = svc::get_variable_set(&inst.store, DEFAULT_SPACE_ID, owner.set_id()).await?;
    // Only what the viewer may see is shown, and so only that comes back.
    cuttle_service::variable_access::retain_visible(
        &viewer.permissions,
        DEFAULT_SPACE_ID,
        &mut view,
    );
    let rows: Vec<Row> = view.set.variables.iter().map(Row::stored).collect();
    let editor = Editor {
        owner,
        view: &view,
        version: view.set.version,
        rows: &rows,
        outcome,
        settings,
    };
    render(inst, viewer, editor, status).await
}

/// Saves a posted grid, or shows it again with one more row, or with what
/// was wrong.
async fn submit(
    inst: &Instance,
    viewer: &Viewer,
    owner: &Owner,
    fields: Vec<(String, String)>,
) -> Result<Response, PortalError> {
    let mut posted = grid::parse(fields);
    viewer.check_csrf(posted.csrf.as_deref())?;
    let version = posted
        .version
        .ok_or_else(|| PortalError::BadRequest("The form carried no Version".into()))?;
    let mut view = svc::get_variable_set(&inst.store, DEFAULT_SPACE_ID, owner.set_id()).await?;
    // Only what the viewer may see is shown, and so only that comes back.
    cuttle_service::variable_access::retain_visible(
        &viewer.permissions,
        DEFAULT_SPACE_ID,
        &mut view,
    );
    let stored = &view.set.variables;
    // Rows typed so far, blank ones too: the table adds the one more row.
    let (status, outcome) = if posted.action == "add" {
        (StatusCode::OK, Outcome::Loaded)
    } else {
        posted.rows.retain(|r| !r.is_blank());
        let incoming = VariableSet {
            id: owner.set_id().into(),
            version,
            variables: grid::to_variables(&posted.rows, stored),
            ..VariableSet::default()
        };
        let saved = svc::update_variable_set(
            &inst.store,
            &inst.master_key,
            &viewer.actor,
            DEFAULT_SPACE_ID,
            owner.set_id(),
            incoming,
        )
        .await;
        match saved {
            Ok(_) => {
                let to = format!("{}?saved=1", owner.url());
                return Ok(Redirect::to(&to).into_response());
            }
            Err(e) => refused(e, &mut posted.rows)?,
        }
    };
    grid::note_secrets(&mut posted.rows, stored);
    let editor = Editor {
        owner,
        view: &view,
        version,
        rows: &posted.rows,
        outcome,
        settings: None,
    };
    render(inst, viewer, editor, status).await
}

/// Sorts a refused save onto the rows; errors not about the input pass on.
fn refused(
    e: cuttle_service::ServiceError,
    rows: &mut [Row],
) -> Result<(StatusCode, Outcome), PortalError> {
    let (status, problems) = Problems::from_error(e, |_| None)?;
    if status == StatusCode::CONFLICT {
        let detail = problems.general.join(" ");
        return Ok((status, Outcome::Conflict(detail)));
    }
    grid::assign_errors(rows, &problems.general);
    Ok((status, Outcome::Invalid(problems.general)))
}

fn or_page(result: Result<Response, PortalError>, back: &str) -> Response {
    result.unwrap_or_else(|e| e.page(Some(back)))
}

/// The editor on `owner`'s stored set, once `owner` is found.
async fn stored_page(
    inst: &Instance,
    viewer: &Viewer,
    owner: Result<Owner, PortalError>,
    shown: Shown,
    back: &str,
) -> Response {
    let done = async {
        let owner = owner?;
        show(inst, viewer, &owner, shown.outcome(), None, StatusCode::OK).await
    };
    or_page(done.await, back)
}

/// A posted grid for `owner`'s set, once `owner` is found.
async fn posted_grid(
    inst: &Instance,
    viewer: &Viewer,
    owner: Result<Owner, PortalError>,
    fields: Vec<(String, String)>,
    back: &str,
) -> Response {
    let done = async { submit(inst, viewer, &owner?, fields).await };
    or_page(done.await, back)
}

/// `GET /projects/{id}/variables`
async fn project_page(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(shown): Query<Shown>,
) -> Response {
    let owner = Owner::project(&inst, &id).await;
    stored_page(&inst, &viewer, owner, shown, &format!("/projects/{id}")).await
}

/// `POST /projects/{id}/variables`
async fn project_save(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let owner = Owner::project(&inst, &id).await;
    let back = format!("/projects/{id}/variables");
    posted_grid(&inst, &viewer, owner, fields, &back).await
}

/// `GET /library/variable-sets/{id}`
async fn library_page(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(shown): Query<Shown>,
) -> Response {
    let owner = Owner::library(&inst, &id).await;
    stored_page(&inst, &viewer, owner, shown, "/library/variable-sets").await
}

/// `POST /library/variable-sets/{id}`
async fn library_save(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let owner = Owner::library(&inst, &id).await;
    let back = format!("/library/variable-sets/{id}");
    posted_grid(&inst, &viewer, owner, fields, &back).await
}

// The list of library variable sets, and creating one.

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
pub struct SetForm {
    #[serde(rename = "csrf")]
    csrf: Option<String>,
    name: String,
    description: String,
}

fn create_form(csrf: &str, typed: &SetForm, problems: &Problems) -> Markup {
    html! {
        section.panel.new-set aria-labelledby="new-set-title" {
            h2 #new-set-title { "New variable set" }
            form method="post" action="/library/variable-sets" {
                (forms::csrf(csrf))
                (problems.summary())
                (forms::text_field(problems, "lvs-name", "Name", "Name", &typed.name, None))
                (forms::text_area(problems, "lvs-description", "Description", "Description", &typed.description, 2))
                div.form-actions {
                    button #create-variable-set.primary type="submit" { "Create variable set" }
                }
            }
        }
    }
}

async fn list_page(
    inst: &Instance,
    viewer: &Viewer,
    typed: &SetForm,
    problems: &Problems,
) -> Result<Markup, PortalError> {
    let sets = resources::list::<LibraryVariableSet>(&inst.store, &crate::default_space())
        .await?
        .items;
    let body = html! {
        div.page-head {
            h1 { "Library" }
            (layout::tabs("Library", &crate::library::TABS, "/library/variable-sets"))
        }
        p.muted { "Variables that many projects share. A project includes a set to use its variables." }
        div.variables {
            @if sets.is_empty() {
                div.panel.empty { p { "No library variable sets yet." } }
            } @else {
                div.table-wrap {
                    table.var-sets {
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Description" } } }
                        tbody {
                            @for l in &sets {
                                tr {
                                    td { a href=(format!("/library/variable-sets/{}", l.id)) { (l.name) } }
                                    td.muted { (l.description) }
                                }
                            }
                        }
                    }
                }
            }
            (create_form(viewer.csrf(), typed, problems))
        }
    };
    Ok(layout::page(
        viewer,
        "Library variable sets",
        Nav::Library,
        body,
    ))
}

/// `GET /library/variable-sets`
async fn library_list(State(inst): State<AppState>, viewer: Viewer) -> Response {
    let page = list_page(&inst, &viewer, &SetForm::default(), &Problems::none()).await;
    match page {
        Ok(p) => p.into_response(),
        Err(e) => e.page(Some("/library")),
    }
}

/// `POST /library/variable-sets`
async fn library_create(
    State(inst): State<AppState>,
    viewer: Viewer,
    Form(typed): Form<SetForm>,
) -> Response {
    let back = "/library/variable-sets";
    let done = async {
        viewer.check_csrf(typed.csrf.as_deref())?;
        let set = LibraryVariableSet {
            name: typed.name.clone(),
            description: typed.description.trim().to_owned(),
            ..LibraryVariableSet::default()
        };
        match svc::create_library_variable_set(&inst.store, &viewer.actor, DEFAULT_SPACE_ID, set)
            .await
        {
            Ok(created) => {
                let to = format!("/library/variable-sets/{}", created.id);
                Ok(Redirect::to(&to).into_response())
            }
            Err(e) => {
                let (status, problems) = Problems::from_error(e, name_field)?;
                let page = list_page(&inst, &viewer, &typed, &problems).await?;
                Ok((status, page).into_response())
            }
        }
    };
    or_page(done.await, back)
}

/// A library set's settings, the projects that include it, and deleting it.
async fn library_aside(
    inst: &Instance,
    csrf: &str,
    l: &LibraryVariableSet,
    typed: Option<&Settings>,
) -> Result<Markup, PortalError> {
    let users: Vec<Project> = resources::list::<Project>(&inst.store, &crate::default_space())
        .await?
        .items
        .into_iter()
        .filter(|p| p.included_library_variable_set_ids.contains(&l.id))
        .collect();
    let stored = Settings::of(l);
    let s = typed.unwrap_or(&stored);
    let p = &s.problems;
    Ok(html! {
        section.panel.lvs-settings aria-labelledby="lvs-settings-title" {
            h2 #lvs-settings-title { "Settings" }
            form method="post" action=(format!("/library/variable-sets/{}/settings", l.id)) {
                (forms::csrf(csrf))
                (p.summary())
                (forms::text_field(p, "lvs-edit-name", "Name", "Name", &s.name, None))
                (forms::text_area(p, "lvs-edit-description", "Description", "Description", &s.description, 2))
                div.form-actions {
                    button #save-variable-set-settings type="submit" { "Save settings" }
                }
            }
        }
        section.panel.lvs-usage aria-labelledby="lvs-usage-title" {
            h2 #lvs-usage-title { "Used by" }
            @if users.is_empty() {
                p.muted { "No project includes this set." }
            } @else {
                ul {
                    @for u in &users {
                        li { a href=(format!("/projects/{}/variables", u.id)) { (u.name) } }
                    }
                }
            }
            form method="post" action=(format!("/library/variable-sets/{}/delete", l.id)) {
                (forms::csrf(csrf))
                button #delete-variable-set.danger type="submit"
                    data-confirm="Delete this library variable set and its variables?" {
                    "Delete variable set"
                }
            }
        }
    })
}

/// `POST /library/variable-sets/{id}/settings`
async fn library_settings(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(typed): Form<SetForm>,
) -> Response {
    let back = format!("/library/variable-sets/{id}");
    let done = async {
        viewer.check_csrf(typed.csrf.as_deref())?;
        let current =
            get_in_space::<LibraryVariableSet>(&inst.store, DEFAULT_SPACE_ID, &id).await?;
        let changed = LibraryVariableSet {
            name: typed.name.clone(),
            description: typed.description.trim().to_owned(),
            ..current.clone()
        };
        let owner = Owner::Library(current);
        let user = &viewer.actor;
        match svc::update_library_variable_set(&inst.store, user, DEFAULT_SPACE_ID, &id, changed)
            .await
        {
            Ok(_) => Ok(Redirect::to(&back).into_response()),
            Err(e) => {
                let (status, problems) = Problems::from_error(e, name_field)?;
                let settings = Settings {
                    name: typed.name.clone(),
                    description: typed.description.clone(),
                    problems,
                };
                show(
                    &inst,
                    &viewer,
                    &owner,
                    Outcome::Loaded,
                    Some(settings),
                    status,
                )
                .await
            }
        }
    };
    or_page(done.await, &back)
}

/// `POST /library/variable-sets/{id}/delete`
async fn library_delete(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let done = async {
        viewer.check_csrf(form.csrf.as_deref())?;
        let user = &viewer.actor;
        svc::delete_library_variable_set(&inst.store, user, DEFAULT_SPACE_ID, &id).await?;
        Ok(Redirect::to("/library/variable-sets").into_response())
    };
    or_page(done.await, &format!("/library/variable-sets/{id}"))
}

/// The field a library set's complaint is about: its name, or none.
fn name_field(m: &str) -> Option<&'static str> {
    m.to_ascii_lowercase().contains("name").then_some("Name")
}
