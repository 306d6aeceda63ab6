//! Transactions. Each holds one pooled connection and speaks `BEGIN`,
//! `COMMIT` and `ROLLBACK` itself, so that what happens after a failure is
//! decided here and nowhere else.

use crate::Result;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A transaction; writes that belong together go through one.
///
/// It holds a pooled connection and speaks `BEGIN`/`COMMIT`/`ROLLBACK`
/// itself rather than through sqlx's nesting transactions, so that a failed
/// `COMMIT` can never leave the connection inside a transaction: SQLite keeps
/// a transaction open after some failed commits and ends it after others
/// (a full disk), and a connection whose state is unknown is closed, never
/// handed to the next writer, whose work would otherwise nest inside the
/// failed transaction and vanish with it.
pub struct Tx {
    pub(crate) inner: TxConnection,
    /// Whether audit events are written (its store's setting).
    pub(crate) record_events: bool,
    /// Told what this transaction wrote once it commits (`None` for a
    /// group commit's, whose writers tell it themselves).
    pub(crate) changes: Option<std::sync::Arc<crate::changes::Changes>>,
    /// What it wrote that someone follows.
    pub(crate) touched: crate::changes::Touched,
    /// Counts the commit, when its store counts them (see [`crate::Store::commits`]).
    pub(crate) counted: Option<Arc<AtomicU64>>,
}

/// The connection a [`Tx`] holds until it ends.
pub(crate) struct TxConnection(Option<PoolConnection<Any>>);

impl Deref for TxConnection {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.0
            .as_ref()
            .expect("a transaction holds its connection until it ends")
    }
}

impl DerefMut for TxConnection {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.0
            .as_mut()
            .expect("a transaction holds its connection until it ends")
    }
}

impl Tx {
    pub(crate) async fn begin(pool: &AnyPool, record_events: bool) -> Result<Tx> {
        let mut conn = pool.acquire().await?;
        if let Err(e) = conn.execute("BEGIN").await {
            conn.close_on_drop();
            return Err(e.into());
        }
        Ok(Tx {
            inner: TxConnection(Some(conn)),
            record_events,
            changes: None,
            touched: Default::default(),
            counted: None,
        })
    }

    /// Makes the transaction's writes durable; only then may they be
    /// acknowledged. On failure nothing of it stays, and the connection is
    /// discarded.
    pub async fn commit(mut self) -> Result<()> {
        let Some(mut conn) = self.inner.0.take() else {
            return Ok(());
        };
        match conn.execute("COMMIT").await {
            Ok(_) => {
                drop(conn);
                if let Some(counted) = &self.counted {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(changes) = &self.changes {
                    changes.committed(self.touched);
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "a commit failed; its transaction is rolled back");
                discard(conn).await;
                Err(e.into())
            }
        }
    }

    /// Abandons the transaction's writes.
    pub async fn rollback(mut self) -> Result<()> {
        if let Some(mut conn) = self.inner.0.take() {
            if let Err(e) = conn.execute("ROLLBACK").await {
                conn.close_on_drop();
                return Err(e.into());
            }
        }
        Ok(())
    }
}

/// Rolls back whatever a failed transaction left and closes the connection,
/// so the pool opens a fresh one for the next caller.
async fn discard(mut conn: PoolConnection<Any>) {
    let _ = conn.execute("ROLLBACK").await;
    let _ = conn.close().await;
}

impl Drop for Tx {
    /// A transaction dropped unfinished (an error, a cancelled request) is
    /// rolled back before its connection serves anyone else; without a
    /// runtime to do that on, the connection is closed instead, which ends
    /// the transaction as well.
    fn drop(&mut self) {
        let Some(mut conn) = self.inner.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let guard = CloseUnlessDone(Some(conn));
                runtime.spawn(async move {
                    let mut guard = guard;
                    if let Some(conn) = guard.0.as_mut() {
                        if conn.execute("ROLLBACK").await.is_ok() {
                            // Back to the pool, clean.
                            guard.0.take();
                        }
                    }
                });
            }
            Err(_) => conn.close_on_drop(),
        }
    }
}

/// Closes a connection whose rollback did not finish (it failed, or the
/// runtime stopped first) instead of returning it to the pool.
struct CloseUnlessDone(Option<PoolConnection<Any>>);

impl Drop for CloseUnlessDone {
    fn drop(&mut self) {
        if let Some(conn) = self.0.as_mut() {
            conn.close_on_drop();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::ScratchPostgres;
    use crate::{Backend, Store, Tx};
    use sqlx::Executor;

    /// A store on a fresh SQLite file and, when configured, on a fresh
    /// PostgreSQL database; each with the URL a second store can open.
    async fn stores(
        name: &str,
    ) -> Vec<(Store, String, Option<ScratchPostgres>, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let url = Store::sqlite_url(&dir.path().join("cuttle.db"));
        let mut out = vec![(Store::open(&url).await.unwrap(), url, None, dir)];
        if let Some(pg) = ScratchPostgres::create(name).await {
            let url = pg.url.clone();
            let store = Store::open(&url).await.unwrap();
            out.push((store, url, Some(pg), tempfile::tempdir().unwrap()));
        }
        out
    }

    /// A table whose rows are checked only at COMMIT: a row naming a missing
    /// parent makes the commit itself fail, on both databases.
    async fn deferred_probe(store: &Store) {
        if store.backend() == Backend::Sqlite {
            store
                .pool()
                .execute("PRAGMA foreign_keys = ON")
                .await
                .unwrap();
        }
        store
            .pool()
            .execute(
                "CREATE TABLE commit_parent (id INTEGER PRIMARY KEY); \
                 CREATE TABLE commit_probe (id INTEGER PRIMARY KEY, parent INTEGER \
                 REFERENCES commit_parent (id) DEFERRABLE INITIALLY DEFERRED)",
            )
            .await
            .unwrap();
    }

    async fn insert(tx: &mut Tx, id: i64, parent: Option<i64>) {
        sqlx::query("INSERT INTO commit_probe (id, parent) VALUES ($1, $2)")
            .bind(id)
            .bind(parent)
            .execute(&mut *tx.inner)
            .await
            .unwrap();
    }

    async fn ids(store: &Store) -> Vec<i64> {
        let rows: Vec<(i64,)> = sqlx::query_as("SELECT id FROM commit_probe ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
        rows.into_iter().map(|r| r.0).collect()
    }

    #[tokio::test]
    async fn fault_a_failed_commit_keeps_nothing_and_later_commits_are_durable() {
        for (store, url, _pg, _dir) in stores("failed_commit").await {
            let backend = store.backend();
            deferred_probe(&store).await;

            let mut tx = store.begin().await.unwrap();
            insert(&mut tx, 1, None).await;
            insert(&mut tx, 2, Some(99)).await;
            assert!(
                tx.commit().await.is_err(),
                "{backend:?}: the commit should fail"
            );

            let mut tx = store.begin().await.unwrap();
            insert(&mut tx, 3, None).await;
            tx.commit().await.unwrap();
            assert_eq!(ids(&store).await, vec![3], "{backend:?}");

            // Another connection sees the acknowledged write and can write
            // itself: nothing is left holding a transaction open.
            let other = Store::open(&url).await.unwrap();
            assert_eq!(ids(&other).await, vec![3], "{backend:?}: seen elsewhere");
            let mut tx = other.begin().await.unwrap();
            insert(&mut tx, 4, None).await;
            tx.commit().await.unwrap();
            other.close().await;
            store.close().await;

            // And all of it after a restart.
            let reopened = Store::open(&url).await.unwrap();
            assert_eq!(ids(&reopened).await, vec![3, 4], "{backend:?}: reopened");
            reopened.close().await;
        }
    }

    #[tokio::test]
    async fn fault_a_dropped_transaction_is_rolled_back_before_its_connection_is_reused() {
        for (store, url, _pg, _dir) in stores("dropped_tx").await {
            let backend = store.backend();
            deferred_probe(&store).await;

            let mut tx = store.begin().await.unwrap();
            insert(&mut tx, 5, None).await;
            drop(tx);

            let mut tx = store.begin().await.unwrap();
            insert(&mut tx, 6, None).await;
            tx.commit().await.unwrap();
            store.close().await;

            let reopened = Store::open(&url).await.unwrap();
            assert_eq!(ids(&reopened).await, vec![6], "{backend:?}");
            reopened.close().await;
        }
    }
}
