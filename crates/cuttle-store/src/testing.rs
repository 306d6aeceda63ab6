//! Scratch databases for tests, so every test runs on SQLite and, when
//! `CUTTLE_TEST_DATABASE_URL` names a PostgreSQL server, on PostgreSQL too,
//! each in a database of its own that is dropped afterwards.

use crate::statement::{literal, Arg, Statement};
use crate::{Backend, Result, Store};
use cuttle_model::ids::Collection;
use cuttle_model::{Deployment, ServerTask, TaskState, Timestamp};
use sqlx::{Connection, Executor, PgConnection, Row};

pub const TEST_DATABASE_ENV: &str = "CUTTLE_TEST_DATABASE_URL";

/// A PostgreSQL database created for one test and dropped when this is dropped.
pub struct ScratchPostgres {
    admin_url: String,
    name: String,
    pub url: String,
}

impl ScratchPostgres {
    /// Creates a fresh database, or returns `None` (after saying the test is
    /// skipped on PostgreSQL) when no test server is configured.
    pub async fn create(test_name: &str) -> Option<ScratchPostgres> {
        let Ok(admin_url) = std::env::var(TEST_DATABASE_ENV) else {
            // Straight to stderr: the test harness swallows `eprintln!` of
            // passing tests, and a skip must be seen.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipped on PostgreSQL: {TEST_DATABASE_ENV} is not set ({test_name})"
            );
            return None;
        };
        let name = format!("cuttle_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("{TEST_DATABASE_ENV} is set but PostgreSQL is unreachable: {e}")
        });
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create scratch database");
        let url = with_database_name(&admin_url, &name);
        Some(ScratchPostgres {
            admin_url,
            name,
            url,
        })
    }
}

impl ScratchPostgres {
    /// The tables of this database with a row whose text holds `needle`, to
    /// prove that something is never stored in the clear.
    pub async fn tables_containing(&self, needle: &str) -> Vec<String> {
        let mut conn = PgConnection::connect(&self.url)
            .await
            .expect("connect to the scratch database");
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        )
        .fetch_all(&mut conn)
        .await
        .expect("list tables");
        let mut found = vec![];
        for (table,) in tables {
            // A row cast to text shows every column, documents included.
            let sql = format!(
                "SELECT count(*) FROM \"{}\" t WHERE strpos(t::text, $1) > 0",
                table.replace('"', "\"\"")
            );
            let (hits,): (i64,) = sqlx::query_as(&sql)
                .bind(needle)
                .fetch_one(&mut conn)
                .await
                .expect("search a table");
            if hits > 0 {
                found.push(table);
            }
        }
        found
    }
}

/// The tables whose rows grow with history: a plan must not read one whole.
pub const HISTORY_TABLES: [&str; 7] = [
    "documents",
    "server_tasks",
    "deployments",
    "latest_deployments",
    "events",
    "event_documents",
    "task_log_lines",
];

/// The plan the database chooses for `statement` with its arguments bound,
/// one line per node: `EXPLAIN` on PostgreSQL, `EXPLAIN QUERY PLAN` on
/// SQLite. Nothing is executed.
pub async fn explain(store: &Store, statement: &Statement) -> Result<Vec<String>> {
    let explained = Statement {
        sql: match store.backend() {
            Backend::Postgres => format!("EXPLAIN {}", statement.sql),
            Backend::Sqlite => format!("EXPLAIN QUERY PLAN {}", statement.sql),
        },
        args: statement.args.clone(),
    };
    let rows = explained.query().fetch_all(store.pool()).await?;
    rows.iter()
        .map(|r| {
            Ok(match store.backend() {
                Backend::Postgres => r.try_get::<String, _>(0)?,
                Backend::Sqlite => r.try_get::<String, _>("detail")?,
            })
        })
        .collect()
}

/// On PostgreSQL, the generic plan: the one a prepared statement settles on
/// after a few runs, made without looking at the values bound (`EXPLAIN`
/// with parameters always shows the plan for those values). SQLite plans
/// every statement one way, so this is [`explain`] there.
pub async fn explain_generic(store: &Store, statement: &Statement) -> Result<Vec<String>> {
    if store.backend() != Backend::Postgres {
        return explain(store, statement).await;
    }
    let mut conn = store.pool().acquire().await?;
    conn.execute(format!("PREPARE cuttle_explain AS {}", statement.sql).as_str())
        .await?;
    conn.execute("SET plan_cache_mode = force_generic_plan")
        .await?;
    let values: Vec<String> = statement
        .args
        .iter()
        .map(|a| match a {
            Arg::Text(s) => literal(s),
            Arg::Int(n) => n.to_string(),
        })
        .collect();
    let execute = if values.is_empty() {
        "EXPLAIN EXECUTE cuttle_explain".to_owned()
    } else {
        format!("EXPLAIN EXECUTE cuttle_explain({})", values.join(", "))
    };
    let rows = sqlx::query(&execute).fetch_all(&mut *conn).await;
    conn.execute("DEALLOCATE cuttle_explain; RESET plan_cache_mode")
        .await?;
    rows?
        .iter()
        .map(|r| Ok(r.try_get::<String, _>(0)?))
        .collect()
}

/// Turns autovacuum (and so automatic `ANALYZE`) off for the history
/// tables on PostgreSQL, as on a freshly restored database, so a plan
/// cannot lean on statistics gathered while a test loads data.
pub async fn disable_autovacuum(store: &Store) -> Result<()> {
    if store.backend() != Backend::Postgres {
        return Ok(());
    }
    for table in HISTORY_TABLES {
        store
            .pool()
            .execute(format!("ALTER TABLE {table} SET (autovacuum_enabled = false)").as_str())
            .await?;
    }
    Ok(())
}

/// Runs a statement that answers one number (a list's total).
pub async fn count(store: &Store, statement: &Statement) -> Result<i64> {
    let (n,): (i64,) = statement.query_as().fetch_one(store.reader()).await?;
    Ok(n)
}

/// The kept list counts that fell below zero (none, unless a write took
/// away what it never added).
pub async fn negative_counts(store: &Store) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM task_counts WHERE n < 0) \
         + (SELECT COUNT(*) FROM deployment_counts WHERE n < 0)",
    )
    .fetch_one(store.reader())
    .await?;
    Ok(n)
}

/// The kept list counts that differ from counting the rows, key by key
/// (a key whose count is 0 may be kept or not), as `table key: kept n,
/// counted m` lines: none when they agree. Every filter combination's
/// total is a sum of these, so where they agree, every total does.
pub async fn kept_counts_disagree(store: &Store) -> Result<Vec<String>> {
    let pairs = [
        (
            "task_counts",
            "SELECT space_id, project_id, environment_id, name, state, n FROM task_counts WHERE n <> 0",
            "SELECT COALESCE(space_id, ''), COALESCE(project_id, ''), COALESCE(environment_id, ''), name, state, \
             COUNT(*) FROM server_tasks GROUP BY COALESCE(space_id, ''), COALESCE(project_id, ''), \
             COALESCE(environment_id, ''), name, state",
        ),
        (
            "deployment_counts",
            "SELECT space_id, project_id, environment_id, tenant_id, state, n FROM deployment_counts WHERE n <> 0",
            "SELECT d.space_id, d.project_id, d.environment_id, d.tenant_id, COALESCE(t.state, ''), COUNT(*) \
             FROM deployments d LEFT JOIN server_tasks t ON t.id = d.task_id AND t.deployment_id = d.id \
             GROUP BY d.space_id, d.project_id, d.environment_id, d.tenant_id, COALESCE(t.state, '')",
        ),
    ];
    type Key = (String, String, String, String, String);
    let mut wrong = vec![];
    for (table, kept, counted) in pairs {
        let read = |sql: &'static str| async move {
            let rows: Vec<(String, String, String, String, String, i64)> =
                sqlx::query_as(sql).fetch_all(store.reader()).await?;
            Ok::<_, crate::StoreError>(
                rows.into_iter()
                    .map(|(a, b, c, d, e, n)| ((a, b, c, d, e), n))
                    .collect::<std::collections::BTreeMap<Key, i64>>(),
            )
        };
        let (kept, counted) = (read(kept).await?, read(counted).await?);
        for key in kept
            .keys()
            .chain(counted.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            let (k, c) = (
                kept.get(key).copied().unwrap_or(0),
                counted.get(key).copied().unwrap_or(0),
            );
            if k != c {
                wrong.push(format!("{table} {key:?}: kept {k}, counted {c}"));
            }
        }
    }
    Ok(wrong)
}

/// Where a generated deployment went, and how its task ended.
#[derive(Clone, Debug)]
pub struct HistoryEntry<'a> {
    /// The number of both the deployment's and its task's id.
    pub n: i64,
    pub space_id: &'a str,
    pub project_id: &'a str,
    pub environment_id: &'a str,
    pub release_id: &'a str,
    pub state: TaskState,
}

/// A deployment with its task, as the server would have written them, for
/// [`crate::Tx::import_deployments`] or [`crate::Tx::insert`].
pub fn deployment_with_task(e: &HistoryEntry<'_>) -> (Deployment, ServerTask) {
    let id = Collection::Deployments.id(e.n);
    let task_id = Collection::ServerTasks.id(e.n);
    let at = Timestamp::from_millis(1_700_000_000_000 + e.n * 60_000);
    let done = e.state.is_completed();
    let deployment = Deployment {
        id: id.clone(),
        space_id: e.space_id.to_owned(),
        name: format!("Deploy to {}", e.environment_id),
        release_id: e.release_id.to_owned(),
        environment_id: e.environment_id.to_owned(),
        project_id: e.project_id.to_owned(),
        channel_id: "Channels-1".into(),
        task_id: task_id.clone(),
        deployment_process_id: "deploymentprocess-snapshot".into(),
        created: Some(at),
        deployed_by: "admin".into(),
        deployed_by_id: "Users-1".into(),
        ..Default::default()
    };
    let mut task = ServerTask {
        id: task_id,
        space_id: Some(e.space_id.to_owned()),
        name: "Deploy".into(),
        description: format!("Deploy {} to {}", e.release_id, e.environment_id),
        arguments: serde_json::json!({ "DeploymentId": id }),
        state: e.state,
        is_completed: false,
        finished_successfully: false,
        has_pending_interruptions: false,
        has_warnings_or_errors: e.state == TaskState::Failed,
        error_message: (e.state == TaskState::Failed).then(|| "The script failed".to_owned()),
        queue_time: at,
        queue_time_expiry: None,
        start_time: (e.state != TaskState::Queued).then(|| at.add_millis(100)),
        completed_time: done.then(|| at.add_millis(5_000)),
        last_updated_time: at.add_millis(5_000),
        duration: String::new(),
        server_node: (e.state != TaskState::Queued).then(|| "node".to_owned()),
        can_rerun: false,
        has_been_picked_up_by_processor: false,
        project_id: Some(e.project_id.to_owned()),
        environment_id: Some(e.environment_id.to_owned()),
        deployment_id: Some(id),
    };
    task.derive_fields(Timestamp::now());
    (deployment, task)
}

/// Empties the deployment index and marks it as still to be filled, as a
/// database written before the index existed looks after its migration;
/// the next [`Store::open`] fills it from the documents.
pub async fn forget_deployment_index(store: &Store) -> Result<()> {
    let mut tx = store.begin().await?;
    for sql in [
        "DELETE FROM latest_deployments",
        "DELETE FROM deployments",
        "DELETE FROM deployment_counts",
    ] {
        sqlx::query(sql).execute(&mut *tx.inner).await?;
    }
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, 'backfill')")
        .bind(crate::deployments::PENDING_BACKFILL)
        .execute(&mut *tx.inner)
        .await?;
    tx.commit().await
}

/// Puts the audit log back as it was before `event_documents`: no index
/// rows, and the backfill owed at the next start.
pub async fn forget_event_documents(store: &Store) -> Result<()> {
    let mut tx = store.begin().await?;
    sqlx::query("DELETE FROM event_documents")
        .execute(&mut *tx.inner)
        .await?;
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, 'backfill')")
        .bind(crate::events::PENDING_BACKFILL)
        .execute(&mut *tx.inner)
        .await?;
    tx.commit().await
}

/// The same server URL naming another database:
/// `postgres://u@h:5432/test?sslmode=disable` → `postgres://u@h:5432/NAME?sslmode=disable`.
pub fn with_database_name(url: &str, name: &str) -> String {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{server}/{name}{query}")
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime; a thread of its own can block freely.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin_url).await.ok()?;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await
                    .ok()
            })
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::with_database_name;

    #[test]
    fn names_the_scratch_database() {
        assert_eq!(
            with_database_name("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database_name("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database_name("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
