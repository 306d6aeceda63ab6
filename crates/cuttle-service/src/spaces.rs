//! Changing and deleting a space. As in Octopus, a space is deleted only once its task
//! queue has been stopped (`TaskQueueStopped`, set with a PUT), so nothing
//! starts in it while it goes, and never while it is the default space.

use crate::actor::Actor;
use crate::packages::{remove_if_unused, run_to_end};
use crate::resources::audit_change;
use crate::{Instance, Result, ServiceError};
use cuttle_model::{Permission, Scope, Space};

/// Changes a space; a space whose queue runs (again) has the engine look for
/// its waiting tasks at once.
pub async fn update_space(
    inst: &Instance,
    caller: &Actor,
    id: &str,
    space: Space,
) -> Result<Space> {
    may_manage(inst, caller, id, Permission::SpaceEdit).await?;
    let space = crate::resources::update_space(&inst.store, caller, id, space).await?;
    if !space.task_queue_stopped {
        inst.runner.wake();
    }
    Ok(space)
}

/// Deletes a space and everything in it in one transaction, then the package
/// files that no other space uses.
pub async fn delete_space(inst: &Instance, caller: &Actor, id: &str) -> Result<()> {
    may_manage(inst, caller, id, Permission::SpaceDelete).await?;
    let store = inst.store.clone();
    let blobs = inst.blobs.clone();
    let files = inst.package_files.clone();
    let caller = caller.clone();
    let id = id.to_owned();
    run_to_end(async move {
        // Files are removed under the lock, so a push cannot reuse one
        // between the check that it is unused and its removal.
        let _files = files.lock().await;
        let mut tx = store.begin().await?;
        let space = tx
            .lock_space(&id)
            .await?
            .ok_or_else(|| ServiceError::not_found("space", &id))?;
        if space.is_default {
            return Err(ServiceError::bad_request(format!(
                "The space '{}' is the default space and cannot be deleted; make another space the default first",
                space.name
            )));
        }
        if !space.task_queue_stopped {
            return Err(ServiceError::bad_request(format!(
                "The task queue of the space '{}' must be stopped before the space can be deleted: set TaskQueueStopped to true with a PUT of the space, then delete it",
                space.name
            )));
        }
        let running = tx.running_tasks_in_space(&id).await?;
        if running > 0 {
            return Err(ServiceError::Conflict(format!(
                "The space '{}' still has {running} running task(s); wait for them to finish or cancel them, then delete the space",
                space.name
            )));
        }
        let hashes = tx.delete_space(&id).await?;
        audit_change(
            &mut tx,
            &caller,
            Some(&space),
            None,
            format!("space {} was deleted", space.name),
            vec![],
        )
        .await?;
        tx.commit().await?;
        for hash in &hashes {
            remove_if_unused(&store, &blobs, hash).await;
        }
        Ok(())
    })
    .await
}

/// Allowed to change (`SpaceEdit`) or delete (`SpaceDelete`) the space `id`:
/// with the permission installation-wide, or as a member of one of the
/// space's managers teams, who run their space as in Octopus. A caller who
/// holds nothing in the space is told it does not exist.
async fn may_manage(inst: &Instance, caller: &Actor, id: &str, p: Permission) -> Result<()> {
    let Some(perms) = caller.permissions.as_ref() else {
        return Ok(());
    };
    if perms.allows(p, &Scope::system()) {
        return Ok(());
    }
    let space: Option<Space> = inst.store.get(id).await?;
    match space {
        Some(space) if perms.sees_space(id) => {
            let manager = space
                .space_managers_teams
                .iter()
                .any(|team| perms.teams.contains(team));
            match manager {
                true => Ok(()),
                false => Err(crate::permissions::missing(p, &Scope::system())),
            }
        }
        _ => Err(ServiceError::not_found("space", id)),
    }
}
