//! The built-in package feed: `POST packages/raw` (multipart, streamed to
//! disk), the package list and items, downloads, deletes, and the feed's
//! version search that Octopus clients use.

use super::{Id, Q};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::links::{page_of, resource, Linked};
use crate::route_table::{get, op, post, Routes, OCTET_STREAM};
use crate::space::SpaceId;
use crate::AppState;
use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Json;
use cuttle_model::build_info::BuildInformation;
use cuttle_model::ids::BUILTIN_FEED_ID;
use cuttle_model::package::Package;
use cuttle_model::Permission;
use cuttle_service::build_info;
use cuttle_service::packages::{self, OverwriteMode, PackageFilters, Upload};
use cuttle_service::paging::ListParams;
use cuttle_service::Instance;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub fn routes(mut r: Routes) -> Routes {
    // Packages are as large as they come; the upload streams to disk, so
    // the request body needs no limit.
    r = r.space(
        "/packages/raw",
        post(
            push,
            op("Pushes a package to the built-in feed (multipart, one file part)")
                .requires(Permission::BuiltInFeedPush)
                .query::<PushParams>()
                .upload()
                .created::<PackageView>(),
        )
        .layer(DefaultBodyLimit::disable()),
    );
    r = r.space(
        "/packages",
        get(
            list,
            op("Lists the built-in feed's packages")
                .requires(Permission::FeedView)
                .query::<ListParams>()
                .query::<PackageFilters>()
                .page::<PackageView>(),
        ),
    );
    r = r.space(
        "/packages/{id}",
        get(
            item,
            op("One package version")
                .requires(Permission::FeedView)
                .resource::<PackageView>(),
        )
        .delete(
            delete,
            op("Deletes a package version")
                .requires(Permission::BuiltInFeedAdminister)
                .no_content(),
        ),
    );
    r = r.space(
        "/packages/{id}/raw",
        get(
            download,
            op("Downloads a package file")
                .requires(Permission::BuiltInFeedDownload)
                .media(OCTET_STREAM),
        ),
    );
    r.space(
        "/feeds/{id}/packages/versions",
        get(
            versions,
            op("Lists a package's versions in a feed, newest first")
                .requires(Permission::FeedView)
                .query::<ListParams>()
                .query::<PackageFilters>()
                .page::<PackageView>(),
        ),
    )
}

/// A package version as Octopus shows it: the feed's record, the fields
/// Octopus reads from a package's metadata, and the build information
/// recorded for the version.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
struct PackageView {
    #[serde(flatten)]
    package: Package,
    /// The package id, as Octopus shows packages without a title of their
    /// own; Cuttle reads no package metadata.
    title: String,
    summary: Option<String>,
    description: Option<String>,
    release_notes: Option<String>,
    #[serde(rename = "NuGetPackageId")]
    nuget_package_id: String,
    #[serde(rename = "NuGetFeedId")]
    nuget_feed_id: String,
    /// The build information resource for this package id and version, or
    /// null.
    #[schema(value_type = Option<BuildInformation>)]
    package_version_build_information: Option<Value>,
}

impl PackageView {
    fn new(package: Package, build: Option<BuildInformation>) -> PackageView {
        PackageView {
            title: package.package_id.clone(),
            summary: None,
            description: None,
            release_notes: None,
            nuget_package_id: package.package_id.clone(),
            nuget_feed_id: package.feed_id.clone(),
            package_version_build_information: build.as_ref().map(resource),
            package,
        }
    }

    /// Each of `packages` with its build information.
    async fn all(inst: &Instance, space: &str, packages: Vec<Package>) -> ApiResult<Vec<Self>> {
        let builds = build_info::of_packages(&inst.store, space, &packages).await?;
        Ok(packages
            .into_iter()
            .zip(builds)
            .map(|(p, b)| PackageView::new(p, b))
            .collect())
    }

    async fn one(inst: &Instance, space: &str, package: Package) -> ApiResult<Value> {
        let view = PackageView::all(inst, space, vec![package]).await?;
        Ok(view.first().map(resource).unwrap_or(Value::Null))
    }
}

impl Linked for PackageView {
    fn links(&self) -> Value {
        self.package.links()
    }
    fn item_type() -> &'static str {
        Package::item_type()
    }
}

impl Linked for Package {
    fn links(&self) -> Value {
        let base = format!("/api/{}/packages/{}", self.space_id, self.id);
        json!({
            "Self": base,
            "Raw": format!("{base}/raw"),
            "Feed": format!("/api/{}/feeds/{}", self.space_id, self.feed_id),
        })
    }
    fn item_type() -> &'static str {
        "Package"
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PushParams {
    #[serde(
        rename = "overwriteMode",
        alias = "overwritemode",
        alias = "OverwriteMode"
    )]
    overwrite_mode: Option<String>,
    replace: Option<String>,
}

async fn push(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    SpaceId(s): SpaceId,
    Q(p): Q<PushParams>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let mode = OverwriteMode::from_query(p.overwrite_mode.as_deref(), p.replace.as_deref())?;
    let mut multipart = multipart.map_err(|e| {
        ApiError::bad_request(format!(
            "Send the package as multipart/form-data with one file part ({})",
            e.body_text()
        ))
    })?;
    let upload = match receive(&inst, &mut multipart).await {
        Ok(u) => u,
        Err(e) => {
            // The client is still sending; reading the rest (and dropping
            // it) lets it see the error instead of a reset connection.
            drain(&mut multipart).await;
            return Err(e);
        }
    };
    let pushed = packages::push(&inst, &caller, &s, upload, mode).await?;
    let view = PackageView::one(&inst, &s, pushed.package().clone()).await?;
    // Octopus answers 201 whatever the overwrite mode did; scripts check it.
    Ok((StatusCode::CREATED, Json(view)))
}

/// Streams the first file part into an [`Upload`], a piece at a time.
/// Parts that are not files (form fields) are skipped.
async fn receive(inst: &Instance, multipart: &mut Multipart) -> ApiResult<Upload> {
    while let Some(mut field) = multipart.next_field().await.map_err(unreadable)? {
        let Some(file_name) = field.file_name().map(str::to_owned) else {
            continue;
        };
        let mut upload = Upload::begin(inst, &file_name).await?;
        while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
            upload.write(&chunk).await?;
        }
        return Ok(upload);
    }
    Err(ApiError::bad_request(
        "The upload has no file: send the package as a multipart/form-data file part named after the package (Acme.Web.1.2.3.zip)",
    ))
}

async fn drain(multipart: &mut Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

fn unreadable(e: MultipartError) -> ApiError {
    ApiError::bad_request(format!(
        "The upload could not be read to the end: {}",
        e.body_text()
    ))
}

async fn list(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
    Q(f): Q<PackageFilters>,
) -> ApiResult<Json<Value>> {
    let found = packages::list_packages(&inst.store, &s, &f, p.ids()).await?;
    let found = PackageView::all(&inst, &s, found).await?;
    Ok(Json(page_of(found, &p, &format!("/api/{s}/packages"))))
}

async fn item(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    let p = packages::get_package(&inst.store, &s, &id).await?;
    Ok(Json(PackageView::one(&inst, &s, p).await?))
}

/// The file, streamed from disk.
async fn download(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Response> {
    let (package, file) = packages::open_package(&inst, &s, &id).await?;
    let disposition = format!("attachment; filename=\"{}\"", package.file_name());
    let mut response = Response::new(Body::from_stream(tokio_util::io::ReaderStream::new(file)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, package.package_size_bytes.into());
    // Ids and versions are limited to characters that are safe here.
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

async fn delete(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    packages::delete_package(&inst, &caller, &s, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `feeds/feeds-builtin/packages/versions?packageId=X`: a package's
/// versions, newest first, as Octopus clients look them up.
async fn versions(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(feed): Id,
    Q(p): Q<ListParams>,
    Q(f): Q<PackageFilters>,
) -> ApiResult<Json<Value>> {
    if feed != BUILTIN_FEED_ID {
        return Err(ApiError::not_found(format!(
            "The feed '{feed}' was not found"
        )));
    }
    let Some(package_id) = f.package_id.clone().filter(|p| !p.trim().is_empty()) else {
        return Err(ApiError::bad_request(
            "packageId is required: say which package's versions to list",
        ));
    };
    let filters = PackageFilters {
        package_id: Some(package_id),
        filter: None,
        latest: None,
    };
    let found = packages::list_packages(&inst.store, &s, &filters, vec![]).await?;
    let found = PackageView::all(&inst, &s, found).await?;
    let path = format!("/api/{s}/feeds/{feed}/packages/versions");
    let mut page = page_of(found, &p, &path);
    // Feed searches call the size SizeBytes.
    if let Some(items) = page["Items"].as_array_mut() {
        for item in items {
            item["SizeBytes"] = item["PackageSizeBytes"].clone();
        }
    }
    Ok(Json(page))
}
