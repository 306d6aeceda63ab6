//! List totals kept as data. A task or deployment list answers with the
//! total of what its filters match; counting those rows grows with the
//! history, so the counts are kept instead, one row per combination of the
//! filters' values (`task_counts`, `deployment_counts`), and a total is a
//! sum over a few thousand of them however long the history.
//!
//! Every write that creates a task or a deployment, changes a task's state
//! or deletes either changes these rows in its own transaction: a write
//! that fails changes none. The changes are additions (upserts of `+n` or
//! `-n`), so writes of different keys never meet, and each reads the keys
//! from the rows themselves (a task's space, name, project and environment,
//! a deployment's target, never change).
//!
//! Triggers would keep them without each write site's help, but SQLite's
//! and PostgreSQL's are written differently, and the one migration history
//! both databases share cannot hold both.

use crate::statement::{literal, Statement};
use crate::Result;
use cuttle_model::TaskState;
use sqlx::AnyConnection;

/// Ids per statement: well under both databases' limits on bound values.
const CHUNK: usize = 400;

/// A task's key in `task_counts`, from the row aliased `t`.
const TASK_KEY: &str =
    "COALESCE(t.space_id, ''), COALESCE(t.project_id, ''), COALESCE(t.environment_id, ''), t.name";
const TASK_COLUMNS: &str = "space_id, project_id, environment_id, name, state, n";
const TASK_CONFLICT: &str = "ON CONFLICT (space_id, project_id, environment_id, name, state) \
     DO UPDATE SET n = task_counts.n + excluded.n";

/// A deployment's key in `deployment_counts`, from the row aliased `d`.
const DEPLOYMENT_KEY: &str = "d.space_id, d.project_id, d.environment_id, d.tenant_id";
const DEPLOYMENT_COLUMNS: &str = "space_id, project_id, environment_id, tenant_id, state, n";
const DEPLOYMENT_CONFLICT: &str =
    "ON CONFLICT (space_id, project_id, environment_id, tenant_id, state) \
     DO UPDATE SET n = deployment_counts.n + excluded.n";

/// A deployment's task: the one it names that names it back. A deployment
/// without one is counted under the state ''.
const DEPLOYMENTS_WITH_TASKS: &str =
    "deployments d LEFT JOIN server_tasks t ON t.id = d.task_id AND t.deployment_id = d.id";

/// Adds (`sign` 1) or takes away (-1) the tasks `ids` at their current
/// states: after inserting them, or before deleting them.
pub(crate) async fn add_tasks(conn: &mut AnyConnection, ids: &[String], sign: i64) -> Result<()> {
    for chunk in ids.chunks(CHUNK) {
        let mut st = Statement::default();
        let ids = st.args(chunk);
        st.sql = format!(
            "INSERT INTO task_counts ({TASK_COLUMNS}) \
             SELECT {TASK_KEY}, t.state, {sign} * COUNT(*) FROM server_tasks t WHERE t.id IN ({ids}) \
             GROUP BY {TASK_KEY}, t.state {TASK_CONFLICT}"
        );
        run(conn, st).await?;
    }
    Ok(())
}

/// Adds or takes away the deployments `ids`, each under its task's state
/// now: after indexing them, or before dropping them from the index.
pub(crate) async fn add_deployments(
    conn: &mut AnyConnection,
    ids: &[String],
    sign: i64,
) -> Result<()> {
    for chunk in ids.chunks(CHUNK) {
        let mut st = Statement::default();
        let ids = st.args(chunk);
        st.sql = format!(
            "INSERT INTO deployment_counts ({DEPLOYMENT_COLUMNS}) \
             SELECT {DEPLOYMENT_KEY}, COALESCE(t.state, ''), {sign} * COUNT(*) FROM {DEPLOYMENTS_WITH_TASKS} \
             WHERE d.id IN ({ids}) GROUP BY {DEPLOYMENT_KEY}, COALESCE(t.state, '') {DEPLOYMENT_CONFLICT}"
        );
        run(conn, st).await?;
    }
    Ok(())
}

/// Moves the tasks `ids`, and the deployments they are the tasks of, from
/// state `from` to `to`, after an UPDATE that did so. `from` is `None` for
/// tasks just inserted: their deployments (if indexed already) move from
/// having no task.
pub(crate) async fn move_tasks(
    conn: &mut AnyConnection,
    ids: &[String],
    from: Option<TaskState>,
    to: TaskState,
) -> Result<()> {
    if from == Some(to) {
        return Ok(());
    }
    let mut task_moves = vec![format!(
        "SELECT {} AS state, 1 AS delta",
        literal(to.as_str())
    )];
    if let Some(from) = from {
        task_moves.push(format!("SELECT {}, -1", literal(from.as_str())));
    }
    let deployment_moves = format!(
        "SELECT {} AS state, 1 AS delta UNION ALL SELECT {}, -1",
        literal(to.as_str()),
        literal(from.map_or("", |s| s.as_str()))
    );
    for chunk in ids.chunks(CHUNK) {
        let mut st = Statement::default();
        let ids = st.args(chunk);
        st.sql = format!(
            "INSERT INTO task_counts ({TASK_COLUMNS}) \
             SELECT {TASK_KEY}, s.state, SUM(s.delta) FROM server_tasks t CROSS JOIN ({}) s \
             WHERE t.id IN ({ids}) GROUP BY {TASK_KEY}, s.state {TASK_CONFLICT}",
            task_moves.join(" UNION ALL ")
        );
        run(conn, st).await?;
        let mut st = Statement::default();
        let ids = st.args(chunk);
        st.sql = format!(
            "INSERT INTO deployment_counts ({DEPLOYMENT_COLUMNS}) \
             SELECT {DEPLOYMENT_KEY}, s.state, SUM(s.delta) FROM server_tasks t \
             JOIN deployments d ON d.id = t.deployment_id AND d.task_id = t.id CROSS JOIN ({deployment_moves}) s \
             WHERE t.id IN ({ids}) GROUP BY {DEPLOYMENT_KEY}, s.state {DEPLOYMENT_CONFLICT}"
        );
        run(conn, st).await?;
    }
    Ok(())
}

/// Forgets a space's counts, with the space's tasks and deployments.
pub(crate) async fn forget_space(conn: &mut AnyConnection, space_id: &str) -> Result<()> {
    for table in ["task_counts", "deployment_counts"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE space_id = $1"))
            .bind(space_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Forgets the counts of a project's deployments, all deleted at once.
pub(crate) async fn forget_project_deployments(
    conn: &mut AnyConnection,
    space_id: &str,
    project_id: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM deployment_counts WHERE space_id = $1 AND project_id = $2")
        .bind(space_id)
        .bind(project_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Counts the deployments again from the index (once it is filled from
/// the documents).
pub(crate) async fn recount_deployments(conn: &mut AnyConnection) -> Result<()> {
    sqlx::query("DELETE FROM deployment_counts")
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!(
        "INSERT INTO deployment_counts ({DEPLOYMENT_COLUMNS}) \
         SELECT {DEPLOYMENT_KEY}, COALESCE(t.state, ''), COUNT(*) FROM {DEPLOYMENTS_WITH_TASKS} \
         WHERE 1 = 1 GROUP BY {DEPLOYMENT_KEY}, COALESCE(t.state, '')"
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Counts everything again from the rows (a restored database's: counts
/// are derived, so they are made from what was restored, not trusted).
pub(crate) async fn recount(conn: &mut AnyConnection) -> Result<()> {
    sqlx::query("DELETE FROM task_counts")
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!(
        "INSERT INTO task_counts ({TASK_COLUMNS}) \
         SELECT {TASK_KEY}, t.state, COUNT(*) FROM server_tasks t \
         WHERE 1 = 1 GROUP BY {TASK_KEY}, t.state"
    ))
    .execute(&mut *conn)
    .await?;
    recount_deployments(conn).await
}

async fn run(conn: &mut AnyConnection, st: Statement) -> Result<()> {
    st.for_connection(conn).query().execute(&mut *conn).await?;
    Ok(())
}
