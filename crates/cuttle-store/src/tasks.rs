//! The durable task queue and each task's activity log.
//!
//! A task row is the queue entry: creating a deployment inserts its task in
//! the same transaction, and a server node claims queued work with one
//! conditional UPDATE (see [`crate::dialect`]). A running task holds a lease
//! that its node renews; a task whose lease lapsed belongs to a node that died.

use crate::group_commit::job;
use crate::statement::{literal, Statement};
use crate::task_log::insert_log_lines;
use crate::{Backend, Result, Store, StoreError, Tx};
use cuttle_model::event::category;
use cuttle_model::ids::{sequence_of, Collection};
use cuttle_model::task::{Activity, ActivityStatus, LogCategory, LogLine};
use cuttle_model::{ServerTask, TaskState, Timestamp};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// What a caller supplies to queue a task.
#[derive(Clone, Debug, Default)]
pub struct NewTask {
    pub space_id: Option<String>,
    pub name: String,
    pub description: String,
    pub arguments: Value,
    /// When the task may start; `None` means now.
    pub queue_time: Option<Timestamp>,
    /// If it has not started by then, it times out instead.
    pub queue_time_expiry: Option<Timestamp>,
    pub project_id: Option<String>,
    pub environment_id: Option<String>,
    pub deployment_id: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct TaskQuery {
    pub space_id: Option<String>,
    pub ids: Vec<String>,
    pub states: Vec<TaskState>,
    pub name: Option<String>,
    pub project_id: Option<String>,
    pub environment_id: Option<String>,
    pub skip: i64,
    pub take: Option<i64>,
}

pub(crate) const TASK_COLUMNS: &str = "id, space_id, name, description, arguments, state, error_message, queue_time, \
    queue_time_expiry, start_time, completed_time, last_updated_time, server_node, has_warnings_or_errors, \
    has_pending_interruptions, \
    project_id, environment_id, deployment_id";

/// [`TASK_COLUMNS`] of the table named `alias` in a join.
pub(crate) fn task_columns(alias: &str) -> String {
    TASK_COLUMNS
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ts(row: &AnyRow, col: &str) -> Result<Option<Timestamp>> {
    let text: Option<String> = row.try_get(col)?;
    Ok(text.and_then(|t| Timestamp::parse(&t)))
}

pub(crate) fn task_from_row(row: &AnyRow) -> Result<ServerTask> {
    let state: String = row.try_get("state")?;
    let arguments: String = row.try_get("arguments")?;
    let mut task = ServerTask {
        id: row.try_get("id")?,
        space_id: row.try_get("space_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        arguments: serde_json::from_str(&arguments).unwrap_or(Value::Null),
        state: state.parse().map_err(StoreError::Corrupt)?,
        is_completed: false,
        finished_successfully: false,
        has_pending_interruptions: row.try_get::<i64, _>("has_pending_interruptions")? != 0,
        has_warnings_or_errors: row.try_get::<i64, _>("has_warnings_or_errors")? != 0,
        error_message: row.try_get("error_message")?,
        queue_time: ts(row, "queue_time")?.unwrap_or_else(Timestamp::now),
        queue_time_expiry: ts(row, "queue_time_expiry")?,
        start_time: ts(row, "start_time")?,
        completed_time: ts(row, "completed_time")?,
        last_updated_time: ts(row, "last_updated_time")?.unwrap_or_else(Timestamp::now),
        duration: String::new(),
        server_node: row.try_get("server_node")?,
        can_rerun: false,
        has_been_picked_up_by_processor: false,
        project_id: row.try_get("project_id")?,
        environment_id: row.try_get("environment_id")?,
        deployment_id: row.try_get("deployment_id")?,
    };
    task.derive_fields(Timestamp::now());
    Ok(task)
}

async fn get_task_on(conn: &mut AnyConnection, id: &str) -> Result<Option<ServerTask>> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM server_tasks WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(task_from_row).transpose()
}

impl Tx {
    /// Queues a task; it becomes visible to runners when the transaction commits.
    pub async fn insert_task(&mut self, new: NewTask) -> Result<ServerTask> {
        let id = self.next_id(Collection::ServerTasks).await?;
        let now = Timestamp::now();
        sqlx::query(
            "INSERT INTO server_tasks (id, seq, space_id, name, description, arguments, state, queue_time, \
             queue_time_expiry, last_updated_time, has_warnings_or_errors, project_id, environment_id, deployment_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $12, $13)",
        )
        .bind(&id)
        .bind(sequence_of(&id))
        .bind(new.space_id)
        .bind(new.name)
        .bind(new.description)
        .bind(new.arguments.to_string())
        .bind(TaskState::Queued.as_str())
        .bind(new.queue_time.unwrap_or(now).to_string())
        .bind(new.queue_time_expiry.map(|t| t.to_string()))
        .bind(now.to_string())
        .bind(new.project_id)
        .bind(new.environment_id)
        .bind(new.deployment_id)
        .execute(&mut *self.inner)
        .await?;
        crate::counts::move_tasks(
            &mut self.inner,
            std::slice::from_ref(&id),
            None,
            TaskState::Queued,
        )
        .await?;
        // Delivered at commit, and only if it commits: nodes wake to claim it.
        let backend = Backend::of_connection(self.inner.backend_name());
        if let Some(notify) = backend.notify_task_queued() {
            sqlx::query(notify).execute(&mut *self.inner).await?;
        }
        get_task_on(&mut self.inner, &id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("The task '{id}'")))
    }
}

impl TaskQuery {
    /// The WHERE clause the page and its count share. States are the
    /// store's own names, written as literals so that a partial index's
    /// condition matches them.
    fn filter(&self, st: &mut Statement) -> String {
        let mut clauses: Vec<String> = vec!["1 = 1".into()];
        if let Some(s) = &self.space_id {
            clauses.push(format!("space_id = {}", st.arg(s.as_str())));
        }
        if !self.ids.is_empty() {
            clauses.push(format!("id IN ({})", st.args(&self.ids)));
        }
        if !self.states.is_empty() {
            let states: Vec<String> = self.states.iter().map(|s| literal(s.as_str())).collect();
            clauses.push(format!("state IN ({})", states.join(", ")));
        }
        if let Some(n) = &self.name {
            clauses.push(format!("name = {}", st.arg(n.as_str())));
        }
        if let Some(p) = &self.project_id {
            clauses.push(format!("project_id = {}", st.arg(p.as_str())));
        }
        if let Some(e) = &self.environment_id {
            clauses.push(format!("environment_id = {}", st.arg(e.as_str())));
        }
        clauses.join(" AND ")
    }

    /// The page's statement: newest first, paged in SQL.
    pub fn page_statement(&self) -> Statement {
        let mut st = Statement::default();
        let filter = self.filter(&mut st);
        let take = self.take.unwrap_or(i64::MAX).max(0);
        st.sql = format!(
            "SELECT {TASK_COLUMNS} FROM server_tasks WHERE {filter} ORDER BY seq DESC LIMIT {take} OFFSET {}",
            self.skip.max(0)
        );
        st
    }

    /// The page's total: a sum of the kept counts ([`crate::counts`]) when
    /// every filter is one they are kept by, otherwise
    /// [`TaskQuery::counting_statement`]. Ids are counted (as many as were
    /// asked for at most), and so is an empty value, which the counts use
    /// for "none".
    pub fn count_statement(&self) -> Statement {
        let keys = [
            &self.space_id,
            &self.name,
            &self.project_id,
            &self.environment_id,
        ];
        if !self.ids.is_empty() || keys.iter().any(|k| k.as_deref() == Some("")) {
            return self.counting_statement();
        }
        let mut st = Statement::default();
        let mut clauses: Vec<String> = vec!["1 = 1".into()];
        let columns = ["space_id", "name", "project_id", "environment_id"];
        for (column, value) in columns.iter().zip(keys) {
            if let Some(v) = value {
                clauses.push(format!("{column} = {}", st.arg(v.as_str())));
            }
        }
        if !self.states.is_empty() {
            let states: Vec<String> = self.states.iter().map(|s| literal(s.as_str())).collect();
            clauses.push(format!("state IN ({})", states.join(", ")));
        }
        st.sql = format!(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM task_counts WHERE {}",
            clauses.join(" AND ")
        );
        st
    }

    /// The page's total counted from the tasks themselves.
    pub fn counting_statement(&self) -> Statement {
        let mut st = Statement::default();
        let filter = self.filter(&mut st);
        st.sql = format!("SELECT COUNT(*) FROM server_tasks WHERE {filter}");
        st
    }
}

/// The UPDATE that times out the queued tasks past their expiry, before a
/// claim: it reads only the queued tasks, by the state index. Answers
/// their ids, for the counts.
pub fn time_out_statement(now: &str) -> Statement {
    let mut st = Statement::default();
    let now = st.arg(now);
    st.sql = format!(
        "UPDATE server_tasks SET state = 'TimedOut', completed_time = {now}, last_updated_time = {now}, \
         error_message = 'The task did not start before its expiry time (QueueTimeExpiry)' \
         WHERE state = 'Queued' AND queue_time_expiry IS NOT NULL AND queue_time_expiry < {now} RETURNING id"
    );
    st
}

/// The UPDATE that claims the oldest due queued task for `node` (see
/// [`Store::claim_next_task`]). A deployment waits while another of its
/// project and environment runs: that check reads the small partial index
/// of running tasks, however many tasks the history holds.
pub fn claim_statement(
    backend: Backend,
    now: &str,
    node: &str,
    lease_until: &str,
    lease_ms: i64,
) -> Statement {
    let mut st = Statement::default();
    let now = st.arg(now);
    let node = st.arg(node);
    let lease = st.arg(lease_until);
    let lease_ms = st.arg(lease_ms);
    let db_now = backend.now_millis();
    let stopped = st.arg(crate::spaces::STOPPED_SPACE_BODY);
    st.sql = format!(
        "UPDATE server_tasks SET state = 'Executing', start_time = {now}, last_updated_time = {now}, server_node = {node}, \
         lease_expires_at = {lease}, lease_expires_ms = {db_now} + {lease_ms}, \
         lease_generation = lease_generation + 1 \
         WHERE state = 'Queued' AND id = (SELECT id FROM server_tasks q WHERE q.state = 'Queued' AND q.queue_time <= {now} \
         AND NOT EXISTS (SELECT 1 FROM server_tasks busy WHERE busy.state IN ('Executing', 'Cancelling') \
         AND busy.project_id = q.project_id AND busy.environment_id = q.environment_id) \
         AND NOT EXISTS (SELECT 1 FROM documents sp WHERE sp.collection = 'Spaces' \
         AND sp.id = q.space_id AND sp.body LIKE {stopped}) \
         ORDER BY q.seq LIMIT 1{}) RETURNING {TASK_COLUMNS}, lease_generation",
        backend.skip_locked()
    );
    st
}

/// Writes finished tasks as they were, in one multi-row statement (bulk
/// imports of history, see [`Tx::import_deployments`]).
pub(crate) async fn import_tasks(conn: &mut AnyConnection, tasks: &[&ServerTask]) -> Result<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    let mut st = Statement::default();
    let optional = |st: &mut Statement, v: Option<String>| match v {
        Some(v) => st.arg(v),
        None => "NULL".to_owned(),
    };
    let rows: Vec<String> = tasks
        .iter()
        .map(|t| {
            let values = [
                st.arg(t.id.as_str()),
                st.arg(sequence_of(&t.id)),
                optional(&mut st, t.space_id.clone()),
                st.arg(t.name.as_str()),
                st.arg(t.description.as_str()),
                st.arg(t.arguments.to_string()),
                st.arg(t.state.as_str()),
                optional(&mut st, t.error_message.clone()),
                st.arg(t.queue_time.to_string()),
                optional(&mut st, t.queue_time_expiry.map(|x| x.to_string())),
                optional(&mut st, t.start_time.map(|x| x.to_string())),
                optional(&mut st, t.completed_time.map(|x| x.to_string())),
                st.arg(t.last_updated_time.to_string()),
                optional(&mut st, t.server_node.clone()),
                st.arg(i64::from(t.has_warnings_or_errors)),
                st.arg(i64::from(t.has_pending_interruptions)),
                optional(&mut st, t.project_id.clone()),
                optional(&mut st, t.environment_id.clone()),
                optional(&mut st, t.deployment_id.clone()),
            ];
            format!("({})", values.join(", "))
        })
        .collect();
    st.sql = format!(
        "INSERT INTO server_tasks (id, seq, space_id, name, description, arguments, state, error_message, \
         queue_time, queue_time_expiry, start_time, completed_time, last_updated_time, server_node, \
         has_warnings_or_errors, has_pending_interruptions, project_id, environment_id, deployment_id) VALUES {}",
        rows.join(", ")
    );
    st.for_connection(conn).query().execute(&mut *conn).await?;
    let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
    crate::counts::add_tasks(conn, &ids, 1).await
}

/// What one try at claiming a task came to.
enum Claim {
    Claimed(Box<ServerTask>, i64),
    Nothing,
    /// Another node claimed a task of the same project and environment at
    /// the same moment, and committed first.
    LostRace,
}

/// What became of a cancellation request.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It had not started; it is now Canceled.
    CanceledWhileQueued,
    /// It is running; it is now Cancelling and its runner must stop it.
    Cancelling,
    /// It had already finished (or was already being cancelled).
    AlreadyDone,
}

impl Store {
    pub async fn task(&self, id: &str) -> Result<Option<ServerTask>> {
        let mut conn = self.reader().acquire().await?;
        get_task_on(&mut conn, id).await
    }

    pub async fn require_task(&self, id: &str) -> Result<ServerTask> {
        self.task(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("The task '{id}'")))
    }

    /// Lists tasks newest first.
    pub async fn list_tasks(&self, q: &TaskQuery) -> Result<(Vec<ServerTask>, i64)> {
        let mut conn = self.reader().acquire().await?;
        let page = q.page_statement();
        let rows = page.query().fetch_all(&mut *conn).await?;
        let total = match crate::documents::known_total(q.skip, q.take, rows.len()) {
            Some(total) => total,
            None => {
                q.count_statement()
                    .query_as::<(i64,)>()
                    .fetch_one(&mut *conn)
                    .await?
                    .0
            }
        };
        let tasks = rows.iter().map(task_from_row).collect::<Result<Vec<_>>>()?;
        Ok((tasks, total))
    }

    /// Claims the oldest queued task that is due, for `node`, holding a lease
    /// until `lease_until`. Queued tasks past their expiry are timed out first.
    /// A deployment waits while another of the same project to the same
    /// environment runs, as Octopus serialises them; others pass it by. A
    /// space whose task queue is stopped starts none of its tasks.
    ///
    /// Nodes claim at once without waiting on each other (`SKIP LOCKED`
    /// passes over a task another node is claiming). That alone would let
    /// two nodes each claim a deployment of one project and environment,
    /// neither seeing the other's uncommitted claim; so a claim of such a
    /// task also takes the lock of its project and environment and, holding
    /// it, looks again for another one running: the second of two such
    /// claims waits for the first to commit, sees it, and gives its task
    /// back (it waits its turn in the queue), then tries the next task.
    pub async fn claim_next_task(
        &self,
        node: &str,
        lease_until: Timestamp,
    ) -> Result<Option<ServerTask>> {
        let lease_ms = (lease_until.millis() - Timestamp::now().millis()).max(0);
        Ok(self
            .claim_next_task_held(node, lease_ms)
            .await?
            .map(|c| c.0))
    }

    /// As [`Store::claim_next_task`], with a lease of `lease_ms` on the
    /// database's clock; answers the task and the lease its writes carry.
    pub async fn claim_next_task_held(
        &self,
        node: &str,
        lease_ms: i64,
    ) -> Result<Option<(ServerTask, crate::TaskLease)>> {
        // Each lost race makes the pair it lost on visibly busy, so the
        // next try passes that task by; the bound only guards the loop.
        for _ in 0..64 {
            match self.try_claim(node, lease_ms).await? {
                Claim::Claimed(task, generation) => {
                    let lease = crate::TaskLease {
                        task_id: task.id.clone(),
                        node: node.to_owned(),
                        generation,
                    };
                    return Ok(Some((*task, lease)));
                }
                Claim::Nothing => return Ok(None),
                Claim::LostRace => continue,
            }
        }
        Ok(None)
    }

    async fn try_claim(&self, node: &str, lease_ms: i64) -> Result<Claim> {
        let now = Timestamp::now().to_string();
        let lease_until = Timestamp::now().add_millis(lease_ms);
        let mut tx = self.begin().await?;
        let conn = &mut *tx.inner;
        let timed_out: Vec<(String,)> = time_out_statement(&now)
            .query_as()
            .fetch_all(&mut *conn)
            .await?;
        let timed_out: Vec<String> = timed_out.into_iter().map(|r| r.0).collect();
        crate::counts::move_tasks(
            &mut *conn,
            &timed_out,
            Some(TaskState::Queued),
            TaskState::TimedOut,
        )
        .await?;
        let claim = claim_statement(
            self.backend(),
            &now,
            node,
            &lease_until.to_string(),
            lease_ms,
        );
        let row = claim.query().fetch_optional(&mut *conn).await?;
        let generation: i64 = match &row {
            Some(r) => r.try_get("lease_generation")?,
            None => 0,
        };
        let Some(task) = row.as_ref().map(task_from_row).transpose()? else {
            tx.commit().await?;
            return Ok(Claim::Nothing);
        };
        crate::counts::move_tasks(
            &mut *conn,
            std::slice::from_ref(&task.id),
            Some(TaskState::Queued),
            TaskState::Executing,
        )
        .await?;
        if let (Some(lock), Some(project), Some(environment)) = (
            self.backend().pair_lock(),
            task.project_id.as_deref(),
            task.environment_id.as_deref(),
        ) {
            sqlx::query(lock)
                .bind(format!("claim:{project}:{environment}"))
                .execute(&mut *conn)
                .await?;
            // A new statement: it sees what committed while we waited.
            let (others,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM server_tasks WHERE state IN ('Executing', 'Cancelling') \
                 AND project_id = $1 AND environment_id = $2 AND id <> $3",
            )
            .bind(project)
            .bind(environment)
            .bind(&task.id)
            .fetch_one(&mut *conn)
            .await?;
            if others > 0 {
                tx.rollback().await?;
                return Ok(Claim::LostRace);
            }
        }
        if tx.record_events {
            tx.touched.events = true;
            deployment_event_on(&mut tx.inner, &task, category::DEPLOYMENT_STARTED).await?;
        }
        tx.commit().await?;
        Ok(Claim::Claimed(Box::new(task), generation))
    }

    /// When the earliest task that is queued for later becomes due.
    pub async fn next_scheduled_time(&self) -> Result<Option<Timestamp>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT MIN(queue_time) FROM server_tasks WHERE state = 'Queued'")
                .fetch_optional(self.reader())
                .await?;
        Ok(row.and_then(|r| r.0).and_then(|t| Timestamp::parse(&t)))
    }

    /// When the earliest expiry (`QueueTimeExpiry`) of a queued task
    /// passes, if any queued task has one: it times out then, unstarted.
    pub async fn next_queue_expiry(&self) -> Result<Option<Timestamp>> {
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT MIN(queue_time_expiry) FROM server_tasks WHERE state = 'Queued'",
        )
        .fetch_optional(self.reader())
        .await?;
        Ok(row.and_then(|r| r.0).and_then(|t| Timestamp::parse(&t)))
    }

    /// Running tasks whose lease lapsed on the database's clock (their
    /// node died) or that belong to `restarting_node` (this node
    /// restarted): returns their ids, so the engine can close them cleanly
    /// (the single node of SQLite; nodes on PostgreSQL take them over).
    pub async fn orphaned_tasks(&self, restarting_node: Option<&str>) -> Result<Vec<String>> {
        let now = self.backend().now_millis();
        let rows: Vec<(String,)> = sqlx::query_as(&format!(
            "SELECT id FROM server_tasks WHERE state IN ('Executing', 'Cancelling') \
             AND (lease_expires_ms < {now} OR server_node = $1) ORDER BY seq"
        ))
        .bind(restarting_node.unwrap_or(""))
        .fetch_all(self.reader())
        .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Ends a task. Only a task that is not yet complete changes; returns
    /// whether this call completed it.
    pub async fn complete_task(
        &self,
        id: &str,
        state: TaskState,
        error: Option<&str>,
    ) -> Result<bool> {
        let now = Timestamp::now();
        let (id, error) = (id.to_owned(), error.map(str::to_owned));
        let record = self.records_events();
        let changed = self
            .progress_write(job(move |conn| {
                Box::pin(async move {
                    complete_task_on(conn, &id, state, error.as_deref(), now, record).await
                })
            }))
            .await?;
        if record && changed > 0 {
            self.events_written();
        }
        Ok(changed > 0)
    }

    pub async fn mark_warnings(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.progress_write(job(move |conn| {
            Box::pin(async move {
                let r =
                    sqlx::query("UPDATE server_tasks SET has_warnings_or_errors = 1 WHERE id = $1")
                        .bind(id)
                        .execute(conn)
                        .await?;
                Ok(r.rows_affected())
            })
        }))
        .await?;
        Ok(())
    }

    /// Asks for a task to stop. A queued task is cancelled at once; a running
    /// one moves to Cancelling and its runner finishes the job.
    pub async fn request_cancel(&self, id: &str) -> Result<CancelOutcome> {
        self.request_cancel_recorded(id, None).await
    }

    /// As [`Store::request_cancel`], writing `event` (who asked, from
    /// where) in the same transaction when the task changed.
    pub async fn request_cancel_recorded(
        &self,
        id: &str,
        event: Option<crate::AuditEvent>,
    ) -> Result<CancelOutcome> {
        let now = Timestamp::now().to_string();
        let mut tx = self.begin().await?;
        let queued = sqlx::query(
            "UPDATE server_tasks SET state = 'Canceled', completed_time = $1, last_updated_time = $1 \
             WHERE id = $2 AND state = 'Queued'",
        )
        .bind(&now)
        .bind(id)
        .execute(&mut *tx.inner)
        .await?;
        let task = [id.to_owned()];
        let outcome = if queued.rows_affected() > 0 {
            crate::counts::move_tasks(
                &mut tx.inner,
                &task,
                Some(TaskState::Queued),
                TaskState::Canceled,
            )
            .await?;
            CancelOutcome::CanceledWhileQueued
        } else {
            let running = sqlx::query(
                "UPDATE server_tasks SET state = 'Cancelling', last_updated_time = $1 WHERE id = $2 AND state = 'Executing'",
            )
            .bind(&now)
            .bind(id)
            .execute(&mut *tx.inner)
            .await?;
            if running.rows_affected() > 0 {
                crate::counts::move_tasks(
                    &mut tx.inner,
                    &task,
                    Some(TaskState::Executing),
                    TaskState::Cancelling,
                )
                .await?;
                CancelOutcome::Cancelling
            } else {
                let exists: Option<(String,)> =
                    sqlx::query_as("SELECT id FROM server_tasks WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx.inner)
                        .await?;
                return match exists {
                    Some(_) => Ok(CancelOutcome::AlreadyDone),
                    None => Err(StoreError::NotFound(format!("The task '{id}'"))),
                };
            }
        };
        if let Some(e) = event {
            tx.record_event(e).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Tasks in Cancelling state among `ids` (a node polls this so that a
    /// cancellation made through another node reaches it).
    pub async fn cancelling_among(&self, ids: &[String]) -> Result<Vec<String>> {
        let mut out = vec![];
        for id in ids {
            if let Some(t) = self.task(id).await? {
                if t.state == TaskState::Cancelling {
                    out.push(t.id);
                }
            }
        }
        Ok(out)
    }

    /// Creates or updates one node of a task's activity tree.
    pub async fn put_activity(&self, task_id: &str, a: &Activity, position: i64) -> Result<()> {
        let (task_id, a) = (task_id.to_owned(), a.clone());
        self.progress_write(job(move |conn| {
            Box::pin(async move { put_activity_on(conn, &task_id, &a, position).await })
        }))
        .await?;
        Ok(())
    }

    /// Appends log lines in one transaction, shared with other running
    /// tasks' writes (the engine batches them), many lines to a statement
    /// ([`crate::task_log::insert_log_lines`]). A NUL a script printed is
    /// kept as U+FFFD, on both databases alike: PostgreSQL cannot store one
    /// in text, and refused the whole batch.
    pub async fn append_log_lines(&self, task_id: &str, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let (task_id, lines) = (task_id.to_owned(), lines.to_vec());
        let backend = self.backend();
        self.progress_write(job(move |conn| {
            Box::pin(async move { insert_log_lines(conn, backend, &task_id, 0, &lines).await })
        }))
        .await?;
        Ok(())
    }

    /// The highest log sequence number written for a task (0 if none).
    pub async fn last_log_seq(&self, task_id: &str) -> Result<i64> {
        let (n,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(seq) FROM task_log_lines WHERE task_id = $1")
                .bind(task_id)
                .fetch_one(self.reader())
                .await?;
        Ok(n.unwrap_or(0))
    }

    /// A task's whole activity tree and log, each in creation order.
    pub async fn task_log(&self, task_id: &str) -> Result<(Vec<Activity>, Vec<LogLine>)> {
        let mut conn = self.reader().acquire().await?;
        let rows = sqlx::query(
            "SELECT id, parent_id, name, status, started, ended, show_at_summary, progress_percentage, progress_message FROM task_activities \
             WHERE task_id = $1 ORDER BY position, id",
        )
        .bind(task_id)
        .fetch_all(&mut *conn)
        .await?;
        let activities = rows
            .iter()
            .map(activity_from_row)
            .collect::<Result<Vec<_>>>()?;
        let rows = sqlx::query(
            "SELECT seq, activity_id, category, occurred_at, message, detail FROM task_log_lines \
             WHERE task_id = $1 ORDER BY seq",
        )
        .bind(task_id)
        .fetch_all(&mut *conn)
        .await?;
        let lines = rows
            .iter()
            .map(|r| {
                Ok(LogLine {
                    seq: r.try_get("seq")?,
                    activity_id: r.try_get("activity_id")?,
                    category: LogCategory::parse(&r.try_get::<String, _>("category")?),
                    occurred_at: ts(r, "occurred_at")?.unwrap_or_else(Timestamp::now),
                    message: r.try_get("message")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((activities, lines))
    }
}

/// The task writes a transaction can hold, for writers that record many
/// tasks at once (a history written in bulk) and so cannot afford a
/// transaction per write.
impl Tx {
    /// Ends a task inside this transaction, as [`Store::complete_task`] does.
    pub async fn complete_task(
        &mut self,
        id: &str,
        state: TaskState,
        error: Option<&str>,
    ) -> Result<bool> {
        let changed = complete_task_on(
            &mut self.inner,
            id,
            state,
            error,
            Timestamp::now(),
            self.record_events,
        )
        .await?;
        self.touched.events |= self.record_events && changed > 0;
        Ok(changed > 0)
    }

    /// Creates or updates one node of a task's activity tree inside this
    /// transaction, as [`Store::put_activity`] does.
    pub async fn put_activity(&mut self, task_id: &str, a: &Activity, position: i64) -> Result<()> {
        put_activity_on(&mut self.inner, task_id, a, position).await?;
        Ok(())
    }

    /// Appends log lines inside this transaction, as
    /// [`Store::append_log_lines`] does in a transaction of its own.
    pub async fn append_log_lines(&mut self, task_id: &str, lines: &[LogLine]) -> Result<()> {
        let backend = crate::dialect::Backend::of_connection(self.inner.backend_name());
        insert_log_lines(&mut self.inner, backend, task_id, 0, lines).await?;
        Ok(())
    }
}

/// Ends a task at `now`; returns how many rows changed. The task's row is
/// read locked first: the state it leaves is the one its counts leave, and
/// nothing else can change it before this transaction ends.
pub(crate) async fn complete_task_on(
    conn: &mut AnyConnection,
    id: &str,
    state: TaskState,
    error: Option<&str>,
    now: Timestamp,
    record_events: bool,
) -> Result<u64> {
    let lock = Backend::of_connection(conn.backend_name()).lock_row();
    let current: Option<(String,)> = sqlx::query_as(&format!(
        "SELECT state FROM server_tasks WHERE id = $1{lock}"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let from = match current {
        Some((s,)) => s.parse::<TaskState>().map_err(StoreError::Corrupt)?,
        None => return Ok(0),
    };
    if !matches!(
        from,
        TaskState::Queued | TaskState::Executing | TaskState::Cancelling
    ) {
        return Ok(0);
    }
    let r = sqlx::query(
        "UPDATE server_tasks SET state = $1, error_message = $2, completed_time = $3, last_updated_time = $3, \
         lease_expires_at = NULL WHERE id = $4 AND state = $5",
    )
    .bind(state.as_str())
    .bind(error)
    .bind(now.to_string())
    .bind(id)
    .bind(from.as_str())
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() > 0 {
        crate::counts::move_tasks(conn, &[id.to_owned()], Some(from), state).await?;
    }
    if r.rows_affected() > 0 && record_events {
        let row = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM server_tasks WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
        let task = task_from_row(&row)?;
        let outcome = match state {
            TaskState::Success => category::DEPLOYMENT_SUCCEEDED,
            _ => category::DEPLOYMENT_FAILED,
        };
        deployment_event_on(conn, &task, outcome).await?;
    }
    Ok(r.rows_affected())
}

/// A deployment's lifecycle event (started, succeeded, failed), written
/// with its task's change of state, so that an event exists exactly when
/// the change was committed. Other tasks than deployments write none.
async fn deployment_event_on(
    conn: &mut AnyConnection,
    task: &ServerTask,
    category: &str,
) -> Result<()> {
    let Some(deployment_id) = task
        .deployment_id
        .as_deref()
        .filter(|_| task.name == "Deploy")
    else {
        return Ok(());
    };
    let release: Option<(String,)> =
        sqlx::query_as("SELECT release_id FROM deployments WHERE id = $1")
            .bind(deployment_id)
            .fetch_optional(&mut *conn)
            .await?;
    let related = [
        Some(deployment_id.to_owned()),
        task.project_id.clone(),
        task.environment_id.clone(),
        release.map(|r| r.0),
        Some(task.id.clone()),
    ];
    let state = match task.state {
        TaskState::Executing => "started".to_owned(),
        TaskState::Success => "succeeded".to_owned(),
        other => format!("ended {}", other.as_str()),
    };
    let e = crate::AuditEvent {
        space_id: task.space_id.clone(),
        category: category.to_owned(),
        message: format!("{}: {state}", task.description),
        related_document_ids: related.into_iter().flatten().collect(),
        details: task.error_message.clone(),
        ..Default::default()
    };
    crate::events::record_event_on(conn, e).await
}

/// Creates or updates an activity; returns how many rows changed.
pub(crate) async fn put_activity_on(
    conn: &mut AnyConnection,
    task_id: &str,
    a: &Activity,
    position: i64,
) -> Result<u64> {
    let r = sqlx::query(
        "INSERT INTO task_activities (task_id, id, parent_id, name, status, started, ended, position, show_at_summary, progress_percentage, progress_message) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (task_id, id) DO UPDATE SET name = excluded.name, status = excluded.status, \
         started = excluded.started, ended = excluded.ended, \
         progress_percentage = excluded.progress_percentage, progress_message = excluded.progress_message",
    )
    .bind(task_id)
    .bind(&a.id)
    .bind(&a.parent_id)
    .bind(storable(&a.name))
    .bind(a.status.as_str())
    .bind(a.started.map(|t| t.to_string()))
    .bind(a.ended.map(|t| t.to_string()))
    .bind(position)
    .bind(i64::from(a.show_at_summary_level))
    .bind(a.progress_percentage)
    .bind(a.progress_message.as_deref().map(storable))
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected())
}

fn activity_from_row(r: &AnyRow) -> Result<Activity> {
    Ok(Activity {
        id: r.try_get("id")?,
        parent_id: r.try_get("parent_id")?,
        name: r.try_get("name")?,
        status: ActivityStatus::parse(&r.try_get::<String, _>("status")?),
        started: ts(r, "started")?,
        ended: ts(r, "ended")?,
        show_at_summary_level: r.try_get::<i64, _>("show_at_summary")? != 0,
        progress_percentage: r.try_get("progress_percentage")?,
        progress_message: r.try_get("progress_message")?,
    })
}

pub(crate) fn log_line_from_row(r: &AnyRow) -> Result<LogLine> {
    Ok(LogLine {
        seq: r.try_get("seq")?,
        activity_id: r.try_get("activity_id")?,
        category: LogCategory::parse(&r.try_get::<String, _>("category")?),
        occurred_at: ts(r, "occurred_at")?.unwrap_or_else(Timestamp::now),
        message: r.try_get("message")?,
        detail: r.try_get("detail")?,
    })
}

/// Reading a task's log piece by piece, for live log streams.
impl Store {
    /// Up to `limit` log lines of a task whose position (`seq`) is after
    /// `position`, in order: a stream pages through a long log this way
    /// instead of loading it whole.
    pub async fn log_lines_after(
        &self,
        task_id: &str,
        position: i64,
        limit: i64,
    ) -> Result<Vec<LogLine>> {
        let rows = sqlx::query(
            "SELECT seq, activity_id, category, occurred_at, message, detail FROM task_log_lines \
             WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(task_id)
        .bind(position)
        .bind(limit.max(0))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(log_line_from_row).collect()
    }

    /// The nodes of a task's activity tree, flat, in creation order, without
    /// their lines.
    pub async fn task_activities(&self, task_id: &str) -> Result<Vec<Activity>> {
        let rows = sqlx::query(
            "SELECT id, parent_id, name, status, started, ended, show_at_summary, progress_percentage, progress_message FROM task_activities \
             WHERE task_id = $1 ORDER BY position, id",
        )
        .bind(task_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(activity_from_row).collect()
    }
}

/// `text` as both databases can store it: PostgreSQL's text cannot hold a
/// NUL, so it becomes U+FFFD (the replacement character) everywhere.
pub(crate) fn storable(text: &str) -> String {
    stored_text(text).into_owned()
}

/// [`storable`] without a copy of the (usual) text that has no NUL.
pub(crate) fn stored_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}
