//! When an installation's periodic jobs (scheduled health checks, feed
//! retention) last ran. Kept apart from the installation, so that a host
//! that closes an idle one and opens it again when a job is due resumes
//! the schedule rather than starting it over (which would put every job
//! one whole period off again, and so never run it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;

/// Cloning shares the times.
#[derive(Clone, Debug, Default)]
pub struct JobTimes(Arc<Mutex<Times>>);

#[derive(Debug, Default)]
pub(crate) struct Times {
    /// Each machine policy's last scheduled health check (or when the
    /// schedule first saw it).
    pub health: HashMap<String, Instant>,
    /// The last time feed retention was applied.
    pub retention: Option<Instant>,
}

impl JobTimes {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Times> {
        // Each change is one map or field write: a poisoned lock is whole.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
