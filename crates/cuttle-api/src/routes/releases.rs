//! Releases, deployments, and the executions API CI tools call by name.

use super::{document_query, scoped, Id, Q};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::json::OctoJson;
use crate::links::{page, page_of, resource};
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cuttle_model::{Deployment, Release, TaskState};
use cuttle_service::deployments::{self as deploy_svc, CreateDeploymentCommand, NewDeployment};
use cuttle_service::paging::{split_list, ListParams};
use cuttle_service::progression;
use cuttle_service::releases::{self as release_svc, CreateReleaseCommand, NewRelease};
use cuttle_service::resources::{get_in_space, list};
use cuttle_store::{DocumentQuery, TaskQuery};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes(mut r: Router<AppState>) -> Router<AppState> {
    r = scoped(r, "/releases", get(list_releases).post(create_release));
    r = scoped(r, "/releases/create/v1", post(create_release_v1));
    r = scoped(r, "/releases/{id}", get(release));
    r = scoped(r, "/releases/{id}/deployments", get(release_deployments));
    r = scoped(r, "/releases/{id}/progression", get(release_progression));
    r = scoped(
        r,
        "/deployments",
        get(list_deployments).post(create_deployment),
    );
    r = scoped(
        r,
        "/deployments/create/untenanted/v1",
        post(create_deployments_v1),
    );
    scoped(r, "/deployments/{id}", get(deployment))
}

async fn list_releases(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let q = DocumentQuery {
        descending: true,
        ..document_query(&s, &p)
    };
    let found = list::<Release>(&inst.store, &q).await?;
    Ok(Json(page(
        &found.items,
        found.total,
        &p,
        &format!("/api/{s}/releases"),
    )))
}

async fn release(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &get_in_space::<Release>(&inst.store, &s, &id).await?,
    )))
}

async fn create_release(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    OctoJson(body): OctoJson<NewRelease>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let r = release_svc::create_release(&inst, &c, &s, body).await?;
    Ok((StatusCode::CREATED, Json(resource(&r))))
}

async fn create_release_v1(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    OctoJson(body): OctoJson<CreateReleaseCommand>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let r = release_svc::create_release_by_name(&inst, &c, &s, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"ReleaseId": r.id, "ReleaseVersion": r.version})),
    ))
}

/// Octopus's `LifecycleProgressionResource` for the release.
async fn release_progression(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    let p = progression::release_progression(&inst.store, &s, &id).await?;
    let phases: Vec<Value> = p
        .phases
        .iter()
        .map(|ph| {
            let deployments: Vec<Value> = ph
                .deployments
                .iter()
                .map(|(d, t)| json!({"Deployment": resource(d), "Task": resource(t)}))
                .collect();
            json!({
                "Id": ph.phase.id,
                "Name": ph.phase.name,
                "Blocked": ph.blocked,
                "Progress": ph.progress,
                "Deployments": deployments,
                "AutomaticDeploymentTargets": ph.phase.automatic_deployment_targets,
                "OptionalDeploymentTargets": ph.phase.optional_deployment_targets,
                "MinimumEnvironmentsBeforePromotion": ph.phase.minimum_environments_before_promotion,
                "IsOptionalPhase": ph.phase.is_optional_phase,
            })
        })
        .collect();
    let base = format!("/api/{s}/releases/{}", p.release.id);
    Ok(Json(json!({
        "Id": p.release.id,
        "Phases": phases,
        "NextDeployments": p.next_deployments,
        "NextDeploymentsMinimumRequired": p.next_deployments_minimum_required,
        "Links": {"Self": format!("{base}/progression"), "Release": base},
    })))
}

async fn release_deployments(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let r = get_in_space::<Release>(&inst.store, &s, &id).await?;
    let all = list::<Deployment>(
        &inst.store,
        &DocumentQuery {
            parent_ids: vec![r.project_id.clone()],
            descending: true,
            ..Default::default()
        },
    )
    .await?;
    let mine: Vec<Deployment> = all
        .items
        .into_iter()
        .filter(|d| d.release_id == r.id)
        .collect();
    Ok(Json(page_of(
        mine,
        &p,
        &format!("/api/{s}/releases/{id}/deployments"),
    )))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeploymentFilters {
    projects: Option<String>,
    environments: Option<String>,
    #[serde(rename = "taskState")]
    task_state: Option<String>,
}

async fn list_deployments(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
    Q(f): Q<DeploymentFilters>,
) -> ApiResult<Json<Value>> {
    let states: Vec<TaskState> = split_list(f.task_state.as_deref())
        .iter()
        .map(|s| s.parse::<TaskState>())
        .collect::<Result<_, _>>()
        .map_err(crate::error::ApiError::bad_request)?;
    let mut q = DocumentQuery {
        parent_ids: split_list(f.projects.as_deref()),
        environment_ids: split_list(f.environments.as_deref()),
        descending: true,
        ..document_query(&s, &p)
    };
    let path = format!("/api/{s}/deployments");
    if states.is_empty() {
        let found = list::<Deployment>(&inst.store, &q).await?;
        return Ok(Json(page(&found.items, found.total, &p, &path)));
    }
    // Filtering on the task's state: find the matching tasks, then page.
    q.skip = 0;
    q.take = None;
    let candidates = list::<Deployment>(&inst.store, &q).await?.items;
    let tq = TaskQuery {
        ids: candidates.iter().map(|d| d.task_id.clone()).collect(),
        states,
        ..Default::default()
    };
    let (tasks, _) = inst.store.list_tasks(&tq).await?;
    let matching: Vec<Deployment> = candidates
        .into_iter()
        .filter(|d| tasks.iter().any(|t| t.id == d.task_id))
        .collect();
    Ok(Json(page_of(matching, &p, &path)))
}

async fn deployment(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &get_in_space::<Deployment>(&inst.store, &s, &id).await?,
    )))
}

async fn create_deployment(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    OctoJson(body): OctoJson<NewDeployment>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let d = deploy_svc::create_deployment(&inst, &c, &s, body).await?;
    Ok((StatusCode::CREATED, Json(resource(&d))))
}

async fn create_deployments_v1(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    OctoJson(body): OctoJson<CreateDeploymentCommand>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let created = deploy_svc::create_deployments_by_name(&inst, &c, &s, body).await?;
    let tasks: Vec<Value> = created
        .iter()
        .map(|(d, t)| json!({"DeploymentId": d.id, "ServerTaskId": t.id}))
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({"DeploymentServerTasks": tasks})),
    ))
}
