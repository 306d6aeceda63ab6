//! Deployment history, indexed so that its reads cost the same at a million
//! deployments as at ten.
//!
//! A deployment is a JSON document like any other, and its queried fields
//! are also kept in `deployments`, with the newest deployment of each
//! project, environment and tenant in `latest_deployments`. Both are written
//! by [`Tx::insert`], [`Tx::update`] and [`Tx::delete`] of a [`Deployment`]
//! in the same transaction as the document, so no caller can let them drift.
//! Every read here is one statement over those indexes, exposed as a
//! [`Statement`] so tests can check the plan of the text that runs.

use crate::statement::{literal, Statement};
use crate::tasks::{task_columns, task_from_row};
use crate::{Document, Page, Result, Store, StoreError, Tx};
use cuttle_model::{Deployment, ServerTask, TaskState, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::HashMap;

/// The setting a migration leaves when deployments written before it are
/// still to be indexed.
pub(crate) const PENDING_BACKFILL: &str = "pending/deployment-index";

/// Which deployments a list wants, newest first.
#[derive(Clone, Debug, Default)]
pub struct DeploymentQuery {
    pub space_id: String,
    /// Only these deployments (none: any).
    pub ids: Vec<String>,
    /// Any of these projects (none: every project).
    pub project_ids: Vec<String>,
    pub environment_ids: Vec<String>,
    pub release_id: Option<String>,
    /// Whose task is in any of these states.
    pub task_states: Vec<TaskState>,
    pub skip: i64,
    /// `None` means all.
    pub take: Option<i64>,
}

impl DeploymentQuery {
    /// The WHERE conditions on the deployment both the page and its count
    /// share (the task's state apart).
    fn conditions(&self, st: &mut Statement) -> String {
        let mut sql = format!("d.space_id = {}", st.arg(self.space_id.as_str()));
        if !self.ids.is_empty() {
            sql.push_str(&format!(" AND d.id IN ({})", st.args(&self.ids)));
        }
        if !self.project_ids.is_empty() {
            sql.push_str(&format!(
                " AND d.project_id IN ({})",
                st.args(&self.project_ids)
            ));
        }
        if !self.environment_ids.is_empty() {
            sql.push_str(&format!(
                " AND d.environment_id IN ({})",
                st.args(&self.environment_ids)
            ));
        }
        if let Some(release) = &self.release_id {
            sql.push_str(&format!(" AND d.release_id = {}", st.arg(release.as_str())));
        }
        sql
    }

    /// The states as SQL literals (the store's own names, never input).
    fn states(&self) -> String {
        self.task_states
            .iter()
            .map(|s| literal(s.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The page's statement: bodies, newest first, paged in SQL.
    ///
    /// Filtered on unfinished states only (queued, running), or on one
    /// state and nothing else of the deployment, it starts from the tasks in
    /// that state, by the index that orders them: few (unfinished), or
    /// walked newest first to the page's end however rare the state. A
    /// deployment and its task are numbered in one transaction whose first
    /// id holds the others back (`id_sequences` rows lock until commit), so
    /// task order is deployment order. Otherwise it walks the deployments
    /// newest first and looks each task up by its key.
    pub fn page_statement(&self) -> Statement {
        let mut st = Statement::default();
        let conditions = self.conditions(&mut st);
        let take = self.take.unwrap_or(i64::MAX).max(0);
        let paging = format!(
            "ORDER BY d.seq DESC LIMIT {take} OFFSET {}",
            self.skip.max(0)
        );
        let one_state_alone = self.task_states.len() == 1
            && self.ids.is_empty()
            && self.project_ids.is_empty()
            && self.environment_ids.is_empty()
            && self.release_id.is_none();
        st.sql = if self.unfinished_only() || one_state_alone {
            // The deployment is checked per task by its key (`OFFSET 0`
            // keeps that a check rather than a join PostgreSQL might hash
            // over the whole history).
            // One state: its index gives the order. Several: the few
            // unfinished tasks are sorted, by a key no index of the tasks
            // has, lest SQLite walk the space's tasks to avoid that sort.
            let order = if self.task_states.len() == 1 {
                "t.seq"
            } else {
                "doc.sort_key"
            };
            let space = st.arg(self.space_id.as_str());
            format!(
                "SELECT doc.body FROM server_tasks t JOIN documents doc ON doc.id = t.deployment_id \
                 WHERE t.space_id = {space} AND t.state IN ({}) AND EXISTS (SELECT 1 FROM deployments d \
                 WHERE d.id = t.deployment_id AND d.task_id = t.id AND {conditions} LIMIT 1 OFFSET 0) \
                 ORDER BY {order} DESC LIMIT {take} OFFSET {}",
                self.states(),
                self.skip.max(0)
            )
        } else if !self.task_states.is_empty() {
            // `OFFSET 0` keeps PostgreSQL from turning the EXISTS into a
            // join (which, guessing few matches without statistics, it
            // would hash whole and sort); as a per-row check it is taken to
            // pass one row in two, and the newest-first walk is chosen.
            format!(
                "SELECT doc.body FROM deployments d JOIN documents doc ON doc.id = d.id \
                 WHERE {conditions} AND EXISTS (SELECT 1 FROM server_tasks t \
                 WHERE t.id = d.task_id AND t.state IN ({}) LIMIT 1 OFFSET 0) {paging}",
                self.states()
            )
        } else {
            format!(
                "SELECT doc.body FROM deployments d JOIN documents doc ON doc.id = d.id \
                 WHERE {conditions} {paging}"
            )
        };
        st
    }

    /// Whether only unfinished states are asked for: those tasks are few
    /// however long the history, so a read starts from them.
    fn unfinished_only(&self) -> bool {
        !self.task_states.is_empty() && self.task_states.iter().all(|s| !s.is_completed())
    }

    /// How many deployments match, for the page's total: a sum of the kept
    /// counts ([`crate::counts`]) by space, projects, environments and
    /// states. Filtered by ids or by release, it is counted instead
    /// ([`DeploymentQuery::counting_statement`]): as many as were asked
    /// for, or one release's deployments, by its index.
    pub fn count_statement(&self) -> Statement {
        if !self.ids.is_empty() || self.release_id.is_some() {
            return self.counting_statement();
        }
        let mut st = Statement::default();
        let mut sql = format!(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM deployment_counts WHERE space_id = {}",
            st.arg(self.space_id.as_str())
        );
        if !self.project_ids.is_empty() {
            sql.push_str(&format!(
                " AND project_id IN ({})",
                st.args(&self.project_ids)
            ));
        }
        if !self.environment_ids.is_empty() {
            sql.push_str(&format!(
                " AND environment_id IN ({})",
                st.args(&self.environment_ids)
            ));
        }
        if !self.task_states.is_empty() {
            sql.push_str(&format!(" AND state IN ({})", self.states()));
        }
        st.sql = sql;
        st
    }

    /// How many deployments match, counted from the index. Except for
    /// unfinished states, this reads every matching index entry, so it
    /// grows with the history the filters select.
    pub fn counting_statement(&self) -> Statement {
        let mut st = Statement::default();
        let conditions = self.conditions(&mut st);
        st.sql = if self.unfinished_only() {
            let space = st.arg(self.space_id.as_str());
            format!(
                "SELECT COUNT(*) FROM server_tasks t WHERE t.space_id = {space} AND t.state IN ({}) \
                 AND EXISTS (SELECT 1 FROM deployments d WHERE d.id = t.deployment_id \
                 AND d.task_id = t.id AND {conditions} LIMIT 1 OFFSET 0)",
                self.states()
            )
        } else if self.task_states.is_empty() {
            format!("SELECT COUNT(*) FROM deployments d WHERE {conditions}")
        } else {
            format!(
                "SELECT COUNT(*) FROM deployments d JOIN server_tasks t ON t.id = d.task_id \
                 WHERE {conditions} AND t.state IN ({})",
                self.states()
            )
        };
        st
    }
}

/// A release's deployments, newest first, each with its task: what lifecycle
/// progression reads. A deployment whose task is gone is left out.
pub fn release_deployments_statement(space_id: &str, release_id: &str) -> Statement {
    let mut st = Statement::default();
    let space = st.arg(space_id);
    let release = st.arg(release_id);
    st.sql = format!(
        "SELECT doc.body, {} FROM deployments d JOIN documents doc ON doc.id = d.id \
         JOIN server_tasks t ON t.id = d.task_id WHERE d.space_id = {space} AND d.release_id = {release} \
         ORDER BY d.seq DESC",
        task_columns("t")
    );
    st
}

/// The newest deployment of each project to each environment of a space,
/// each with its task, read from the table that keeps them.
pub fn latest_deployments_statement(space_id: &str) -> Statement {
    let mut st = Statement::default();
    let space = st.arg(space_id);
    st.sql = format!(
        "SELECT doc.body, {} FROM latest_deployments l JOIN documents doc ON doc.id = l.deployment_id \
         JOIN deployments d ON d.id = l.deployment_id JOIN server_tasks t ON t.id = d.task_id \
         WHERE l.space_id = {space} ORDER BY l.seq",
        task_columns("t")
    );
    st
}

/// The newest deployment of each project to each environment of a space,
/// as a board shows it ([`DeploymentCell`]): the index's columns and the
/// task's state and times, with no document read or decoded.
pub fn latest_cells_statement(space_id: &str) -> Statement {
    let mut st = Statement::default();
    let space = st.arg(space_id);
    st.sql = format!(
        "SELECT d.id, d.project_id, d.environment_id, d.release_id, t.id AS task_id, t.state, \
         t.has_warnings_or_errors, t.has_pending_interruptions, t.queue_time, t.start_time, t.completed_time \
         FROM latest_deployments l JOIN deployments d ON d.id = l.deployment_id \
         JOIN server_tasks t ON t.id = d.task_id WHERE l.space_id = {space} ORDER BY l.seq"
    );
    st
}

/// A deployment as a board's cell shows it: what it deployed where, and
/// how its task stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentCell {
    pub deployment_id: String,
    pub project_id: String,
    pub environment_id: String,
    pub release_id: String,
    pub task_id: String,
    pub state: TaskState,
    pub has_warnings_or_errors: bool,
    pub has_pending_interruptions: bool,
    pub queue_time: Timestamp,
    pub start_time: Option<Timestamp>,
    pub completed_time: Option<Timestamp>,
}

fn cell_from_row(row: &AnyRow) -> Result<DeploymentCell> {
    let time = |col: &str| -> Result<Option<Timestamp>> {
        let text: Option<String> = row.try_get(col)?;
        Ok(text.and_then(|t| Timestamp::parse(&t)))
    };
    let state: String = row.try_get("state")?;
    Ok(DeploymentCell {
        deployment_id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        environment_id: row.try_get("environment_id")?,
        release_id: row.try_get("release_id")?,
        task_id: row.try_get("task_id")?,
        state: state.parse().map_err(StoreError::Corrupt)?,
        has_warnings_or_errors: row.try_get::<i64, _>("has_warnings_or_errors")? != 0,
        has_pending_interruptions: row.try_get::<i64, _>("has_pending_interruptions")? != 0,
        queue_time: time("queue_time")?.unwrap_or_else(Timestamp::now),
        start_time: time("start_time")?,
        completed_time: time("completed_time")?,
    })
}

/// The newest deployment of each of a few releases to each environment,
/// with its task (a project's overview of its newest releases). Reads the
/// index entries of those releases, and the documents of only the newest.
/// The CROSS JOIN keeps SQLite from walking the space's deployments to
/// meet the few newest ones.
pub fn newest_release_deployments_statement(space_id: &str, release_ids: &[String]) -> Statement {
    let mut st = Statement::default();
    let space = st.arg(space_id);
    let releases = st.args(release_ids);
    st.sql = format!(
        "SELECT doc.body, {} FROM \
         (SELECT release_id, environment_id, MAX(seq) AS seq FROM deployments \
          WHERE space_id = {space} AND release_id IN ({releases}) GROUP BY release_id, environment_id) n \
         CROSS JOIN deployments d JOIN documents doc ON doc.id = d.id JOIN server_tasks t ON t.id = d.task_id \
         WHERE d.space_id = {space} AND d.release_id = n.release_id AND d.seq = n.seq \
         ORDER BY d.seq DESC",
        task_columns("t")
    );
    st
}

fn decode(body: &str) -> Result<Deployment> {
    serde_json::from_str(body)
        .map_err(|e| StoreError::Corrupt(format!("{} document: {e}", Deployment::KIND)))
}

fn with_task(row: &AnyRow) -> Result<(Deployment, ServerTask)> {
    let body: String = row.try_get("body")?;
    Ok((decode(&body)?, task_from_row(row)?))
}

impl Store {
    /// A page of a space's deployments, newest first, filtered in SQL.
    pub async fn list_deployments(&self, q: &DeploymentQuery) -> Result<Page<Deployment>> {
        let mut conn = self.reader().acquire().await?;
        let page = q.page_statement();
        let rows: Vec<(String,)> = page.query_as().fetch_all(&mut *conn).await?;
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
        let items = rows
            .iter()
            .map(|(b,)| decode(b))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { items, total })
    }

    /// A release's deployments, newest first, each with its task.
    pub async fn release_deployments(
        &self,
        space_id: &str,
        release_id: &str,
    ) -> Result<Vec<(Deployment, ServerTask)>> {
        let st = release_deployments_statement(space_id, release_id);
        let rows = st.query().fetch_all(self.reader()).await?;
        rows.iter().map(with_task).collect()
    }

    /// The newest deployment of each project to each environment of a
    /// space, oldest first, each with its task; however long the history.
    pub async fn latest_deployments(
        &self,
        space_id: &str,
    ) -> Result<Vec<(Deployment, ServerTask)>> {
        let st = latest_deployments_statement(space_id);
        let rows = st.query().fetch_all(self.reader()).await?;
        rows.iter().map(with_task).collect()
    }

    /// [`Store::latest_deployments`] as a board's cells: the same
    /// deployments in the same order, without their documents.
    pub async fn latest_deployment_cells(&self, space_id: &str) -> Result<Vec<DeploymentCell>> {
        let st = latest_cells_statement(space_id);
        let rows = st.query().fetch_all(self.reader()).await?;
        rows.iter().map(cell_from_row).collect()
    }

    /// The newest deployment of each of `release_ids` to each environment,
    /// newest first, each with its task.
    pub async fn newest_release_deployments(
        &self,
        space_id: &str,
        release_ids: &[String],
    ) -> Result<Vec<(Deployment, ServerTask)>> {
        if release_ids.is_empty() {
            return Ok(vec![]);
        }
        let st = newest_release_deployments_statement(space_id, release_ids);
        let rows = st.query().fetch_all(self.reader()).await?;
        rows.iter().map(with_task).collect()
    }

    /// Indexes the deployments written before the index existed, once: the
    /// migration that made the tables leaves a setting saying so. Idempotent,
    /// so a node stopped half-way finishes the job when it next opens.
    pub(crate) async fn backfill_deployment_index(&self) -> Result<()> {
        if self.setting(PENDING_BACKFILL).await?.is_none() {
            return Ok(());
        }
        // Two nodes opening at once: one indexes, the other then finds the
        // setting gone.
        let lock = self.node_lock(PENDING_BACKFILL).await?;
        if self.setting(PENDING_BACKFILL).await?.is_none() {
            return Ok(());
        }
        let mut after = String::new();
        loop {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT id, body FROM documents WHERE collection = $1 AND id > $2 ORDER BY id LIMIT 500",
            )
            .bind(Deployment::COLLECTION)
            .bind(&after)
            .fetch_all(self.pool())
            .await?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            after = last.clone();
            let mut tx = self.begin().await?;
            for (_, body) in &rows {
                index_row(&mut tx.inner, &decode(body)?).await?;
            }
            tx.commit().await?;
        }
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM latest_deployments")
            .execute(&mut *tx.inner)
            .await?;
        sqlx::query(
            "INSERT INTO latest_deployments (project_id, environment_id, tenant_id, space_id, deployment_id, seq) \
             SELECT d.project_id, d.environment_id, d.tenant_id, d.space_id, d.id, d.seq FROM deployments d \
             JOIN (SELECT project_id, environment_id, tenant_id, MAX(seq) AS seq FROM deployments \
                   GROUP BY project_id, environment_id, tenant_id) n \
               ON d.project_id = n.project_id AND d.environment_id = n.environment_id \
              AND d.tenant_id = n.tenant_id AND d.seq = n.seq",
        )
        .execute(&mut *tx.inner)
        .await?;
        crate::counts::recount_deployments(&mut tx.inner).await?;
        sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(PENDING_BACKFILL)
            .execute(&mut *tx.inner)
            .await?;
        tx.commit().await?;
        if let Some(lock) = lock {
            lock.commit().await?;
        }
        Ok(())
    }
}

/// The tenant column's value: '' stands for "untenanted".
fn tenant(d: &Deployment) -> &str {
    d.tenant_id.as_deref().unwrap_or("")
}

/// Writes (or rewrites) a deployment's index row.
async fn index_row(conn: &mut AnyConnection, d: &Deployment) -> Result<()> {
    sqlx::query(
        "INSERT INTO deployments (id, seq, space_id, project_id, environment_id, tenant_id, release_id, task_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, space_id = excluded.space_id, \
         project_id = excluded.project_id, environment_id = excluded.environment_id, \
         tenant_id = excluded.tenant_id, release_id = excluded.release_id, task_id = excluded.task_id",
    )
    .bind(d.id())
    .bind(d.sort_key())
    .bind(&d.space_id)
    .bind(&d.project_id)
    .bind(&d.environment_id)
    .bind(tenant(d))
    .bind(&d.release_id)
    .bind(&d.task_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The statement that makes each row of `VALUES` the newest of its
/// project, environment and tenant unless a newer one is there already.
fn advance_latest_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let b = r * 6;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6
            )
        })
        .collect();
    format!(
        "INSERT INTO latest_deployments (project_id, environment_id, tenant_id, space_id, deployment_id, seq) \
         VALUES {} ON CONFLICT (project_id, environment_id, tenant_id) DO UPDATE \
         SET space_id = excluded.space_id, deployment_id = excluded.deployment_id, seq = excluded.seq \
         WHERE excluded.seq > latest_deployments.seq",
        values.join(", ")
    )
}

/// Makes each deployment the newest of its target unless a newer one is
/// there. One row per target: PostgreSQL refuses to update a row twice in
/// one statement, so only the newest of a batch is offered.
async fn advance_latest(conn: &mut AnyConnection, deployments: &[&Deployment]) -> Result<()> {
    let mut newest: HashMap<(&str, &str, &str), &Deployment> = HashMap::new();
    for d in deployments {
        let key = (d.project_id.as_str(), d.environment_id.as_str(), tenant(d));
        match newest.get(&key) {
            Some(n) if n.sort_key() >= d.sort_key() => {}
            _ => {
                newest.insert(key, d);
            }
        }
    }
    let newest: Vec<&Deployment> = newest.into_values().collect();
    for chunk in newest.chunks(IMPORT_CHUNK) {
        let sql = crate::statement::sql_for_connection(conn, advance_latest_sql(chunk.len()));
        let mut q = sqlx::query(&sql);
        for d in chunk {
            q = q
                .bind(&d.project_id)
                .bind(&d.environment_id)
                .bind(tenant(d))
                .bind(&d.space_id)
                .bind(&d.id)
                .bind(d.sort_key());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Indexes a deployment just inserted or (`updated`) updated, in its
/// transaction. A deployment's project, environment and tenant never
/// change.
pub(crate) async fn index(conn: &mut AnyConnection, d: &Deployment, updated: bool) -> Result<()> {
    let id = [d.id.clone()];
    if updated {
        // Counted again as it is now (it may name another task).
        lock_tasks_of(conn, &id).await?;
        crate::counts::add_deployments(conn, &id, -1).await?;
    }
    index_row(conn, d).await?;
    lock_tasks_of(conn, &id).await?;
    crate::counts::add_deployments(conn, &id, 1).await?;
    advance_latest(conn, &[d]).await
}

/// Locks the tasks of the deployments `ids` (PostgreSQL) before their
/// states are read for the counts: a task whose state changes meanwhile
/// would otherwise move the deployment's count too, twice over.
async fn lock_tasks_of(conn: &mut AnyConnection, ids: &[String]) -> Result<()> {
    let lock = crate::Backend::of_connection(conn.backend_name()).lock_row();
    if lock.is_empty() {
        return Ok(());
    }
    for chunk in ids.chunks(IMPORT_CHUNK) {
        let mut st = Statement::default();
        let ids = st.args(chunk);
        st.sql = format!(
            "SELECT id FROM server_tasks WHERE id IN (SELECT task_id FROM deployments WHERE id IN ({ids})){lock}"
        );
        st.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Drops a deleted deployment from the index, in its transaction; if it was
/// the newest of its target, the one before it (if any) takes its place.
pub(crate) async fn unindex(conn: &mut AnyConnection, id: &str) -> Result<()> {
    let ids = [id.to_owned()];
    lock_tasks_of(conn, &ids).await?;
    crate::counts::add_deployments(conn, &ids, -1).await?;
    let removed: Option<(String, String, String, String)> = sqlx::query_as(
        "DELETE FROM deployments WHERE id = $1 RETURNING project_id, environment_id, tenant_id, space_id",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((project, environment, tenant, space)) = removed else {
        return Ok(());
    };
    let was_newest = sqlx::query(
        "DELETE FROM latest_deployments WHERE project_id = $1 AND environment_id = $2 \
         AND tenant_id = $3 AND deployment_id = $4",
    )
    .bind(&project)
    .bind(&environment)
    .bind(&tenant)
    .bind(id)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if was_newest {
        sqlx::query(
            "INSERT INTO latest_deployments (project_id, environment_id, tenant_id, space_id, deployment_id, seq) \
             SELECT project_id, environment_id, tenant_id, space_id, id, seq FROM deployments \
             WHERE space_id = $4 AND project_id = $1 AND environment_id = $2 AND tenant_id = $3 \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(&project)
        .bind(&environment)
        .bind(&tenant)
        .bind(&space)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Removes a project's deployments from the index, and with them the
/// project's newest deployment to each environment: nothing is left to
/// move back to.
pub(crate) async fn unindex_project(
    conn: &mut AnyConnection,
    space_id: &str,
    project_id: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM deployments WHERE space_id = $1 AND project_id = $2")
        .bind(space_id)
        .bind(project_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM latest_deployments WHERE space_id = $1 AND project_id = $2")
        .bind(space_id)
        .bind(project_id)
        .execute(&mut *conn)
        .await?;
    crate::counts::forget_project_deployments(conn, space_id, project_id).await
}

/// Rows per multi-row INSERT of an import: well under both databases'
/// limits on bound values (SQLite 32,766; PostgreSQL 65,535).
const IMPORT_CHUNK: usize = 400;

impl Tx {
    /// Writes finished history in bulk: deployments with their tasks, as
    /// they were (states and times kept), in a few multi-row statements,
    /// indexed as [`Tx::insert`] would. For imports and for generating
    /// large histories (benchmarks, tests). Ids must be new; the id
    /// sequences move past the greatest imported.
    pub async fn import_deployments(&mut self, history: &[(Deployment, ServerTask)]) -> Result<()> {
        for chunk in history.chunks(IMPORT_CHUNK) {
            let deployments: Vec<&Deployment> = chunk.iter().map(|(d, _)| d).collect();
            let tasks: Vec<&ServerTask> = chunk.iter().map(|(_, t)| t).collect();
            crate::documents::insert_many(&mut self.inner, &deployments).await?;
            crate::tasks::import_tasks(&mut self.inner, &tasks).await?;
            let mut st = Statement::default();
            let rows: Vec<String> = deployments
                .iter()
                .map(|d| {
                    format!(
                        "({}, {}, {}, {}, {}, {}, {}, {})",
                        st.arg(d.id.as_str()),
                        st.arg(d.sort_key()),
                        st.arg(d.space_id.as_str()),
                        st.arg(d.project_id.as_str()),
                        st.arg(d.environment_id.as_str()),
                        st.arg(tenant(d)),
                        st.arg(d.release_id.as_str()),
                        st.arg(d.task_id.as_str()),
                    )
                })
                .collect();
            st.sql = format!(
                "INSERT INTO deployments (id, seq, space_id, project_id, environment_id, tenant_id, release_id, task_id) VALUES {}",
                rows.join(", ")
            );
            let st = st.for_connection(&self.inner);
            st.query().execute(&mut *self.inner).await?;
            let ids: Vec<String> = deployments.iter().map(|d| d.id.clone()).collect();
            crate::counts::add_deployments(&mut self.inner, &ids, 1).await?;
            advance_latest(&mut self.inner, &deployments).await?;
        }
        let newest = |ids: &mut dyn Iterator<Item = &str>| {
            ids.map(cuttle_model::ids::sequence_of).max().unwrap_or(0)
        };
        let sequences = [
            (
                cuttle_model::ids::Collection::Deployments,
                newest(&mut history.iter().map(|(d, _)| d.id.as_str())),
            ),
            (
                cuttle_model::ids::Collection::ServerTasks,
                newest(&mut history.iter().map(|(_, t)| t.id.as_str())),
            ),
        ];
        for (collection, n) in sequences {
            sqlx::query(
                "INSERT INTO id_sequences (collection, next_value) VALUES ($1, $2) \
                 ON CONFLICT (collection) DO UPDATE SET next_value = $2 WHERE id_sequences.next_value < $2",
            )
            .bind(collection.prefix())
            .bind(n)
            .execute(&mut *self.inner)
            .await?;
        }
        Ok(())
    }
}
