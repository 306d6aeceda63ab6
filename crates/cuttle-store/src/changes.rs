//! What this process's own writes tell the loops that follow them, so that
//! an idle server waits for a change instead of polling for one: the
//! subscription dispatcher hears of audit events recorded, the health
//! schedule of machines, workers and machine policies changed. Each is
//! heard once the transaction that made it has committed. Writes by other
//! processes (other nodes on PostgreSQL) are not heard: whoever follows
//! them there still polls.
//!
//! Also a count of the store's uses of a database connection (one per
//! statement outside a transaction, one per transaction), for tests that
//! check what an idle server does by itself.

use sqlx::pool::PoolConnectionMetadata;
use sqlx::AnyConnection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// The collections whose changes the health schedule follows.
const INFRASTRUCTURE: [&str; 3] = ["Machines", "Workers", "MachinePolicies"];

#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub(crate) events: Signal,
    pub(crate) infrastructure: Signal,
    uses: AtomicU64,
}

/// One kind of change: how many commits made one, and a wake-up for those
/// waiting for the next.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    count: AtomicU64,
    notify: Notify,
}

impl Signal {
    fn raise(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// How many so far: a follower reads it before it looks, then waits
    /// with [`Signal::since`] for what came after.
    pub(crate) fn seen(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Returns once the count is past `seen` (at once if it already is):
    /// nothing committed after the follower's look goes unheard, and
    /// nothing before it wakes the follower again.
    pub(crate) async fn since(&self, seen: u64) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.seen() != seen {
                return;
            }
            notified.await;
        }
    }
}

/// What one transaction wrote that someone follows.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Touched {
    pub(crate) events: bool,
    pub(crate) infrastructure: bool,
}

impl Touched {
    /// Notes a write of a document of `collection`.
    pub(crate) fn document(&mut self, collection: &str) {
        if INFRASTRUCTURE.contains(&collection) {
            self.infrastructure = true;
        }
    }
}

impl Changes {
    /// A transaction that wrote `touched` has committed.
    pub(crate) fn committed(&self, touched: Touched) {
        if touched.events {
            self.events.raise();
        }
        if touched.infrastructure {
            self.infrastructure.raise();
        }
    }

    pub(crate) fn uses(&self) -> u64 {
        self.uses.load(Ordering::Relaxed)
    }
}

/// A pool's `after_release` hook that counts each use of its connections.
pub(crate) fn counting(
    changes: &Arc<Changes>,
) -> impl for<'c> Fn(
    &'c mut AnyConnection,
    PoolConnectionMetadata,
) -> futures_util::future::BoxFuture<'c, Result<bool, sqlx::Error>>
       + Send
       + Sync
       + 'static {
    let changes = changes.clone();
    move |_, _| {
        changes.uses.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Ok(true) })
    }
}
