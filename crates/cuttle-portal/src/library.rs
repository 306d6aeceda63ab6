//! The library: packages in the built-in feed (the list, a package's
//! versions, uploading and deleting) beside the library variable sets,
//! whose pages live elsewhere.
//!
//! An upload is a multipart form whose CSRF token comes before the file
//! (browsers send fields in document order), so a forged upload is refused
//! before any of its file is read. The file is streamed into the feed's
//! [`Upload`] a piece at a time, as the API's `POST /api/packages/raw`
//! does, so a package of any size never sits in memory.

use crate::error::PortalError;
use crate::forms::CsrfOnly;
use crate::forms::{self, Problems};
use crate::layout::{self, Nav};
use crate::session::{Viewer, CSRF_FIELD};
use crate::AppState;
use axum::extract::multipart::{Field, Multipart, MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use cuttle_model::package::{package_resource_id, Package};
use cuttle_model::space::DEFAULT_SPACE_ID;
use cuttle_model::{Project, Release, Timestamp};
use cuttle_service::packages::{self, OverwriteMode, PackageFilters, Upload};
use cuttle_service::{Instance, ServiceError};
use cuttle_store::DocumentQuery;
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::HashMap;

const LIBRARY: &str = "/library";
const UPLOAD: &str = "/library/packages/upload";
/// The library's sections; its variable sets are edited in `variables`.
pub(crate) const TABS: [(&str, &str); 2] = [
    ("Packages", LIBRARY),
    ("Library variable sets", "/library/variable-sets"),
];
/// A CSRF token is a few dozen characters; a longer field is not one.
const MAX_TOKEN_LEN: usize = 256;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(LIBRARY, get(list_page))
        .route("/library/packages", get(|| async { Redirect::to(LIBRARY) }))
        // Packages are as large as they come and stream to disk, so this
        // route alone takes bodies of any size. A package named `upload`
        // still has its page here.
        .route(
            UPLOAD,
            get(upload_named_page)
                .post(upload)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/library/packages/{package_id}", get(package_page))
        .route(
            "/library/packages/{package_id}/versions/{version}/delete",
            post(delete_version),
        )
}

fn package_href(package_id: &str) -> String {
    format!("/library/packages/{package_id}")
}

fn head(title: &str, crumbs: Markup) -> Markup {
    html! {
        div.page-head {
            p.crumbs { a href=(LIBRARY) { "Library" } (crumbs) }
            h1 { (title) }
        }
    }
}

/// Bytes as people read them: `532 B`, `14.2 KB`, `1.3 GB`.
fn size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

// ---- the package list ----

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    filter: Option<String>,
}

/// `GET /library`
async fn list_page(
    State(inst): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Response {
    let filter = q.filter.unwrap_or_default();
    match library_view(&inst, &viewer, filter.trim(), &UploadForm::default()).await {
        Ok(page) => page.into_response(),
        Err(e) => e.page(None),
    }
}

/// A package: its newest version and how many it has.
struct Summary<'a> {
    latest: &'a Package,
    versions: usize,
}

/// Groups versions in feed order (by package id, newest first).
fn summarise(all: &[Package]) -> Vec<Summary<'_>> {
    all.chunk_by(|a, b| a.package_id.eq_ignore_ascii_case(&b.package_id))
        .map(|versions| Summary {
            latest: &versions[0],
            versions: versions.len(),
        })
        .collect()
}

/// What the upload form shows: whether Replace was ticked, and problems.
#[derive(Default)]
struct UploadForm {
    replace: bool,
    problems: Problems,
}

async fn library_view(
    inst: &Instance,
    viewer: &Viewer,
    filter: &str,
    form: &UploadForm,
) -> Result<Markup, PortalError> {
    let filters = PackageFilters {
        filter: (!filter.is_empty()).then(|| filter.to_owned()),
        ..Default::default()
    };
    let all = packages::list_packages(&inst.store, DEFAULT_SPACE_ID, &filters, vec![]).await?;
    let summaries = summarise(&all);
    let body = html! {
        div.page-head {
            h1 { "Library" }
            (layout::tabs("Library", &TABS, LIBRARY))
        }
        div.library-grid {
            section aria-labelledby="packages-title" {
                div.library-list-head {
                    h2 #packages-title { "Packages in the built-in feed" }
                    form.library-filter method="get" action=(LIBRARY) role="search" {
                        label for="package-filter" { "Filter" }
                        input #package-filter type="search" name="filter" value=(filter)
                            placeholder="Package id";
                        button type="submit" { "Filter" }
                        @if !filter.is_empty() { a.clear href=(LIBRARY) { "Clear" } }
                    }
                }
                (packages_table(&summaries, filter))
            }
            (upload_panel(viewer, form))
        }
    };
    Ok(layout::page(viewer, "Library", Nav::Library, body))
}

fn packages_table(summaries: &[Summary], filter: &str) -> Markup {
    let now = Timestamp::now();
    html! {
        @if summaries.is_empty() {
            div.panel.empty {
                @if filter.is_empty() {
                    h2 { "No packages yet" }
                    p.muted {
                        "Upload one here, or push one from a build to "
                        code { "POST /api/packages/raw" } "."
                    }
                } @else {
                    p { "No package id contains “" (filter) "”." }
                }
            }
        } @else {
            div.table-wrap {
                table.packages {
                    thead {
                        tr {
                            th scope="col" { "Package" }
                            th scope="col" { "Latest version" }
                            th scope="col" { "Versions" }
                            th scope="col" { "Size" }
                            th scope="col" { "Published" }
                        }
                    }
                    tbody {
                        @for s in summaries {
                            tr {
                                td { a href=(package_href(&s.latest.package_id)) { (s.latest.package_id) } }
                                td { (s.latest.version) }
                                td { (s.versions) }
                                td { (size(s.latest.package_size_bytes)) }
                                td { @if let Some(p) = s.latest.published { (layout::when(p, now)) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn upload_panel(viewer: &Viewer, form: &UploadForm) -> Markup {
    let problems = &form.problems;
    let invalid = problems.has("file");
    let described = if invalid {
        "package-file-error"
    } else {
        "package-file-hint"
    };
    html! {
        section #upload-panel.panel.library-upload aria-labelledby="upload-title" {
            h2 #upload-title { "Upload a package" }
            form #upload-form method="post" action=(UPLOAD) enctype="multipart/form-data" {
                // First, so that it is read before the file.
                (forms::csrf(viewer.csrf()))
                (problems.summary())
                div.field.invalid[invalid] {
                    label for="package-file" { "Package file" }
                    input #package-file type="file" name="file" required
                        accept=".zip,.nupkg,.tar.gz,.tgz,.tar,.tar.bz2"
                        aria-invalid=[invalid.then_some("true")] aria-describedby=(described);
                    @if !invalid {
                        p.hint #package-file-hint {
                            "Named " code { "<PackageId>.<Version>.<ext>" } ", like "
                            code { "Acme.Web.1.2.3.zip" } ": .zip, .nupkg, .tar.gz, .tgz, .tar or .tar.bz2."
                        }
                    }
                    (problems.under("package-file", "file"))
                }
                div.field {
                    label.library-check for="package-replace" {
                        input #package-replace type="checkbox" name="replace" value="true" checked[form.replace];
                        " Replace the version if it exists"
                    }
                }
                div #upload-progress.library-progress hidden {
                    progress #upload-progress-bar max="100" value="0" aria-label="Upload progress" {}
                    span #upload-percent aria-live="polite" { "0%" }
                }
                p #upload-status.alert role="alert" hidden {}
                div.actions {
                    button #upload-package.primary type="submit" { "Upload" }
                }
            }
        }
    }
}

// ---- uploading ----

/// Why an upload stopped before reaching the feed.
enum Refused {
    /// No valid CSRF token before the file: nothing more is read.
    Forbidden(PortalError),
    /// A problem with what was sent, shown beside the file input.
    Input(PortalError),
}

impl From<ServiceError> for Refused {
    fn from(e: ServiceError) -> Self {
        Refused::Input(e.into())
    }
}

/// The form's fields once read: the file's content is already on disk.
#[derive(Default)]
struct Received {
    upload: Option<Upload>,
    replace: bool,
}

/// `POST /library/packages/upload`
async fn upload(
    State(inst): State<AppState>,
    viewer: Viewer,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let mut multipart = match multipart {
        Ok(m) => m,
        Err(e) => {
            let why = format!("Send the package with the upload form ({})", e.body_text());
            return PortalError::BadRequest(why).page(Some(LIBRARY));
        }
    };
    let mut received = Received::default();
    let outcome = match receive(&inst, &viewer, &mut multipart, &mut received).await {
        Ok(()) => push(&inst, &viewer, received.upload.take(), received.replace).await,
        Err(Refused::Forbidden(e)) => return e.page(Some(LIBRARY)),
        Err(Refused::Input(e)) => {
            // The browser is still sending; reading the rest lets it see
            // the reason instead of a reset connection.
            drain(&mut multipart).await;
            Err(e)
        }
    };
    match outcome {
        Ok(package_id) => Redirect::to(&package_href(&package_id)).into_response(),
        Err(e) => refused_form(&inst, &viewer, e, received.replace).await,
    }
}

/// Reads the form's fields in order, streaming the file to disk. The token
/// must come first: a file part before it is refused unread.
async fn receive(
    inst: &Instance,
    viewer: &Viewer,
    multipart: &mut Multipart,
    received: &mut Received,
) -> Result<(), Refused> {
    let mut token_checked = false;
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == CSRF_FIELD {
            let token = short_text(field).await?;
            viewer
                .check_csrf(token.as_deref())
                .map_err(Refused::Forbidden)?;
            token_checked = true;
            continue;
        }
        if !token_checked {
            return Err(missing_token(viewer));
        }
        match name.as_str() {
            "replace" => received.replace = short_text(field).await?.is_some_and(|v| v == "true"),
            "file" if received.upload.is_none() => {
                received.upload = Some(stream_file(inst, field).await?);
            }
            _ => {}
        }
    }
    match token_checked {
        true => Ok(()),
        false => Err(missing_token(viewer)),
    }
}

/// Refuses a form whose token did not come first, with the message every
/// other form gives.
fn missing_token(viewer: &Viewer) -> Refused {
    match viewer.check_csrf(None) {
        Err(e) => Refused::Forbidden(e),
        // A session's token is never empty, so this is not reached.
        Ok(()) => Refused::Forbidden(
            ServiceError::Forbidden("The form's security token is missing".into()).into(),
        ),
    }
}

/// A form field's text, when it is short enough to be one of ours.
async fn short_text(mut field: Field<'_>) -> Result<Option<String>, Refused> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_TOKEN_LEN {
            return Ok(None);
        }
    }
    Ok(String::from_utf8(bytes).ok())
}

/// Writes the file part into a new [`Upload`], one piece at a time.
async fn stream_file(inst: &Instance, mut field: Field<'_>) -> Result<Upload, Refused> {
    let file_name = field.file_name().unwrap_or_default().to_owned();
    if file_name.trim().is_empty() {
        return Err(Refused::Input(PortalError::BadRequest(
            "Choose a package file to upload".into(),
        )));
    }
    let mut upload = Upload::begin(inst, &file_name).await?;
    while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
        upload.write(&chunk).await?;
    }
    Ok(upload)
}

async fn drain(multipart: &mut Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

fn unreadable(e: MultipartError) -> Refused {
    Refused::Input(PortalError::BadRequest(format!(
        "The upload could not be read to the end: {}",
        e.body_text()
    )))
}

/// Records the streamed file in the feed; the package id it went under.
async fn push(
    inst: &Instance,
    viewer: &Viewer,
    upload: Option<Upload>,
    replace: bool,
) -> Result<String, PortalError> {
    let upload =
        upload.ok_or_else(|| PortalError::BadRequest("Choose a package file to upload".into()))?;
    let mode = match replace {
        true => OverwriteMode::OverwriteExisting,
        false => OverwriteMode::FailIfExists,
    };
    let user = &viewer.actor;
    let pushed = packages::push(inst, user, DEFAULT_SPACE_ID, upload, mode).await?;
    Ok(pushed.package().package_id.clone())
}

/// The library again, with the reason under the file input.
async fn refused_form(inst: &Instance, viewer: &Viewer, e: PortalError, replace: bool) -> Response {
    let (status, mut problems) = match Problems::from_error(e, |_| Some("file")) {
        Ok(p) => p,
        Err(e) => return e.page(Some(LIBRARY)),
    };
    // The service's words are for API clients; here the checkbox does it.
    if status == StatusCode::CONFLICT {
        problems.on(
            "file",
            "Tick “Replace the version if it exists” to replace it.",
        );
    }
    let form = UploadForm { replace, problems };
    match library_view(inst, viewer, "", &form).await {
        Ok(page) => (status, page).into_response(),
        Err(e) => e.page(Some(LIBRARY)),
    }
}

// ---- a package's versions ----

/// `GET /library/packages/{package_id}`
async fn package_page(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(package_id): Path<String>,
) -> Response {
    match package_view(&inst, &viewer, &package_id).await {
        Ok(page) => page.into_response(),
        Err(e) => e.page(Some(LIBRARY)),
    }
}

/// `GET /library/packages/upload`: the page of a package called `upload`.
async fn upload_named_page(State(inst): State<AppState>, viewer: Viewer) -> Response {
    package_page(State(inst), viewer, Path("upload".into())).await
}

/// A version and the releases that deploy it, by name.
struct VersionRow {
    package: Package,
    used_by: Vec<(Release, String)>,
}

async fn versions_of(inst: &Instance, package_id: &str) -> Result<Vec<VersionRow>, PortalError> {
    let filters = PackageFilters {
        package_id: Some(package_id.to_owned()),
        ..Default::default()
    };
    let versions = packages::list_packages(&inst.store, DEFAULT_SPACE_ID, &filters, vec![]).await?;
    let using = packages::releases_using_each(&inst.store, &versions).await?;
    let names = project_names(inst, using.iter().flatten()).await?;
    let rows = versions
        .into_iter()
        .zip(using)
        .map(|(package, releases)| {
            let used_by = releases
                .into_iter()
                .map(|r| {
                    let name = names.get(&r.project_id).unwrap_or(&r.project_id).clone();
                    (r, name)
                })
                .collect();
            VersionRow { package, used_by }
        })
        .collect();
    Ok(rows)
}

/// The names of the releases' projects, read at once, by project id.
async fn project_names(
    inst: &Instance,
    releases: impl Iterator<Item = &Release>,
) -> Result<HashMap<String, String>, PortalError> {
    let mut ids: Vec<String> = releases.map(|r| r.project_id.clone()).collect();
    ids.sort();
    ids.dedup();
    // No ids would mean no filter: every project.
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let q = DocumentQuery {
        ids,
        ..Default::default()
    };
    let projects = inst.store.list::<Project>(&q).await?.items;
    Ok(projects.into_iter().map(|p| (p.id, p.name)).collect())
}

async fn package_view(
    inst: &Instance,
    viewer: &Viewer,
    package_id: &str,
) -> Result<Markup, PortalError> {
    let rows = versions_of(inst, package_id).await?;
    let Some(first) = rows.first() else {
        return Err(ServiceError::not_found("package", package_id).into());
    };
    let id = first.package.package_id.clone();
    let now = Timestamp::now();
    let body = html! {
        (head(&id, html! { " / " (id) }))
        div.table-wrap {
            table.package-versions {
                thead {
                    tr {
                        th scope="col" { "Version" }
                        th scope="col" { "Size" }
                        th scope="col" { "Published" }
                        th scope="col" { "SHA-256" }
                        th scope="col" { "Used by" }
                        th scope="col" { span.sr-only { "Actions" } }
                    }
                }
                tbody {
                    @for row in &rows {
                        (version_row(row, viewer.csrf(), now))
                    }
                }
            }
        }
        p.muted.library-note {
            "A version that a release deploys cannot be deleted; delete those releases first."
        }
    };
    Ok(layout::page(viewer, &id, Nav::Library, body))
}

fn version_row(row: &VersionRow, csrf: &str, now: Timestamp) -> Markup {
    let p = &row.package;
    let delete = format!(
        "/library/packages/{}/versions/{}/delete",
        p.package_id, p.version
    );
    html! {
        tr {
            td { strong { (p.version) } " " span.tag { (p.file_extension) } }
            td { (size(p.package_size_bytes)) }
            td { @if let Some(t) = p.published { (layout::when(t, now)) } }
            td { code.library-hash title=(p.hash) { (p.hash.get(..12).unwrap_or(&p.hash)) "…" } }
            td {
                @if row.used_by.is_empty() {
                    span.muted { "No releases" }
                } @else {
                    ul.library-uses {
                        @for (r, project) in &row.used_by {
                            li { a href=(format!("/projects/{}", r.project_id)) { (project) } " " (r.version) }
                        }
                    }
                }
            }
            td.library-actions {
                a.small href=(format!("/api/packages/{}/raw", p.id)) download=(p.file_name()) { "Download" }
                @if row.used_by.is_empty() {
                    form method="post" action=(delete) {
                        (forms::csrf(csrf))
                        button.danger.small type="submit"
                            data-confirm=(format!("Delete {} {}? This cannot be undone.", p.package_id, p.version)) {
                            "Delete"
                        }
                    }
                }
            }
        }
    }
}

/// `POST /library/packages/{package_id}/versions/{version}/delete`: back
/// to the package, or to the library when that was its last version.
async fn delete_version(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path((package_id, version)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let back = package_href(&package_id);
    let done = async {
        viewer.check_csrf(form.csrf.as_deref())?;
        let id = package_resource_id(&package_id, &version);
        let user = &viewer.actor;
        packages::delete_package(&inst, user, DEFAULT_SPACE_ID, &id).await?;
        let filters = PackageFilters {
            package_id: Some(package_id.clone()),
            ..Default::default()
        };
        let left = packages::list_packages(&inst.store, DEFAULT_SPACE_ID, &filters, vec![]).await?;
        Ok::<_, PortalError>(!left.is_empty())
    };
    match done.await {
        Ok(true) => Redirect::to(&back).into_response(),
        Ok(false) => Redirect::to(LIBRARY).into_response(),
        Err(e) => e.page(Some(&back)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(532), "532 B");
        assert_eq!(size(14_541), "14.2 KB");
        assert_eq!(size(3 * 1024 * 1024 * 1024 / 2), "1.5 GB");
    }

    #[test]
    fn versions_group_by_package_in_any_case() {
        let v = |id: &str, version: &str| Package {
            package_id: id.into(),
            version: version.into(),
            ..Default::default()
        };
        let mut all = vec![
            v("Acme.Web", "1.0.0"),
            v("Acme.Db", "2.0.0"),
            v("acme.web", "1.10.0"),
        ];
        all.sort_by(cuttle_model::package::feed_order);
        let found: Vec<_> = summarise(&all)
            .iter()
            .map(|s| {
                (
                    s.latest.package_id.as_str(),
                    s.latest.version.as_str(),
                    s.versions,
                )
            })
            .collect();
        assert_eq!(found, [("Acme.Db", "2.0.0", 1), ("acme.web", "1.10.0", 2)]);
    }
}
