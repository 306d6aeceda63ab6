//! Scheduled health checks: each machine policy's `HealthCheckInterval`
//! queues a `Health` task for the machines and workers that use it, so a
//! deployment sees recent health (and fails fast on an unavailable target)
//! without anyone asking.
//!
//! Only the cluster's leader queues them. The schedule is kept in memory by
//! the leader: after a restart, or when another node takes the lead, each
//! policy's first check comes one interval later. An installation that a
//! host closes while idle keeps its schedule in its [`JobTimes`].

use crate::instance::Instance;
use crate::job_times::JobTimes;
use cuttle_model::machine::AgentMachine;
use cuttle_model::machine_policy::parse_timespan;
use cuttle_model::{Machine, MachinePolicy, User, Worker};
use cuttle_store::DocumentQuery;
use cuttle_store::Store;
use std::sync::Weak;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the schedule is looked at (one read of the policies) where
/// other nodes share the database; no policy is checked more often, so a
/// typo cannot flood the queue.
const TICK: Duration = Duration::from_secs(5);
/// Where no other node does (see [`Instance::is_sole_node`]), the schedule
/// is looked at when the next check is due, or when a machine, worker or
/// policy changes here; this look is only a safety net.
const SOLE_NODE_LOOK: Duration = Duration::from_secs(60);

/// Follows the schedule until the instance is closed or gone.
pub(crate) fn follow(inst: Weak<Instance>, jobs: JobTimes, stopping: CancellationToken) {
    tokio::spawn(async move {
        // The first look at once; none sooner than TICK after the last.
        let mut last: Option<(Instant, Duration, Store, u64)> = None;
        loop {
            if let Some((at, wait, store, seen)) = last.take() {
                tokio::select! {
                    _ = tokio::time::sleep_until(at + TICK) => {}
                    _ = stopping.cancelled() => return,
                }
                if wait > TICK {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at + wait) => {}
                        _ = store.infrastructure_changed_since(seen) => {}
                        _ = stopping.cancelled() => return,
                    }
                }
            }
            let at = Instant::now();
            let Some(inst) = inst.upgrade() else {
                return;
            };
            let store = inst.store.clone();
            // Changes from here on are after this look.
            let seen = store.infrastructure_seen();
            if !inst.is_leader() {
                // A schedule kept while following would be stale on taking the lead.
                jobs.lock().health.clear();
                last = Some((at, TICK, store, seen));
                continue;
            }
            let wait = match queue_due(&inst, &jobs).await {
                Ok(next) if inst.is_sole_node() => next
                    .map_or(SOLE_NODE_LOOK, |due| due.saturating_duration_since(at))
                    .clamp(TICK, SOLE_NODE_LOOK),
                Ok(_) => TICK,
                Err(e) => {
                    tracing::warn!(error = %e, "could not queue scheduled health checks");
                    TICK
                }
            };
            last = Some((at, wait, store, seen));
        }
    });
}

/// Each policy's interval, for the policies that some enabled machine or
/// worker uses (a check of no one is never queued).
async fn policies_in_use(store: &Store) -> crate::Result<Vec<(MachinePolicy, Duration)>> {
    let all = DocumentQuery::default();
    let policies = store.list::<MachinePolicy>(&all).await?.items;
    let machines = store.list::<Machine>(&all).await?.items;
    let workers = store.list::<Worker>(&all).await?.items;
    let used = |id: &str| {
        machines
            .iter()
            .any(|m| !m.is_disabled && m.machine_policy_id() == id)
            || workers
                .iter()
                .any(|w| !w.is_disabled && w.machine_policy_id() == id)
    };
    Ok(policies
        .into_iter()
        .filter(|p| used(&p.id))
        .filter_map(|p| {
            let interval =
                parse_timespan(&p.machine_health_check_policy.health_check_interval).ok()?;
            Some((p, interval))
        })
        .collect())
}

/// When the next scheduled health check is due, if any machine or worker
/// is checked at all; a policy not seen before counts from now.
pub(crate) async fn next_due(store: &Store, jobs: &JobTimes) -> crate::Result<Option<Instant>> {
    let policies = policies_in_use(store).await?;
    let now = Instant::now();
    let mut times = jobs.lock();
    Ok(policies
        .iter()
        .map(|(policy, interval)| *times.health.entry(policy.id.clone()).or_insert(now) + *interval)
        .min())
}

/// Queues the checks that are due; answers when the next policy falls due.
async fn queue_due(inst: &Instance, jobs: &JobTimes) -> crate::Result<Option<Instant>> {
    let all = DocumentQuery::default();
    let policies = inst.store.list::<MachinePolicy>(&all).await?.items;
    let now = Instant::now();
    let mut due = vec![];
    let mut next: Option<Instant> = None;
    {
        let mut times = jobs.lock();
        for policy in policies {
            let Ok(interval) =
                parse_timespan(&policy.machine_health_check_policy.health_check_interval)
            else {
                continue;
            };
            // First seen: the first check is one interval from now.
            let last = *times.health.entry(policy.id.clone()).or_insert(now);
            let last = if now.duration_since(last) >= interval {
                times.health.insert(policy.id.clone(), now);
                due.push(policy);
                now
            } else {
                last
            };
            next = next.into_iter().chain([last + interval]).min();
        }
    }
    if due.is_empty() {
        return Ok(next);
    }
    let machines = inst.store.list::<Machine>(&all).await?.items;
    let workers = inst.store.list::<Worker>(&all).await?.items;
    let system = crate::actor::Actor::from(User {
        id: "system".into(),
        username: "system".into(),
        is_service: true,
        ..Default::default()
    });
    for policy in due {
        let uses = |m: &dyn AgentMachine| m.machine_policy_id() == policy.id;
        let machine_ids: Vec<String> = machines
            .iter()
            .filter(|m| !m.is_disabled && uses(*m))
            .map(|m| m.id.clone())
            .collect();
        let worker_ids: Vec<String> = workers
            .iter()
            .filter(|w| !w.is_disabled && uses(*w))
            .map(|w| w.id.clone())
            .collect();
        if machine_ids.is_empty() && worker_ids.is_empty() {
            continue;
        }
        let task =
            crate::tasks::queue_health(inst, &system, &policy.space_id, machine_ids, worker_ids)
                .await?;
        tracing::info!(task = %task.id, policy = %policy.name, "scheduled health check queued");
    }
    Ok(next)
}
