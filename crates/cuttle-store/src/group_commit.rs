//! Group commit for what running tasks write as they go: activity changes,
//! log lines, warning flags and their final state. Each of those is small,
//! and committing each alone costs a flush to disk; with several tasks
//! running, those flushes queue on the one SQLite writer and a trivial
//! deployment spends most of its time waiting for other tasks' flushes.
//! Here every write that arrives while a commit is under way joins the next
//! one: one transaction and one flush for all of them, and nothing is
//! acknowledged before its commit is on disk, exactly as when alone.

use crate::{Result, StoreError, Tx};
use futures_util::future::BoxFuture;
use sqlx::{AnyConnection, AnyPool, Executor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// One write: statements on the group's connection, answering the number of
/// rows it changed.
pub(crate) type Job =
    Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<u64>> + Send>;

struct Request {
    job: Job,
    done: oneshot::Sender<Result<u64>>,
}

/// How many writes may wait for the committer: a caller past that waits for
/// room, so a flood of writes holds up its writers instead of growing memory.
const QUEUE: usize = 1024;
/// The most writes one transaction takes; more wait for the next.
const GROUP: usize = 256;

#[derive(Clone, Debug)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Request>,
    /// Groups committed so far.
    commits: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Starts the committer on `pool`'s writer. It ends when the last
    /// handle is dropped.
    pub(crate) fn start(pool: AnyPool) -> GroupCommit {
        let (queue, mut waiting) = mpsc::channel::<Request>(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(GROUP);
            while waiting.recv_many(&mut group, GROUP).await > 0 {
                if commit_group(&pool, &mut group).await {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        GroupCommit { queue, commits }
    }

    /// How many groups have been committed.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `job` in the next group and waits until that group is committed.
    pub(crate) async fn run(&self, job: Job) -> Result<u64> {
        let (done, answer) = oneshot::channel();
        let closed = || StoreError::Database(sqlx::Error::PoolClosed);
        self.queue
            .send(Request { job, done })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

/// Runs and commits one group; answers whether a commit happened.
async fn commit_group(pool: &AnyPool, group: &mut Vec<Request>) -> bool {
    // The jobs write on the connection itself, each knowing from its store
    // whether it records events; the transaction's own setting is unused.
    let mut tx = match Tx::begin(pool, true).await {
        Ok(tx) => tx,
        Err(e) => {
            for r in group.drain(..) {
                let _ = r.done.send(Err(copy_error(&e)));
            }
            return false;
        }
    };
    // A write that fails is undone alone (its savepoint), and only its
    // caller hears of it; the others still commit.
    let alone = group.len() == 1;
    let mut answers = Vec::with_capacity(group.len());
    for r in group.drain(..) {
        let outcome = if alone {
            (r.job)(&mut tx.inner).await
        } else {
            run_in_savepoint(&mut tx.inner, r.job).await
        };
        answers.push((r.done, outcome));
    }
    if alone && answers.iter().any(|(_, o)| o.is_err()) {
        let _ = tx.rollback().await;
        for (done, outcome) in answers {
            let _ = done.send(outcome);
        }
        return false;
    }
    match tx.commit().await {
        Ok(()) => {
            for (done, outcome) in answers {
                let _ = done.send(outcome);
            }
            true
        }
        Err(e) => {
            // Nothing of the group was kept: every caller hears why.
            for (done, outcome) in answers {
                let _ = done.send(outcome.and(Err(copy_error(&e))));
            }
            false
        }
    }
}

async fn run_in_savepoint(conn: &mut AnyConnection, job: Job) -> Result<u64> {
    conn.execute("SAVEPOINT group_write").await?;
    match job(conn).await {
        Ok(n) => {
            conn.execute("RELEASE SAVEPOINT group_write").await?;
            Ok(n)
        }
        Err(e) => {
            conn.execute("ROLLBACK TO SAVEPOINT group_write").await?;
            conn.execute("RELEASE SAVEPOINT group_write").await?;
            Err(e)
        }
    }
}

/// The same failure for each caller of a group (database errors cannot be
/// cloned; their text and kind are what callers use).
fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotFound(m) => StoreError::NotFound(m.clone()),
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::UnsupportedUrl(m) => StoreError::UnsupportedUrl(m.clone()),
        StoreError::LeaseLost {
            task_id,
            node,
            held,
            current,
        } => StoreError::LeaseLost {
            task_id: task_id.clone(),
            node: node.clone(),
            held: *held,
            current: *current,
        },
        StoreError::StorageFull(d) => StoreError::StorageFull(sqlx::Error::Protocol(d.to_string())),
        other => StoreError::Database(sqlx::Error::Protocol(other.to_string())),
    }
}

/// Makes a [`Job`] of a closure (the bound lets the closure borrow the
/// connection for as long as its future runs).
pub(crate) fn job<F>(f: F) -> Job
where
    F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<u64>> + Send + 'static,
{
    Box::new(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ScratchPostgres;
    use crate::Store;

    /// A table whose rows are checked only at COMMIT: a row naming a
    /// missing parent makes the group's commit itself fail.
    async fn probe(store: &Store) {
        store
            .pool()
            .execute(
                "CREATE TABLE group_parent (id INTEGER PRIMARY KEY); \
                 CREATE TABLE group_probe (id INTEGER PRIMARY KEY, parent INTEGER \
                 REFERENCES group_parent (id) DEFERRABLE INITIALLY DEFERRED)",
            )
            .await
            .unwrap();
    }

    /// A group of inserts, each answered on its own channel.
    fn group(rows: &[(i64, Option<i64>)]) -> (Vec<Request>, Vec<oneshot::Receiver<Result<u64>>>) {
        rows.iter()
            .map(|&(id, parent)| {
                let (done, answer) = oneshot::channel();
                let job = job(move |conn| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO group_probe (id, parent) VALUES ($1, $2)")
                            .bind(id)
                            .bind(parent)
                            .execute(conn)
                            .await?;
                        Ok(1)
                    })
                });
                (Request { job, done }, answer)
            })
            .unzip()
    }

    async fn ids(store: &Store) -> Vec<i64> {
        let rows: Vec<(i64,)> = sqlx::query_as("SELECT id FROM group_probe ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
        rows.into_iter().map(|r| r.0).collect()
    }

    async fn stores() -> (Vec<Store>, tempfile::TempDir, Option<ScratchPostgres>) {
        let dir = tempfile::tempdir().unwrap();
        let mut stores = vec![
            Store::open(&Store::sqlite_url(&dir.path().join("cuttle.db")))
                .await
                .unwrap(),
        ];
        let pg = ScratchPostgres::create("group_commit").await;
        if let Some(pg) = &pg {
            stores.push(Store::open(&pg.url).await.unwrap());
        }
        (stores, dir, pg)
    }

    #[tokio::test]
    async fn fault_a_failed_group_commit_keeps_nothing_and_tells_every_writer() {
        let (stores, _dir, _pg) = stores().await;
        for store in stores {
            probe(&store).await;
            let (mut requests, answers) = group(&[(1, None), (2, Some(99)), (3, None)]);
            assert!(!commit_group(store.pool(), &mut requests).await);
            for answer in answers {
                assert!(answer.await.unwrap().is_err(), "{:?}", store.backend());
            }
            assert!(ids(&store).await.is_empty());
            // The writer is not left inside the failed transaction.
            let (mut requests, answers) = group(&[(4, None)]);
            assert!(commit_group(store.pool(), &mut requests).await);
            for answer in answers {
                assert_eq!(answer.await.unwrap().unwrap(), 1);
            }
            assert_eq!(ids(&store).await, vec![4]);
        }
    }

    #[tokio::test]
    async fn fault_a_failing_write_is_undone_alone_and_the_rest_commit() {
        let (stores, _dir, _pg) = stores().await;
        for store in stores {
            probe(&store).await;
            // The second insert repeats the first's key.
            let (mut requests, answers) = group(&[(1, None), (1, None), (3, None)]);
            assert!(commit_group(store.pool(), &mut requests).await);
            let mut outcomes = vec![];
            for answer in answers {
                outcomes.push(answer.await.unwrap().is_ok());
            }
            assert_eq!(outcomes, [true, false, true], "{:?}", store.backend());
            assert_eq!(ids(&store).await, vec![1, 3]);
        }
    }
}
