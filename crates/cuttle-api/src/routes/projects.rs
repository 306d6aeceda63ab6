//! Projects, channels and deployment processes.

use super::{document_query, Id, Q};
use crate::auth::Caller;
use crate::authorize::Perms;
use crate::error::{ApiError, ApiResult};
use crate::json::OctoJson;
use crate::links::{page, page_of, resource};
use crate::route_table::{get, op, Routes};
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use cuttle_model::{Channel, DeploymentProcess, Permission, Permissions, Project, Release, Scope};
use cuttle_service::channels;
use cuttle_service::paging::ListParams;
use cuttle_service::projects::{self as svc, ProcessUpdate};
use cuttle_service::releases::find_release;
use cuttle_service::resources::{get_in_space, list};
use cuttle_service::{permissions, ServiceError};
use cuttle_store::Store;
use cuttle_store::{DocumentQuery, ProcessSnapshot};
use serde_json::Value;
use std::collections::HashMap;

pub fn routes(mut r: Routes) -> Routes {
    r = r.space(
        "/projects",
        get(
            list_projects,
            op("Lists the space's projects")
                .requires(Permission::ProjectView)
                .query::<ListParams>()
                .page::<Project>(),
        )
        .post(
            create_project,
            op("Creates a project, with its process and variable set")
                .requires(Permission::ProjectCreate)
                .body::<Project>()
                .created::<Project>(),
        ),
    );
    r = r.space(
        "/projects/all",
        get(
            all_projects,
            op("Every project in the space")
                .requires(Permission::ProjectView)
                .array::<Project>(),
        ),
    );
    r = r.space(
        "/projects/{id}",
        get(
            project,
            op("One project, by id or slug")
                .requires(Permission::ProjectView)
                .resource::<Project>(),
        )
        .put(
            update_project,
            op("Modifies a project")
                .requires(Permission::ProjectEdit)
                .body::<Project>()
                .resource::<Project>(),
        )
        .delete(
            delete_project,
            op("Deletes a project and what belongs to it")
                .requires(Permission::ProjectDelete)
                .no_content(),
        ),
    );
    r = r.space(
        "/projects/{id}/channels",
        get(
            project_channels,
            op("Lists a project's channels")
                .requires(Permission::ProjectView)
                .query::<ListParams>()
                .page::<Channel>(),
        ),
    );
    r = r.space(
        "/projects/{id}/releases",
        get(
            project_releases,
            op("Lists a project's releases, newest first")
                .requires(Permission::ReleaseView)
                .query::<ListParams>()
                .page::<Release>(),
        ),
    );
    r = r.space(
        "/projects/{id}/releases/{version}",
        get(
            project_release,
            op("One release of a project, by its version")
                .requires(Permission::ReleaseView)
                .resource::<Release>(),
        ),
    );
    r = r.space(
        "/projects/{id}/deploymentprocesses",
        get(
            project_process,
            op("A project's deployment process")
                .requires(Permission::ProcessView)
                .resource::<DeploymentProcess>(),
        )
        .put(
            update_project_process,
            op("Replaces a project's deployment process; its Version must be the one loaded")
                .requires(Permission::ProcessEdit)
                .body::<ProcessUpdate>()
                .resource::<DeploymentProcess>(),
        ),
    );
    r = r.space(
        "/channels",
        get(
            list_channels,
            op("Lists the space's channels")
                .requires(Permission::ProjectView)
                .query::<ListParams>()
                .page::<Channel>(),
        )
        .post(
            create_channel,
            op("Creates a channel of a project")
                .requires(Permission::ProjectEdit)
                .body::<Channel>()
                .created::<Channel>(),
        ),
    );
    r = r.space(
        "/channels/{id}",
        get(
            channel,
            op("One channel")
                .requires(Permission::ProjectView)
                .resource::<Channel>(),
        )
        .put(
            update_channel,
            op("Modifies a channel")
                .requires(Permission::ProjectEdit)
                .body::<Channel>()
                .resource::<Channel>(),
        )
        .delete(
            delete_channel,
            op("Deletes a channel")
                .requires(Permission::ProjectEdit)
                .no_content(),
        ),
    );
    r.space(
        "/deploymentprocesses/{id}",
        get(
            process,
            op("A deployment process, or a release's snapshot of one")
                .requires(Permission::ProcessView)
                .resource::<DeploymentProcess>(),
        )
        .put(
            update_process,
            op("Replaces a deployment process; its Version must be the one loaded")
                .requires(Permission::ProcessEdit)
                .body::<ProcessUpdate>()
                .resource::<DeploymentProcess>(),
        ),
    )
}

/// The scope of an action on `project`.
pub(super) fn project_scope(project: &Project) -> Scope<'_> {
    Scope::space(&project.space_id)
        .project(&project.id)
        .project_group(&project.project_group_id)
}

/// Whether the caller may see `project`.
pub(super) fn may_view_project(perms: &Permissions, project: &Project) -> bool {
    perms.allows(Permission::ProjectView, &project_scope(project))
}

/// A project (by id or slug) the caller may do `p` to: one they may not
/// see answers as missing; one they see but may not do `p` to, 403.
pub(super) async fn project_for(
    store: &Store,
    perms: &Permissions,
    space: &str,
    id: &str,
    p: Permission,
) -> Result<Project, ApiError> {
    let project = svc::find_project(store, space, id).await?;
    let scope = project_scope(&project);
    if !perms.allows(Permission::ProjectView, &scope) && !perms.allows(p, &scope) {
        return Err(ServiceError::not_found("project", id).into());
    }
    permissions::require(perms, p, &scope)?;
    Ok(project)
}

/// Whether no grant narrows the caller's `p` in `space` to projects.
pub(super) fn whole_space(perms: &Permissions, p: Permission, space: &str) -> bool {
    perms.administrator
        || perms.grants.iter().any(|g| {
            g.space_id.as_deref() == Some(space)
                && g.permissions.contains(&p)
                && g.project_ids.is_empty()
                && g.project_group_ids.is_empty()
        })
}

async fn list_projects(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let path = format!("/api/{s}/projects");
    if whole_space(&perms, Permission::ProjectView, &s) {
        let found = list::<Project>(&inst.store, &document_query(&s, &p)).await?;
        return Ok(Json(page(&found.items, found.total, &p, &path)));
    }
    let q = DocumentQuery {
        skip: 0,
        take: None,
        ..document_query(&s, &p)
    };
    let mine: Vec<Project> = list::<Project>(&inst.store, &q)
        .await?
        .items
        .into_iter()
        .filter(|x| may_view_project(&perms, x))
        .collect();
    Ok(Json(page_of(mine, &p, &path)))
}

async fn all_projects(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
) -> ApiResult<Json<Value>> {
    let q = DocumentQuery {
        space_id: Some(s),
        ..Default::default()
    };
    let found = list::<Project>(&inst.store, &q).await?;
    Ok(Json(Value::Array(
        found
            .items
            .iter()
            .filter(|x| may_view_project(&perms, x))
            .map(resource)
            .collect(),
    )))
}

async fn project(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &project_for(&inst.store, &perms, &s, &id, Permission::ProjectView).await?,
    )))
}

async fn create_project(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    OctoJson(body): OctoJson<Project>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut scope = Scope::space(&s);
    if !body.project_group_id.is_empty() {
        scope = scope.project_group(&body.project_group_id);
    }
    permissions::require(&perms, Permission::ProjectCreate, &scope)?;
    let p = svc::create_project(&inst.store, &c, &s, body).await?;
    Ok((StatusCode::CREATED, Json(resource(&p))))
}

async fn update_project(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<Project>,
) -> ApiResult<Json<Value>> {
    project_for(&inst.store, &perms, &s, &id, Permission::ProjectEdit).await?;
    Ok(Json(resource(
        &svc::update_project(&inst.store, &c, &s, &id, body).await?,
    )))
}

async fn delete_project(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    project_for(&inst.store, &perms, &s, &id, Permission::ProjectDelete).await?;
    svc::delete_project(&inst.store, &c, &s, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn project_channels(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let project = project_for(&inst.store, &perms, &s, &id, Permission::ProjectView).await?;
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
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let project = project_for(&inst.store, &perms, &s, &id, Permission::ReleaseView).await?;
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
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Path(params): Path<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let (Some(id), Some(version)) = (params.get("id"), params.get("version")) else {
        return Err(ApiError::bad_request(
            "The route needs a project and a version",
        ));
    };
    let project = project_for(&inst.store, &perms, &s, id, Permission::ReleaseView).await?;
    Ok(Json(resource(
        &find_release(&inst.store, &project, version).await?,
    )))
}

async fn project_process(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    let project = project_for(&inst.store, &perms, &s, &id, Permission::ProcessView).await?;
    Ok(Json(resource(
        &svc::process_of_project(&inst.store, &s, &project.id).await?,
    )))
}

async fn update_project_process(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<ProcessUpdate>,
) -> ApiResult<Json<Value>> {
    let project = project_for(&inst.store, &perms, &s, &id, Permission::ProcessEdit).await?;
    let updated =
        svc::update_process(&inst.store, &c, &s, &project.deployment_process_id, body).await?;
    Ok(Json(resource(&updated)))
}

async fn list_channels(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let path = format!("/api/{s}/channels");
    if whole_space(&perms, Permission::ProjectView, &s) {
        let found = list::<Channel>(&inst.store, &document_query(&s, &p)).await?;
        return Ok(Json(page(&found.items, found.total, &p, &path)));
    }
    let projects = visible_project_ids(&inst.store, &perms, &s).await?;
    let q = DocumentQuery {
        skip: 0,
        take: None,
        ..document_query(&s, &p)
    };
    let mine: Vec<Channel> = list::<Channel>(&inst.store, &q)
        .await?
        .items
        .into_iter()
        .filter(|c| projects.contains(&c.project_id))
        .collect();
    Ok(Json(page_of(mine, &p, &path)))
}

/// The ids of the space's projects the caller may see.
pub(super) async fn visible_project_ids(
    store: &Store,
    perms: &Permissions,
    space: &str,
) -> Result<std::collections::HashSet<String>, ApiError> {
    let all = list::<Project>(store, &DocumentQuery::in_space(space)).await?;
    Ok(all
        .items
        .into_iter()
        .filter(|p| may_view_project(perms, p))
        .map(|p| p.id)
        .collect())
}

/// A channel whose project the caller may do `p` to.
async fn channel_for(
    store: &Store,
    perms: &Permissions,
    space: &str,
    id: &str,
    p: Permission,
) -> Result<Channel, ApiError> {
    let ch = get_in_space::<Channel>(store, space, id).await?;
    project_for(store, perms, space, &ch.project_id, p)
        .await
        .map_err(|e| match e.status {
            StatusCode::NOT_FOUND => ServiceError::not_found("channel", id).into(),
            _ => e,
        })?;
    Ok(ch)
}

async fn channel(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &channel_for(&inst.store, &perms, &s, &id, Permission::ProjectView).await?,
    )))
}

async fn create_channel(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    OctoJson(body): OctoJson<Channel>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    project_for(
        &inst.store,
        &perms,
        &s,
        &body.project_id,
        Permission::ProjectEdit,
    )
    .await
    .map_err(|e| match e.status {
        StatusCode::NOT_FOUND => ServiceError::invalid(vec![format!(
            "The project '{}' was not found",
            body.project_id
        )])
        .into(),
        _ => e,
    })?;
    let ch = channels::create_channel(&inst.store, &c, &s, body).await?;
    Ok((StatusCode::CREATED, Json(resource(&ch))))
}

async fn update_channel(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<Channel>,
) -> ApiResult<Json<Value>> {
    channel_for(&inst.store, &perms, &s, &id, Permission::ProjectEdit).await?;
    Ok(Json(resource(
        &channels::update_channel(&inst.store, &c, &s, &id, body).await?,
    )))
}

async fn delete_channel(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    channel_for(&inst.store, &perms, &s, &id, Permission::ProjectEdit).await?;
    channels::delete_channel(&inst.store, &c, &s, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A process, or the snapshot a release froze (snapshot ids share the route).
async fn process(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    let found = match get_in_space::<DeploymentProcess>(&inst.store, &s, &id).await {
        Ok(p) => p,
        Err(_) => {
            get_in_space::<ProcessSnapshot>(&inst.store, &s, &id)
                .await?
                .0
        }
    };
    process_project(
        &inst.store,
        &perms,
        &s,
        &found,
        &id,
        Permission::ProcessView,
    )
    .await?;
    Ok(Json(resource(&found)))
}

/// Checks `p` on the project a process belongs to; a process of a project
/// the caller may not see answers as missing.
async fn process_project(
    store: &Store,
    perms: &Permissions,
    space: &str,
    process: &DeploymentProcess,
    id: &str,
    p: Permission,
) -> Result<(), ApiError> {
    project_for(store, perms, space, &process.project_id, p)
        .await
        .map_err(|e| match e.status {
            StatusCode::NOT_FOUND => ServiceError::not_found("deployment process", id).into(),
            _ => e,
        })?;
    Ok(())
}

async fn update_process(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<ProcessUpdate>,
) -> ApiResult<Json<Value>> {
    let found = get_in_space::<DeploymentProcess>(&inst.store, &s, &id).await?;
    process_project(
        &inst.store,
        &perms,
        &s,
        &found,
        &id,
        Permission::ProcessEdit,
    )
    .await?;
    Ok(Json(resource(
        &svc::update_process(&inst.store, &c, &s, &id, body).await?,
    )))
}
