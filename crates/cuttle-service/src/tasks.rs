//! Reading and cancelling server tasks.

use crate::{Instance, Result, ServiceError};
use cuttle_model::task::{build_activity_tree, ActivityElement};
use cuttle_model::{ServerTask, User};
use cuttle_store::tasks::CancelOutcome;

/// A task. Asked for in a space (`Some`), one of another space is treated
/// as missing, so ids cannot be probed or acted on across spaces; `None` is
/// the space-less `/api/tasks` view, which spans every space.
pub async fn task(inst: &Instance, space: Option<&str>, id: &str) -> Result<ServerTask> {
    match inst.store.task(id).await? {
        Some(t) if space.is_none() || t.space_id.as_deref() == space => Ok(t),
        _ => Err(ServiceError::not_found("task", id)),
    }
}

/// A task with its activity log tree.
pub async fn details(
    inst: &Instance,
    space: Option<&str>,
    id: &str,
    verbose: bool,
) -> Result<(ServerTask, Vec<ActivityElement>)> {
    let t = task(inst, space, id).await?;
    let (activities, lines) = inst.store.task_log(id).await?;
    Ok((t, build_activity_tree(&activities, &lines, verbose)))
}

pub async fn cancel(
    inst: &Instance,
    caller: &User,
    space: Option<&str>,
    id: &str,
) -> Result<ServerTask> {
    // Checked before anything changes: another space's task is not found.
    task(inst, space, id).await?;
    let outcome = inst.runner.cancel(id).await?;
    let t = task(inst, space, id).await?;
    if matches!(outcome, CancelOutcome::AlreadyDone) && t.state.is_completed() {
        return Err(ServiceError::Conflict(format!(
            "The task {id} has already finished ({:?}), so there is nothing to cancel",
            t.state
        )));
    }
    tracing::info!(task = %id, user = %caller.username, "task cancellation requested");
    Ok(t)
}

/// Queues a `Health` task for the machines named (all in the space when
/// none are), each checked to exist in the space first.
pub async fn queue_health(
    inst: &Instance,
    caller: &User,
    space_id: &str,
    machine_ids: Vec<String>,
    worker_ids: Vec<String>,
) -> Result<ServerTask> {
    let mut names = Vec::with_capacity(machine_ids.len() + worker_ids.len());
    for id in &machine_ids {
        let m: cuttle_model::Machine =
            crate::resources::get_in_space(&inst.store, space_id, id).await?;
        names.push(m.name);
    }
    for id in &worker_ids {
        let w: cuttle_model::Worker =
            crate::resources::get_in_space(&inst.store, space_id, id).await?;
        names.push(w.name);
    }
    let description = match names.as_slice() {
        [] => "Check the health of every machine".to_owned(),
        [one] => format!("Check the health of {one}"),
        many => format!("Check the health of {} machines", many.len()),
    };
    let mut tx = inst.store.begin().await?;
    let task = tx
        .insert_task(cuttle_store::NewTask {
            space_id: Some(space_id.into()),
            name: "Health".into(),
            description,
            arguments: serde_json::json!({ "MachineIds": machine_ids, "WorkerIds": worker_ids }),
            queue_time: None,
            queue_time_expiry: None,
            project_id: None,
            environment_id: None,
            deployment_id: None,
        })
        .await?;
    tx.commit().await?;
    inst.runner.wake();
    tracing::info!(task = %task.id, user = %caller.username, "health check queued");
    Ok(task)
}
