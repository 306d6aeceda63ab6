//! Feed retention: package versions that no release deploys, published
//! longer ago than the server's retention period, are removed (their files
//! go once no other version shares them). A version a release uses is never
//! removed, however old.

use crate::instance::Instance;
use crate::job_times::JobTimes;
use crate::packages::{delete_package, releases_using};
use crate::{Result, ServiceError};
use cuttle_model::package::Package;
use cuttle_model::{Space, Timestamp, User};
use cuttle_store::packages::PackageQuery;
use cuttle_store::DocumentQuery;
use std::sync::Weak;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often retention is applied when the server keeps packages for a
/// limited time.
const EVERY: Duration = Duration::from_secs(3600);

/// Removes, in every space, the versions published more than `keep_for`
/// ago that no release deploys; returns them.
pub async fn apply(inst: &Instance, keep_for: Duration) -> Result<Vec<Package>> {
    let cutoff_millis = i64::try_from(keep_for.as_millis()).unwrap_or(i64::MAX);
    let cutoff = Timestamp::now().add_millis(-cutoff_millis);
    let system = crate::actor::Actor::from(User {
        id: "system".into(),
        username: "system".into(),
        is_service: true,
        ..Default::default()
    });
    let spaces = inst
        .store
        .list::<Space>(&DocumentQuery::default())
        .await?
        .items;
    let mut removed = vec![];
    for space in spaces {
        let packages = inst
            .store
            .packages(&PackageQuery {
                space_id: space.id.clone(),
                ..Default::default()
            })
            .await?;
        for package in packages {
            let old = package.published.is_some_and(|p| p < cutoff);
            if !old || !releases_using(&inst.store, &package).await?.is_empty() {
                continue;
            }
            match delete_package(inst, &system, &space.id, &package.id).await {
                Ok(()) => removed.push(package),
                // A release picked it meanwhile: it stays, as it should.
                Err(ServiceError::Conflict(_)) | Err(ServiceError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    if !removed.is_empty() {
        tracing::info!(
            count = removed.len(),
            "feed retention removed package versions"
        );
    }
    Ok(removed)
}

/// Applies retention hourly, on the cluster's leader only, until the
/// instance is closed or gone; the first time at once, or an hour after
/// the last time `jobs` recorded.
pub(crate) fn follow(
    inst: Weak<Instance>,
    keep_for: Duration,
    jobs: JobTimes,
    stopping: CancellationToken,
) {
    tokio::spawn(async move {
        let first = jobs
            .lock()
            .retention
            .map_or_else(Instant::now, |last| last + EVERY);
        let mut tick = tokio::time::interval_at(first, EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopping.cancelled() => return,
            }
            let Some(inst) = inst.upgrade() else {
                return;
            };
            if !inst.is_leader() {
                continue;
            }
            jobs.lock().retention = Some(Instant::now());
            if let Err(e) = apply(&inst, keep_for).await {
                tracing::warn!(error = %e, "feed retention could not be applied");
            }
        }
    });
}

/// When retention is next applied, for a server that keeps packages for
/// a limited time.
pub(crate) fn next_due(jobs: &JobTimes) -> Instant {
    jobs.lock()
        .retention
        .map_or_else(Instant::now, |last| last + EVERY)
}
