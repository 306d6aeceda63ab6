//! Wake-ups when a task is queued, on PostgreSQL: the transaction that
//! queues a task notifies [`TASK_QUEUED_CHANNEL`] (see
//! [`Backend::notify_task_queued`]), and every node listens on a
//! connection of its own, so a node with a free slot claims the task
//! within milliseconds instead of at its next poll. A notification can be
//! lost while the connection is down; the listener then wakes its node
//! anyway, which claims whatever is waiting, and listens again.
//!
//! [`Store::listen`] is the same for any channel (the agent relay's too).

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
        self.listen(TASK_QUEUED_CHANNEL, move |_| wake()).await
    }

    /// Calls `heard` with each notification's payload on `channel`, and
    /// with `None` after the listening connection was lost (something may
    /// have gone unheard), until `heard` returns false. Returns once
    /// listening; on SQLite it does nothing.
    pub async fn listen(
        &self,
        channel: &'static str,
        heard: impl Fn(Option<&str>) -> bool + Send + Sync + 'static,
    ) -> Result<()> {
        let Some(url) = self
            .listen_url
            .clone()
            .filter(|_| self.backend() == Backend::Postgres)
        else {
            return Ok(());
        };
        let mut listener = PgListener::connect(&url.0).await?;
        listener.listen(channel).await?;
        // Closing the store ends the listening too, so a closed store (a
        // hosted instance asleep) holds no connection at all.
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    received = listener.try_recv() => received,
                    _ = pool.close_event() => return,
                };
                let go_on = match received {
                    Ok(Some(n)) => heard(Some(n.payload())),
                    Ok(None) => {
                        tracing::warn!(channel, "lost a notification channel; listening again");
                        heard(None)
                    }
                    Err(e) => {
                        tracing::warn!(channel, error = %e, "could not listen; retrying");
                        tokio::time::sleep(RETRY).await;
                        heard(None)
                    }
                };
                if !go_on {
                    return;
                }
            }
        });
        Ok(())
    }
}
