//! Deleting a space and everything in it, and the task queue of a space
//! that is stopped (`TaskQueueStopped`), which [`crate::tasks`] honours.

use crate::documents::Document;
use crate::{Result, StoreError, Tx};
use cuttle_model::Space;

/// How a stopped space's document reads in SQL: its JSON is written compactly
/// by serde, so the flag is always spelled this way.
pub(crate) const STOPPED_SPACE_BODY: &str = "%\"TaskQueueStopped\":true%";

impl Tx {
    /// Reads a space and locks it until the transaction ends, so that it is
    /// not restarted while it is being deleted.
    pub async fn lock_space(&mut self, id: &str) -> Result<Option<Space>> {
        self.lock(id).await
    }

    /// How many of the space's tasks are running (or being cancelled).
    pub async fn running_tasks_in_space(&mut self, space_id: &str) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM server_tasks WHERE space_id = $1 \
             AND state IN ('Executing', 'Cancelling')",
        )
        .bind(space_id)
        .fetch_one(&mut *self.inner)
        .await?;
        Ok(n)
    }

    /// Deletes a space's document and every row of the space: documents
    /// (those under its tasks too), tasks with their activities and logs,
    /// and package versions. Returns the hashes of the package files the
    /// deleted versions used; the caller removes those no other space uses.
    /// The audit log is kept.
    pub async fn delete_space(&mut self, space_id: &str) -> Result<Vec<String>> {
        let hashes: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT hash FROM packages WHERE space_id = $1")
                .bind(space_id)
                .fetch_all(&mut *self.inner)
                .await?;
        let statements = [
            "DELETE FROM documents WHERE parent_id IN (SELECT id FROM server_tasks WHERE space_id = $1)",
            "DELETE FROM task_log_lines WHERE task_id IN (SELECT id FROM server_tasks WHERE space_id = $1)",
            "DELETE FROM task_activities WHERE task_id IN (SELECT id FROM server_tasks WHERE space_id = $1)",
            "DELETE FROM task_step_results WHERE task_id IN (SELECT id FROM server_tasks WHERE space_id = $1)",
            "DELETE FROM server_tasks WHERE space_id = $1",
            "DELETE FROM packages WHERE space_id = $1",
            "DELETE FROM latest_deployments WHERE space_id = $1",
            "DELETE FROM deployments WHERE space_id = $1",
            "DELETE FROM subscription_attempts WHERE delivery_id IN (SELECT d.id FROM subscription_deliveries d JOIN documents s ON s.id = d.subscription_id WHERE s.space_id = $1)",
            "DELETE FROM subscription_deliveries WHERE subscription_id IN (SELECT id FROM documents WHERE space_id = $1 AND collection = 'Subscriptions')",
            "DELETE FROM subscription_secrets WHERE subscription_id IN (SELECT id FROM documents WHERE space_id = $1 AND collection = 'Subscriptions')",
            "DELETE FROM documents WHERE space_id = $1",
        ];
        for sql in statements {
            sqlx::query(sql)
                .bind(space_id)
                .execute(&mut *self.inner)
                .await?;
        }
        crate::counts::forget_space(&mut self.inner, space_id).await?;
        let r = sqlx::query("DELETE FROM documents WHERE id = $1 AND collection = $2")
            .bind(space_id)
            .bind(Space::COLLECTION)
            .execute(&mut *self.inner)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("The space '{space_id}'")));
        }
        Ok(hashes.into_iter().map(|(h,)| h).collect())
    }
}
