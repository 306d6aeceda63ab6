//! Environments, project groups and lifecycles.

use super::{document_query, scoped, Id, Q};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::json::OctoJson;
use crate::links::{page, resource};
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use cuttle_model::{Environment, Lifecycle, Project, ProjectGroup};
use cuttle_service::paging::ListParams;
use cuttle_service::resources as svc;
use cuttle_store::DocumentQuery;
use serde_json::Value;

pub fn routes(mut r: Router<AppState>) -> Router<AppState> {
    r = scoped(
        r,
        "/environments",
        get(list_environments).post(create_environment),
    );
    r = scoped(r, "/environments/all", get(all_environments));
    r = scoped(r, "/environments/sortorder", put(sort_environments));
    r = scoped(
        r,
        "/environments/{id}",
        get(environment)
            .put(update_environment)
            .delete(delete_environment),
    );
    r = scoped(r, "/projectgroups", get(list_groups).post(create_group));
    r = scoped(r, "/projectgroups/all", get(all_groups));
    r = scoped(
        r,
        "/projectgroups/{id}",
        get(group).put(update_group).delete(delete_group),
    );
    r = scoped(r, "/projectgroups/{id}/projects", get(group_projects));
    r = scoped(
        r,
        "/lifecycles",
        get(list_lifecycles).post(create_lifecycle),
    );
    r = scoped(r, "/lifecycles/all", get(all_lifecycles));
    scoped(
        r,
        "/lifecycles/{id}",
        get(lifecycle)
            .put(update_lifecycle)
            .delete(delete_lifecycle),
    )
}

fn all_query(space: &str) -> DocumentQuery {
    DocumentQuery {
        space_id: Some(space.into()),
        ..Default::default()
    }
}

// ---- environments ----

async fn list_environments(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let found = svc::list::<Environment>(&inst.store, &document_query(&s, &p)).await?;
    Ok(Json(page(
        &found.items,
        found.total,
        &p,
        &format!("/api/{s}/environments"),
    )))
}

async fn all_environments(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
) -> ApiResult<Json<Value>> {
    let found = svc::list::<Environment>(&inst.store, &all_query(&s)).await?;
    Ok(Json(Value::Array(
        found.items.iter().map(resource).collect(),
    )))
}

async fn environment(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &svc::get_in_space::<Environment>(&inst.store, &s, &id).await?,
    )))
}

async fn create_environment(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    OctoJson(body): OctoJson<Environment>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let e = svc::create_environment(&inst.store, &c, &s, body).await?;
    Ok((StatusCode::CREATED, Json(resource(&e))))
}

async fn update_environment(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<Environment>,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &svc::update_environment(&inst.store, &c, &s, &id, body).await?,
    )))
}

async fn delete_environment(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    svc::delete_environment(&inst.store, &c, &s, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn sort_environments(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    OctoJson(ids): OctoJson<Vec<String>>,
) -> ApiResult<StatusCode> {
    svc::sort_environments(&inst.store, &c, &s, &ids).await?;
    Ok(StatusCode::OK)
}

// ---- project groups ----

async fn list_groups(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let found = svc::list::<ProjectGroup>(&inst.store, &document_query(&s, &p)).await?;
    Ok(Json(page(
        &found.items,
        found.total,
        &p,
        &format!("/api/{s}/projectgroups"),
    )))
}

async fn all_groups(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
) -> ApiResult<Json<Value>> {
    let found = svc::list::<ProjectGroup>(&inst.store, &all_query(&s)).await?;
    Ok(Json(Value::Array(
        found.items.iter().map(resource).collect(),
    )))
}

async fn group(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &svc::get_in_space::<ProjectGroup>(&inst.store, &s, &id).await?,
    )))
}

async fn group_projects(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let g = svc::get_in_space::<ProjectGroup>(&inst.store, &s, &id).await?;
    let all = svc::list::<Project>(&inst.store, &all_query(&s))
        .await?
        .items;
    let mine: Vec<Project> = all
        .into_iter()
        .filter(|x| x.project_group_id == g.id)
        .collect();
    let total = mine.len() as i64;
    let items: Vec<Project> = mine
        .into_iter()
        .skip(p.skip() as usize)
        .take(p.take() as usize)
        .collect();
    Ok(Json(page(
        &items,
        total,
        &p,
        &format!("/api/{s}/projectgroups/{id}/projects"),
    )))
}

async fn create_group(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    OctoJson(body): OctoJson<ProjectGroup>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let g = svc::create_project_group(&inst.store, &c, &s, body).await?;
    Ok((StatusCode::CREATED, Json(resource(&g))))
}

async fn update_group(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<ProjectGroup>,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &svc::update_project_group(&inst.store, &c, &s, &id, body).await?,
    )))
}

async fn delete_group(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    svc::delete_project_group(&inst.store, &c, &s, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- lifecycles ----

async fn list_lifecycles(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let found = svc::list::<Lifecycle>(&inst.store, &document_query(&s, &p)).await?;
    Ok(Json(page(
        &found.items,
        found.total,
        &p,
        &format!("/api/{s}/lifecycles"),
    )))
}

async fn all_lifecycles(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
) -> ApiResult<Json<Value>> {
    let found = svc::list::<Lifecycle>(&inst.store, &all_query(&s)).await?;
    Ok(Json(Value::Array(
        found.items.iter().map(resource).collect(),
    )))
}

async fn lifecycle(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &svc::get_in_space::<Lifecycle>(&inst.store, &s, &id).await?,
    )))
}

async fn create_lifecycle(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    OctoJson(body): OctoJson<Lifecycle>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let l = svc::create_lifecycle(&inst.store, &c, &s, body).await?;
    Ok((StatusCode::CREATED, Json(resource(&l))))
}

async fn update_lifecycle(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<Lifecycle>,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &svc::update_lifecycle(&inst.store, &c, &s, &id, body).await?,
    )))
}

async fn delete_lifecycle(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    svc::delete_lifecycle(&inst.store, &c, &s, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
