//! What `/metrics` reads from the database at each scrape: counts by group
//! and a few minimums, each one aggregate over an index (no collection is
//! loaded), so a scrape stays cheap at any history size.

use crate::{Result, Store};
use cuttle_model::Timestamp;

/// Counts of unfinished tasks and the ages of the oldest.
#[derive(Clone, Debug, Default)]
pub struct TaskGauges {
    /// (task type, count) of queued tasks.
    pub queued: Vec<(String, i64)>,
    /// (task type, count) of running (and cancelling) tasks.
    pub running: Vec<(String, i64)>,
    pub oldest_queue_time: Option<Timestamp>,
    pub oldest_start_time: Option<Timestamp>,
}

/// The database pool's connections.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolUse {
    pub size: u32,
    pub idle: u32,
}

impl Store {
    /// Unfinished tasks by type and state; the server_tasks_state index
    /// holds the few rows in these states apart from the finished history.
    pub async fn task_gauges(&self) -> Result<TaskGauges> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT name, state, COUNT(*) FROM server_tasks \
             WHERE state IN ('Queued', 'Executing', 'Cancelling') GROUP BY name, state",
        )
        .fetch_all(self.reader())
        .await?;
        let mut gauges = TaskGauges::default();
        for (name, state, n) in rows {
            let into = if state == "Queued" {
                &mut gauges.queued
            } else {
                &mut gauges.running
            };
            match into.iter_mut().find(|(t, _)| *t == name) {
                Some((_, total)) => *total += n,
                None => into.push((name, n)),
            }
        }
        let now = Timestamp::now().to_string();
        // Tasks queued for later (a schedule) are not waiting yet.
        gauges.oldest_queue_time = self.earliest(
            "SELECT MIN(queue_time) FROM server_tasks WHERE state = 'Queued' AND queue_time <= $1",
            &now,
        )
        .await?;
        gauges.oldest_start_time = self
            .earliest(
                "SELECT MIN(start_time) FROM server_tasks \
             WHERE state IN ('Executing', 'Cancelling') AND start_time <= $1",
                &now,
            )
            .await?;
        Ok(gauges)
    }

    /// The one timestamp `sql` selects (given `now` as `$1`), if any.
    async fn earliest(&self, sql: &str, now: &str) -> Result<Option<Timestamp>> {
        let row: Option<(Option<String>,)> = sqlx::query_as(sql)
            .bind(now.to_owned())
            .fetch_optional(self.reader())
            .await?;
        Ok(row.and_then(|r| r.0).and_then(|t| Timestamp::parse(&t)))
    }

    /// Deployment targets and workers by health status.
    pub async fn agents_by_health(&self) -> Result<Vec<(String, i64)>> {
        let status = self.backend().json_text("body", "HealthStatus");
        let sql = format!(
            "SELECT COALESCE({status}, 'Unknown'), COUNT(*) FROM documents \
             WHERE collection IN ('Machines', 'Workers') GROUP BY 1"
        );
        Ok(sqlx::query_as(&sql).fetch_all(self.reader()).await?)
    }

    /// Bytes of package files in the built-in feed, each version once.
    pub async fn package_feed_bytes(&self) -> Result<i64> {
        // PostgreSQL sums BIGINTs as NUMERIC, which the Any driver cannot read.
        let row: (i64,) =
            sqlx::query_as("SELECT CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM packages")
                .fetch_one(self.reader())
                .await?;
        Ok(row.0)
    }

    /// The connections of the pool that writes (on SQLite; on PostgreSQL
    /// the one pool).
    pub fn pool_use(&self) -> PoolUse {
        PoolUse {
            size: self.pool().size(),
            idle: self.pool().num_idle() as u32,
        }
    }

    /// Whether every migration this build knows has been applied, read
    /// from the database (another node may have rolled it back or ahead).
    pub async fn migrations_applied(&self) -> Result<bool> {
        let applied: Vec<(i64,)> =
            sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_all(self.reader())
                .await?;
        Ok(crate::MIGRATOR
            .iter()
            .all(|m| applied.iter().any(|(v,)| *v == m.version)))
    }
}
