//! The audit log: one event per change, written in the change's transaction.

use crate::{Result, Tx};
use cuttle_model::ids::{sequence_of, Collection};
use cuttle_model::Timestamp;

#[derive(Clone, Debug, Default)]
pub struct AuditEvent {
    pub space_id: Option<String>,
    pub user_id: Option<String>,
    pub username: Option<String>,
    /// `Created`, `Modified`, `Deleted`, `DeploymentQueued`, …
    pub category: String,
    pub message: String,
    pub related_document_ids: Vec<String>,
}

impl Tx {
    pub async fn record_event(&mut self, e: AuditEvent) -> Result<()> {
        let id = self.next_id(Collection::Events).await?;
        sqlx::query(
            "INSERT INTO events (id, seq, space_id, occurred_at, user_id, username, category, message, related_document_ids) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(sequence_of(&id))
        .bind(e.space_id)
        .bind(Timestamp::now().to_string())
        .bind(e.user_id)
        .bind(e.username)
        .bind(e.category)
        .bind(e.message)
        .bind(e.related_document_ids.join(","))
        .execute(&mut *self.inner)
        .await?;
        self.enqueue_for_subscriptions(&id).await?;
        Ok(())
    }
}
