//! Scheduled health checks: each machine policy's `HealthCheckInterval`
//! queues a `Health` task for the machines and workers that use it, so a
//! deployment sees recent health (and fails fast on an unavailable target)
//! without anyone asking.
//!
//! Only the cluster's leader queues them. The schedule is kept in memory by
//! the leader: after a restart, or when another node takes the lead, each
//! policy's first check comes one interval later.

use crate::instance::Instance;
use cuttle_model::machine::AgentMachine;
use cuttle_model::machine_policy::parse_timespan;
use cuttle_model::{Machine, MachinePolicy, User, Worker};
use cuttle_store::DocumentQuery;
use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;
use tokio::time::Instant;

/// How often the schedule is looked at (one read of the policies); no
/// policy is checked more often, so a typo cannot flood the queue.
const TICK: Duration = Duration::from_secs(5);

/// Follows the schedule for as long as the instance lives.
pub(crate) fn follow(inst: Weak<Instance>) {
    tokio::spawn(async move {
        let mut last_run: HashMap<String, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inst) = inst.upgrade() else {
                return;
            };
            if !inst.is_leader() {
                // A schedule kept while following would be stale on taking the lead.
                last_run.clear();
                continue;
            }
            if let Err(e) = queue_due(&inst, &mut last_run).await {
                tracing::warn!(error = %e, "could not queue scheduled health checks");
            }
        }
    });
}

async fn queue_due(inst: &Instance, last_run: &mut HashMap<String, Instant>) -> crate::Result<()> {
    let all = DocumentQuery::default();
    let policies = inst.store.list::<MachinePolicy>(&all).await?.items;
    let now = Instant::now();
    let mut due = vec![];
    for policy in policies {
        let Ok(interval) =
            parse_timespan(&policy.machine_health_check_policy.health_check_interval)
        else {
            continue;
        };
        // First seen: the first check is one interval from now.
        let last = *last_run.entry(policy.id.clone()).or_insert(now);
        if now.duration_since(last) >= interval {
            last_run.insert(policy.id.clone(), now);
            due.push(policy);
        }
    }
    if due.is_empty() {
        return Ok(());
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
    Ok(())
}
