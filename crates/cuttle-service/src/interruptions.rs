//! Interruptions: reading them, taking responsibility, and submitting an
//! answer (a manual intervention's Proceed or Abort, or failure guidance).
//! Each change is one transaction with an audit event; an answer then wakes
//! the runner so the waiting task goes on at once.

use crate::actor::Actor;
use crate::resources::{audit_changed, get_in_space};
use crate::{Instance, Result, ServiceError};
use cuttle_model::{Interruption, Permission, Scope, User};
use cuttle_store::{DocumentQuery, Tx};
use serde_json::{Map, Value};

/// Which interruptions a list wants.
#[derive(Clone, Debug, Default)]
pub struct InterruptionFilter {
    /// A task, deployment, project or environment the interruption concerns.
    pub regarding: Option<String>,
    pub pending_only: bool,
    pub ids: Vec<String>,
}

/// Where an interruption is: its space, and the project and environment
/// among the documents it concerns.
fn scope_of(i: &Interruption) -> Scope<'_> {
    let mut scope = Scope::space(&i.space_id);
    let related = |prefix: &str| {
        i.related_document_ids
            .iter()
            .find(|d| d.starts_with(prefix))
            .map(String::as_str)
    };
    if let Some(p) = related("Projects-") {
        scope = scope.project(p);
    }
    if let Some(e) = related("Environments-") {
        scope = scope.environment(e);
    }
    scope
}

/// Whether `caller` may act on `interruption` at all (take responsibility,
/// submit): with `InterruptionSubmit` there, any; with
/// `InterruptionViewSubmitResponsible`, one whose responsible teams (if it
/// names any) include one of theirs.
fn may_act(caller: &Actor, interruption: &Interruption) -> bool {
    let Some(perms) = &caller.permissions else {
        return true;
    };
    let scope = scope_of(interruption);
    if perms.allows(Permission::InterruptionSubmit, &scope) {
        return true;
    }
    perms.allows(Permission::InterruptionViewSubmitResponsible, &scope)
        && (interruption.responsible_team_ids.is_empty()
            || interruption
                .responsible_team_ids
                .iter()
                .any(|t| perms.teams.contains(t)))
}

/// Whether `caller` may see `interruption`.
fn may_view(caller: &Actor, interruption: &Interruption) -> bool {
    caller.may(Permission::InterruptionView, &scope_of(interruption))
}

/// Whether `caller` may submit an answer: they may act, and nobody else has
/// taken responsibility (whoever has it answers, so two people cannot act
/// on one interruption at once).
fn can_submit(caller: &Actor, interruption: &Interruption) -> Result<()> {
    if !may_act(caller, interruption) {
        return Err(ServiceError::Forbidden(
            "You are not in a team responsible for this interruption".into(),
        ));
    }
    match &interruption.responsible_user_id {
        Some(holder) if holder != &caller.id => Err(ServiceError::Forbidden(format!(
            "Another user ({holder}) has taken responsibility for this interruption; \
             take responsibility yourself before submitting"
        ))),
        _ => Ok(()),
    }
}

/// The interruption as `caller` sees it: whether they can take
/// responsibility and whether they hold it.
fn for_caller(mut i: Interruption, caller: &Actor) -> Interruption {
    i.can_take_responsibility = i.is_pending && may_act(caller, &i);
    i.has_responsibility = i.responsible_user_id.as_deref() == Some(caller.id.as_str());
    i
}

pub async fn list(
    inst: &Instance,
    caller: &Actor,
    space_id: &str,
    filter: &InterruptionFilter,
) -> Result<Vec<Interruption>> {
    let regarding = filter.regarding.as_deref().filter(|r| !r.is_empty());
    let q = DocumentQuery {
        space_id: Some(space_id.to_owned()),
        // A task's interruptions are indexed under it; other ids are found
        // among the related documents below.
        parent_ids: regarding
            .filter(|r| r.starts_with("ServerTasks-"))
            .map(|r| vec![r.to_owned()])
            .unwrap_or_default(),
        ids: filter.ids.clone(),
        descending: true,
        ..Default::default()
    };
    let page = inst.store.list::<Interruption>(&q).await?;
    Ok(page
        .items
        .into_iter()
        .filter(|i| !filter.pending_only || i.is_pending)
        .filter(|i| may_view(caller, i))
        .filter(|i| {
            regarding
                .is_none_or(|r| i.task_id == r || i.related_document_ids.iter().any(|d| d == r))
        })
        .map(|i| for_caller(i, caller))
        .collect())
}

pub async fn get(
    inst: &Instance,
    caller: &Actor,
    space_id: &str,
    id: &str,
) -> Result<Interruption> {
    let i: Interruption = get_in_space(&inst.store, space_id, id).await?;
    if !may_view(caller, &i) {
        return Err(ServiceError::not_found("interruption", id));
    }
    Ok(for_caller(i, caller))
}

/// Locks a pending interruption of `space_id` for change, or says why not.
async fn lock_pending(tx: &mut Tx, space_id: &str, id: &str) -> Result<Interruption> {
    let i = tx
        .lock_interruption(id)
        .await?
        .filter(|i| i.space_id == space_id)
        .ok_or_else(|| ServiceError::not_found("interruption", id))?;
    if !i.is_pending {
        let how = match (i.decision(), &i.last_modified_by) {
            (Some(d), Some(by)) => format!("{by} already submitted {}", d.as_str()),
            _ => format!(
                "it was closed: {}",
                i.notes().unwrap_or("the task no longer waits for it")
            ),
        };
        return Err(ServiceError::Conflict(format!(
            "The interruption {id} is no longer pending: {how}"
        )));
    }
    Ok(i)
}

/// `PUT …/interruptions/{id}/responsible`: the caller takes responsibility
/// (taking it over from whoever had it, as Octopus allows); returns the caller.
pub async fn take_responsibility(
    inst: &Instance,
    caller: &Actor,
    space_id: &str,
    id: &str,
) -> Result<User> {
    let mut tx = inst.store.begin().await?;
    let mut i = lock_pending(&mut tx, space_id, id).await?;
    if !may_view(caller, &i) {
        return Err(ServiceError::not_found("interruption", id));
    }
    if !may_act(caller, &i) {
        return Err(ServiceError::Forbidden(
            "You are not in a team responsible for this interruption".into(),
        ));
    }
    if i.responsible_user_id.as_deref() != Some(caller.id.as_str()) {
        let before = i.clone();
        i.responsible_user_id = Some(caller.id.clone());
        tx.update(&i).await?;
        audit_changed(
            &mut tx,
            caller,
            Some(space_id),
            crate::audit::category::INTERRUPTION_RESPONSIBILITY_TAKEN,
            format!(
                "{} took responsibility for {} ({})",
                caller.username, i.id, i.title
            ),
            vec![i.id.clone(), i.task_id.clone()],
            Some(&before),
            Some(&i),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(caller.user.clone())
}

/// `GET …/interruptions/{id}/responsible`: who has responsibility, if anyone.
pub async fn responsible(inst: &Instance, space_id: &str, id: &str) -> Result<Option<User>> {
    let i: Interruption = get_in_space(&inst.store, space_id, id).await?;
    match &i.responsible_user_id {
        Some(uid) => Ok(inst.store.user(uid).await?),
        None => Ok(None),
    }
}

/// `POST …/interruptions/{id}/submit`: answers the interruption with the
/// submitted form values (`Result` for a manual intervention, `Guidance` for
/// guided failure, and `Notes`). Nobody holding responsibility counts as the
/// caller taking it.
pub async fn submit(
    inst: &Instance,
    caller: &Actor,
    space_id: &str,
    id: &str,
    values: &Map<String, Value>,
) -> Result<Interruption> {
    let mut tx = inst.store.begin().await?;
    let mut i = lock_pending(&mut tx, space_id, id).await?;
    if !may_view(caller, &i) {
        return Err(ServiceError::not_found("interruption", id));
    }
    can_submit(caller, &i)?;
    let submission = i
        .check_submission(values)
        .map_err(ServiceError::bad_request)?;
    let before = i.clone();
    i.submit(&submission, &caller.id, &caller.username);
    tx.update(&i).await?;
    tx.sync_task_interruption_flag(&i.task_id).await?;
    audit_changed(
        &mut tx,
        caller,
        Some(space_id),
        crate::audit::category::INTERRUPTION_SUBMITTED,
        format!(
            "{} submitted {} for {} ({}){}",
            caller.username,
            submission.decision.as_str(),
            i.id,
            i.title,
            submission
                .notes
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        ),
        vec![i.id.clone(), i.task_id.clone()],
        Some(&before),
        Some(&i),
    )
    .await?;
    tx.commit().await?;
    inst.runner.interruption_submitted();
    // Followers of the task's log see HasPendingInterruptions change at once.
    inst.runner.signals().notify(&i.task_id);
    Ok(for_caller(i, caller))
}
