//! What `/metrics`, `/healthz` and `/readyz` answer: the installation's
//! metrics with the figures read at scrape time, and whether it is ready
//! for traffic.

use crate::Instance;
use cuttle_metrics::Snapshot;
use cuttle_model::{HealthStatus, Timestamp};
use std::path::Path;

/// The metrics in the OpenMetrics text format, with the gauges read now:
/// a few grouped counts over indexes, the pool's state and the disk's.
pub async fn scrape(inst: &Instance) -> String {
    // One scrape at a time: each clears and refills the gauge families.
    let _one = inst.scrapes.lock().await;
    match snapshot(inst).await {
        Ok(snapshot) => inst.metrics.apply(&snapshot),
        Err(e) => {
            inst.metrics.database_error("metrics");
            tracing::warn!(error = %e, "/metrics could not read the database");
        }
    }
    if let Some(at) = inst.agents.earliest_certificate_expiry() {
        inst.metrics.certificate_expires("agents", at);
    }
    inst.metrics.encode()
}

/// Where database errors are counted: the task runner's queue work (claims,
/// leases, completions), scrapes, readiness checks, and API and portal
/// requests.
pub const ERROR_SOURCES: [&str; 4] = ["task_queue", "metrics", "readiness", "http"];

/// The task types every server runs; their gauges read 0 rather than vanish.
pub const TASK_TYPES: [&str; 2] = ["Deploy", "Health"];

/// Counts for `known` names, 0 for those missing, then any others.
fn with_zeros(known: &[&str], counts: Vec<(String, i64)>) -> Vec<(String, i64)> {
    let mut all: Vec<(String, i64)> = known.iter().map(|k| ((*k).to_owned(), 0)).collect();
    for (name, n) in counts {
        match all.iter_mut().find(|(k, _)| *k == name) {
            Some((_, total)) => *total += n,
            None => all.push((name, n)),
        }
    }
    all
}

async fn snapshot(inst: &Instance) -> crate::Result<Snapshot> {
    let tasks = inst.store.task_gauges().await?;
    let statuses: Vec<String> = HealthStatus::ALL.iter().map(|s| format!("{s:?}")).collect();
    let statuses: Vec<&str> = statuses.iter().map(String::as_str).collect();
    let now = Timestamp::now().millis();
    let age = |t: Option<Timestamp>| t.map_or(0, |t| (now - t.millis()).max(0) / 1000);
    let pool = inst.store.pool_use();
    Ok(Snapshot {
        oldest_queued_seconds: age(tasks.oldest_queue_time),
        oldest_running_seconds: age(tasks.oldest_start_time),
        queued: with_zeros(&TASK_TYPES, tasks.queued),
        running: with_zeros(&TASK_TYPES, tasks.running),
        agents: with_zeros(&statuses, inst.store.agents_by_health().await?),
        database_connections: i64::from(pool.size),
        database_idle_connections: i64::from(pool.idle),
        package_feed_bytes: inst.store.package_feed_bytes().await?,
        disk: disk_space(&inst.config.data_dir),
    })
}

/// (bytes free to this unprivileged process, total size) of the file
/// system holding `dir`.
fn disk_space(dir: &Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain integers, for which all zeroes is valid.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stat` a valid struct
    // that statvfs only writes.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as u128;
    let clamp = |v: u128| i64::try_from(v).unwrap_or(i64::MAX);
    Some((
        clamp(stat.f_bavail as u128 * block),
        clamp(stat.f_blocks as u128 * block),
    ))
}

/// Why the installation should get no traffic now, if it should not:
/// draining for a shutdown, the database unreachable, or migrations this
/// build needs not applied.
pub async fn unready_reason(inst: &Instance) -> Option<String> {
    if inst.is_draining() {
        return Some("The server is shutting down.".into());
    }
    if let Err(e) = inst.store.ping().await {
        inst.metrics.database_error("readiness");
        return Some(format!("The database is not reachable: {e}"));
    }
    match inst.store.migrations_applied().await {
        Ok(true) => None,
        Ok(false) => Some("The database's migrations are not all applied.".into()),
        Err(e) => {
            inst.metrics.database_error("readiness");
            Some(format!("The database's migrations could not be read: {e}"))
        }
    }
}
