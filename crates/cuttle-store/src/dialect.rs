//! The one place where SQLite and PostgreSQL differ. Everything else in the
//! store is written once in SQL both accept.

/// The PostgreSQL channel a queued task is announced on.
pub const TASK_QUEUED_CHANNEL: &str = "cuttle_task_queued";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    /// Row locking for claiming queued work. PostgreSQL lets several server
    /// nodes claim different tasks at once without waiting on each other;
    /// SQLite has a single writer, so the claiming UPDATE is already exclusive.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// The database's clock, in milliseconds since the Unix epoch: node
    /// heartbeats and leases are measured on it, never on a node's clock.
    pub fn now_millis(self) -> &'static str {
        match self {
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// Tells every node listening that a task was queued, when the
    /// transaction commits. SQLite has one node, which wakes itself.
    pub fn notify_task_queued(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            // The channel is TASK_QUEUED_CHANNEL.
            Backend::Postgres => Some("SELECT pg_notify('cuttle_task_queued', '')"),
        }
    }

    /// A statement that holds a lock named by its one argument until the
    /// transaction ends, across server nodes: a claim takes the one of its
    /// project and environment (see [`crate::Store::claim_next_task`]).
    /// SQLite has one writer at a time anyway.
    pub fn pair_lock(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some("SELECT pg_advisory_xact_lock(hashtext($1))"),
        }
    }

    /// Locks a row read in a transaction until it commits, so two nodes
    /// answering the same thing at once cannot both act on it. SQLite's one
    /// connection already serialises transactions.
    pub fn lock_row(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// The backend of a connection, by the name sqlx gives it.
    pub fn of_connection(name: &str) -> Backend {
        if name == Backend::Postgres.name() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// A text field of a JSON document column (documents' bodies are text).
    pub fn json_text(self, column: &str, field: &str) -> String {
        match self {
            Backend::Sqlite => format!("json_extract({column}, '$.{field}')"),
            Backend::Postgres => format!("(({column})::jsonb ->> '{field}')"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }

    /// The placeholder of a statement's `n`th value (from 1). sqlx's SQLite
    /// driver looks every numbered placeholder up by name, at a cost that
    /// grows with the statement's count of them (quadratic over a statement
    /// of thousands); anonymous `?` are bound by position, at no cost.
    /// PostgreSQL takes only `$n`.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Backend::Sqlite => "?".to_owned(),
            Backend::Postgres => format!("${n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_notification_goes_to_the_channel_nodes_listen_on() {
        let sql = super::Backend::Postgres
            .notify_task_queued()
            .unwrap_or_default();
        assert!(
            sql.contains(&format!("'{}'", super::TASK_QUEUED_CHANNEL)),
            "{sql}"
        );
    }
}
