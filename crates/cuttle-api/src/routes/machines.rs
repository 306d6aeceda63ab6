//! Deployment targets, workers, worker pools and machine policies. Pools and
//! policies are plain resources; machine and worker lists take Octopus's
//! filters (roles, environments, pools, health, disabled).

use super::infrastructure::{
    allowed, create, crud, item_routes, space_crud, visible_one, SpaceCrud,
};
use super::{document_query, Id, Q};
use crate::authorize::Perms;
use crate::error::ApiResult;
use crate::links::page_of;
use crate::route_table::{get, op, Routes};
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use cuttle_model::{Environment, Machine, MachinePolicy, Permission, Worker, WorkerPool};
use cuttle_service::machines::{self, MachineFilters};
use cuttle_service::paging::ListParams;
use cuttle_service::resources::get_in_space;
use cuttle_service::{machine_policies, workers, ServiceError};
use cuttle_store::Store;
use serde_json::Value;
use std::future::Future;

space_crud!(
    Machine,
    "machines",
    [MachineView, MachineCreate, MachineEdit, MachineDelete],
    machines::create_machine,
    machines::update_machine,
    machines::delete_machine,
    environments = machine_environments
);
space_crud!(
    Worker,
    "workers",
    [WorkerView, WorkerEdit, WorkerEdit, WorkerEdit],
    workers::create_worker,
    workers::update_worker,
    workers::delete_worker
);
space_crud!(
    WorkerPool,
    "workerpools",
    [WorkerView, WorkerEdit, WorkerEdit, WorkerEdit],
    workers::create_worker_pool,
    workers::update_worker_pool,
    workers::delete_worker_pool
);
space_crud!(
    MachinePolicy,
    "machinepolicies",
    [
        MachinePolicyView,
        MachinePolicyEdit,
        MachinePolicyEdit,
        MachinePolicyEdit
    ],
    machine_policies::create_machine_policy,
    machine_policies::update_machine_policy,
    machine_policies::delete_machine_policy
);

pub fn routes(mut r: Routes) -> Routes {
    r = r.space(
        "/machines",
        get(
            list_machines,
            op("Lists deployment targets, with Octopus's filters")
                .requires(Permission::MachineView)
                .query::<ListParams>()
                .query::<MachineFilters>()
                .page::<Machine>(),
        )
        .post(
            create::<Machine>,
            op("Registers a deployment target")
                .requires(Permission::MachineCreate)
                .body::<Machine>()
                .created::<Machine>(),
        ),
    );
    r = item_routes::<Machine>(r);
    r = r.space(
        "/environments/{id}/machines",
        get(
            environment_machines,
            op("Lists an environment's deployment targets")
                .requires(Permission::MachineView)
                .query::<ListParams>()
                .query::<MachineFilters>()
                .page::<Machine>(),
        ),
    );
    r = r.space(
        "/workers",
        get(
            list_workers,
            op("Lists workers, with Octopus's filters")
                .requires(Permission::WorkerView)
                .query::<ListParams>()
                .query::<MachineFilters>()
                .page::<Worker>(),
        )
        .post(
            create::<Worker>,
            op("Registers a worker")
                .requires(Permission::WorkerEdit)
                .body::<Worker>()
                .created::<Worker>(),
        ),
    );
    r = item_routes::<Worker>(r);
    r = crud::<WorkerPool>(r);
    r = r.space(
        "/workerpools/{id}/workers",
        get(
            pool_workers,
            op("Lists a worker pool's workers")
                .requires(Permission::WorkerView)
                .query::<ListParams>()
                .page::<Worker>(),
        ),
    );
    crud::<MachinePolicy>(r)
}

fn machine_environments(m: &Machine) -> Vec<&str> {
    m.environment_ids.iter().map(String::as_str).collect()
}

async fn list_machines(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
    Q(f): Q<MachineFilters>,
) -> ApiResult<Json<Value>> {
    let mut found = machines::list_machines(&inst.store, document_query(&s, &p), &f).await?;
    found.retain(|m| allowed(&perms, Permission::MachineView, &s, m));
    Ok(Json(page_of(found, &p, &format!("/api/{s}/machines"))))
}

async fn environment_machines(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
    Q(p): Q<ListParams>,
    Q(mut f): Q<MachineFilters>,
) -> ApiResult<Json<Value>> {
    let env: Environment = visible_one(&inst.store, &perms, &s, &id).await?;
    f.environment_ids = Some(env.id);
    let mut found = machines::list_machines(&inst.store, document_query(&s, &p), &f).await?;
    found.retain(|m| allowed(&perms, Permission::MachineView, &s, m));
    Ok(Json(page_of(
        found,
        &p,
        &format!("/api/{s}/environments/{id}/machines"),
    )))
}

async fn list_workers(
    State(inst): State<AppState>,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
    Q(f): Q<MachineFilters>,
) -> ApiResult<Json<Value>> {
    let found = workers::list_workers(&inst.store, document_query(&s, &p), &f).await?;
    Ok(Json(page_of(found, &p, &format!("/api/{s}/workers"))))
}

async fn pool_workers(
    State(inst): State<AppState>,
    SpaceId(s): SpaceId,
    Id(id): Id,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let pool: WorkerPool = get_in_space(&inst.store, &s, &id).await?;
    let found = workers::pool_workers(&inst.store, &s, &pool.id).await?;
    Ok(Json(page_of(
        found,
        &p,
        &format!("/api/{s}/workerpools/{id}/workers"),
    )))
}
