//! Every table's rows, out and in: a consistent read of a whole database for
//! a backup, and loading such rows into an empty database of either kind.
//!
//! Tables and columns are read from the database's own catalogue, never
//! from a list kept here, so a table a later migration adds is backed up
//! without anyone remembering to. Values travel as JSON (integer, number,
//! text or null), which both databases read back the same.

use crate::dialect::Backend;
use crate::{Result, Store, StoreError, MIGRATOR};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyConnectOptions;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Connection, Executor, Row};
use std::collections::BTreeMap;
use std::str::FromStr;

/// sqlx's own record of applied migrations: the schema version says what
/// it held, and a restore writes it by migrating.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// Most values bound in one INSERT: under both databases' limits, and large
/// enough that a statement carries hundreds of rows.
const VALUES_PER_INSERT: usize = 8_000;

/// How a column's values are written out and bound back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnKind {
    Integer,
    Real,
    Text,
}

impl ColumnKind {
    /// From the declared type (SQLite's `PRAGMA table_info`, PostgreSQL's
    /// `information_schema`); `None` for a type the backup cannot carry.
    fn of_declared(declared: &str) -> Option<ColumnKind> {
        let t = declared.to_ascii_lowercase();
        if t.contains("int") {
            Some(ColumnKind::Integer)
        } else if t.contains("char") || t.contains("text") || t.contains("clob") {
            Some(ColumnKind::Text)
        } else if t.contains("real") || t.contains("double") || t.contains("float") {
            Some(ColumnKind::Real)
        } else {
            None
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
}

/// A table as the catalogue describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
}

/// The newest migration this build knows: the schema version it writes.
pub fn known_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Whether `version` is one this build's migrations reach exactly.
pub fn is_known_schema_version(version: i64) -> bool {
    MIGRATOR.iter().any(|m| m.version == version)
}

/// A quoted identifier. Names come from the catalogue, but quoting keeps a
/// reserved word (`key`) or an odd name from ever being read as SQL.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The connection a snapshot reads on: the server's own pool, or one opened
/// for a backup taken from outside the server.
enum Conn {
    Pooled(PoolConnection<Any>),
    Own(AnyConnection),
}

impl Conn {
    fn get(&mut self) -> &mut AnyConnection {
        match self {
            Conn::Pooled(c) => c,
            Conn::Own(c) => c,
        }
    }
}

/// One read transaction over the whole database: every table read through
/// it shows the same instant, whatever commits meanwhile. On PostgreSQL a
/// REPEATABLE READ transaction; on SQLite a read transaction on a WAL
/// reader, which sees the database as of its first read while the writer
/// goes on.
pub struct Snapshot {
    conn: Conn,
    backend: Backend,
    finished: bool,
}

impl Store {
    /// A snapshot on this store's connections, beside the running server.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        // SQLite readers are query-only connections of their own, so the
        // long read never holds the writer.
        let conn = self.reader().acquire().await?;
        Snapshot::begin(Conn::Pooled(conn), self.backend()).await
    }

    /// The SQLite database at `path`, which must exist (a backup of a data
    /// directory never creates one).
    pub fn sqlite_url_existing(path: &std::path::Path) -> String {
        format!("sqlite://{}?mode=rw", path.display())
    }
}

impl Snapshot {
    /// A snapshot of the database at `url` on a connection of its own,
    /// without migrating it or touching anything: the server may be running
    /// on it.
    pub async fn connect(url: &str) -> Result<Snapshot> {
        sqlx::any::install_default_drivers();
        let backend =
            Backend::of_url(url).ok_or_else(|| StoreError::UnsupportedUrl(crate::redact(url)))?;
        let options = AnyConnectOptions::from_str(url)?;
        let mut conn = AnyConnection::connect_with(&options).await?;
        if backend == Backend::Sqlite {
            conn.execute("PRAGMA busy_timeout = 10000; PRAGMA query_only = ON;")
                .await?;
        }
        Snapshot::begin(Conn::Own(conn), backend).await
    }

    async fn begin(mut conn: Conn, backend: Backend) -> Result<Snapshot> {
        let begin = match backend {
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            Backend::Sqlite => "BEGIN",
        };
        conn.get().execute(begin).await?;
        let mut snapshot = Snapshot {
            conn,
            backend,
            finished: false,
        };
        // The first read fixes what the transaction sees; from here on
        // every read is of this instant.
        snapshot.schema_version().await?;
        Ok(snapshot)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The newest migration applied to the database.
    pub async fn schema_version(&mut self) -> Result<i64> {
        let (v,): (Option<i64>,) = sqlx::query_as(&format!(
            "SELECT MAX(version) FROM {MIGRATIONS_TABLE} WHERE success"
        ))
        .fetch_one(self.conn.get())
        .await?;
        Ok(v.unwrap_or(0))
    }

    /// Every table of the database but the migrations' own, by name, with
    /// its columns in order.
    pub async fn tables(&mut self) -> Result<Vec<Table>> {
        catalogue(self.conn.get(), self.backend).await
    }

    /// Reads every row of `table`, handing each to `row` as JSON values in
    /// the order of its columns; the number of rows.
    pub async fn each_row<E: From<StoreError>>(
        &mut self,
        table: &Table,
        mut row: impl FnMut(Vec<serde_json::Value>) -> Result<(), E>,
    ) -> Result<u64, E> {
        let names: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
        let sql = format!("SELECT {} FROM {}", names.join(", "), ident(&table.name));
        let mut rows = sqlx::query(&sql).fetch(self.conn.get());
        let mut n = 0;
        while let Some(r) = rows.try_next().await.map_err(StoreError::from)? {
            let mut values = Vec::with_capacity(table.columns.len());
            for (i, c) in table.columns.iter().enumerate() {
                values.push(read_value(&r, i, c, &table.name).map_err(E::from)?);
            }
            row(values)?;
            n += 1;
        }
        Ok(n)
    }

    /// Ends the read transaction.
    pub async fn finish(mut self) -> Result<()> {
        self.finished = true;
        self.conn.get().execute("COMMIT").await?;
        Ok(())
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // A pooled connection still inside the read transaction must not go
        // back to the pool: closing it ends the transaction.
        if !self.finished {
            if let Conn::Pooled(c) = &mut self.conn {
                c.close_on_drop();
            }
        }
    }
}

/// The tables of the database on `conn` but the migrations' own, by name,
/// with their columns in order.
async fn catalogue(conn: &mut AnyConnection, backend: Backend) -> Result<Vec<Table>> {
    let columns: Vec<(String, String, String)> =
        match backend {
            Backend::Sqlite => sqlx::query_as(
                "SELECT m.name, p.name, p.type FROM sqlite_master m, pragma_table_info(m.name) p \
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.cid",
            )
            .fetch_all(conn)
            .await?,
            Backend::Postgres => {
                sqlx::query_as(
                    "SELECT c.table_name::text, c.column_name::text, c.data_type::text \
                 FROM information_schema.columns c JOIN information_schema.tables t \
                 ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
                 WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' \
                 ORDER BY c.table_name, c.ordinal_position",
                )
                .fetch_all(conn)
                .await?
            }
        };
    let mut tables: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    for (table, column, declared) in columns {
        if table == MIGRATIONS_TABLE {
            continue;
        }
        let kind = ColumnKind::of_declared(&declared).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the column {table}.{column} has the type '{declared}', which a backup cannot carry"
            ))
        })?;
        tables
            .entry(table)
            .or_default()
            .push(Column { name: column, kind });
    }
    Ok(tables
        .into_iter()
        .map(|(name, columns)| Table { name, columns })
        .collect())
}

fn read_value(
    row: &sqlx::any::AnyRow,
    i: usize,
    column: &Column,
    table: &str,
) -> Result<serde_json::Value> {
    let bad = |e: sqlx::Error| {
        StoreError::Corrupt(format!(
            "{table}.{} holds a value that is not {:?}: {e}",
            column.name, column.kind
        ))
    };
    Ok(match column.kind {
        ColumnKind::Integer => row
            .try_get::<Option<i64>, _>(i)
            .map_err(bad)?
            .map_or(serde_json::Value::Null, serde_json::Value::from),
        ColumnKind::Real => row
            .try_get::<Option<f64>, _>(i)
            .map_err(bad)?
            .map_or(serde_json::Value::Null, serde_json::Value::from),
        ColumnKind::Text => row
            .try_get::<Option<String>, _>(i)
            .map_err(bad)?
            .map_or(serde_json::Value::Null, serde_json::Value::from),
    })
}

/// Whether the database at `url` holds any table (SQLite: whether the file
/// exists with anything in it). Nothing is created.
pub async fn database_is_empty(url: &str) -> Result<bool> {
    sqlx::any::install_default_drivers();
    let backend =
        Backend::of_url(url).ok_or_else(|| StoreError::UnsupportedUrl(crate::redact(url)))?;
    match backend {
        Backend::Sqlite => {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:")
                .split('?')
                .next()
                .unwrap_or_default();
            Ok(std::fs::metadata(path).map_or(true, |m| m.len() == 0))
        }
        Backend::Postgres => {
            let options = AnyConnectOptions::from_str(url)?;
            let mut conn = AnyConnection::connect_with(&options).await?;
            let (n,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()",
            )
            .fetch_one(&mut conn)
            .await?;
            let _ = conn.close().await;
            Ok(n == 0)
        }
    }
}

/// Drops every table of the PostgreSQL database at `url`, undoing a restore
/// that failed part-way into a database that held no table before it (the
/// schema's migrations commit before the rows' transaction). A SQLite
/// database goes with its file instead.
pub async fn drop_restored_schema(url: &str) -> Result<()> {
    if Backend::of_url(url) != Some(Backend::Postgres) {
        return Ok(());
    }
    let options = AnyConnectOptions::from_str(url)?;
    let mut conn = AnyConnection::connect_with(&options).await?;
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut conn)
    .await?;
    for (t,) in tables {
        conn.execute(format!("DROP TABLE IF EXISTS {} CASCADE", ident(&t)).as_str())
            .await?;
    }
    let _ = conn.close().await;
    Ok(())
}

/// Rows going into an empty database, all in one transaction: nothing of a
/// load that fails is kept but the schema.
pub struct Loader {
    conn: AnyConnection,
    backend: Backend,
    tables: BTreeMap<String, Table>,
}

impl Loader {
    /// Creates the schema at `schema_version` (the backup's, which may be
    /// older than this build's: the server migrates the rest when it
    /// starts), and opens the transaction the rows go into.
    pub async fn create(url: &str, schema_version: i64) -> Result<Loader> {
        sqlx::any::install_default_drivers();
        let backend =
            Backend::of_url(url).ok_or_else(|| StoreError::UnsupportedUrl(crate::redact(url)))?;
        if !is_known_schema_version(schema_version) {
            return Err(StoreError::Conflict(format!(
                "the schema version {schema_version} is not one this build knows (it knows up to {})",
                known_schema_version()
            )));
        }
        let options = AnyConnectOptions::from_str(url)?;
        let mut conn = AnyConnection::connect_with(&options).await?;
        if backend == Backend::Sqlite {
            conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
                .await?;
        }
        // sqlx has no "migrate to version N"; a migrator holding only the
        // migrations up to N is one.
        let upto = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(
                MIGRATOR
                    .iter()
                    .filter(|m| m.version <= schema_version)
                    .cloned()
                    .collect(),
            ),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        upto.run_direct(&mut conn).await?;
        let tables = catalogue(&mut conn, backend).await?;
        conn.execute("BEGIN").await?;
        // Migrations may seed rows (settings); the backup's replace them.
        for t in &tables {
            conn.execute(format!("DELETE FROM {}", ident(&t.name)).as_str())
                .await?;
        }
        Ok(Loader {
            conn,
            backend,
            tables: tables.into_iter().map(|t| (t.name.clone(), t)).collect(),
        })
    }

    /// The tables of the schema being loaded.
    pub fn tables(&self) -> impl Iterator<Item = &Table> {
        self.tables.values()
    }

    /// Inserts rows of `table` whose values follow `columns` (the backup's
    /// column order); each value must fit its column.
    pub async fn insert(
        &mut self,
        table: &str,
        columns: &[Column],
        rows: &[Vec<serde_json::Value>],
    ) -> Result<()> {
        let target = self.tables.get(table).ok_or_else(|| {
            StoreError::Corrupt(format!("the table {table} is not in the restored schema"))
        })?;
        let mut kinds = Vec::with_capacity(columns.len());
        for c in columns {
            let found = target
                .columns
                .iter()
                .find(|t| t.name == c.name)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "the column {table}.{} is not in the restored schema",
                        c.name
                    ))
                })?;
            kinds.push(found.kind);
        }
        let names: Vec<String> = columns.iter().map(|c| ident(&c.name)).collect();
        let per_statement = (VALUES_PER_INSERT / columns.len().max(1)).max(1);
        for chunk in rows.chunks(per_statement) {
            let mut values = Vec::with_capacity(chunk.len());
            let mut n = 0;
            for row in chunk {
                if row.len() != columns.len() {
                    return Err(StoreError::Corrupt(format!(
                        "a row of {table} has {} values for {} columns",
                        row.len(),
                        columns.len()
                    )));
                }
                let placeholders: Vec<String> = row
                    .iter()
                    .map(|v| {
                        if v.is_null() {
                            // A literal NULL needs no type, which PostgreSQL
                            // would otherwise want to match the column's.
                            "NULL".to_owned()
                        } else {
                            n += 1;
                            self.backend.placeholder(n)
                        }
                    })
                    .collect();
                values.push(format!("({})", placeholders.join(", ")));
            }
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {}",
                ident(table),
                names.join(", "),
                values.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for row in chunk {
                for (v, (kind, c)) in row.iter().zip(kinds.iter().zip(columns)) {
                    let mismatch = || {
                        StoreError::Corrupt(format!(
                            "{table}.{}: the value {v} is not {kind:?}",
                            c.name
                        ))
                    };
                    q = match (kind, v) {
                        (_, serde_json::Value::Null) => q,
                        (ColumnKind::Integer, v) => q.bind(v.as_i64().ok_or_else(mismatch)?),
                        (ColumnKind::Real, v) => q.bind(v.as_f64().ok_or_else(mismatch)?),
                        (ColumnKind::Text, serde_json::Value::String(s)) => q.bind(s.clone()),
                        (ColumnKind::Text, _) => return Err(mismatch()),
                    };
                }
            }
            q.execute(&mut self.conn).await?;
        }
        Ok(())
    }

    /// Keeps every row inserted. The list totals kept as data are counted
    /// again from the restored rows rather than taken from the backup, so a
    /// restore cannot bring back counts that disagree with its rows.
    pub async fn commit(mut self) -> Result<()> {
        if self.tables.contains_key("task_counts") {
            crate::counts::recount(&mut self.conn).await?;
        }
        self.conn.execute("COMMIT").await?;
        let _ = self.conn.close().await;
        Ok(())
    }
}
