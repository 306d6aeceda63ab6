//! The registry of a `cuttle host`: which instances it serves, in what
//! state, with what limits. Kept in a small database of its own (SQLite in
//! the host's data directory, or the PostgreSQL database the host is
//! given), apart from every instance's database, so that the host restarts
//! with its instances. Also creates and drops instances' PostgreSQL
//! databases on the host's server.

use crate::{is_unique_violation, Backend, Result, StoreError};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Connection, Executor, Row};
use std::str::FromStr;
use std::time::Duration;

/// The lifecycle state of a hosted instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceState {
    /// Being made: never served. A host that finds one at start removes it.
    Creating,
    Running,
    Suspended,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Creating => "Creating",
            InstanceState::Running => "Running",
            InstanceState::Suspended => "Suspended",
        }
    }

    fn parse(text: &str) -> Result<InstanceState> {
        match text {
            "Creating" => Ok(InstanceState::Creating),
            "Running" => Ok(InstanceState::Running),
            "Suspended" => Ok(InstanceState::Suspended),
            other => Err(StoreError::Corrupt(format!(
                "an instance's state '{other}' is not one this host knows"
            ))),
        }
    }
}

/// One instance's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceRecord {
    pub name: String,
    pub state: InstanceState,
    pub task_cap: i64,
    pub storage_quota_mib: i64,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Milliseconds since the Unix epoch of the last request seen, if any.
    pub last_active: Option<i64>,
}

/// The host's registry. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HostRegistry {
    pool: AnyPool,
    backend: Backend,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS host_instances (\
     name TEXT PRIMARY KEY, \
     state TEXT NOT NULL, \
     task_cap BIGINT NOT NULL, \
     storage_quota_mib BIGINT NOT NULL, \
     created_at BIGINT NOT NULL, \
     last_active BIGINT)";

const COLUMNS: &str = "name, state, task_cap, storage_quota_mib, created_at, last_active";

impl HostRegistry {
    /// Opens (creating if needed) the registry at `url`.
    pub async fn open(url: &str) -> Result<HostRegistry> {
        sqlx::any::install_default_drivers();
        let backend =
            Backend::of_url(url).ok_or_else(|| StoreError::UnsupportedUrl(crate::redact(url)))?;
        let options = AnyConnectOptions::from_str(url)?;
        let mut pool = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(30))
            .max_connections(4);
        if backend == Backend::Sqlite {
            // One writer, so a creation's check-and-insert never meets
            // "database is locked"; every statement is short.
            pool = pool
                .max_connections(1)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                        Ok(())
                    })
                });
        }
        let pool = pool.connect_with(options).await?;
        pool.execute(SCHEMA).await?;
        Ok(HostRegistry { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Records a new instance in state `Creating`; a name already recorded
    /// (whatever its state) is a conflict. The primary key decides between
    /// two creations of one name at once.
    pub async fn insert_creating(&self, name: &str, task_cap: i64, quota_mib: i64) -> Result<()> {
        let now = self.backend.now_millis();
        let inserted = sqlx::query(&format!(
            "INSERT INTO host_instances ({COLUMNS}) VALUES ($1, $2, $3, $4, {now}, NULL)"
        ))
        .bind(name)
        .bind(InstanceState::Creating.as_str())
        .bind(task_cap)
        .bind(quota_mib)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "The instance name '{name}' is in use"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn set_state(&self, name: &str, state: InstanceState) -> Result<()> {
        let r = sqlx::query("UPDATE host_instances SET state = $1 WHERE name = $2")
            .bind(state.as_str())
            .bind(name)
            .execute(&self.pool)
            .await?;
        found(r.rows_affected(), name)
    }

    pub async fn set_limits(&self, name: &str, task_cap: i64, quota_mib: i64) -> Result<()> {
        let r = sqlx::query(
            "UPDATE host_instances SET task_cap = $1, storage_quota_mib = $2 WHERE name = $3",
        )
        .bind(task_cap)
        .bind(quota_mib)
        .bind(name)
        .execute(&self.pool)
        .await?;
        found(r.rows_affected(), name)
    }

    pub async fn set_last_active(&self, name: &str, at_millis: i64) -> Result<()> {
        sqlx::query("UPDATE host_instances SET last_active = $1 WHERE name = $2")
            .bind(at_millis)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn remove(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM host_instances WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn get(&self, name: &str) -> Result<Option<InstanceRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM host_instances WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record).transpose()
    }

    /// Every instance, by name.
    pub async fn list(&self) -> Result<Vec<InstanceRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM host_instances ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn found(rows: u64, name: &str) -> Result<()> {
    if rows == 0 {
        return Err(StoreError::NotFound(format!("The instance '{name}'")));
    }
    Ok(())
}

fn record(row: &AnyRow) -> Result<InstanceRecord> {
    Ok(InstanceRecord {
        name: row.try_get("name")?,
        state: InstanceState::parse(&row.try_get::<String, _>("state")?)?,
        task_cap: row.try_get("task_cap")?,
        storage_quota_mib: row.try_get("storage_quota_mib")?,
        created_at: row.try_get("created_at")?,
        last_active: row.try_get("last_active")?,
    })
}

/// The URL of database `name` on the PostgreSQL server of `url`.
pub fn postgres_database_url(url: &str, name: &str) -> String {
    crate::testing::with_database_name(url, name)
}

/// Creates database `name` on the PostgreSQL server of `server_url`; one
/// already there (left by a creation that was killed) is dropped first, so
/// an instance always starts from an empty database. `name` must be a
/// plain identifier (the caller makes it from a checked instance name).
pub async fn create_postgres_database(server_url: &str, name: &str) -> Result<()> {
    check_identifier(name)?;
    let mut conn = sqlx::PgConnection::connect(server_url).await?;
    conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await?;
    conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await?;
    conn.close().await?;
    Ok(())
}

/// Drops database `name` on the server of `server_url`, if it is there,
/// closing whatever connections it still has.
pub async fn drop_postgres_database(server_url: &str, name: &str) -> Result<()> {
    check_identifier(name)?;
    let mut conn = sqlx::PgConnection::connect(server_url).await?;
    conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await?;
    conn.close().await?;
    Ok(())
}

fn check_identifier(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !plain {
        return Err(StoreError::Conflict(format!(
            "'{name}' cannot name a database (lowercase letters, digits and _ only, at most 63)"
        )));
    }
    Ok(())
}

/// The bytes database `name` takes on the server of `server_url`.
pub async fn postgres_database_size(server_url: &str, name: &str) -> Result<i64> {
    let mut conn = sqlx::PgConnection::connect(server_url).await?;
    let (size,): (i64,) = sqlx::query_as("SELECT pg_database_size($1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(size)
}
