//! In-process wake-ups for whoever follows a task live (the log stream): "task
//! X has new log lines, activities or state". A signal carries no data; the
//! follower reads what changed from the store, so a missed or merged signal
//! only delays it, and followers of a task run by another node (sharing the
//! PostgreSQL database) still see everything by also reading on a timer.
//!
//! One [`TaskSignals`] belongs to a [`crate::Runner`] (never a global), so
//! several installations in one process keep their signals apart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// The followed tasks and their channels; cheap to clone. A task nobody
/// follows has no entry, so signalling it costs one map lookup.
#[derive(Clone, Default)]
pub struct TaskSignals {
    followed: Arc<Mutex<HashMap<String, watch::Sender<()>>>>,
}

impl TaskSignals {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<()>>> {
        // The map stays consistent even if a holder panicked.
        self.followed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the followers of `task_id`, if any, that it changed.
    pub fn notify(&self, task_id: &str) {
        if let Some(tx) = self.lock().get(task_id) {
            tx.send_replace(());
        }
    }

    /// Starts following `task_id`: every [`TaskSignals::notify`] from now on
    /// wakes the returned watch (several in a row may wake it once).
    pub fn follow(&self, task_id: &str) -> TaskWatch {
        let rx = self
            .lock()
            .entry(task_id.to_owned())
            .or_insert_with(|| watch::channel(()).0)
            .subscribe();
        TaskWatch {
            rx,
            signals: self.clone(),
            task_id: task_id.to_owned(),
        }
    }

    /// How many tasks are followed right now (for tests and metrics).
    pub fn followed_count(&self) -> usize {
        self.lock().len()
    }
}

/// One follower's end of a task's signal. Dropping the last one of a task
/// removes the task's entry.
pub struct TaskWatch {
    rx: watch::Receiver<()>,
    signals: TaskSignals,
    task_id: String,
}

impl TaskWatch {
    /// Waits for a signal sent since the last call (or since following began).
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            // The sender lives while any watch of its task does, so this is
            // unreachable; waiting forever is safe, as followers also poll.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for TaskWatch {
    fn drop(&mut self) {
        let mut followed = self.signals.lock();
        // `self.rx` still counts itself here: 1 means it is the last one.
        if followed
            .get(&self.task_id)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            followed.remove(&self.task_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn followers_wake_on_their_task_only_and_entries_are_dropped() {
        let signals = TaskSignals::default();
        signals.notify("ServerTasks-1"); // nobody follows: nothing happens
        let mut a = signals.follow("ServerTasks-1");
        let mut b = signals.follow("ServerTasks-1");
        let mut other = signals.follow("ServerTasks-2");
        assert_eq!(signals.followed_count(), 2);

        signals.notify("ServerTasks-1");
        signals.notify("ServerTasks-1");
        let wait = Duration::from_millis(200);
        assert!(tokio::time::timeout(wait, a.changed()).await.is_ok());
        assert!(tokio::time::timeout(wait, b.changed()).await.is_ok());
        assert!(
            tokio::time::timeout(Duration::from_millis(20), a.changed())
                .await
                .is_err(),
            "two signals before waiting wake once"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(20), other.changed())
                .await
                .is_err()
        );

        drop(a);
        assert_eq!(signals.followed_count(), 2, "b still follows task 1");
        drop(b);
        drop(other);
        assert_eq!(signals.followed_count(), 0);
    }
}
