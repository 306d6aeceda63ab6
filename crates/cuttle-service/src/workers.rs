//! Workers (`Workers-N`) and the worker pools they belong to. Every space has
//! a default pool, which workers registered without a pool join.

use crate::actor::Actor;
use crate::default_choice;
use crate::machines::{check_agent, check_ids, MachineFilters};
use crate::paging::split_list;
use crate::resources::{audit_change, check_name, get_in_space};
use crate::{Result, ServiceError};
use cuttle_model::ids::Collection;
use cuttle_model::machine::STATIC_WORKER_POOL;
use cuttle_model::{slugify, Worker, WorkerPool};
use cuttle_store::{DocumentQuery, Store};

// ---- workers ----

/// Every worker in the space matching the filters, in creation order.
pub async fn list_workers(
    store: &Store,
    base: DocumentQuery,
    filters: &MachineFilters,
) -> Result<Vec<Worker>> {
    let statuses = filters.health_statuses()?;
    let pools = split_list(filters.worker_pool_ids.as_deref());
    let q = DocumentQuery {
        skip: 0,
        take: None,
        ..base
    };
    Ok(store
        .list::<Worker>(&q)
        .await?
        .items
        .into_iter()
        .filter(|w| pools.is_empty() || w.worker_pool_ids.iter().any(|p| pools.contains(p)))
        .filter(|w| statuses.is_empty() || statuses.contains(&w.health_status))
        .filter(|w| filters.is_disabled.is_none_or(|d| w.is_disabled == d))
        .collect())
}

async fn validate_worker(store: &Store, space_id: &str, w: &mut Worker) -> Result<()> {
    let mut errors = vec![];
    check_agent(
        store,
        space_id,
        "worker",
        &mut w.name,
        &mut w.endpoint,
        &mut w.machine_policy_id,
        &mut errors,
    )
    .await?;
    if w.worker_pool_ids.is_empty() {
        let pool: Option<WorkerPool> = default_choice::find_default(store, space_id).await?;
        match pool {
            Some(p) => w.worker_pool_ids = vec![p.id],
            None => errors.push("WorkerPoolIds: name the pools this worker belongs to".into()),
        }
    }
    check_ids::<WorkerPool>(
        store,
        space_id,
        "WorkerPoolIds",
        &mut w.worker_pool_ids,
        &mut errors,
    )
    .await;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::invalid(errors))
    }
}

pub async fn create_worker(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    mut w: Worker,
) -> Result<Worker> {
    validate_worker(store, space_id, &mut w).await?;
    w.space_id = space_id.into();
    w.take_status_from(None);
    let mut tx = store.begin().await?;
    w.id = tx.next_id(Collection::Workers).await?;
    tx.insert(&w).await?;
    let message = format!("worker {} was added", w.name);
    let pools = w.worker_pool_ids.clone();
    audit_change(&mut tx, caller, None, Some(&w), message, pools).await?;
    tx.commit().await?;
    Ok(w)
}

pub async fn update_worker(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    id: &str,
    mut w: Worker,
) -> Result<Worker> {
    let existing: Worker = get_in_space(store, space_id, id).await?;
    validate_worker(store, space_id, &mut w).await?;
    w.id = existing.id.clone();
    w.space_id = existing.space_id.clone();
    w.take_status_from(Some(&existing));
    let mut tx = store.begin().await?;
    tx.update(&w).await?;
    let message = format!("worker {} was modified", w.name);
    audit_change(&mut tx, caller, Some(&existing), Some(&w), message, vec![]).await?;
    tx.commit().await?;
    Ok(w)
}

pub async fn delete_worker(store: &Store, caller: &Actor, space_id: &str, id: &str) -> Result<()> {
    let w: Worker = get_in_space(store, space_id, id).await?;
    let mut tx = store.begin().await?;
    tx.delete::<Worker>(&w.id).await?;
    let message = format!("worker {} was deleted", w.name);
    audit_change(&mut tx, caller, Some(&w), None, message, vec![]).await?;
    tx.commit().await?;
    Ok(())
}

// ---- worker pools ----

/// Fills in what the server decides and checks the rest.
fn validate_pool(p: &mut WorkerPool) -> Result<()> {
    let mut errors = vec![];
    check_name("worker pool", &p.name, &mut errors);
    if p.worker_pool_type.trim().is_empty() {
        p.worker_pool_type = STATIC_WORKER_POOL.into();
    } else if p.worker_pool_type != STATIC_WORKER_POOL {
        errors.push(format!(
            "WorkerPoolType '{}' is not supported; Cuttle has {STATIC_WORKER_POOL} pools only",
            p.worker_pool_type
        ));
    }
    p.name = p.name.trim().to_owned();
    p.slug = slugify(&p.name);
    p.can_add_workers = true;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::invalid(errors))
    }
}

pub async fn create_worker_pool(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    mut p: WorkerPool,
) -> Result<WorkerPool> {
    validate_pool(&mut p)?;
    p.space_id = space_id.into();
    if p.sort_order == 0 {
        let q = DocumentQuery::in_space(space_id);
        let pools = store.list::<WorkerPool>(&q).await?.items;
        p.sort_order = pools.iter().map(|x| x.sort_order).max().unwrap_or(0) + 1;
    }
    default_choice::insert(store, caller, Collection::WorkerPools, p).await
}

pub async fn update_worker_pool(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    id: &str,
    mut p: WorkerPool,
) -> Result<WorkerPool> {
    let existing: WorkerPool = get_in_space(store, space_id, id).await?;
    validate_pool(&mut p)?;
    p.id = existing.id.clone();
    p.space_id = existing.space_id.clone();
    default_choice::update(store, caller, &existing, p).await
}

/// The workers in a pool, in creation order.
pub async fn pool_workers(store: &Store, space_id: &str, pool_id: &str) -> Result<Vec<Worker>> {
    let q = DocumentQuery::in_space(space_id);
    Ok(store
        .list::<Worker>(&q)
        .await?
        .items
        .into_iter()
        .filter(|w| w.worker_pool_ids.iter().any(|p| p == pool_id))
        .collect())
}

/// Refuses to delete the default pool or one that still has workers.
pub async fn delete_worker_pool(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    id: &str,
) -> Result<()> {
    let p: WorkerPool = get_in_space(store, space_id, id).await?;
    default_choice::ensure_not_default(&p)?;
    let workers = pool_workers(store, space_id, &p.id).await?;
    if !workers.is_empty() {
        let names: Vec<String> = workers.into_iter().map(|w| w.name).collect();
        return Err(ServiceError::Conflict(format!(
            "The worker pool '{}' has the workers {}; move or delete them first",
            p.name,
            names.join(", ")
        )));
    }
    default_choice::delete(store, caller, &p).await
}
