//! Pausing a deployment for a person: raising an interruption, waiting for
//! its answer, and logging who decided what.
//!
//! Waiting is durable and cheap. The interruption is a document, so an answer
//! given through any server node is seen: the service pokes [`Interventions`]
//! after a submit on this node, and a poll of the store every second catches
//! answers given elsewhere. Cancelling the task ends the wait at once and
//! closes the interruption. The runner keeps renewing the task's lease while
//! it waits, as for any running task.

use crate::log::ActivityLog;
use crate::variables::{SharedVariables, BUILT_IN_WORKER};
use cuttle_model::event::category;
use cuttle_model::ids::Collection;
use cuttle_model::interruption::{
    Decision, InterruptionKind, Raised, PROP_MANUAL_RESPONSIBLE_TEAMS,
};
use cuttle_model::{Action, Deployment, Interruption, LogCategory, ServerTask, User};
use cuttle_store::Store;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often a waiting task looks for an answer given through another node.
const POLL: Duration = Duration::from_secs(1);

pub const CANCELED_NOTE: &str = "The task was cancelled while it waited for this interruption";

/// Wakes the tasks of this node that wait on an interruption. The runner owns
/// one; the service calls [`Interventions::submitted`] after an answer commits.
#[derive(Default)]
pub struct Interventions {
    submitted: Notify,
}

impl Interventions {
    /// An interruption was answered: every waiting task re-reads its own.
    pub fn submitted(&self) {
        self.submitted.notify_waiters();
    }
}

/// The deployment an interruption is raised in.
pub struct Asking<'a> {
    pub store: &'a Store,
    pub hub: &'a Interventions,
    pub task: &'a ServerTask,
    pub deployment: &'a Deployment,
    pub cancel: &'a CancellationToken,
    /// The lease the task is held by here: raising an interruption is a
    /// write for the task, refused once another node took it over.
    pub lease: Option<&'a cuttle_store::TaskLease>,
}

/// How a wait ended.
pub enum Answer {
    /// Someone decided; `by` is who, when their account still exists.
    Decided {
        decision: Decision,
        notes: Option<String>,
        by: Option<User>,
        username: String,
    },
    Canceled,
    /// The interruption could not be raised or read.
    Failed(String),
}

impl Asking<'_> {
    fn raised_at(&self, activity: &ActivityLog) -> Raised {
        let d = self.deployment;
        Raised {
            space_id: d.space_id.clone(),
            task_id: self.task.id.clone(),
            correlation_id: activity.id.clone(),
            related_document_ids: vec![
                d.id.clone(),
                self.task.id.clone(),
                d.project_id.clone(),
                d.environment_id.clone(),
            ],
        }
    }

    /// Raises a manual intervention for `action` and waits for Proceed or Abort.
    pub async fn manual(
        &self,
        activity: &ActivityLog,
        step_name: &str,
        action: &Action,
        instructions: &str,
    ) -> Answer {
        let teams: Vec<String> = action
            .property(PROP_MANUAL_RESPONSIBLE_TEAMS)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        // Rendered from variables: masked before it is logged or stored, so
        // neither the interruption's form nor the database holds a secret.
        let instructions = &activity.mask(instructions);
        activity.info(if instructions.trim().is_empty() {
            "Manual intervention required (no instructions were given)".to_owned()
        } else {
            format!("Manual intervention required: {instructions}")
        });
        let interruption = Interruption::manual(
            self.raised_at(activity),
            &activity.mask(step_name),
            instructions,
            teams,
        );
        self.ask(activity, interruption, "proceed or abort").await
    }

    /// Raises a request for failure guidance and waits for Retry, Ignore or Fail.
    pub async fn guidance(
        &self,
        activity: &ActivityLog,
        step_name: &str,
        action_name: &str,
        error: &str,
    ) -> Answer {
        let explanation = format!(
            "The action '{action_name}' failed on the {BUILT_IN_WORKER}: {error}. Retry it, \
             ignore the failure and carry on, or fail the deployment."
        );
        let interruption = Interruption::guided_failure(
            self.raised_at(activity),
            &activity.mask(&format!("Failure guidance: {step_name}")),
            &activity.mask(&explanation),
        );
        self.ask(activity, interruption, "retry, ignore or fail")
            .await
    }

    async fn ask(
        &self,
        activity: &ActivityLog,
        interruption: Interruption,
        options: &str,
    ) -> Answer {
        if self.cancel.is_cancelled() {
            return Answer::Canceled;
        }
        let id = match self.still_pending(activity, &interruption).await {
            Some(id) => {
                activity.info(format!(
                    "Still waiting for someone to {options} (interruption {id}, raised before \
                     this task changed server nodes)"
                ));
                id
            }
            None => {
                // The activity it waits on is stored first: a node taking
                // the task over finds the interruption by that activity.
                activity.flush().await;
                let id = match self.raise(interruption).await {
                    Ok(id) => id,
                    Err(cuttle_store::StoreError::LeaseLost { .. }) => {
                        return Answer::Canceled;
                    }
                    Err(e) => {
                        return Answer::Failed(format!("The interruption could not be raised: {e}"))
                    }
                };
                activity.info(format!(
                    "Waiting for someone to {options} (interruption {id})"
                ));
                id
            }
        };
        match self.wait(&id).await {
            Ok(Some(done)) => self.answer(activity, done).await,
            Ok(None) => {
                let closed = match self.lease {
                    Some(lease) => {
                        self.store
                            .close_task_interruptions_held(lease, CANCELED_NOTE)
                            .await
                    }
                    None => {
                        self.store
                            .close_task_interruptions(&self.task.id, CANCELED_NOTE)
                            .await
                    }
                };
                match closed {
                    Ok(_) => {}
                    // Another node took the task over and waits on it now.
                    Err(cuttle_store::StoreError::LeaseLost { .. }) => return Answer::Canceled,
                    Err(e) => {
                        tracing::error!(task = %self.task.id, error = %e, "could not close an interruption")
                    }
                }
                activity.log(
                    LogCategory::Warning,
                    format!("The task was cancelled while waiting; interruption {id} was closed"),
                );
                Answer::Canceled
            }
            Err(e) => Answer::Failed(e),
        }
    }

    /// The interruption of this kind a node that died raised for the same
    /// activity and that is still unanswered: the node taking the task over
    /// waits for it rather than asking twice.
    async fn still_pending(&self, activity: &ActivityLog, asked: &Interruption) -> Option<String> {
        let raised = self.store.task_interruptions(&self.task.id).await.ok()?;
        raised
            .into_iter()
            .find(|i| i.is_pending && i.correlation_id == activity.id && i.kind == asked.kind)
            .map(|i| i.id)
    }

    /// Stores the interruption and flags its task, in one transaction.
    async fn raise(
        &self,
        mut interruption: Interruption,
    ) -> Result<String, cuttle_store::StoreError> {
        let mut tx = self.store.begin().await?;
        if let Some(lease) = self.lease {
            tx.check_task_lease(lease).await?;
        }
        interruption.id = tx.next_id(Collection::Interruptions).await?;
        tx.insert(&interruption).await?;
        tx.sync_task_interruption_flag(&self.task.id).await?;
        // Subscriptions wake people for these: written with the
        // interruption, never without it.
        let category = match interruption.kind {
            InterruptionKind::ManualIntervention => category::MANUAL_INTERVENTION_RAISED,
            InterruptionKind::GuidedFailure => category::GUIDED_FAILURE_RAISED,
        };
        let mut related = vec![interruption.id.clone()];
        related.extend(interruption.related_document_ids.iter().cloned());
        related.push(self.task.id.clone());
        tx.record_event(cuttle_store::AuditEvent {
            space_id: Some(interruption.space_id.clone()),
            category: category.into(),
            message: format!("{} is waiting: {}", interruption.id, interruption.title),
            related_document_ids: related,
            ..Default::default()
        })
        .await?;
        tx.commit().await?;
        Ok(interruption.id)
    }

    /// Waits until the interruption is answered (`Some`) or the task is
    /// cancelled (`None`).
    async fn wait(&self, id: &str) -> Result<Option<Interruption>, String> {
        loop {
            // Registered before reading, so a submit between the read and
            // the select still wakes us.
            let poked = self.hub.submitted.notified();
            tokio::pin!(poked);
            poked.as_mut().enable();
            match self.store.get::<Interruption>(id).await {
                Ok(Some(i)) if !i.is_pending => return Ok(Some(i)),
                Ok(Some(_)) => {}
                Ok(None) => return Err(format!("The interruption {id} no longer exists")),
                // A database hiccup: try again at the next poll.
                Err(e) => {
                    tracing::warn!(interruption = %id, error = %e, "could not read an interruption")
                }
            }
            tokio::select! {
                _ = &mut poked => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = self.cancel.cancelled() => return Ok(None),
            }
        }
    }

    async fn answer(&self, activity: &ActivityLog, done: Interruption) -> Answer {
        let Some(decision) = done.decision() else {
            // Closed without an answer, by another node's recovery.
            return Answer::Failed(format!(
                "The interruption {} was closed without an answer: {}",
                done.id,
                done.notes().unwrap_or("no reason was given")
            ));
        };
        let username = done.last_modified_by.clone().unwrap_or_default();
        let by = match &done.responsible_user_id {
            Some(uid) => self.store.user(uid).await.ok().flatten(),
            None => None,
        };
        let who = match &done.responsible_user_id {
            Some(uid) => format!("{username} ({uid})"),
            None => username.clone(),
        };
        let notes = done.notes().map(str::to_owned);
        activity.log(
            LogCategory::Highlight,
            format!(
                "{who} chose {} on interruption {}{}",
                decision.as_str(),
                done.id,
                notes
                    .as_deref()
                    .map(|n| format!(", noting: {n}"))
                    .unwrap_or_default()
            ),
        );
        Answer::Decided {
            decision,
            notes,
            by,
            username,
        }
    }
}

/// Octopus's output variables of a manual step, for later steps and emails:
/// `Octopus.Action[name].Output.Manual.Notes`, `.Approved`, `.ResponsibleUser.*`.
pub fn record_manual_outputs(
    vars: &SharedVariables,
    action_name: &str,
    approved: bool,
    notes: Option<&str>,
    by: Option<&User>,
    username: &str,
) {
    let set = |name: &str, value: &str| {
        vars.record_output(action_name, BUILT_IN_WORKER, name, value, false)
    };
    set("Manual.Notes", notes.unwrap_or_default());
    set("Manual.Approved", if approved { "True" } else { "False" });
    set("Manual.ResponsibleUser.Username", username);
    if let Some(u) = by {
        set("Manual.ResponsibleUser.Id", &u.id);
        set("Manual.ResponsibleUser.DisplayName", &u.display_name);
        set("Manual.ResponsibleUser.EmailAddress", &u.email_address);
    }
}
