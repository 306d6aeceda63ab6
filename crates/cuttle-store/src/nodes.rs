//! Server nodes and the cluster's leader lease.
//!
//! Every `cuttle server` on a database keeps a row in `server_nodes`: it
//! registers at start, heartbeats, and marks itself stopped when it stops
//! cleanly. One node at a time holds the `leader` row of `cluster_leases`
//! and runs the cluster-wide jobs. Every time here is the database's clock
//! ([`Backend::now_millis`]), so nodes with clocks that disagree still
//! agree on who was seen when and whose lease lapsed.

use crate::{Backend, Result, Store, StoreError};
use cuttle_model::server_node::node_id;
use sqlx::any::AnyRow;
use sqlx::Row;

/// The lease that makes a node the leader.
pub const LEADER_LEASE: &str = "leader";

/// A node's row, with how many tasks it is running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRow {
    pub id: String,
    pub name: String,
    pub max_concurrent_tasks: i64,
    pub is_in_maintenance_mode: bool,
    pub started_at: i64,
    /// Milliseconds since the epoch on the database's clock.
    pub last_seen: i64,
    pub stopped: bool,
    pub clock_skew_ms: i64,
    pub version: String,
    pub running_tasks: i64,
}

/// What an operator may change on a node; `None` leaves it as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeChange {
    pub max_concurrent_tasks: Option<i64>,
    pub is_in_maintenance_mode: Option<bool>,
}

/// Every node, and who leads, read at one moment of the database's clock.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub nodes: Vec<NodeRow>,
    /// The leader lease's holder, while its lease runs.
    pub leader: Option<String>,
    pub now: i64,
}

/// Running tasks of a node, read through the small partial index of
/// running tasks.
const NODE_COLUMNS: &str =
    "n.id, n.name, n.max_concurrent_tasks, n.is_in_maintenance_mode, n.started_at, \
    n.last_seen, n.stopped, n.clock_skew_ms, n.version, \
    (SELECT COUNT(*) FROM server_tasks t WHERE t.state IN ('Executing', 'Cancelling') \
    AND t.server_node = n.name) AS running_tasks";

fn node_from_row(r: &AnyRow) -> Result<NodeRow> {
    Ok(NodeRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        max_concurrent_tasks: r.try_get("max_concurrent_tasks")?,
        is_in_maintenance_mode: r.try_get::<i64, _>("is_in_maintenance_mode")? != 0,
        started_at: r.try_get("started_at")?,
        last_seen: r.try_get("last_seen")?,
        stopped: r.try_get::<i64, _>("stopped")? != 0,
        clock_skew_ms: r.try_get("clock_skew_ms")?,
        version: r.try_get("version")?,
        running_tasks: r.try_get("running_tasks")?,
    })
}

impl Store {
    /// The database's clock now, in milliseconds since the epoch.
    pub async fn database_now(&self) -> Result<i64> {
        let sql = format!("SELECT {}", self.backend().now_millis());
        let (now,): (i64,) = sqlx::query_as(&sql).fetch_one(self.pool()).await?;
        Ok(now)
    }

    /// Registers the node `name` as started, or marks it started again.
    /// The task cap is the one it starts with; a node drained before it
    /// stopped stays drained (a rolling upgrade undrains it by hand).
    pub async fn register_node(
        &self,
        name: &str,
        max_concurrent_tasks: i64,
        version: &str,
    ) -> Result<NodeRow> {
        let now = self.backend().now_millis();
        sqlx::query(&format!(
            "INSERT INTO server_nodes (id, name, max_concurrent_tasks, is_in_maintenance_mode, started_at, \
             last_seen, stopped, clock_skew_ms, version) VALUES ($1, $2, $3, 0, {now}, {now}, 0, 0, $4) \
             ON CONFLICT (name) DO UPDATE SET max_concurrent_tasks = excluded.max_concurrent_tasks, \
             started_at = excluded.started_at, last_seen = excluded.last_seen, stopped = 0, \
             version = excluded.version"
        ))
        .bind(node_id(name))
        .bind(name)
        .bind(max_concurrent_tasks)
        .bind(version)
        .execute(self.pool())
        .await?;
        self.require_node(&node_id(name)).await
    }

    /// Records that `name` is alive, with its clock's skew from the
    /// database's; returns its row (an operator may have changed its cap or
    /// drained it through another node), or `None` if the row was removed.
    pub async fn heartbeat_node(&self, name: &str, clock_skew_ms: i64) -> Result<Option<NodeRow>> {
        let now = self.backend().now_millis();
        let r = sqlx::query(&format!(
            "UPDATE server_nodes SET last_seen = {now}, stopped = 0, clock_skew_ms = $1 WHERE name = $2"
        ))
        .bind(clock_skew_ms)
        .bind(name)
        .execute(self.pool())
        .await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        self.node(&node_id(name)).await
    }

    /// Records that `name` stopped cleanly.
    pub async fn node_stopped(&self, name: &str) -> Result<()> {
        let now = self.backend().now_millis();
        sqlx::query(&format!(
            "UPDATE server_nodes SET stopped = 1, last_seen = {now} WHERE name = $1"
        ))
        .bind(name)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn node(&self, id: &str) -> Result<Option<NodeRow>> {
        let row = sqlx::query(&format!(
            "SELECT {NODE_COLUMNS} FROM server_nodes n WHERE n.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(node_from_row).transpose()
    }

    pub async fn require_node(&self, id: &str) -> Result<NodeRow> {
        self.node(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("The server node '{id}'")))
    }

    /// Every node by name, who leads, and the database's time.
    pub async fn cluster(&self) -> Result<Cluster> {
        let mut conn = self.pool().acquire().await?;
        let now = self.backend().now_millis();
        let (now,): (i64,) = sqlx::query_as(&format!("SELECT {now}"))
            .fetch_one(&mut *conn)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {NODE_COLUMNS} FROM server_nodes n ORDER BY n.name"
        ))
        .fetch_all(&mut *conn)
        .await?;
        let leader: Option<(String,)> = sqlx::query_as(
            "SELECT holder FROM cluster_leases WHERE name = $1 AND expires_at >= $2",
        )
        .bind(LEADER_LEASE)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(Cluster {
            nodes: rows.iter().map(node_from_row).collect::<Result<_>>()?,
            leader: leader.map(|l| l.0),
            now,
        })
    }

    /// Changes a node's cap or maintenance mode; the node applies it at
    /// its next heartbeat.
    pub async fn change_node(&self, id: &str, change: &NodeChange) -> Result<NodeRow> {
        let r = sqlx::query(
            "UPDATE server_nodes SET max_concurrent_tasks = COALESCE($1, max_concurrent_tasks), \
             is_in_maintenance_mode = COALESCE($2, is_in_maintenance_mode) WHERE id = $3",
        )
        .bind(change.max_concurrent_tasks)
        .bind(change.is_in_maintenance_mode.map(i64::from))
        .bind(id)
        .execute(self.pool())
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("The server node '{id}'")));
        }
        self.require_node(id).await
    }

    /// Removes a node that is offline: stopped cleanly, or not seen for
    /// `offline_after_ms`. A node that is online is refused (it would
    /// register again at its next heartbeat anyway).
    pub async fn delete_offline_node(&self, id: &str, offline_after_ms: i64) -> Result<()> {
        let now = self.backend().now_millis();
        let r = sqlx::query(&format!(
            "DELETE FROM server_nodes WHERE id = $1 AND (stopped = 1 OR last_seen < {now} - $2)"
        ))
        .bind(id)
        .bind(offline_after_ms)
        .execute(self.pool())
        .await?;
        if r.rows_affected() > 0 {
            return Ok(());
        }
        match self.node(id).await? {
            Some(n) => Err(StoreError::Conflict(format!(
                "The server node '{}' is online; only a node that is offline can be deleted \
                 (stop it first)",
                n.name
            ))),
            None => Err(StoreError::NotFound(format!("The server node '{id}'"))),
        }
    }

    /// Takes or renews the lease `lease` for `node` for `lease_ms` of the
    /// database's clock: granted when the node holds it already or when
    /// its holder's lease lapsed. Returns the lease's generation when
    /// granted (it grows each time the lease changes hands), `None` when
    /// another node holds it. On SQLite there is one node (the data
    /// directory's lock sees to it), so the lease is always granted: a
    /// node renamed across a restart does not wait for its old name's lease.
    pub async fn take_lease(&self, lease: &str, node: &str, lease_ms: i64) -> Result<Option<i64>> {
        let now = self.backend().now_millis();
        let lapsed = match self.backend() {
            Backend::Sqlite => "1 = 1".to_owned(),
            Backend::Postgres => format!("cluster_leases.expires_at < {now}"),
        };
        let row: Option<(i64,)> = sqlx::query_as(&format!(
            "INSERT INTO cluster_leases (name, holder, generation, expires_at) VALUES ($1, $2, 1, {now} + $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             generation = cluster_leases.generation + CASE WHEN cluster_leases.holder = excluded.holder THEN 0 ELSE 1 END, \
             expires_at = excluded.expires_at \
             WHERE cluster_leases.holder = excluded.holder OR {lapsed} \
             RETURNING generation"
        ))
        .bind(lease)
        .bind(node)
        .bind(lease_ms)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.0))
    }

    /// Gives the lease up at once, if `node` holds it, so that another node
    /// takes it at its next try instead of after the lease.
    pub async fn release_lease(&self, lease: &str, node: &str) -> Result<()> {
        sqlx::query("UPDATE cluster_leases SET expires_at = 0 WHERE name = $1 AND holder = $2")
            .bind(lease)
            .bind(node)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
