//! Which schema migrations older nodes survive, for upgrades one node at a
//! time.
//!
//! During a rolling upgrade the first node on the new version migrates the
//! database while nodes on the old version still run. Each migration says
//! in its own text whether that is safe: a line `-- Safe with older nodes
//! still running` (it only adds what older nodes neither read nor write), or
//! `-- Not safe with older nodes running`. One that says nothing counts as
//! not safe. A node refuses to apply a migration that is not safe while
//! other nodes are alive, naming them, rather than break them mid-task.

use crate::dialect::Backend;
use crate::{Result, StoreError};
use sqlx::AnyPool;

/// The marker of a migration older nodes keep working under.
const SAFE: &str = "-- safe with older nodes still running";

/// A node not seen for this long is taken for gone (as the nodes API does).
const ALIVE_WITHIN_MS: i64 = 15_000;

/// Whether a migration's text says older nodes keep working under it.
pub fn safe_with_older_nodes(sql: &str) -> bool {
    sql.lines()
        .any(|line| line.trim().to_ascii_lowercase().starts_with(SAFE))
}

/// A migration waiting to be applied: version, description, text.
pub struct Pending<'a> {
    pub version: i64,
    pub description: &'a str,
    pub sql: &'a str,
}

/// The first pending migration that is not safe, with the live nodes it
/// would break, as the error that refuses the start; `Ok` when there is
/// none of either.
pub fn check(pending: &[Pending<'_>], live_nodes: &[(String, String)]) -> Result<()> {
    let Some(unsafe_one) = pending.iter().find(|m| !safe_with_older_nodes(m.sql)) else {
        return Ok(());
    };
    if live_nodes.is_empty() {
        return Ok(());
    }
    let nodes = live_nodes
        .iter()
        .map(|(name, version)| format!("{name} (version {version})"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(StoreError::UnsafeWithOlderNodes {
        version: unsafe_one.version,
        description: unsafe_one.description.to_owned(),
        nodes,
    })
}

/// The nodes seen within [`ALIVE_WITHIN_MS`] that did not stop cleanly, by
/// name with their version; none where there is no nodes table yet.
pub async fn live_nodes(pool: &AnyPool, backend: Backend) -> Result<Vec<(String, String)>> {
    if backend != Backend::Postgres {
        // One node only: the data directory's lock sees to it.
        return Ok(Vec::new());
    }
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name = 'server_nodes'",
    )
    .fetch_one(pool)
    .await?;
    if tables == 0 {
        return Ok(Vec::new());
    }
    let now = backend.now_millis();
    Ok(sqlx::query_as(&format!(
        "SELECT name, version FROM server_nodes \
         WHERE stopped = 0 AND last_seen >= {now} - $1 ORDER BY name"
    ))
    .bind(ALIVE_WITHIN_MS)
    .fetch_all(pool)
    .await?)
}

impl crate::Store {
    /// The nodes a migration that is not safe would break, as [`check`]
    /// reads them at start.
    pub async fn nodes_alive(&self) -> Result<Vec<(String, String)>> {
        live_nodes(&self.pool, self.backend).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending<'a>(version: i64, sql: &'a str) -> Pending<'a> {
        Pending {
            version,
            description: "a change",
            sql,
        }
    }

    fn node(name: &str) -> (String, String) {
        (name.to_owned(), "0.1.0".to_owned())
    }

    #[test]
    fn a_migration_says_it_is_safe_or_counts_as_not() {
        assert!(safe_with_older_nodes(
            "-- A new table.\n-- Safe with older nodes still running: they never read it.\nCREATE TABLE t (a TEXT);"
        ));
        assert!(!safe_with_older_nodes("CREATE TABLE t (a TEXT);"));
        assert!(!safe_with_older_nodes(
            "-- Not safe with older nodes running: they write the old column.\nALTER TABLE t DROP COLUMN a;"
        ));
    }

    #[test]
    fn an_unsafe_migration_is_refused_only_while_other_nodes_live() {
        let safe = "-- Safe with older nodes still running.\nCREATE TABLE a (x TEXT);";
        let not = "ALTER TABLE a DROP COLUMN x;";
        let nodes = [node("n1"), node("n2")];
        assert!(check(&[pending(1, safe)], &nodes).is_ok());
        assert!(check(&[pending(1, safe), pending(2, not)], &[]).is_ok());
        let refused = check(&[pending(1, safe), pending(2, not)], &nodes)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("migration 2 (a change)"), "{refused}");
        assert!(
            refused.contains("n1 (version 0.1.0), n2 (version 0.1.0)"),
            "{refused}"
        );
    }

    /// Every migration shipped since nodes exist says which it is, so the
    /// check above reads an intention, never a default.
    #[test]
    fn every_migration_since_nodes_exist_says_whether_older_nodes_survive_it() {
        let first_with_nodes = 20261231000005;
        for m in crate::MIGRATOR
            .iter()
            .filter(|m| m.version >= first_with_nodes)
        {
            let says = m.sql.lines().any(|line| {
                let line = line.trim().to_ascii_lowercase();
                line.starts_with(SAFE) || line.starts_with("-- not safe with older nodes")
            });
            assert!(
                says,
                "migration {} ({}) must say whether it is safe with older nodes still running",
                m.version, m.description
            );
        }
    }
}
