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
    match inst.runner.cancel(id).await? {
        CancelOutcome::CanceledWhileQueued
        | CancelOutcome::Cancelling
        | CancelOutcome::AlreadyDone => {}
    }
    tracing::info!(task = %id, user = %caller.username, "task cancellation requested");
    task(inst, id).await
}
