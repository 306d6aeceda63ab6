//! Releases, deployments, and the executions API CI tools call by name.

use super::{document_query, Id, Q};
use crate::answers::{PhaseDeployment, PhaseProgression, ReleaseProgression};
use crate::auth::Caller;
use crate::authorize::{Perms, SpaceView};
use crate::error::{ApiError, ApiResult};
use crate::json::OctoJson;
use crate::links::{page, page_of, resource};
use crate::route_table::{get, op, post, Routes};
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cuttle_model::{Deployment, Release, TaskState};
use cuttle_model::{Permission, Permissions};
use cuttle_service::deployments::{self as deploy_svc, CreateDeploymentCommand, NewDeployment};
use cuttle_service::paging::{split_list, ListParams};
use cuttle_service::progression;
use cuttle_service::releases::{self as release_svc, CreateReleaseCommand, NewRelease};
use cuttle_service::resources::{get_in_space, list};
use cuttle_service::ServiceError;
use cuttle_store::{DeploymentQuery, DocumentQuery};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes(mut r: Routes) -> Routes {
    r = r.space(
        "/releases",
        get(
            list_releases,
            op("Lists releases, newest first")
                .requires(Permission::ReleaseView)
                .query::<ListParams>()
                .page::<Release>(),
        )
        .post(
            create_release,
            op("Creates a release of a project")
                .requires(Permission::ReleaseCreate)
                .body::<NewRelease>()
                .created::<Release>(),
        ),
    );
    r = r.space(
        "/releases/create/v1",
        post(
            create_release_v1,
            op("Creates a release, naming the project, channel and packages (Octopus's CreateReleaseCommandV1)")
                .requires(Permission::ReleaseCreate)
                .body::<CreateReleaseCommand>()
                .created::<CreatedRelease>(),
        ),
    );
    r = r.space(
        "/releases/{id}",
        get(
            release,
            op("One release")
                .requires(Permission::ReleaseView)
                .resource::<Release>(),
        ),
    );
    r = r.space(
        "/releases/{id}/deployments",
        get(
            release_deployments,
            op("Lists a release's deployments")
                .requires(Permission::DeploymentView)
                .query::<ListParams>()
                .page::<Deployment>(),
        ),
    );
    r = r.space(
        "/releases/{id}/progression",
        get(
            release_progression,
            op("The release's progression through its lifecycle's phases")
                .requires(Permission::ReleaseView)
                .resource::<ReleaseProgression>(),
        ),
    );
    r = r.space(
        "/deployments",
        get(
            list_deployments,
            op("Lists deployments, with Octopus's filters")
                .requires(Permission::DeploymentView)
                .query::<ListParams>()
                .query::<DeploymentFilters>()
                .page::<Deployment>(),
        )
        .post(
            create_deployment,
            op("Deploys a release to an environment")
                .requires(Permission::DeploymentCreate)
                .body::<NewDeployment>()
                .created::<Deployment>(),
        ),
    );
    r = r.space(
        "/deployments/create/untenanted/v1",
        post(
            create_deployments_v1,
            op("Deploys a release to environments, by names (Octopus's CreateDeploymentUntenantedCommandV1)")
                .requires(Permission::DeploymentCreate)
                .body::<CreateDeploymentCommand>()
                .created::<CreatedDeployments>(),
        ),
    );
    r.space(
        "/deployments/{id}",
        get(
            deployment,
            op("One deployment")
                .requires(Permission::DeploymentView)
                .resource::<Deployment>(),
        ),
    )
}

/// What `releases/create/v1` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
struct CreatedRelease {
    release_id: String,
    release_version: String,
}

/// What `deployments/create/untenanted/v1` answers: one task per deployment.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
struct CreatedDeployments {
    deployment_server_tasks: Vec<DeploymentServerTask>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
struct DeploymentServerTask {
    deployment_id: String,
    server_task_id: String,
}

async fn list_releases(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let view = SpaceView::new(perms, &s);
    let path = format!("/api/{s}/releases");
    if view.whole(Permission::ReleaseView) {
        let q = DocumentQuery {
            descending: true,
            ..document_query(&s, &p)
        };
        let found = list::<Release>(&inst.store, &q).await?;
        return Ok(Json(page(&found.items, found.total, &p, &path)));
    }
    let q = DocumentQuery {
        descending: true,
        skip: 0,
        take: None,
        ..document_query(&s, &p)
    };
    let mine: Vec<Release> = list::<Release>(&inst.store, &q)
        .await?
        .items
        .into_iter()
        .filter(|r| view.allows(Permission::ReleaseView, Some(&r.project_id), None))
        .collect();
    Ok(Json(page_of(mine, &p, &path)))
}

/// A release the caller may see; any other answers as missing.
async fn visible_release(
    inst: &AppState,
    perms: Arc<Permissions>,
    space: &str,
    id: &str,
) -> Result<Release, ApiError> {
    let r = get_in_space::<Release>(&inst.store, space, id).await?;
    let view = SpaceView::new(perms, space);
    if view.allows(Permission::ReleaseView, Some(&r.project_id), None) {
        Ok(r)
    } else {
        Err(ServiceError::not_found("release", id).into())
    }
}

async fn release(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &visible_release(&inst, perms, &s, &id).await?,
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
    let created = CreatedRelease {
        release_id: r.id,
        release_version: r.version,
    };
    Ok((StatusCode::CREATED, Json(json!(created))))
}

/// Octopus's `LifecycleProgressionResource` for the release.
async fn release_progression(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    visible_release(&inst, perms, &s, &id).await?;
    let p = progression::release_progression(&inst.store, &s, &id).await?;
    let phases = p
        .phases
        .iter()
        .map(|ph| PhaseProgression {
            id: ph.phase.id.clone(),
            name: ph.phase.name.clone(),
            blocked: ph.blocked,
            progress: ph.progress,
            deployments: ph
                .deployments
                .iter()
                .map(|(d, t)| PhaseDeployment {
                    deployment: resource(d),
                    task: resource(t),
                })
                .collect(),
            automatic_deployment_targets: ph.phase.automatic_deployment_targets.clone(),
            optional_deployment_targets: ph.phase.optional_deployment_targets.clone(),
            minimum_environments_before_promotion: ph.phase.minimum_environments_before_promotion,
            is_optional_phase: ph.phase.is_optional_phase,
        })
        .collect();
    let base = format!("/api/{s}/releases/{}", p.release.id);
    Ok(Json(json!(ReleaseProgression {
        id: p.release.id.clone(),
        phases,
        next_deployments: p.next_deployments,
        next_deployments_minimum_required: p.next_deployments_minimum_required,
        links: [
            ("Self".to_owned(), format!("{base}/progression")),
            ("Release".to_owned(), base),
        ]
        .into(),
    })))
}

async fn release_deployments(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let r = visible_release(&inst, perms.clone(), &s, &id).await?;
    let q = DeploymentQuery {
        release_id: Some(r.id),
        ..deployment_query(&s, &p)
    };
    let view = SpaceView::new(perms, &s);
    deployments_page(
        &inst,
        &view,
        q,
        &p,
        &format!("/api/{s}/releases/{id}/deployments"),
    )
    .await
}

/// A page of deployments, only those the caller may see.
async fn deployments_page(
    inst: &AppState,
    view: &SpaceView,
    q: DeploymentQuery,
    p: &ListParams,
    path: &str,
) -> ApiResult<Json<Value>> {
    if view.whole(Permission::DeploymentView) {
        let found = inst.store.list_deployments(&q).await?;
        return Ok(Json(page(&found.items, found.total, p, path)));
    }
    let all = DeploymentQuery {
        skip: 0,
        take: None,
        ..q
    };
    let mine: Vec<Deployment> = inst
        .store
        .list_deployments(&all)
        .await?
        .items
        .into_iter()
        .filter(|d| {
            view.allows(
                Permission::DeploymentView,
                Some(&d.project_id),
                Some(&d.environment_id),
            )
        })
        .collect();
    Ok(Json(page_of(mine, p, path)))
}

/// A space's deployments, newest first, paged as `p` asks.
fn deployment_query(space_id: &str, p: &ListParams) -> DeploymentQuery {
    DeploymentQuery {
        space_id: space_id.to_owned(),
        ids: p.ids(),
        skip: p.skip(),
        take: Some(p.take()),
        ..Default::default()
    }
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
struct DeploymentFilters {
    projects: Option<String>,
    environments: Option<String>,
    #[serde(rename = "taskState")]
    task_state: Option<String>,
}

async fn list_deployments(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
    Q(f): Q<DeploymentFilters>,
) -> ApiResult<Json<Value>> {
    let states: Vec<TaskState> = split_list(f.task_state.as_deref())
        .iter()
        .map(|s| s.parse::<TaskState>())
        .collect::<Result<_, _>>()
        .map_err(crate::error::ApiError::bad_request)?;
    let q = DeploymentQuery {
        project_ids: split_list(f.projects.as_deref()),
        environment_ids: split_list(f.environments.as_deref()),
        task_states: states,
        ..deployment_query(&s, &p)
    };
    let view = SpaceView::new(perms, &s);
    deployments_page(&inst, &view, q, &p, &format!("/api/{s}/deployments")).await
}

async fn deployment(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    let d = get_in_space::<Deployment>(&inst.store, &s, &id).await?;
    let view = SpaceView::new(perms, &s);
    if !view.allows(
        Permission::DeploymentView,
        Some(&d.project_id),
        Some(&d.environment_id),
    ) {
        return Err(ServiceError::not_found("deployment", &id).into());
    }
    Ok(Json(resource(&d)))
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
    let answer = CreatedDeployments {
        deployment_server_tasks: created
            .into_iter()
            .map(|(d, t)| DeploymentServerTask {
                deployment_id: d.id,
                server_task_id: t.id,
            })
            .collect(),
    };
    Ok((StatusCode::CREATED, Json(json!(answer))))
}
