//! A project's releases: the list, the form for a new one (its version
//! prefilled as the API would pick it, a version per package), and a
//! release's page with its progression through the lifecycle.

use super::{failed, project};
use crate::error::PortalError;
use crate::forms::{self, Problems};
use crate::layout::{self, task_badge, Nav, ProjectTab};
use crate::session::{Viewer, CSRF_FIELD};
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use cuttle_model::progression::{PhaseProgress, PhaseState};
use cuttle_model::release::SelectedPackage;
use cuttle_model::space::DEFAULT_SPACE_ID;
use cuttle_model::{Channel, Environment, Project, Release, Timestamp};
use cuttle_service::progression;
use cuttle_service::releases::{self as svc, NewRelease, PackageChoice};
use cuttle_service::resources::list;
use cuttle_service::Instance;
use cuttle_store::DocumentQuery;
use maud::{html, Markup};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/projects/{id}/releases", get(list_page).post(create))
        .route("/projects/{id}/releases/new", get(new_form))
        .route("/projects/{id}/releases/{version}", get(release_page))
}

fn releases_href(p: &Project) -> String {
    format!("/projects/{}/releases", p.id)
}

pub(crate) fn release_href(p: &Project, version: &str) -> String {
    format!("/projects/{}/releases/{version}", p.id)
}

/// The breadcrumb beyond the project: its releases, then `last` if any.
pub(crate) fn crumbs(p: &Project, last: Option<Markup>) -> Markup {
    html! {
        " / " a href=(releases_href(p)) { "Releases" }
        @if let Some(l) = last { " / " (l) }
    }
}

async fn channels(inst: &Instance, p: &Project) -> Result<Vec<Channel>, PortalError> {
    let q = DocumentQuery {
        parent_ids: vec![p.id.clone()],
        ..Default::default()
    };
    Ok(list::<Channel>(&inst.store, &q).await?.items)
}

/// `GET /projects/{id}/releases`
async fn list_page(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let shown = async {
        let p = project(&inst, &id).await?;
        let q = DocumentQuery {
            parent_ids: vec![p.id.clone()],
            descending: true,
            ..Default::default()
        };
        let releases = list::<Release>(&inst.store, &q).await?.items;
        let channels = channels(&inst, &p).await?;
        Ok::<_, PortalError>(list_view(&viewer, &p, &releases, &channels))
    };
    match shown.await {
        Ok(page) => page.into_response(),
        Err(e) => failed(e, "/projects"),
    }
}

/// The first line of the notes, cut short.
fn excerpt(notes: Option<&str>) -> String {
    let first = notes.unwrap_or_default().lines().next().unwrap_or_default();
    if first.chars().count() > 90 {
        format!("{}…", first.chars().take(90).collect::<String>())
    } else {
        first.to_owned()
    }
}

fn list_view(viewer: &Viewer, p: &Project, releases: &[Release], channels: &[Channel]) -> Markup {
    let now = Timestamp::now();
    let channel_name = |id: &str| {
        channels
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.clone())
            .unwrap_or_default()
    };
    let body = html! {
        (layout::project_head(p, ProjectTab::Releases, html! {}))
        div.form-actions.page-actions {
            a.button.primary #new-release href=(format!("{}/new", releases_href(p))) { "Create release" }
        }
        @if releases.is_empty() {
            div.panel.empty {
                h2 { "No releases yet" }
                p { "Create a release to deploy the project's process as it stands." }
            }
        } @else {
            div.table-wrap {
                table.releases {
                    thead {
                        tr {
                            th scope="col" { "Version" }
                            th scope="col" { "Channel" }
                            th scope="col" { "Created" }
                            th scope="col" { "Notes" }
                        }
                    }
                    tbody {
                        @for r in releases {
                            tr {
                                th scope="row" { a href=(release_href(p, &r.version)) { (r.version) } }
                                td { (channel_name(&r.channel_id)) }
                                td { @if let Some(t) = r.assembled { (layout::when(t, now)) } }
                                td.muted.notes-excerpt { (excerpt(r.release_notes.as_deref())) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page(
        viewer,
        &format!("Releases · {}", p.name),
        Nav::Projects,
        body,
    )
}

/// The new-release form as typed.
#[derive(Default)]
struct Typed {
    version: String,
    notes: String,
    /// One per package choice, in order.
    packages: Vec<String>,
}

/// The field holding the version of the `i`th package choice.
fn package_field(i: usize) -> String {
    format!("Package:{i}")
}

/// `GET /projects/{id}/releases/new`
async fn new_form(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let shown = async {
        let p = project(&inst, &id).await?;
        let choices = svc::package_choices(&inst.store, DEFAULT_SPACE_ID, &p).await?;
        let typed = Typed {
            version: svc::suggested_version(&inst.store, &p).await?,
            notes: String::new(),
            packages: choices
                .iter()
                .map(|c| c.versions.first().cloned().unwrap_or_default())
                .collect(),
        };
        Ok::<_, PortalError>(form_view(&viewer, &p, &choices, &typed, &Problems::none()))
    };
    match shown.await {
        Ok(page) => page.into_response(),
        Err(e) => failed(e, &format!("/projects/{id}")),
    }
}

/// `POST /projects/{id}/releases`
async fn create(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let back = format!("/projects/{id}/releases");
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if let Err(e) = viewer.check_csrf(field(CSRF_FIELD)) {
        return e.page(Some(&back));
    }
    let loaded = async {
        let p = project(&inst, &id).await?;
        let choices = svc::package_choices(&inst.store, DEFAULT_SPACE_ID, &p).await?;
        Ok::<_, PortalError>((p, choices))
    };
    let (p, choices) = match loaded.await {
        Ok(l) => l,
        Err(e) => return failed(e, &back),
    };
    let typed = Typed {
        version: field("Version").unwrap_or_default().trim().to_owned(),
        notes: field("ReleaseNotes").unwrap_or_default().to_owned(),
        packages: (0..choices.len())
            .map(|i| {
                field(&package_field(i))
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
            .collect(),
    };
    let new = NewRelease {
        project_id: p.id.clone(),
        // Left empty, the service picks the next version, as for the API.
        version: Some(typed.version.clone()),
        release_notes: Some(typed.notes.clone()).filter(|n| !n.trim().is_empty()),
        selected_packages: choices
            .iter()
            .zip(&typed.packages)
            .filter(|(_, v)| !v.is_empty())
            .map(|(c, v)| SelectedPackage {
                action_name: c.action_name.clone(),
                step_name: None,
                package_reference_name: c.reference.clone(),
                version: v.clone(),
            })
            .collect(),
        ..Default::default()
    };
    match svc::create_release(&inst, &viewer.actor, DEFAULT_SPACE_ID, new).await {
        Ok(r) => Redirect::to(&release_href(&p, &r.version)).into_response(),
        Err(e) => match Problems::from_error(e, version_field) {
            Ok((status, problems)) => {
                (status, form_view(&viewer, &p, &choices, &typed, &problems)).into_response()
            }
            Err(e) => e.page(Some(&back)),
        },
    }
}

/// The field of the release form a service message is about.
fn version_field(message: &str) -> Option<&'static str> {
    let about_version = message.starts_with("Version is required")
        || message.starts_with("The version")
        || message.starts_with("A release with version")
        || message.starts_with("The release version");
    about_version.then_some("Version")
}

fn form_view(
    viewer: &Viewer,
    p: &Project,
    choices: &[PackageChoice],
    typed: &Typed,
    problems: &Problems,
) -> Markup {
    let body = html! {
        (layout::project_head(p, ProjectTab::Releases, crumbs(p, Some(html! { "New" }))))
        section.panel.release-form aria-labelledby="release-form-title" {
            h2 #release-form-title { "Create a release" }
            p.muted { "A release freezes the deployment process and variables as they are now." }
            form method="post" action=(releases_href(p)) {
                (forms::csrf(viewer.csrf()))
                (problems.summary())
                (forms::text_field(problems, "release-version", "Version", "Version", &typed.version,
                    Some("Suggested from the newest release; SemVer such as 1.2.0")))
                @if !choices.is_empty() {
                    fieldset.packages {
                        legend { "Packages" }
                        @for (i, c) in choices.iter().enumerate() {
                            (package_input(i, c, typed.packages.get(i).map(String::as_str).unwrap_or_default()))
                        }
                    }
                }
                (forms::text_area(problems, "release-notes", "ReleaseNotes", "Release notes", &typed.notes, 5))
                div.form-actions {
                    button.primary #create-release type="submit" { "Create release" }
                    a href=(releases_href(p)) { "Cancel" }
                }
            }
        }
    };
    layout::page(
        viewer,
        &format!("New release · {}", p.name),
        Nav::Projects,
        body,
    )
}

/// A version for one package: a choice of what the feed has, or free text
/// when the feed has none yet.
fn package_input(i: usize, c: &PackageChoice, value: &str) -> Markup {
    let id = format!("release-package-{i}");
    let label = match &c.reference {
        Some(r) => format!("{} ({r}) — {}", c.action_name, c.package_id),
        None => format!("{} — {}", c.action_name, c.package_id),
    };
    html! {
        div.field {
            label for=(id) { (label) }
            @if c.versions.is_empty() {
                input #(id) type="text" name=(package_field(i)) value=(value)
                    aria-describedby=(format!("{id}-hint"));
                p.hint id=(format!("{id}-hint")) { "The built-in feed has no version of " (c.package_id) " yet; push one first." }
            } @else {
                select #(id) name=(package_field(i)) {
                    @for v in &c.versions {
                        option value=(v) selected[v == value] { (v) }
                    }
                }
            }
        }
    }
}

/// `GET /projects/{id}/releases/{version}`
async fn release_page(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path((id, version)): Path<(String, String)>,
) -> Response {
    let shown = async {
        let p = project(&inst, &id).await?;
        let release = svc::find_release(&inst.store, &p, &version).await?;
        let evaluated = progression::evaluate(&inst.store, &release, &p).await?;
        let environments = list::<Environment>(&inst.store, &crate::default_space())
            .await?
            .items;
        let channel = channels(&inst, &p)
            .await?
            .into_iter()
            .find(|c| c.id == release.channel_id)
            .map(|c| c.name);
        let view = ReleaseView {
            project: &p,
            release: &release,
            channel,
            phases: &evaluated.progression.phases,
            allowed: evaluated.progression.allowed(),
            environments: &environments,
            deployments: &evaluated.deployments,
        };
        Ok::<_, PortalError>(release_view(&viewer, &view))
    };
    match shown.await {
        Ok(page) => page.into_response(),
        Err(e) => failed(e, &format!("/projects/{id}/releases")),
    }
}

struct ReleaseView<'a> {
    project: &'a Project,
    release: &'a Release,
    channel: Option<String>,
    /// The lifecycle's phases and how far the release has come in each.
    phases: &'a [PhaseState],
    /// Environments the release may be deployed to now.
    allowed: Vec<String>,
    environments: &'a [Environment],
    /// Newest first.
    deployments: &'a [(cuttle_model::Deployment, cuttle_model::ServerTask)],
}

impl ReleaseView<'_> {
    fn env_name(&self, id: &str) -> String {
        self.environments
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.name.clone())
            .unwrap_or_else(|| id.to_owned())
    }
}

fn release_view(viewer: &Viewer, v: &ReleaseView) -> Markup {
    let p = v.project;
    let r = v.release;
    let now = Timestamp::now();
    let deploy = format!("{}/deploy", release_href(p, &r.version));
    let body = html! {
        (layout::project_head(p, ProjectTab::Releases, crumbs(p, Some(html! { (r.version) }))))
        section.release-summary {
            div.title-row {
                h2 { "Release " (r.version) }
                a.button.primary #deploy-release href=(deploy) { "Deploy…" }
            }
            dl.meta {
                @if let Some(c) = &v.channel { div { dt { "Channel" } dd { (c) } } }
                @if let Some(t) = r.assembled { div { dt { "Created" } dd { (layout::when(t, now)) } } }
            }
        }
        (notes(r))
        (packages(r))
        (progression_view(v, &deploy, now))
        (deployments(v, now))
    };
    layout::page(
        viewer,
        &format!("{} {}", p.name, r.version),
        Nav::Projects,
        body,
    )
}

/// The notes as typed: escaped, their line breaks kept by the stylesheet.
fn notes(r: &Release) -> Markup {
    html! {
        section.panel.release-notes aria-labelledby="notes-title" {
            h3 #notes-title { "Release notes" }
            @match r.release_notes.as_deref().filter(|n| !n.trim().is_empty()) {
                Some(n) => div.notes-text { (n) },
                None => p.muted { "No notes." },
            }
        }
    }
}

fn packages(r: &Release) -> Markup {
    html! {
        @if !r.selected_packages.is_empty() {
            section.release-packages aria-labelledby="packages-title" {
                h3 #packages-title { "Packages" }
                div.table-wrap {
                    table {
                        thead { tr { th scope="col" { "Step action" } th scope="col" { "Version" } } }
                        tbody {
                            @for s in &r.selected_packages {
                                tr {
                                    td {
                                        (s.action_name)
                                        @if let Some(n) = &s.package_reference_name { " (" (n) ")" }
                                    }
                                    td { code { (s.version) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn progress_label(p: PhaseProgress) -> (&'static str, &'static str) {
    match p {
        PhaseProgress::Complete => ("Complete", "state-success"),
        PhaseProgress::Current => ("Current", "state-running"),
        PhaseProgress::Pending => ("Not yet", "state-pending"),
    }
}

fn progression_view(v: &ReleaseView, deploy: &str, now: Timestamp) -> Markup {
    html! {
        section.progression aria-labelledby="progression-title" {
            h3 #progression-title { "Lifecycle" }
            @if v.phases.is_empty() {
                p.muted {
                    "The lifecycle has no environments yet. "
                    a href="/infrastructure/environments" { "Create an environment" } "."
                }
            }
            ol.phases {
                @for ph in v.phases {
                    @let (label, class) = progress_label(ph.progress);
                    li.phase {
                        div.phase-head {
                            h4 { (ph.phase.name) }
                            span class=(format!("badge {class}")) { (label) }
                            @if ph.phase.is_optional_phase { span.tag { "optional" } }
                        }
                        ul.phase-envs {
                            @for e in ph.phase.environments() {
                                (phase_environment(v, ph, e, deploy, now))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn phase_environment(
    v: &ReleaseView,
    ph: &PhaseState,
    environment_id: &str,
    deploy: &str,
    now: Timestamp,
) -> Markup {
    let newest = v
        .deployments
        .iter()
        .find(|(d, _)| d.environment_id == environment_id);
    let name = v.env_name(environment_id);
    let automatic = ph
        .phase
        .automatic_deployment_targets
        .iter()
        .any(|e| e == environment_id);
    let query = serde_urlencoded::to_string([("environment", environment_id)]).unwrap_or_default();
    html! {
        li.phase-env {
            span.env-name { (name) }
            @if automatic { span.tag { "automatic" } }
            @match newest {
                Some((_, t)) => a.task-link href=(format!("/tasks/{}", t.id)) {
                    (task_badge(t)) " " (layout::when(t.queue_time, now))
                },
                None => span.muted { "Not deployed" },
            }
            @if v.allowed.iter().any(|a| a == environment_id) {
                a.button.small.deploy-to href=(format!("{deploy}?{query}"))
                    id=(format!("deploy-to-{environment_id}")) {
                    "Deploy to " (name) "…"
                }
            }
        }
    }
}

fn deployments(v: &ReleaseView, now: Timestamp) -> Markup {
    html! {
        section.release-deployments aria-labelledby="deployments-title" {
            h3 #deployments-title { "Deployments" }
            @if v.deployments.is_empty() {
                p.muted { "This release has not been deployed yet." }
            } @else {
                div.table-wrap {
                    table.tasks {
                        thead {
                            tr {
                                th scope="col" { "Environment" }
                                th scope="col" { "State" }
                                th scope="col" { "Queued" }
                                th scope="col" { "By" }
                                th scope="col" { "Task" }
                            }
                        }
                        tbody {
                            @for (d, t) in v.deployments {
                                tr {
                                    td { (v.env_name(&d.environment_id)) }
                                    td { (task_badge(t)) }
                                    td { (layout::when(t.queue_time, now)) }
                                    td { (d.deployed_by) }
                                    td { a href=(format!("/tasks/{}", t.id)) { (t.id) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
