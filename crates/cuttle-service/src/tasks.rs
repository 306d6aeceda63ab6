//! Reading and cancelling server tasks.

use crate::{Instance, Result, ServiceError};
use cuttle_model::task::{build_activity_tree, ActivityElement};
use cuttle_model::{ServerTask, User};
use cuttle_store::tasks::CancelOutcome;

pub async fn task(inst: &Instance, id: &str) -> Result<ServerTask> {
    inst.store
        .task(id)
        .await?
        .ok_or_else(|| ServiceError::not_found("task", id))
}

/// A task with its activity log tree.
pub async fn details(
    inst: &Instance,
    id: &str,
    verbose: bool,
) -> Result<(ServerTask, Vec<ActivityElement>)> {
    let t = task(inst, id).await?;
    let (activities, lines) = inst.store.task_log(id).await?;
    Ok((t, build_activity_tree(&activities, &lines, verbose)))
}

pub async fn cancel(inst: &Instance, caller: &User, id: &str) -> Result<ServerTask> {
    let outcome = inst.runner.cancel(id).await?;
    let t = task(inst, id).await?;
    if matches!(outcome, CancelOutcome::AlreadyDone) && t.state.is_completed() {
        return Err(ServiceError::Conflict(format!(
            "The task {id} has already finished ({:?}), so there is nothing to cancel",
            t.state
        )));
    }
    tracing::info!(task = %id, user = %caller.username, "task cancellation requested");
    Ok(t)
}
