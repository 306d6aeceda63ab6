//! Projects, channels and deployment processes.

use super::{document_query, scoped, Id, Q};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::OctoJson;
use crate::links::{page, resource};
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use cuttle_model::{Channel, DeploymentProcess, Project, Release};
use cuttle_service::channels;
use cuttle_service::paging::ListParams;
use cuttle_service::projects::{self as svc, ProcessUpdate};
use cuttle_service::releases::find_release;
use cuttle_service::resources::{get_in_space, list};
use cuttle_store::{DocumentQuery, ProcessSnapshot};
use serde_json::Value;
use std::collections::HashMap;

pub fn routes(mut r: Router<AppState>) -> Router<AppState> {
    r = scoped(r, "/projects", get(list_projects).post(create_project));
    r = scoped(r, "/projects/all", get(all_projects));
    r = scoped(
        r,
        "/projects/{id}",
        get(project).put(update_project).delete(delete_project),
    );
    r = scoped(r, "/projects/{id}/channels", get(project_channels));
    r = scoped(r, "/projects/{id}/releases", get(project_releases));
    r = scoped(r, "/projects/{id}/releases/{version}", get(project_release));
    r = scoped(
        r,
        "/projects/{id}/deploymentprocesses",
        get(project_process).put(update_project_process),
    );
    r = scoped(r, "/channels", get(list_channels).post(create_channel));
    r = scoped(
        r,
        "/channels/{id}",
        get(channel).put(update_channel).delete(delete_channel),
    );
    scoped(
        r,
        "/deploymentprocesses/{id}",
        get(process).put(update_process),
    )
}

async fn list_projects(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let found = list::<Project>(&inst.store, &document_query(&s, &p)).await?;
    Ok(Json(page(
        &found.items,
        found.total,
        &p,
        &format!("/api/{s}/projects"),
    )))
}

async fn all_projects(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
) -> ApiResult<Json<Value>> {
    let q = DocumentQuery {
        space_id: Some(s),
        ..Default::default()
    };
    let found = list::<Project>(&inst.store, &q).await?;
    Ok(Json(Value::Array(
        found.items.iter().map(resource).collect(),
    )))
}

async fn project(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &svc::find_project(&inst.store, &s, &id).await?,
    )))
}

async fn create_project(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    OctoJson(body): OctoJson<Project>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let p = svc::create_project(&inst.store, &c, &s, body).await?;
    Ok((StatusCode::CREATED, Json(resource(&p))))
}

async fn update_project(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<Project>,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &svc::update_project(&inst.store, &c, &s, &id, body).await?,
    )))
}

async fn delete_project(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    svc::delete_project(&inst.store, &c, &s, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn project_channels(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let project = svc::find_project(&inst.store, &s, &id).await?;
    let q = DocumentQuery {
        parent_ids: vec![project.id.clone()],
        ..document_query(&s, &p)
    };
    let found = list::<Channel>(&inst.store, &q).await?;
    Ok(Json(page(
        &found.items,
        found.total,
        &p,
        &format!("/api/{s}/projects/{}/channels", project.id),
    )))
}

async fn project_releases(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let project = svc::find_project(&inst.store, &s, &id).await?;
    let q = DocumentQuery {
        parent_ids: vec![project.id.clone()],
        descending: true,
        ..document_query(&s, &p)
    };
    let found = list::<Release>(&inst.store, &q).await?;
    Ok(Json(page(
        &found.items,
        found.total,
        &p,
        &format!("/api/{s}/projects/{}/releases", project.id),
    )))
}

async fn project_release(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Path(params): Path<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let (Some(id), Some(version)) = (params.get("id"), params.get("version")) else {
        return Err(ApiError::bad_request(
            "The route needs a project and a version",
        ));
    };
    let project = svc::find_project(&inst.store, &s, id).await?;
    Ok(Json(resource(
        &find_release(&inst.store, &project, version).await?,
    )))
}

async fn project_process(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    let project = svc::find_project(&inst.store, &s, &id).await?;
    Ok(Json(resource(
        &svc::process_of_project(&inst.store, &s, &project.id).await?,
    )))
}

async fn update_project_process(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<ProcessUpdate>,
) -> ApiResult<Json<Value>> {
    let project = svc::find_project(&inst.store, &s, &id).await?;
    let updated =
        svc::update_process(&inst.store, &c, &s, &project.deployment_process_id, body).await?;
    Ok(Json(resource(&updated)))
}

async fn list_channels(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let found = list::<Channel>(&inst.store, &document_query(&s, &p)).await?;
    Ok(Json(page(
        &found.items,
        found.total,
        &p,
        &format!("/api/{s}/channels"),
    )))
}

async fn channel(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &get_in_space::<Channel>(&inst.store, &s, &id).await?,
    )))
}

async fn create_channel(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    OctoJson(body): OctoJson<Channel>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let ch = channels::create_channel(&inst.store, &c, &s, body).await?;
    Ok((StatusCode::CREATED, Json(resource(&ch))))
}

async fn update_channel(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<Channel>,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &channels::update_channel(&inst.store, &c, &s, &id, body).await?,
    )))
}

async fn delete_channel(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    channels::delete_channel(&inst.store, &c, &s, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A process, or the snapshot a release froze (snapshot ids share the route).
async fn process(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    match get_in_space::<DeploymentProcess>(&inst.store, &s, &id).await {
        Ok(p) => Ok(Json(resource(&p))),
        Err(_) => {
            let snap = get_in_space::<ProcessSnapshot>(&inst.store, &s, &id).await?;
            Ok(Json(resource(&snap.0)))
        }
    }
}

async fn update_process(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<ProcessUpdate>,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &svc::update_process(&inst.store, &c, &s, &id, body).await?,
    )))
}
