//! Server nodes: the `cuttle server` processes that share one database, as
//! the API shows them, and the rules for naming and changing one.

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// Octopus's names for a node's place in the cluster.
pub const LEADER: &str = "Leader";
pub const FOLLOWER: &str = "Follower";

/// The most tasks one node may be told to run at once.
pub const MOST_CONCURRENT_TASKS: i64 = 1000;

/// A node as the API shows it (Octopus's `OctopusServerNodeResource`, with
/// the running task count of its summary and Cuttle's clock check).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ServerNode {
    /// `OctopusServerNodes-<name>`.
    pub id: String,
    pub name: String,
    /// When the node last heartbeat, on the database's clock.
    pub last_seen: Timestamp,
    /// `Leader` or `Follower`.
    pub rank: String,
    pub is_leader: bool,
    /// Stopped cleanly, or silent for longer than the cluster allows.
    pub is_offline: bool,
    pub max_concurrent_tasks: i64,
    /// Draining: it finishes what it runs and takes nothing new.
    pub is_in_maintenance_mode: bool,
    pub running_task_count: i64,
    /// The node's clock minus the database's at its last heartbeat.
    pub clock_skew_milliseconds: i64,
    /// The skew is over the threshold the node warns at.
    pub is_clock_skewed: bool,
    /// The Cuttle version the node runs.
    pub version: String,
}

/// A node's id from its name.
pub fn node_id(name: &str) -> String {
    format!("OctopusServerNodes-{name}")
}

/// Why a node name cannot be used, if it cannot: it goes into ids and
/// URLs, so it keeps to letters, digits, `.`, `_` and `-`.
pub fn invalid_node_name(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 100 {
        return Some(format!(
            "The node name '{name}' must be 1 to 100 characters long"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Some(format!(
            "The node name '{name}' may hold only letters, digits, '.', '_' and '-'"
        ));
    }
    None
}

/// Why a requested task cap cannot be used, if it cannot.
pub fn invalid_task_cap(n: i64) -> Option<String> {
    (!(1..=MOST_CONCURRENT_TASKS).contains(&n)).then(|| {
        format!(
            "MaxConcurrentTasks must be between 1 and {MOST_CONCURRENT_TASKS} (drain a node with \
             IsInMaintenanceMode to stop it taking work), not {n}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_to_safe_characters() {
        assert!(invalid_node_name("node-1.example_a").is_none());
        assert!(invalid_node_name("").is_some());
        assert!(invalid_node_name("a/b").is_some());
        assert!(invalid_node_name("a b").is_some());
        assert!(invalid_node_name(&"x".repeat(101)).is_some());
    }

    #[test]
    fn task_caps_are_bounded() {
        assert!(invalid_task_cap(1).is_none());
        assert!(invalid_task_cap(MOST_CONCURRENT_TASKS).is_none());
        assert!(invalid_task_cap(0).is_some());
        assert!(invalid_task_cap(-3).is_some());
        assert!(invalid_task_cap(MOST_CONCURRENT_TASKS + 1).is_some());
    }
}
