//! Cuttle's persistence: one [`Store`] over SQLite (the embedded default) and
//! PostgreSQL, with a single migration history and one source of each query.
//!
//! # Layout
//! - this file: opening the store, errors.
//! - [`transaction`]: transactions, and what happens to a failed one.
//! - [`dialect`]: the few places where SQLite and PostgreSQL must differ.
//! - [`documents`]: resources kept as JSON documents with indexed columns.
//! - [`machines`]: the deployment targets a deployment runs on.
//! - [`tasks`]: the durable task queue and the task activity log.
//! - [`task_log`]: log lines stored in batches and read a piece at a time.
//! - [`interruptions`]: tasks waiting for a person, and the task flag that
//!   says so.
//! - [`secrets`]: the master key that seals sensitive values at rest.
//! - [`users`]: users, password hashes and API key hashes.
//! - [`access`]: teams and roles read together for permission checks;
//!   disabling, re-passwording and removing users.
//! - [`sessions`]: the web portal's sessions, by the hash of their token.
//! - [`spaces`]: deleting a space with everything in it; stopped queues.
//! - [`deployments`]: deployment history's index, its lists, and the newest
//!   deployment per project and environment.
//! - [`counts`]: list totals kept as data, written with each task and
//!   deployment.
//! - [`statement`]: SQL text with its arguments, run here or explained by
//!   tests.
//! - [`events`]: the audit log.
//! - [`gauges`]: the counts and ages `/metrics` reads at each scrape.
//! - [`subscriptions`]: the outbox that subscriptions' deliveries come from.
//! - [`nodes`]: server nodes' rows and heartbeats, and the leader lease.
//! - [`task_queue_watch`]: PostgreSQL's wake-ups when a task is queued.
//! - [`group_commit`]: running tasks' writes, many to one commit.
//! - `changes`: what this process's writes tell the loops that follow
//!   them (events recorded, machines changed), and a count of the store's
//!   uses of the database.
//! - [`backup`]: every table's rows read in one snapshot, and loaded into
//!   an empty database.
//! - [`host`]: a `cuttle host`'s registry of instances, and its
//!   instances' PostgreSQL databases.
//! - [`testing`]: scratch databases for tests on both backends.
//! - [`blobs`]: the files kept outside the database (package files), in a
//!   directory or an S3-compatible bucket.
//!
//! Nothing outside this crate writes SQL.

pub mod access;
pub mod agent_relay;
pub mod backup;
pub mod blobs;
mod changes;
mod counts;
pub mod deployments;
pub mod dialect;
pub mod documents;
pub mod events;
pub mod gauges;
mod group_commit;
pub mod host;
pub mod interruptions;
pub mod machines;
pub mod nodes;
pub mod packages;
pub mod rolling_upgrade;
pub mod secrets;
pub mod sessions;
pub mod spaces;
pub mod statement;
pub mod subscriptions;
pub mod task_lease;
pub mod task_log;
pub mod task_queue_watch;
pub mod tasks;
pub mod testing;
mod transaction;
pub mod users;

pub use access::AccessDocuments;
pub use deployments::DeploymentQuery;
pub use dialect::Backend;
pub use documents::{Document, DocumentQuery, Page, ProcessSnapshot};
pub use events::{AuditEvent, EventQuery, StoredEvent};
pub use secrets::{MasterKey, SecretError};
pub use task_lease::{StepResult, Takeover, TaskLease, TaskProgress};
pub use tasks::{NewTask, TaskQuery};
pub use transaction::Tx;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} was not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// The disk under the database is full: nothing of the write was kept,
    /// and the same write succeeds once space is freed.
    #[error("the database's storage is full: {0}")]
    StorageFull(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database was migrated by a newer Cuttle than this one.
    #[error(
        "the database's schema is version {database}, newer than this Cuttle ({cuttle}) knows: \
         its newest schema is version {binary}. A newer Cuttle has upgraded this database; run \
         that version, or restore a backup made by this one"
    )]
    SchemaNewer {
        database: i64,
        binary: i64,
        cuttle: &'static str,
    },
    /// A migration this database applied is not the one this build ships.
    #[error(
        "migration {version} ({description}) differs from the one this database applied: its \
         checksum in _sqlx_migrations is not this build's. A shipped migration must never \
         change; this build is refused on this database"
    )]
    MigrationChanged { version: i64, description: String },
    /// A migration that would break the older nodes still running.
    #[error(
        "migration {version} ({description}) is not safe while nodes of an older version run, \
         and these nodes are running: {nodes}. Drain them, let their tasks finish and stop them, \
         then start this version"
    )]
    UnsafeWithOlderNodes {
        version: i64,
        description: String,
        nodes: String,
    },
    /// A node wrote for a task whose lease it no longer holds: another
    /// node took the task over, and nothing of the write was kept.
    #[error("the lease on task {task_id} was lost: {node} holds generation {held}, the task is at generation {current}")]
    LeaseLost {
        task_id: String,
        node: String,
        held: i64,
        current: i64,
    },
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_storage_full(&e) {
            StoreError::StorageFull(e)
        } else {
            StoreError::Database(e)
        }
    }
}

/// SQLite's SQLITE_FULL (13) and PostgreSQL's `disk_full` (53100).
fn is_storage_full(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            matches!(d.code().as_deref(), Some("13") | Some("53100"))
                || d.message().contains("No space left on device")
        }
        sqlx::Error::Io(io) => io.raw_os_error() == Some(libc_enospc()),
        _ => false,
    }
}

/// ENOSPC on Linux, where Cuttle runs.
const fn libc_enospc() -> i32 {
    28
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// Refuses at once a file that is there but is no SQLite database (its
/// first bytes are not SQLite's header): the pool would otherwise retry
/// connecting to it until its timeout, a minute later, saying less.
fn check_sqlite_file(url: &str) -> Result<()> {
    const HEADER: &[u8; 16] = b"SQLite format 3\0";
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(());
    };
    let mut start = [0u8; 16];
    match std::io::Read::read(&mut file, &mut start) {
        // An empty file is made into a database.
        Ok(0) => Ok(()),
        Ok(n) if n == HEADER.len() && &start == HEADER => Ok(()),
        Ok(_) => Err(StoreError::Corrupt(format!(
            "{path} is not an SQLite database (its header is not SQLite's): the file is \
             damaged or not Cuttle's; restore it from a backup"
        ))),
        Err(_) => Ok(()),
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Brings the schema up to date. Each migration is recorded in
/// `_sqlx_migrations` with its checksum when applied, and applied once; a
/// database a newer Cuttle has migrated, or one whose recorded migration
/// this build ships changed, is refused before anything is written.
async fn migrate(pool: &AnyPool, backend: Backend) -> Result<()> {
    let exists = match backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
        }
    };
    let tables: i64 = sqlx::query_scalar(exists).fetch_one(pool).await?;
    let mut applied = 0;
    if tables > 0 {
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(pool)
            .await?;
        let binary = backup::known_schema_version();
        if let Some(database) = newest.filter(|v| *v > binary) {
            return Err(StoreError::SchemaNewer {
                database,
                binary,
                cuttle: env!("CARGO_PKG_VERSION"),
            });
        }
        applied = newest.unwrap_or(0);
    }
    let pending: Vec<_> = MIGRATOR
        .iter()
        .filter(|m| m.version > applied)
        .map(|m| rolling_upgrade::Pending {
            version: m.version,
            description: &m.description,
            sql: &m.sql,
        })
        .collect();
    if !pending.is_empty() {
        rolling_upgrade::check(&pending, &rolling_upgrade::live_nodes(pool, backend).await?)?;
    }
    MIGRATOR.run(pool).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::VersionMismatch(version) => StoreError::MigrationChanged {
            version,
            description: MIGRATOR
                .iter()
                .find(|m| m.version == version)
                .map(|m| m.description.to_string())
                .unwrap_or_default(),
        },
        other => StoreError::Migrate(other),
    })
}

/// A handle on one installation's database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    /// Transactions and every write. On SQLite, the one writer.
    pool: AnyPool,
    /// Reads outside a transaction. On SQLite, connections of their own
    /// (WAL lets them read while the writer writes), so a long read never
    /// holds up a write or another read; on PostgreSQL, the same pool.
    reader: AnyPool,
    /// Running tasks' progress writes, committed in groups on `pool`.
    progress: group_commit::GroupCommit,
    backend: Backend,
    /// Where a node's own listening connection connects (PostgreSQL).
    listen_url: Option<task_queue_watch::ListenUrl>,
    /// Whether this store's transactions write audit events; see
    /// [`Store::set_recording_events`].
    record_events: bool,
    /// What its committed writes tell the loops that follow them.
    changes: std::sync::Arc<changes::Changes>,
    /// Transactions of [`Store::begin`] committed so far.
    commits: Arc<AtomicU64>,
}

/// SQLite connections for reads outside transactions: enough that a slow
/// read (a large list, a long log) leaves others free, few enough that
/// their page caches stay small.
const SQLITE_READERS: u32 = 4;

/// How many PostgreSQL connections one store may hold, and how long one
/// may sit idle before it is closed. A host of many installations on one
/// PostgreSQL server gives each a few, so that together they stay within
/// the server's `max_connections`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostgresPool {
    pub max_connections: u32,
    pub idle_timeout: Duration,
}

impl Default for PostgresPool {
    fn default() -> Self {
        PostgresPool {
            max_connections: 16,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema
    /// up to date.
    pub async fn open(url: &str) -> Result<Store> {
        Store::open_with(url, PostgresPool::default()).await
    }

    /// As [`Store::open`], with `postgres` connections at most on PostgreSQL.
    pub async fn open_with(url: &str, postgres: PostgresPool) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend =
            Backend::of_url(url).ok_or_else(|| StoreError::UnsupportedUrl(redact(url)))?;
        if backend == Backend::Sqlite {
            check_sqlite_file(url)?;
        }
        let options = AnyConnectOptions::from_str(url)?;
        let changes = std::sync::Arc::new(changes::Changes::default());
        let store = match backend {
            // One writing connection: SQLite has one writer anyway, and a
            // single one rules out "database is locked" when a transaction
            // that has read upgrades to a write. Every statement is short.
            Backend::Sqlite => {
                let pool = AnyPoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(Duration::from_secs(60))
                    .after_release(changes::counting(&changes))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // synchronous = FULL: a commit is on disk before it
                            // returns, so nothing acknowledged is lost to a power
                            // cut either (NORMAL survives only a process crash).
                            // A page cache (8 MiB) that holds a large batch of
                            // log lines' pages until its commit: SQLite's default
                            // (2 MiB) spilled them to the log mid-transaction and
                            // read them back. A multi-row statement's undo copy
                            // stays in memory rather than in a temporary file.
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; \
                                 PRAGMA cache_size = -8192; PRAGMA temp_store = MEMORY;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options.clone())
                    .await?;
                // Migrations first: readers must never see half a schema.
                migrate(&pool, backend).await?;
                let reader = AnyPoolOptions::new()
                    .max_connections(SQLITE_READERS)
                    .min_connections(0)
                    .idle_timeout(Duration::from_secs(600))
                    .max_lifetime(None)
                    .acquire_timeout(Duration::from_secs(60))
                    .after_release(changes::counting(&changes))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // query_only: a write sent here by mistake fails
                            // at once instead of racing the writer.
                            conn.execute("PRAGMA busy_timeout = 10000; PRAGMA query_only = ON;")
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?;
                Store {
                    progress: group_commit::GroupCommit::start(pool.clone()),
                    pool,
                    reader,
                    backend,
                    listen_url: None,
                    record_events: true,
                    changes,
                    commits: Arc::default(),
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(postgres.max_connections.max(1))
                    .idle_timeout(postgres.idle_timeout)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_release(changes::counting(&changes))
                    .connect_with(options)
                    .await?;
                migrate(&pool, backend).await?;
                Store {
                    progress: group_commit::GroupCommit::start(pool.clone()),
                    reader: pool.clone(),
                    pool,
                    backend,
                    listen_url: Some(task_queue_watch::ListenUrl(url.to_owned())),
                    record_events: true,
                    changes,
                    commits: Arc::default(),
                }
            }
        };
        store.backfill_deployment_index().await?;
        store.backfill_event_documents().await?;
        if backend == Backend::Postgres {
            // A database restored from a dump, or on a server whose
            // autovacuum is off, has no statistics, and PostgreSQL then
            // guesses row counts; sampling is cheap and makes its plans sane.
            store.pool.execute("ANALYZE").await?;
        }
        Ok(store)
    }

    /// The SQLite database inside a data directory.
    pub fn sqlite_url(path: &std::path::Path) -> String {
        format!("sqlite://{}?mode=rwc", path.display())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Holds a lock named `key` across every server node on this database
    /// until the returned guard is dropped, for work that reads, decides and
    /// writes in several transactions (queuing automatic deployments). On
    /// SQLite there is one node, and a held transaction would block the
    /// only connection, so there is no guard.
    pub async fn node_lock(&self, key: &str) -> Result<Option<Tx>> {
        if self.backend() != Backend::Postgres {
            return Ok(None);
        }
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(key)
            .execute(&mut *tx.inner)
            .await?;
        Ok(Some(tx))
    }

    pub async fn begin(&self) -> Result<Tx> {
        let mut tx = Tx::begin(&self.pool, self.record_events).await?;
        tx.changes = Some(self.changes.clone());
        tx.counted = Some(self.commits.clone());
        Ok(tx)
    }

    /// How many transactions of this process that recorded an audit event
    /// have committed so far: a follower reads it before it looks, then
    /// waits for more with [`Store::events_recorded_since`].
    pub fn events_seen(&self) -> u64 {
        self.changes.events.seen()
    }

    /// Returns once a transaction of this process that recorded an audit
    /// event has committed after [`Store::events_seen`] answered `seen`
    /// (at once if one has): subscriptions have something to fan out.
    /// Other nodes' events are not heard.
    pub async fn events_recorded_since(&self, seen: u64) {
        self.changes.events.since(seen).await
    }

    /// As [`Store::events_seen`], for changes to machines, workers and
    /// machine policies.
    pub fn infrastructure_seen(&self) -> u64 {
        self.changes.infrastructure.seen()
    }

    /// As [`Store::events_recorded_since`], for changes to machines,
    /// workers and machine policies. Other nodes' changes are not heard.
    pub async fn infrastructure_changed_since(&self, seen: u64) {
        self.changes.infrastructure.since(seen).await
    }

    /// A write outside a [`Tx`] (a group commit) recorded audit events.
    pub(crate) fn events_written(&self) {
        self.changes.committed(changes::Touched {
            events: true,
            infrastructure: false,
        });
    }

    /// How many times this store has used a database connection: once for
    /// each statement run outside a transaction and once for each
    /// transaction. Tests read it to check what an idle server does.
    pub fn database_uses(&self) -> u64 {
        self.changes.uses()
    }

    /// Turns writing audit events (and queueing their subscriptions'
    /// deliveries) on or off for this store and the clones made of it from
    /// now on. Always on in a server people use; off only where a benchmark
    /// measures what the log costs (the server's hidden
    /// `--record-audit-events false`). Other installations in the same
    /// process keep their own setting.
    pub fn set_recording_events(&mut self, on: bool) {
        self.record_events = on;
    }

    pub(crate) fn records_events(&self) -> bool {
        self.record_events
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Runs a running task's write in the next group commit.
    pub(crate) async fn progress_write(&self, job: group_commit::Job) -> Result<u64> {
        self.progress.run(job).await
    }

    /// How many group commits of running tasks' writes this store has made
    /// (each is one flush to disk, however many writes it held).
    pub fn progress_commits(&self) -> u64 {
        self.progress.commits()
    }

    /// How many transactions this store (and its clones) has committed:
    /// those of [`Store::begin`] and the group commits. On SQLite each is a
    /// flush to disk, so this is what an operation costs the one writer;
    /// tests of that cost read it before and after.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed) + self.progress.commits()
    }

    /// The pool for reads outside a transaction. Never write through it.
    pub(crate) fn reader(&self) -> &AnyPool {
        &self.reader
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.pool.close().await;
    }

    /// Whether [`Store::close`] was called: loops that work on the store
    /// stop rather than fail at every turn.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.0))
    }

    /// Stores `value` under `key` unless the key already has one; returns the
    /// value that is stored afterwards (so racing nodes agree).
    pub async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(self.setting(key).await?.unwrap_or_else(|| value.to_owned()))
    }

    /// Replaces `key`'s value with `new` only while it still is `expected`;
    /// whether it did (a node that lost the race reads the winner's).
    pub async fn replace_setting(&self, key: &str, expected: &str, new: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE settings SET value = $1 WHERE key = $2 AND value = $3")
            .bind(new)
            .bind(key)
            .bind(expected)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl Tx {
    /// Hands out the next number of a collection's ids.
    pub async fn next_id(&mut self, collection: cuttle_model::ids::Collection) -> Result<String> {
        next_id_on(&mut self.inner, collection).await
    }
}

/// [`Tx::next_id`] on a connection already inside a transaction.
pub(crate) async fn next_id_on(
    conn: &mut sqlx::AnyConnection,
    collection: cuttle_model::ids::Collection,
) -> Result<String> {
    let (n,): (i64,) = sqlx::query_as(
        "INSERT INTO id_sequences (collection, next_value) VALUES ($1, 1) \
         ON CONFLICT (collection) DO UPDATE SET next_value = id_sequences.next_value + 1 \
         RETURNING next_value",
    )
    .bind(collection.prefix())
    .fetch_one(&mut *conn)
    .await?;
    Ok(collection.id(n))
}

/// Hides a password in a database URL before it is shown anywhere.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite:///x.db"), "sqlite:///x.db");
    }

    #[test]
    fn a_file_that_is_no_sqlite_database_is_refused_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let url = |name: &str| super::Store::sqlite_url(&dir.path().join(name));
        std::fs::write(dir.path().join("garbage.db"), [0x5a; 4096]).unwrap();
        let refused = super::check_sqlite_file(&url("garbage.db"));
        assert!(
            matches!(&refused, Err(super::StoreError::Corrupt(m)) if m.contains("not an SQLite database")),
            "{refused:?}"
        );
        // Missing and empty files become databases.
        assert!(super::check_sqlite_file(&url("missing.db")).is_ok());
        std::fs::write(dir.path().join("empty.db"), []).unwrap();
        assert!(super::check_sqlite_file(&url("empty.db")).is_ok());
        let mut real = b"SQLite format 3\0".to_vec();
        real.resize(4096, 0);
        std::fs::write(dir.path().join("real.db"), real).unwrap();
        assert!(super::check_sqlite_file(&url("real.db")).is_ok());
    }
}
