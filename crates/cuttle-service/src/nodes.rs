//! This server as one node of a cluster on one database: it registers at
//! start, heartbeats, takes or renews the leader lease, applies what an
//! operator changed on its row (a task cap, maintenance mode) through any
//! node, checks its clock against the database's, and marks itself stopped
//! when it stops cleanly. Also the node commands the API serves.
//!
//! The leader is chosen with a lease row (`cluster_leases`) taken by one
//! conditional write on the database's clock, rather than a PostgreSQL
//! advisory lock held on a connection: the same code runs on SQLite, any
//! node can read who leads (the API's `Rank`), the handover time is the
//! lease and not however long PostgreSQL takes to notice a dead
//! connection (a partitioned node's session can linger for minutes), and
//! its generation is a fencing token for work handed from node to node.
//! A leader also stops calling itself leader when its lease runs out on
//! its own monotonic clock, even if it cannot reach the database to learn
//! that it lost it.

use crate::instance::{Instance, CUTTLE_VERSION};
use crate::{Result, ServiceError};
use cuttle_model::server_node::{
    invalid_node_name, invalid_task_cap, node_id, ServerNode, FOLLOWER, LEADER,
};
use cuttle_model::Timestamp;
use cuttle_store::nodes::{Cluster, NodeChange, NodeRow, LEADER_LEASE};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How this node takes part in the cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// How often the node heartbeats and renews its leader lease.
    pub heartbeat: Duration,
    /// How long the leader lease lasts without a renewal: the longest a
    /// dead leader's jobs wait for another node.
    pub leader_lease: Duration,
    /// A node not seen for this long is offline.
    pub offline_after: Duration,
    /// A clock further than this from the database's is warned about.
    pub clock_skew_warning: Duration,
    /// How often a node that no other shares its database with (see
    /// [`crate::instance::InstanceConfig::sole_node`]) heartbeats: no
    /// other node reads its heartbeats or could take the lead, so it
    /// renews its row seldom, with a leader lease three times as long, and
    /// freshly whenever the nodes API is read.
    pub sole_heartbeat: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            heartbeat: Duration::from_secs(2),
            leader_lease: Duration::from_secs(6),
            offline_after: Duration::from_secs(15),
            clock_skew_warning: Duration::from_secs(5),
            sole_heartbeat: Duration::from_secs(60),
        }
    }
}

/// This node's view of itself in the cluster.
#[derive(Debug, Default)]
pub struct NodeState {
    /// Until when (on this process's monotonic clock) this node may act as
    /// the leader: the moment before its last successful take of the lease,
    /// plus the lease.
    leader_until: Mutex<Option<Instant>>,
    /// The generation of the leader lease this node last held.
    leader_generation: AtomicI64,
    /// This clock minus the database's, at the last heartbeat.
    clock_skew_ms: AtomicI64,
    /// Set once the node has recorded that it stopped: no more heartbeats.
    left: AtomicBool,
    /// When its last heartbeat began.
    last_beat: Mutex<Option<Instant>>,
}

impl NodeState {
    pub fn is_leader(&self) -> bool {
        let until = *self.leader_until.lock().unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|u| Instant::now() < u)
    }

    pub fn leader_generation(&self) -> i64 {
        self.leader_generation.load(Ordering::SeqCst)
    }

    pub fn clock_skew_ms(&self) -> i64 {
        self.clock_skew_ms.load(Ordering::SeqCst)
    }

    fn set_leader_until(&self, until: Option<Instant>) {
        *self.leader_until.lock().unwrap_or_else(|p| p.into_inner()) = until;
    }
}

/// Refuses a node name that cannot be used, before anything is opened.
pub fn check_node_name(name: &str) -> Result<()> {
    match invalid_node_name(name) {
        Some(why) => Err(ServiceError::Internal(format!("--node-name: {why}"))),
        None => Ok(()),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Registers this node, tries for the leader lease once (so a single node
/// leads from its first moment), and starts heartbeating.
pub(crate) async fn join(inst: &std::sync::Arc<Instance>) -> Result<()> {
    let name = &inst.config.node_name;
    let cap = i64::try_from(capped(inst, inst.config.max_concurrent_tasks)).unwrap_or(i64::MAX);
    let row = inst.store.register_node(name, cap, CUTTLE_VERSION).await?;
    apply(inst, &row);
    beat(inst).await;
    let weak = std::sync::Arc::downgrade(inst);
    let every = match inst.is_sole_node() {
        true => inst.config.cluster.sole_heartbeat,
        false => inst.config.cluster.heartbeat,
    };
    let stopping = inst.stopping.clone();
    tokio::spawn(async move { heartbeat(weak, every, stopping).await });
    Ok(())
}

async fn heartbeat(
    inst: Weak<Instance>,
    every: Duration,
    stopping: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopping.cancelled() => return,
        }
        let Some(inst) = inst.upgrade() else {
            return;
        };
        if inst.node.left.load(Ordering::SeqCst) {
            return;
        }
        beat(&inst).await;
    }
}

/// One heartbeat: the clock check, the node's row, the leader lease.
async fn beat(inst: &Instance) {
    let name = &inst.config.node_name;
    let state = &inst.node;
    let before = Timestamp::now().millis();
    let asked = Instant::now();
    *state.last_beat.lock().unwrap_or_else(|p| p.into_inner()) = Some(asked);
    let skew = match inst.store.database_now().await {
        Ok(db) => {
            // The database read its clock somewhere between our two reads.
            let after = Timestamp::now().millis();
            let skew = before + (after - before) / 2 - db;
            state.clock_skew_ms.store(skew, Ordering::SeqCst);
            inst.metrics
                .node_clock_skew_seconds
                .set(skew as f64 / 1000.0);
            if skew.unsigned_abs() > inst.config.cluster.clock_skew_warning.as_millis() as u64 {
                tracing::warn!(
                    skew_ms = skew,
                    "this node's clock is {} ms off the database's; leases and heartbeats \
                     use the database's clock, but times this node writes are off",
                    skew
                );
            }
            skew
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the database's clock");
            state.clock_skew_ms()
        }
    };
    if state.left.load(Ordering::SeqCst) {
        // Stopped meanwhile: a heartbeat now would mark it started again.
        return;
    }
    match inst.store.heartbeat_node(name, skew).await {
        Ok(Some(row)) => apply(inst, &row),
        // Deleted while it was offline (a long pause): it is back.
        Ok(None) => {
            let cap = i64::try_from(inst.runner.capacity()).unwrap_or(i64::MAX);
            match inst.store.register_node(name, cap, CUTTLE_VERSION).await {
                Ok(row) => apply(inst, &row),
                Err(e) => tracing::warn!(error = %e, "could not register this node again"),
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not record this node's heartbeat"),
    }
    let lease = match inst.is_sole_node() {
        // Outlasts the time to its next heartbeat, however seldom.
        true => inst
            .config
            .cluster
            .leader_lease
            .max(inst.config.cluster.sole_heartbeat * 3),
        false => inst.config.cluster.leader_lease,
    };
    if inst.is_draining() {
        // Shutting down: let another node lead now rather than after the
        // lease, while this one finishes its tasks (and still heartbeats).
        if state.is_leader() {
            state.set_leader_until(None);
            if let Err(e) = inst.store.release_lease(LEADER_LEASE, name).await {
                tracing::warn!(error = %e, "could not give up the leader lease");
            }
        }
        return;
    }
    match inst
        .store
        .take_lease(LEADER_LEASE, name, millis(lease))
        .await
    {
        Ok(Some(generation)) => {
            let was = state.is_leader();
            state.set_leader_until(Some(asked + lease));
            state.leader_generation.store(generation, Ordering::SeqCst);
            if !was {
                tracing::info!(generation, "this node leads the cluster");
            }
        }
        Ok(None) => {
            if state.is_leader() {
                tracing::warn!("another node leads the cluster now");
            }
            state.set_leader_until(None);
        }
        // Unsure: it stays leader only until its lease runs out.
        Err(e) => tracing::warn!(error = %e, "could not renew the leader lease"),
    }
}

/// Applies the operator's settings on this node's row to its runner.
fn apply(inst: &Instance, row: &NodeRow) {
    inst.runner.set_capacity(capped(
        inst,
        usize::try_from(row.max_concurrent_tasks).unwrap_or(1),
    ));
    inst.runner.set_draining(row.is_in_maintenance_mode);
}

/// `wanted` within the host's cap, where the instance runs on a host.
fn capped(inst: &Instance, wanted: usize) -> usize {
    match inst.hosted_task_cap.load(Ordering::SeqCst) {
        0 => wanted,
        cap => wanted.min(cap),
    }
}

/// Sets the host's cap on this instance's concurrent tasks, and its node's
/// cap to it, applied at once.
pub async fn set_hosted_task_cap(inst: &Instance, cap: usize) -> Result<()> {
    if let Some(why) = invalid_task_cap(i64::try_from(cap).unwrap_or(i64::MAX)) {
        return Err(ServiceError::bad_request(why));
    }
    inst.hosted_task_cap.store(cap, Ordering::SeqCst);
    let id = node_id(&inst.config.node_name);
    let row = inst
        .store
        .change_node(
            &id,
            &NodeChange {
                max_concurrent_tasks: Some(i64::try_from(cap).unwrap_or(i64::MAX)),
                is_in_maintenance_mode: None,
            },
        )
        .await?;
    apply(inst, &row);
    Ok(())
}

/// Gives up the leader lease and records that this node stopped cleanly.
pub async fn leave(inst: &Instance) {
    let name = &inst.config.node_name;
    inst.node.left.store(true, Ordering::SeqCst);
    inst.node.set_leader_until(None);
    if let Err(e) = inst.store.release_lease(LEADER_LEASE, name).await {
        tracing::warn!(error = %e, "could not give up the leader lease");
    }
    if let Err(e) = inst.store.node_stopped(name).await {
        tracing::warn!(error = %e, "could not record that this node stopped");
    }
}

/// A sole node heartbeats seldom (see [`ClusterConfig::sole_heartbeat`]):
/// before its row is shown, it beats if its last beat is older than a
/// shared node's would be, so the API shows it as one that beats often.
async fn beat_if_stale(inst: &Instance) {
    if !inst.is_sole_node() || inst.node.left.load(Ordering::SeqCst) {
        return;
    }
    let last = *inst
        .node
        .last_beat
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if last.is_none_or(|at| at.elapsed() >= inst.config.cluster.heartbeat) {
        beat(inst).await;
    }
}

/// Every node as the API shows it.
pub async fn list(inst: &Instance) -> Result<Vec<ServerNode>> {
    beat_if_stale(inst).await;
    let cluster = inst.store.cluster().await?;
    Ok(cluster
        .nodes
        .iter()
        .map(|n| resource(inst, &cluster, n))
        .collect())
}

pub async fn get(inst: &Instance, id: &str) -> Result<ServerNode> {
    beat_if_stale(inst).await;
    let cluster = inst.store.cluster().await?;
    cluster
        .nodes
        .iter()
        .find(|n| n.id == id)
        .map(|n| resource(inst, &cluster, n))
        .ok_or_else(|| ServiceError::NotFound(format!("The server node '{id}' was not found")))
}

/// What a client asks to change on a node (Octopus clients send the whole
/// resource back; the fields that cannot change must match).
#[derive(Clone, Debug, Default)]
pub struct NodeUpdate {
    pub name: Option<String>,
    pub max_concurrent_tasks: Option<i64>,
    pub is_in_maintenance_mode: Option<bool>,
}

/// Changes a node's cap or drains it; nothing changes if any part is
/// wrong. The node applies it at once if it is this one, else at its next
/// heartbeat.
pub async fn update(inst: &Instance, id: &str, change: NodeUpdate) -> Result<ServerNode> {
    let current = get(inst, id).await?;
    let mut errors = vec![];
    if let Some(name) = change.name.as_deref().filter(|n| *n != current.name) {
        errors.push(format!(
            "A node's Name is the name it runs with (--node-name) and cannot be changed here: \
             '{name}' is not '{}'",
            current.name
        ));
    }
    if let Some(why) = change.max_concurrent_tasks.and_then(invalid_task_cap) {
        errors.push(why);
    }
    let hosted = inst.hosted_task_cap.load(Ordering::SeqCst);
    if let Some(wanted) = change
        .max_concurrent_tasks
        .filter(|n| hosted > 0 && usize::try_from(*n).is_ok_and(|n| n > hosted))
    {
        errors.push(format!(
            "This instance's hosting allows at most {hosted} tasks at once; {wanted} is more"
        ));
    }
    if !errors.is_empty() {
        return Err(ServiceError::BadRequest {
            message: "The server node could not be changed".into(),
            errors,
        });
    }
    let row = inst
        .store
        .change_node(
            id,
            &NodeChange {
                max_concurrent_tasks: change.max_concurrent_tasks,
                is_in_maintenance_mode: change.is_in_maintenance_mode,
            },
        )
        .await?;
    if row.name == inst.config.node_name {
        apply(inst, &row);
    }
    tracing::info!(node = %row.name, cap = row.max_concurrent_tasks, draining = row.is_in_maintenance_mode, "server node changed");
    get(inst, id).await
}

/// Removes a node that is offline; one that is online is refused.
pub async fn delete(inst: &Instance, id: &str) -> Result<()> {
    if id == node_id(&inst.config.node_name) {
        return Err(ServiceError::Conflict(
            "This is the node that answered the request: it is online, and only a node that is \
             offline can be deleted"
                .into(),
        ));
    }
    inst.store
        .delete_offline_node(id, millis(inst.config.cluster.offline_after))
        .await?;
    Ok(())
}

fn resource(inst: &Instance, cluster: &Cluster, n: &NodeRow) -> ServerNode {
    let is_leader = cluster.leader.as_deref() == Some(n.name.as_str());
    let offline_after = millis(inst.config.cluster.offline_after);
    ServerNode {
        id: n.id.clone(),
        name: n.name.clone(),
        last_seen: Timestamp::from_millis(n.last_seen),
        rank: if is_leader { LEADER } else { FOLLOWER }.to_owned(),
        is_leader,
        is_offline: n.stopped || cluster.now - n.last_seen > offline_after,
        max_concurrent_tasks: n.max_concurrent_tasks,
        is_in_maintenance_mode: n.is_in_maintenance_mode,
        running_task_count: n.running_tasks,
        clock_skew_milliseconds: n.clock_skew_ms,
        is_clock_skewed: n.clock_skew_ms.unsigned_abs()
            > inst.config.cluster.clock_skew_warning.as_millis() as u64,
        version: n.version.clone(),
    }
}
