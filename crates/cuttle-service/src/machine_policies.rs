//! Machine policies: how machines and workers are health-checked and
//! connected to. Every space has a default one, given to machines registered
//! without a policy.

use crate::actor::Actor;
use crate::default_choice;
use crate::resources::{check_name, get_in_space};
use crate::{Result, ServiceError};
use cuttle_model::ids::Collection;
use cuttle_model::{Machine, MachinePolicy, Worker};
use cuttle_store::{DocumentQuery, Store};

/// The space's default policy.
pub async fn default_policy(store: &Store, space_id: &str) -> Result<MachinePolicy> {
    default_choice::find_default(store, space_id)
        .await?
        .ok_or_else(|| {
            ServiceError::bad_request(
                "This space has no default machine policy; name one in MachinePolicyId",
            )
        })
}

fn validate(p: &mut MachinePolicy) -> Result<()> {
    let mut errors = vec![];
    check_name("machine policy", &p.name, &mut errors);
    errors.extend(p.problems());
    p.name = p.name.trim().to_owned();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::invalid(errors))
    }
}

pub async fn create_machine_policy(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    mut p: MachinePolicy,
) -> Result<MachinePolicy> {
    validate(&mut p)?;
    p.space_id = space_id.into();
    default_choice::insert(store, caller, Collection::MachinePolicies, p).await
}

pub async fn update_machine_policy(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    id: &str,
    mut p: MachinePolicy,
) -> Result<MachinePolicy> {
    let existing: MachinePolicy = get_in_space(store, space_id, id).await?;
    validate(&mut p)?;
    p.id = existing.id.clone();
    p.space_id = existing.space_id.clone();
    default_choice::update(store, caller, &existing, p).await
}

/// Refuses to delete the default policy or one that machines or workers use.
pub async fn delete_machine_policy(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    id: &str,
) -> Result<()> {
    let p: MachinePolicy = get_in_space(store, space_id, id).await?;
    default_choice::ensure_not_default(&p)?;
    let q = DocumentQuery::in_space(space_id);
    let mut users: Vec<String> = store
        .list::<Machine>(&q)
        .await?
        .items
        .into_iter()
        .filter(|m| m.machine_policy_id == p.id)
        .map(|m| m.name)
        .collect();
    users.extend(
        store
            .list::<Worker>(&q)
            .await?
            .items
            .into_iter()
            .filter(|w| w.machine_policy_id == p.id)
            .map(|w| w.name),
    );
    if !users.is_empty() {
        return Err(ServiceError::bad_request(format!(
            "The machine policy '{}' is used by {}; give them another policy first",
            p.name,
            users.join(", ")
        )));
    }
    default_choice::delete(store, caller, &p).await
}
