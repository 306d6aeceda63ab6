//! Interruptions and the task flag that mirrors them. An interruption is a
//! document under its task; the task's `has_pending_interruptions` column is
//! recomputed in every transaction that raises, answers or closes one, so the
//! two never disagree.

use crate::{DocumentQuery, Result, Store, Tx};
use cuttle_model::Interruption;

fn of_task(task_id: &str) -> DocumentQuery {
    DocumentQuery {
        parent_ids: vec![task_id.to_owned()],
        ..Default::default()
    }
}

impl Tx {
    /// Reads an interruption and locks it until the transaction ends, so a
    /// check of `IsPending` followed by an update cannot race another node.
    pub async fn lock_interruption(&mut self, id: &str) -> Result<Option<Interruption>> {
        self.lock(id).await
    }

    /// Sets the task's `HasPendingInterruptions` from its interruptions as
    /// this transaction sees them.
    pub async fn sync_task_interruption_flag(&mut self, task_id: &str) -> Result<bool> {
        let pending = self
            .list::<Interruption>(&of_task(task_id))
            .await?
            .items
            .iter()
            .any(|i| i.is_pending);
        sqlx::query("UPDATE server_tasks SET has_pending_interruptions = $1 WHERE id = $2")
            .bind(i64::from(pending))
            .bind(task_id)
            .execute(&mut *self.inner)
            .await?;
        Ok(pending)
    }
}

impl Store {
    /// A task's interruptions, oldest first.
    pub async fn task_interruptions(&self, task_id: &str) -> Result<Vec<Interruption>> {
        Ok(self.list::<Interruption>(&of_task(task_id)).await?.items)
    }

    /// Closes a task's pending interruptions unanswered (the task was
    /// cancelled or its server stopped), saying why; returns how many.
    pub async fn close_task_interruptions(&self, task_id: &str, reason: &str) -> Result<usize> {
        self.close_interruptions_of(task_id, None, reason).await
    }

    /// As [`Store::close_task_interruptions`], by the node holding
    /// `lease`: refused ([`crate::StoreError::LeaseLost`]), closing
    /// nothing, once another node took the task over and waits on them.
    pub async fn close_task_interruptions_held(
        &self,
        lease: &crate::TaskLease,
        reason: &str,
    ) -> Result<usize> {
        self.close_interruptions_of(&lease.task_id, Some(lease), reason)
            .await
    }

    async fn close_interruptions_of(
        &self,
        task_id: &str,
        lease: Option<&crate::TaskLease>,
        reason: &str,
    ) -> Result<usize> {
        let mut tx = self.begin().await?;
        if let Some(lease) = lease {
            tx.check_task_lease(lease).await?;
        }
        let pending: Vec<String> = tx
            .list::<Interruption>(&of_task(task_id))
            .await?
            .items
            .into_iter()
            .filter(|i| i.is_pending)
            .map(|i| i.id)
            .collect();
        let mut closed = 0;
        for id in pending {
            if let Some(mut i) = tx.lock_interruption(&id).await? {
                if i.is_pending {
                    i.close(reason);
                    tx.update(&i).await?;
                    closed += 1;
                }
            }
        }
        tx.sync_task_interruption_flag(task_id).await?;
        tx.commit().await?;
        Ok(closed)
    }
}
