//! Wake-ups when a task is queued, on PostgreSQL: the transaction that
//! queues a task notifies [`TASK_QUEUED_CHANNEL`] (see
//! [`Backend::notify_task_queued`]), and every node listens on a
//! connection of its own, so a node with a free slot claims the task
//! within milliseconds instead of at its next poll. A notification can be
//! lost while the connection is down; the listener then wakes its node
//! anyway, which claims whatever is waiting, and listens again.

use crate::dialect::TASK_QUEUED_CHANNEL;
use crate::{Backend, Result, Store};
use sqlx::postgres::PgListener;
use std::time::Duration;

/// The database URL a listener connects with. Its `Debug` hides it: it may
/// hold a password.
#[derive(Clone)]
pub(crate) struct ListenUrl(pub(crate) String);

impl std::fmt::Debug for ListenUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListenUrl(…)")
    }
}

/// How long to wait before listening again after the database refused.
const RETRY: Duration = Duration::from_secs(1);

impl Store {
    /// Calls `wake` each time a task is queued on any node, and after the
    /// listening connection is lost (work may have been queued unheard),
    /// until `wake` returns false. Returns once listening, so a task queued
    /// after it returns is heard; on SQLite it does nothing (one node, which
    /// wakes itself when it queues a task).
    pub async fn watch_task_queue(
        &self,
        wake: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Result<()> {
        let Some(url) = self
            .listen_url
            .clone()
            .filter(|_| self.backend() == Backend::Postgres)
        else {
            return Ok(());
        };
        let mut listener = PgListener::connect(&url.0).await?;
        listener.listen(TASK_QUEUED_CHANNEL).await?;
        // Closing the store ends the listening too, so a closed store
        // holds no connection at all.
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                // try_recv says when the connection was lost (Ok(None)) and
                // listens again on a new one at the next call.
                let received = tokio::select! {
                    received = listener.try_recv() => received,
                    _ = pool.close_event() => return,
                };
                let woke = match received {
                    Ok(Some(_)) => wake(),
                    Ok(None) => {
                        tracing::warn!("lost the task queue's notifications; listening again");
                        wake()
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not listen for queued tasks; retrying");
                        tokio::time::sleep(RETRY).await;
                        wake()
                    }
                };
                if !woke {
                    return;
                }
            }
        });
        Ok(())
    }
}
