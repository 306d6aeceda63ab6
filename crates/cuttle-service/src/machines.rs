//! Deployment targets (`Machines-N`): registering, changing and removing
//! them, and listing them by the filters Octopus clients send. What machines
//! and workers share (name, endpoint, machine policy) is checked here too.

use crate::actor::Actor;
use crate::paging::split_list;
use crate::resources::{audit_change, check_name, get_in_space};
use crate::{Result, ServiceError};
use cuttle_model::ids::Collection;
use cuttle_model::machine::HealthStatus;
use cuttle_model::{Endpoint, Environment, Machine, MachinePolicy};
use cuttle_store::{Document, DocumentQuery, Store};
use serde::Deserialize;

/// The filters of a machine or worker list, beyond the usual paging ones.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MachineFilters {
    /// Comma-joined roles; a machine matches if it has any of them.
    pub roles: Option<String>,
    #[serde(rename = "environmentIds", alias = "environmentids")]
    pub environment_ids: Option<String>,
    #[serde(rename = "workerPoolIds", alias = "workerpoolids")]
    pub worker_pool_ids: Option<String>,
    #[serde(rename = "healthStatuses", alias = "healthstatuses")]
    pub health_statuses: Option<String>,
    #[serde(rename = "isDisabled", alias = "isdisabled")]
    pub is_disabled: Option<bool>,
}

impl MachineFilters {
    pub(crate) fn health_statuses(&self) -> Result<Vec<HealthStatus>> {
        split_list(self.health_statuses.as_deref())
            .iter()
            .map(|s| {
                HealthStatus::parse(s).ok_or_else(|| {
                    ServiceError::bad_request(format!(
                        "healthStatuses: '{s}' is not a health status; use Healthy, HasWarnings, Unhealthy, Unavailable or Unknown"
                    ))
                })
            })
            .collect()
    }
}

/// Every machine in the space matching the filters, in creation order;
/// `base` carries the name, partial name and ids filters (paging is the
/// caller's, after filtering).
pub async fn list_machines(
    store: &Store,
    base: DocumentQuery,
    filters: &MachineFilters,
) -> Result<Vec<Machine>> {
    let statuses = filters.health_statuses()?;
    let roles = split_list(filters.roles.as_deref());
    let envs = split_list(filters.environment_ids.as_deref());
    let q = DocumentQuery {
        skip: 0,
        take: None,
        ..base
    };
    Ok(store
        .list::<Machine>(&q)
        .await?
        .items
        .into_iter()
        .filter(|m| roles.is_empty() || m.roles.iter().any(|r| roles.contains(r)))
        .filter(|m| envs.is_empty() || m.environment_ids.iter().any(|e| envs.contains(e)))
        .filter(|m| statuses.is_empty() || statuses.contains(&m.health_status))
        .filter(|m| filters.is_disabled.is_none_or(|d| m.is_disabled == d))
        .collect())
}

/// The enabled machines in an environment: what a deployment runs on.
pub async fn deployment_targets(
    store: &Store,
    space_id: &str,
    environment_id: &str,
) -> Result<Vec<Machine>> {
    Ok(store.deployment_targets(space_id, environment_id).await?)
}

/// Trims and checks the name, endpoint and machine policy every agent-run
/// machine has, filling in the space's default policy when none is named.
pub(crate) async fn check_agent(
    store: &Store,
    space_id: &str,
    kind: &str,
    name: &mut String,
    endpoint: &mut Endpoint,
    policy_id: &mut String,
    errors: &mut Vec<String>,
) -> Result<()> {
    check_name(kind, name, errors);
    *name = name.trim().to_owned();
    errors.extend(endpoint.normalise());
    if policy_id.trim().is_empty() {
        *policy_id = crate::machine_policies::default_policy(store, space_id)
            .await?
            .id;
    } else if get_in_space::<MachinePolicy>(store, space_id, policy_id)
        .await
        .is_err()
    {
        errors.push(format!(
            "MachinePolicyId: the machine policy '{policy_id}' does not exist"
        ));
    }
    Ok(())
}

/// Checks that each id names a document of `D` in the space, dropping
/// repeats; `field` names the request field in messages.
pub(crate) async fn check_ids<D: Document>(
    store: &Store,
    space_id: &str,
    field: &str,
    ids: &mut Vec<String>,
    errors: &mut Vec<String>,
) {
    let mut seen = Vec::with_capacity(ids.len());
    for id in ids.iter().map(|i| i.trim()) {
        if seen.iter().any(|s| s == id) {
            continue;
        }
        if id.is_empty() || get_in_space::<D>(store, space_id, id).await.is_err() {
            errors.push(format!("{field}: the {} '{id}' does not exist", D::KIND));
        }
        seen.push(id.to_owned());
    }
    *ids = seen;
}

async fn validate(store: &Store, space_id: &str, m: &mut Machine) -> Result<()> {
    let mut errors = vec![];
    check_agent(
        store,
        space_id,
        "deployment target",
        &mut m.name,
        &mut m.endpoint,
        &mut m.machine_policy_id,
        &mut errors,
    )
    .await?;
    if m.environment_ids.is_empty() {
        errors
            .push("EnvironmentIds: a deployment target must be in at least one environment".into());
    }
    check_ids::<Environment>(
        store,
        space_id,
        "EnvironmentIds",
        &mut m.environment_ids,
        &mut errors,
    )
    .await;
    let mut roles: Vec<String> = vec![];
    for r in &m.roles {
        let r = r.trim();
        if r.is_empty() {
            errors.push("Roles: a role cannot be empty".into());
        } else if !roles.iter().any(|x| x == r) {
            roles.push(r.to_owned());
        }
    }
    m.roles = roles;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::invalid(errors))
    }
}

pub async fn create_machine(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    mut m: Machine,
) -> Result<Machine> {
    validate(store, space_id, &mut m).await?;
    m.space_id = space_id.into();
    m.take_status_from(None);
    let mut tx = store.begin().await?;
    m.id = tx.next_id(Collection::Machines).await?;
    tx.insert(&m).await?;
    let message = format!("deployment target {} was added", m.name);
    let envs = m.environment_ids.clone();
    audit_change(&mut tx, caller, None, Some(&m), message, envs).await?;
    tx.commit().await?;
    Ok(m)
}

pub async fn update_machine(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    id: &str,
    mut m: Machine,
) -> Result<Machine> {
    let existing: Machine = get_in_space(store, space_id, id).await?;
    validate(store, space_id, &mut m).await?;
    m.id = existing.id.clone();
    m.space_id = existing.space_id.clone();
    m.take_status_from(Some(&existing));
    let mut tx = store.begin().await?;
    tx.update(&m).await?;
    let message = format!("deployment target {} was modified", m.name);
    let envs = [existing.environment_ids.clone(), m.environment_ids.clone()].concat();
    audit_change(&mut tx, caller, Some(&existing), Some(&m), message, envs).await?;
    tx.commit().await?;
    Ok(m)
}

pub async fn delete_machine(store: &Store, caller: &Actor, space_id: &str, id: &str) -> Result<()> {
    let m: Machine = get_in_space(store, space_id, id).await?;
    let mut tx = store.begin().await?;
    tx.delete::<Machine>(&m.id).await?;
    let message = format!("deployment target {} was deleted", m.name);
    let envs = m.environment_ids.clone();
    audit_change(&mut tx, caller, Some(&m), None, message, envs).await?;
    tx.commit().await?;
    Ok(())
}
