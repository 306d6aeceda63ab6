//! Reading and cancelling server tasks.

use crate::actor::Actor;
use crate::audit::{category, Entry};
use crate::{Instance, Result, ServiceError};
use cuttle_model::task::{build_activity_tree, omitted_lines_note, ActivityElement};
use cuttle_model::{Permission, Scope, ServerTask, Timestamp};
use cuttle_store::tasks::CancelOutcome;
use std::collections::HashMap;

/// A task. Asked for in a space (`Some`), one of another space is treated
/// as missing, so ids cannot be probed or acted on across spaces; `None` is
/// the space-less `/api/tasks` view, which spans every space.
pub async fn task(inst: &Instance, space: Option<&str>, id: &str) -> Result<ServerTask> {
    match inst.store.task(id).await? {
        Some(t) if space.is_none() || t.space_id.as_deref() == space => Ok(t),
        _ => Err(ServiceError::not_found("task", id)),
    }
}

/// A task `caller` may see (`TaskView` in its space, project and
/// environment), or the same 404 as a missing one.
pub async fn visible_task(
    inst: &Instance,
    caller: &Actor,
    space: Option<&str>,
    id: &str,
) -> Result<ServerTask> {
    let t = task(inst, space, id).await?;
    match caller.may(Permission::TaskView, &Scope::of_task(&t)) {
        true => Ok(t),
        false => Err(ServiceError::not_found("task", id)),
    }
}

/// Lines of one activity a task's details show at most. An activity with
/// more shows its last lines, after a first line that says how many were
/// left out and that the raw log has them all: the answer's size stays
/// bounded whatever the log's.
pub const DETAIL_LINES_PER_ACTIVITY: i64 = 1_000;

/// What to show of a task's log.
#[derive(Clone, Copy, Debug)]
pub struct LogView {
    /// Verbose lines too.
    pub verbose: bool,
    /// Only the last this many lines of each activity (Octopus's `tail`),
    /// at most [`DETAIL_LINES_PER_ACTIVITY`].
    pub tail: Option<i64>,
}

/// A task with its activity log tree, each activity's lines at most
/// [`DETAIL_LINES_PER_ACTIVITY`], and how many lines the log has in all.
pub async fn details(
    inst: &Instance,
    space: Option<&str>,
    id: &str,
    view: LogView,
) -> Result<(ServerTask, Vec<ActivityElement>, i64)> {
    let t = task(inst, space, id).await?;
    let (tree, total) = log_tree(&inst.store, id, view).await?;
    Ok((t, tree, total))
}

/// A task's activity tree with the last lines of each activity, as
/// [`details`] shows them, and how many lines there are in all. Reads one
/// activity at a time, each through an index: never the whole log.
async fn log_tree(
    store: &cuttle_store::Store,
    id: &str,
    view: LogView,
) -> Result<(Vec<ActivityElement>, i64)> {
    let activities = store.task_activities(id).await?;
    let counts: HashMap<String, i64> = store
        .activity_line_counts(id, view.verbose, None)
        .await?
        .into_iter()
        .collect();
    let limit = view.tail.map_or(DETAIL_LINES_PER_ACTIVITY, |t| {
        t.clamp(0, DETAIL_LINES_PER_ACTIVITY)
    });
    let mut lines = vec![];
    let mut omitted = HashMap::new();
    let mut total = 0;
    for a in &activities {
        let count = counts.get(&a.id).copied().unwrap_or(0);
        total += count;
        if count == 0 || limit == 0 {
            continue;
        }
        let tail = store
            .activity_log_tail(id, &a.id, view.verbose, limit, None)
            .await?;
        // Said only where the server's cap cut, not where a caller asked for
        // a tail and got it.
        let capped = view.tail.is_none_or(|t| t > DETAIL_LINES_PER_ACTIVITY);
        if capped && count > tail.len() as i64 {
            if let Some(first) = tail.first() {
                omitted.insert(a.id.clone(), (count - tail.len() as i64, first.occurred_at));
            }
        }
        lines.extend(tail);
    }
    let mut tree = build_activity_tree(&activities, &lines, view.verbose);
    if !omitted.is_empty() {
        note_omissions(&mut tree, &omitted, id);
    }
    Ok((tree, total))
}

fn note_omissions(
    tree: &mut [ActivityElement],
    omitted: &HashMap<String, (i64, Timestamp)>,
    task_id: &str,
) {
    for a in tree {
        if let Some(&(n, at)) = omitted.get(&a.id) {
            a.log_elements.insert(0, omitted_lines_note(n, task_id, at));
        }
        note_omissions(&mut a.children, omitted, task_id);
    }
}

pub async fn cancel(
    inst: &Instance,
    caller: &Actor,
    space: Option<&str>,
    id: &str,
) -> Result<ServerTask> {
    // Checked before anything changes: another space's task, or one the
    // caller may not see, is not found.
    let before = visible_task(inst, caller, space, id).await?;
    caller.require(Permission::TaskCancel, &Scope::of_task(&before))?;
    let entry = Entry::new(
        category::TASK_CANCELED,
        before.space_id.as_deref(),
        format!(
            "{} asked to cancel {}: {}",
            caller.username, before.id, before.description
        ),
    )
    .about(
        [
            Some(&before.id),
            before.deployment_id.as_ref(),
            before.project_id.as_ref(),
            before.environment_id.as_ref(),
        ]
        .into_iter()
        .flatten()
        .cloned(),
    );
    let outcome = inst
        .runner
        .cancel_recorded(id, Some(crate::audit::event(caller, entry)))
        .await?;
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
    caller: &Actor,
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
    // A person's request is recorded; the server's own scheduled checks are
    // nobody's change, and their outcomes are machine health events.
    if caller.origin.established_with.is_some() {
        let mut about = vec![task.id.clone()];
        about.extend(machine_ids.iter().chain(&worker_ids).cloned());
        let entry = Entry::new(
            category::CREATED,
            Some(space_id),
            format!("{} queued: {}", task.id, task.description),
        )
        .about(about)
        .changed(None, Some(&task));
        crate::audit::record(&mut tx, caller, entry).await?;
    }
    tx.commit().await?;
    inst.runner.wake();
    tracing::info!(task = %task.id, user = %caller.username, "health check queued");
    Ok(task)
}
