//! Projects, channels and deployment processes.

use super::{document_query, Id, Q};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::OctoJson;
use crate::links::{page, resource};
use crate::route_table::{get, op, Routes};
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use cuttle_model::{Channel, DeploymentProcess, Project, Release};
use cuttle_service::channels;
use cuttle_service::paging::ListParams;
use cuttle_service::projects::{self as svc, ProcessUpdate};
use cuttle_service::releases::find_release;
use cuttle_service::resources::{get_in_space, list};
use cuttle_store::{DocumentQuery, ProcessSnapshot};
use serde_json::Value;
use std::collections::HashMap;

pub fn routes(mut r: Routes) -> Routes {
    r = r.space(
        "/projects",
        get(
            list_projects,
            op("Lists the space's projects")
                .query::<ListParams>()
                .page::<Project>(),
        )
        .post(
            create_project,
            op("Creates a project, with its process and variable set")
                .body::<Project>()
                .created::<Project>(),
        ),
    );
    r = r.space(
        "/projects/all",
        get(
            all_projects,
            op("Every project in the space").array::<Project>(),
        ),
    );
    r = r.space(
        "/projects/{id}",
        get(
            project,
            op("One project, by id or slug").resource::<Project>(),
        )
        .put(
            update_project,
            op("Modifies a project")
                .body::<Project>()
                .resource::<Project>(),
        )
        .delete(
            delete_project,
            op("Deletes a project and what belongs to it").no_content(),
        ),
    );
    r = r.space(
        "/projects/{id}/channels",
        get(
            project_channels,
            op("Lists a project's channels")
                .query::<ListParams>()
                .page::<Channel>(),
        ),
    );
    r = r.space(
        "/projects/{id}/releases",
        get(
            project_releases,
            op("Lists a project's releases, newest first")
                .query::<ListParams>()
                .page::<Release>(),
        ),
    );
    r = r.space(
        "/projects/{id}/releases/{version}",
        get(
            project_release,
            op("One release of a project, by its version").resource::<Release>(),
        ),
    );
    r = r.space(
        "/projects/{id}/deploymentprocesses",
        get(
            project_process,
            op("A project's deployment process").resource::<DeploymentProcess>(),
        )
        .put(
            update_project_process,
            op("Replaces a project's deployment process; its Version must be the one loaded")
                .body::<ProcessUpdate>()
                .resource::<DeploymentProcess>(),
        ),
    );
    r = r.space(
        "/channels",
        get(
            list_channels,
            op("Lists the space's channels")
                .query::<ListParams>()
                .page::<Channel>(),
        )
        .post(
            create_channel,
            op("Creates a channel of a project")
                .body::<Channel>()
                .created::<Channel>(),
        ),
    );
    r = r.space(
        "/channels/{id}",
        get(channel, op("One channel").resource::<Channel>())
            .put(
                update_channel,
                op("Modifies a channel")
                    .body::<Channel>()
                    .resource::<Channel>(),
            )
            .delete(delete_channel, op("Deletes a channel").no_content()),
    );
    r.space(
        "/deploymentprocesses/{id}",
        get(
            process,
            op("A deployment process, or a release's snapshot of one")
                .resource::<DeploymentProcess>(),
        )
        .put(
            update_process,
            op("Replaces a deployment process; its Version must be the one loaded")
                .body::<ProcessUpdate>()
                .resource::<DeploymentProcess>(),
        ),
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
