//! Task leases and their fencing token.
//!
//! A running task is held by one node until its lease runs out on the
//! database's clock ([`Backend::now_millis`]); the node renews it. Each time
//! the task changes hands (claimed from the queue, or taken over by another
//! node after the lease lapsed) its `lease_generation` grows by one. A node
//! writes for the task only through a [`TaskLease`] naming the generation
//! it holds, and each such write checks it in the write's own transaction,
//! with the task's row locked against a takeover until the write commits:
//! a node that lost the task (paused past its lease while another took it)
//! has every later write refused with [`StoreError::LeaseLost`], whatever
//! the timing.
//!
//! A deployment's finished steps are recorded here too, so that the node
//! taking a task over runs none of them again.

use crate::group_commit::job;
use crate::task_log::insert_log_lines;
use crate::tasks::{task_from_row, TASK_COLUMNS};
use crate::{Backend, Result, Store, StoreError, Tx};
use cuttle_model::task::{Activity, LogLine};
use cuttle_model::{ServerTask, TaskState, Timestamp};
use sqlx::{AnyConnection, Row};

/// The lease a node holds on a running task: the token its writes carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskLease {
    pub task_id: String,
    pub node: String,
    pub generation: i64,
}

/// What a running task's log writer stores in one write: the activities
/// saved since its last write, each as it stands now (with its position);
/// log lines; how many lines of each agent script (`(command id, next
/// line)`) the log holds with them; whether a line was a warning or
/// worse, which flags the task; and, last, the task's end (its state and
/// error), written with the last of its log. One transaction (shared with
/// other tasks' writes) rather than one per activity change, so a trivial
/// deployment's whole activity tree and its end cost a few commits.
#[derive(Clone, Debug, Default)]
pub struct TaskProgress {
    pub activities: Vec<(Activity, i64)>,
    pub lines: Vec<LogLine>,
    pub marks: Vec<(String, i64)>,
    pub warned: bool,
    pub end: Option<(TaskState, Option<String>)>,
}

impl TaskProgress {
    pub fn is_empty(&self) -> bool {
        self.activities.is_empty()
            && self.lines.is_empty()
            && self.marks.is_empty()
            && !self.warned
            && self.end.is_none()
    }
}

/// Writes `progress` on a connection inside a transaction, lines as
/// written under the lease of `generation` (0: none), the end at `now`.
/// Activities first: lines name theirs. Answers 1 when it ended the task,
/// else 0.
async fn write_progress_on(
    conn: &mut AnyConnection,
    backend: Backend,
    task_id: &str,
    generation: i64,
    progress: &TaskProgress,
    ending: Ending,
) -> Result<u64> {
    for (a, position) in &progress.activities {
        crate::tasks::put_activity_on(conn, task_id, a, *position).await?;
    }
    insert_log_lines(conn, backend, task_id, generation, &progress.lines).await?;
    for (command_id, next) in &progress.marks {
        sqlx::query(
            "UPDATE task_agent_commands SET next_line = $3 \
             WHERE task_id = $1 AND command_id = $2 AND next_line < $3",
        )
        .bind(task_id)
        .bind(command_id)
        .bind(*next)
        .execute(&mut *conn)
        .await?;
    }
    if progress.warned {
        sqlx::query("UPDATE server_tasks SET has_warnings_or_errors = 1 WHERE id = $1")
            .bind(task_id)
            .execute(&mut *conn)
            .await?;
    }
    match &progress.end {
        Some((state, error)) => {
            crate::tasks::complete_task_on(
                conn,
                task_id,
                *state,
                error.as_deref(),
                ending.now,
                ending.record_events,
            )
            .await
        }
        None => Ok(0),
    }
}

/// When a task's end is written, and whether its audit event is.
#[derive(Clone, Copy)]
struct Ending {
    now: Timestamp,
    record_events: bool,
}

/// A running task this node took over from a node whose lease lapsed.
#[derive(Clone, Debug)]
pub struct Takeover {
    pub task: ServerTask,
    pub lease: TaskLease,
    /// The node that held it before.
    pub previous_node: Option<String>,
}

/// How one step of a deployment ended, as the engine records it when the
/// step ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepResult {
    pub step_number: i64,
    /// The step activity's final status.
    pub status: String,
    /// What failed in the step, as the deployment's error will say it.
    pub failures: Vec<String>,
    pub canceled: bool,
    /// The deployment's state after the step (output variables), sealed by
    /// the engine; opaque here.
    pub state: String,
}

impl TaskLease {
    /// Refuses unless the task is still at this lease's generation. On
    /// PostgreSQL the row stays locked until the transaction ends, so a
    /// takeover waits for this write to commit and cannot slip between the
    /// check and the write. The lock is exclusive: a shared one would let
    /// two transactions that both go on to update the task's row (the
    /// warnings flag, an interruption's flag) deadlock on the upgrade.
    pub(crate) async fn check_on(&self, conn: &mut AnyConnection) -> Result<()> {
        let lock = Backend::of_connection(conn.backend_name()).lock_row();
        let row: Option<(i64,)> = sqlx::query_as(&format!(
            "SELECT lease_generation FROM server_tasks WHERE id = $1{lock}"
        ))
        .bind(&self.task_id)
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some((current,)) if current == self.generation => Ok(()),
            Some((current,)) => Err(self.lost(current)),
            None => Err(StoreError::NotFound(format!("The task '{}'", self.task_id))),
        }
    }

    fn lost(&self, current: i64) -> StoreError {
        StoreError::LeaseLost {
            task_id: self.task_id.clone(),
            node: self.node.clone(),
            held: self.generation,
            current,
        }
    }
}

/// PostgreSQL's `lock_not_available`: a lock_timeout ran out.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// The UPDATE that makes `node` the holder of a lapsed running task, if it
/// is still at generation `seen` and still lapsed.
fn takeover_sql(backend: Backend) -> String {
    let now = backend.now_millis();
    format!(
        "UPDATE server_tasks SET server_node = $1, lease_generation = lease_generation + 1, \
         lease_expires_ms = {now} + $2 \
         WHERE id = $3 AND lease_generation = $4 AND state IN ('Executing', 'Cancelling') \
         AND (lease_expires_ms IS NULL OR lease_expires_ms < {now}) \
         RETURNING {TASK_COLUMNS}, lease_generation"
    )
}

impl Store {
    /// Extends a held lease by `lease_ms` of the database's clock. Refused
    /// with [`StoreError::LeaseLost`] once another node took the task, and
    /// changes nothing then; a task that ended is not renewed either.
    pub async fn renew_task_lease(&self, lease: &TaskLease, lease_ms: i64) -> Result<()> {
        let now = self.backend().now_millis();
        let r = sqlx::query(&format!(
            "UPDATE server_tasks SET lease_expires_ms = {now} + $1 \
             WHERE id = $2 AND lease_generation = $3 AND state IN ('Executing', 'Cancelling')"
        ))
        .bind(lease_ms)
        .bind(&lease.task_id)
        .bind(lease.generation)
        .execute(self.pool())
        .await?;
        if r.rows_affected() > 0 {
            return Ok(());
        }
        match self.task_generation(&lease.task_id).await? {
            Some(current) if current != lease.generation => Err(lease.lost(current)),
            // Ended (or gone): nothing to hold, and nothing lost.
            _ => Ok(()),
        }
    }

    /// The task's lease generation now (`None`: no such task).
    pub async fn task_generation(&self, task_id: &str) -> Result<Option<i64>> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT lease_generation FROM server_tasks WHERE id = $1")
                .bind(task_id)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|r| r.0))
    }

    /// Takes over the oldest running task whose lease lapsed on the
    /// database's clock (its node died or was cut off), for `node`, with a
    /// lease of `lease_ms` and the next generation; `running` are the
    /// tasks `node` runs already, left alone (one of its own leases may
    /// have lapsed while it could not reach the database: it renews it if
    /// nobody else took the task). Two nodes trying at once cannot both
    /// win: the UPDATE is conditional on the generation seen.
    pub async fn take_over_lapsed_task(
        &self,
        node: &str,
        lease_ms: i64,
        running: &[String],
    ) -> Result<Option<Takeover>> {
        let now = self.backend().now_millis();
        let candidates: Vec<(String, i64, Option<String>)> = sqlx::query_as(&format!(
            "SELECT id, lease_generation, server_node FROM server_tasks \
             WHERE state IN ('Executing', 'Cancelling') \
             AND (lease_expires_ms IS NULL OR lease_expires_ms < {now}) ORDER BY seq LIMIT $1"
        ))
        .bind(8 + running.len() as i64)
        .fetch_all(self.pool())
        .await?;
        let sql = takeover_sql(self.backend());
        for (id, seen, previous_node) in candidates {
            if running.contains(&id) {
                continue;
            }
            // A holder paused in the middle of a write keeps the row locked
            // until it wakes; rather than wait with it, try the next task
            // (and this one again at the next pass).
            let mut tx = self.begin().await?;
            if self.backend() == Backend::Postgres {
                sqlx::query("SET LOCAL lock_timeout = '1s'")
                    .execute(&mut *tx.inner)
                    .await?;
            }
            let row = match sqlx::query(&sql)
                .bind(node)
                .bind(lease_ms)
                .bind(&id)
                .bind(seen)
                .fetch_optional(&mut *tx.inner)
                .await
            {
                Ok(row) => row,
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some(LOCK_NOT_AVAILABLE) =>
                {
                    tx.rollback().await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            tx.commit().await?;
            if let Some(row) = row {
                let task = task_from_row(&row)?;
                let generation: i64 = row.try_get("lease_generation")?;
                return Ok(Some(Takeover {
                    lease: TaskLease {
                        task_id: task.id.clone(),
                        node: node.to_owned(),
                        generation,
                    },
                    task,
                    previous_node,
                }));
            }
        }
        Ok(None)
    }

    /// In how many milliseconds of the database's clock the first lease
    /// of a task another node runs runs out (negative: already lapsed);
    /// `None` when no other node runs anything.
    pub async fn next_lease_lapse_in_ms(&self, node: &str) -> Result<Option<i64>> {
        let now = self.backend().now_millis();
        let (first, now): (Option<i64>, i64) = sqlx::query_as(&format!(
            "SELECT MIN(lease_expires_ms), {now} FROM server_tasks \
             WHERE state IN ('Executing', 'Cancelling') AND server_node <> $1"
        ))
        .bind(node)
        .fetch_one(self.reader())
        .await?;
        Ok(first.map(|f| f - now))
    }

    /// Ends the leases of the running tasks `node` holds, as it starts:
    /// the process that ran them is gone, so they are for the taking at
    /// once (by this node or another) rather than when their leases run
    /// out. Returns how many there were.
    pub async fn lapse_leases_of(&self, node: &str) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE server_tasks SET lease_expires_ms = 0 \
             WHERE server_node = $1 AND state IN ('Executing', 'Cancelling')",
        )
        .bind(node)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected())
    }

    /// [`Store::append_log_lines`] under a held lease: refused, and nothing
    /// stored, when the lease was lost.
    pub async fn append_log_lines_held(&self, lease: &TaskLease, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let (lease, lines) = (lease.clone(), lines.to_vec());
        let backend = self.backend();
        self.progress_write(job(move |conn| {
            Box::pin(async move {
                lease.check_on(conn).await?;
                insert_log_lines(conn, backend, &lease.task_id, lease.generation, &lines).await
            })
        }))
        .await?;
        Ok(())
    }

    /// [`Store::put_activity`] under a held lease.
    pub async fn put_activity_held(
        &self,
        lease: &TaskLease,
        a: &Activity,
        position: i64,
    ) -> Result<()> {
        let (lease, a) = (lease.clone(), a.clone());
        self.progress_write(job(move |conn| {
            Box::pin(async move {
                lease.check_on(conn).await?;
                crate::tasks::put_activity_on(conn, &lease.task_id, &a, position).await
            })
        }))
        .await?;
        Ok(())
    }

    /// [`Store::mark_warnings`] under a held lease.
    pub async fn mark_warnings_held(&self, lease: &TaskLease) -> Result<()> {
        let lease = lease.clone();
        self.progress_write(job(move |conn| {
            Box::pin(async move {
                lease.check_on(conn).await?;
                let r =
                    sqlx::query("UPDATE server_tasks SET has_warnings_or_errors = 1 WHERE id = $1")
                        .bind(&lease.task_id)
                        .execute(conn)
                        .await?;
                Ok(r.rows_affected())
            })
        }))
        .await?;
        Ok(())
    }

    /// [`Store::complete_task`] under a held lease.
    pub async fn complete_task_held(
        &self,
        lease: &TaskLease,
        state: TaskState,
        error: Option<&str>,
    ) -> Result<bool> {
        let now = Timestamp::now();
        let (lease, error) = (lease.clone(), error.map(str::to_owned));
        let record = self.records_events();
        let changed = self
            .progress_write(job(move |conn| {
                Box::pin(async move {
                    lease.check_on(conn).await?;
                    crate::tasks::complete_task_on(
                        conn,
                        &lease.task_id,
                        state,
                        error.as_deref(),
                        now,
                        record,
                    )
                    .await
                })
            }))
            .await?;
        if record && changed > 0 {
            self.events_written();
        }
        Ok(changed > 0)
    }

    /// Records how a step of the task ended, under a held lease. A step is
    /// recorded once: recording it again is refused as a conflict.
    pub async fn record_step_result(&self, lease: &TaskLease, result: &StepResult) -> Result<()> {
        let (lease, result) = (lease.clone(), result.clone());
        let failures = serde_json::to_string(&result.failures)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.progress_write(job(move |conn| {
            Box::pin(async move {
                lease.check_on(conn).await?;
                let r = sqlx::query(
                    "INSERT INTO task_step_results (task_id, step_number, status, failures, canceled, state) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (task_id, step_number) DO NOTHING",
                )
                .bind(&lease.task_id)
                .bind(result.step_number)
                .bind(&result.status)
                .bind(&failures)
                .bind(i64::from(result.canceled))
                .bind(&result.state)
                .execute(&mut *conn)
                .await?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::Conflict(format!(
                        "Step {} of task {} is already recorded",
                        result.step_number, lease.task_id
                    )));
                }
                Ok(r.rows_affected())
            })
        }))
        .await?;
        Ok(())
    }

    /// Records, under a held lease, that the script with `command_id` runs
    /// on an agent for the run `activity_id` of the task, none of its lines
    /// logged yet; a command recorded before is left as it is.
    pub async fn record_agent_command(
        &self,
        lease: &TaskLease,
        command_id: &str,
        activity_id: &str,
    ) -> Result<()> {
        let lease = lease.clone();
        let (command_id, activity_id) = (command_id.to_owned(), activity_id.to_owned());
        self.progress_write(job(move |conn| {
            Box::pin(async move {
                lease.check_on(conn).await?;
                let r = sqlx::query(
                    "INSERT INTO task_agent_commands (task_id, command_id, activity_id, next_line)                      VALUES ($1, $2, $3, 0) ON CONFLICT (task_id, command_id) DO NOTHING",
                )
                .bind(&lease.task_id)
                .bind(&command_id)
                .bind(&activity_id)
                .execute(&mut *conn)
                .await?;
                Ok(r.rows_affected())
            })
        }))
        .await?;
        Ok(())
    }

    /// [`Store::append_log_lines_held`], recording in the same transaction
    /// how many lines of each agent script (`(command id, next line)`) the
    /// log now holds: a node re-attaching to the script goes on from there,
    /// neither repeating a line nor skipping one.
    pub async fn append_log_lines_marking(
        &self,
        lease: &TaskLease,
        lines: &[LogLine],
        marks: &[(String, i64)],
    ) -> Result<()> {
        let (lease, lines, marks) = (lease.clone(), lines.to_vec(), marks.to_vec());
        let backend = self.backend();
        self.progress_write(job(move |conn| {
            Box::pin(async move {
                lease.check_on(conn).await?;
                let n =
                    insert_log_lines(conn, backend, &lease.task_id, lease.generation, &lines).await?;
                for (command_id, next) in &marks {
                    sqlx::query(
                        "UPDATE task_agent_commands SET next_line = $3                          WHERE task_id = $1 AND command_id = $2 AND next_line < $3",
                    )
                    .bind(&lease.task_id)
                    .bind(command_id)
                    .bind(*next)
                    .execute(&mut *conn)
                    .await?;
                }
                Ok(n)
            })
        }))
        .await?;
        Ok(())
    }

    /// Stores what a running task's log has gathered since its last write
    /// (see [`TaskProgress`]) in one write under the held lease: refused,
    /// and nothing stored, when the lease was lost. Answers whether it
    /// ended the task (a task that had ended already stays as it was).
    pub async fn write_progress_held(
        &self,
        lease: &TaskLease,
        progress: TaskProgress,
    ) -> Result<bool> {
        if progress.is_empty() {
            return Ok(false);
        }
        let lease = lease.clone();
        let backend = self.backend();
        let ending = self.ending();
        let ended = self
            .progress_write(job(move |conn| {
                Box::pin(async move {
                    lease.check_on(conn).await?;
                    write_progress_on(
                        conn,
                        backend,
                        &lease.task_id,
                        lease.generation,
                        &progress,
                        ending,
                    )
                    .await
                })
            }))
            .await?;
        self.ended_with_event(ending, ended);
        Ok(ended > 0)
    }

    /// [`Store::write_progress_held`] for a task no node holds (closing
    /// one whose node is gone).
    pub async fn write_progress(&self, task_id: &str, progress: TaskProgress) -> Result<bool> {
        if progress.is_empty() {
            return Ok(false);
        }
        let task_id = task_id.to_owned();
        let backend = self.backend();
        let ending = self.ending();
        let ended = self
            .progress_write(job(move |conn| {
                Box::pin(async move {
                    write_progress_on(conn, backend, &task_id, 0, &progress, ending).await
                })
            }))
            .await?;
        self.ended_with_event(ending, ended);
        Ok(ended > 0)
    }

    /// A task's end written with its log recorded its audit event: those
    /// who follow events hear of it, as after [`Store::complete_task_held`].
    fn ended_with_event(&self, ending: Ending, ended: u64) {
        if ending.record_events && ended > 0 {
            self.events_written();
        }
    }

    fn ending(&self) -> Ending {
        Ending {
            now: Timestamp::now(),
            record_events: self.records_events(),
        }
    }

    /// The task's scripts on agents: `(command id, run activity id, lines
    /// logged)`.
    pub async fn agent_commands(&self, task_id: &str) -> Result<Vec<(String, String, i64)>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT command_id, activity_id, next_line FROM task_agent_commands              WHERE task_id = $1 ORDER BY command_id",
        )
        .bind(task_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }

    /// The recorded steps of a task, by number.
    pub async fn step_results(&self, task_id: &str) -> Result<Vec<StepResult>> {
        let rows = sqlx::query(
            "SELECT step_number, status, failures, canceled, state FROM task_step_results \
             WHERE task_id = $1 ORDER BY step_number",
        )
        .bind(task_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let failures: String = r.try_get("failures")?;
                Ok(StepResult {
                    step_number: r.try_get("step_number")?,
                    status: r.try_get("status")?,
                    failures: serde_json::from_str(&failures)
                        .map_err(|e| StoreError::Corrupt(format!("step failures: {e}")))?,
                    canceled: r.try_get::<i64, _>("canceled")? != 0,
                    state: r.try_get("state")?,
                })
            })
            .collect()
    }
}

impl Tx {
    /// Refuses unless `lease` is still the task's (see
    /// [`TaskLease`]); writes later in this transaction are then fenced.
    pub async fn check_task_lease(&mut self, lease: &TaskLease) -> Result<()> {
        lease.check_on(&mut self.inner).await
    }
}
