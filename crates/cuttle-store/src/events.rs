//! The audit log: one event per change, written in the change's transaction,
//! with a row per document it is about in `event_documents`, so the log's
//! filters (by project, environment, document type) are index lookups.

use crate::documents::known_total;
use crate::statement::Statement;
use crate::{Result, Store, Tx};
use cuttle_model::ids::{sequence_of, Collection};
use cuttle_model::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditEvent {
    pub space_id: Option<String>,
    pub user_id: Option<String>,
    pub username: Option<String>,
    /// `Created`, `Modified`, `Deleted`, `DeploymentQueued`, …
    pub category: String,
    pub message: String,
    pub related_document_ids: Vec<String>,
    /// The user is a service account, not a person.
    pub is_service: bool,
    /// How the caller proved who they are (`API key`, `Session cookie`).
    pub identity_established_with: Option<String>,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    /// Free text beside the message (a task's error, say).
    pub details: Option<String>,
    /// JSON: the document before and after, sensitive values replaced by
    /// the caller (the store keeps what it is given).
    pub change_details: Option<String>,
}

/// An event as stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredEvent {
    pub id: String,
    pub seq: i64,
    pub space_id: Option<String>,
    pub occurred: String,
    pub event: AuditEvent,
}

/// The key under which [`Store::backfill_event_documents`] waits.
pub(crate) const PENDING_BACKFILL: &str = "pending/event-documents";

const EVENT_COLUMNS: &str =
    "e.id, e.seq, e.space_id, e.occurred_at, e.user_id, e.username, e.category, \
     e.message, e.related_document_ids, e.is_service, e.identity_established_with, e.user_agent, \
     e.ip_address, e.details, e.change_details";

/// The collection part of a document id: `Projects` of `Projects-7`,
/// `deploymentprocess-Projects-1` as a whole where no number ends it.
pub fn document_type(id: &str) -> &str {
    match id.rsplit_once('-') {
        Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            // `deploymentprocess-Projects-1` belongs to its own kind.
            head.split_once('-').map_or(head, |(kind, _)| kind)
        }
        _ => id,
    }
}

impl Tx {
    /// Writes `e` in this transaction, unless its store records no events
    /// ([`Store::set_recording_events`]).
    pub async fn record_event(&mut self, e: AuditEvent) -> Result<()> {
        if !self.record_events {
            return Ok(());
        }
        self.touched.events = true;
        record_event_on(&mut self.inner, e).await
    }
}

/// Writes an event on a connection inside a transaction (a [`Tx`]'s, or a
/// group commit's, see [`crate::tasks`]); the caller has checked that its
/// store records events.
pub(crate) async fn record_event_on(conn: &mut AnyConnection, e: AuditEvent) -> Result<()> {
    {
        let id = crate::next_id_on(conn, Collection::Events).await?;
        let seq = sequence_of(&id);
        let mut related = e.related_document_ids.clone();
        related.retain(|d| !d.trim().is_empty());
        sqlx::query(
            "INSERT INTO events (id, seq, space_id, occurred_at, user_id, username, category, message, \
             related_document_ids, is_service, identity_established_with, user_agent, ip_address, details, change_details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&id)
        .bind(seq)
        .bind(e.space_id.clone())
        .bind(Timestamp::now().to_string())
        .bind(e.user_id)
        .bind(e.username)
        .bind(e.category)
        .bind(e.message)
        .bind(related.join(","))
        .bind(i64::from(e.is_service))
        .bind(e.identity_established_with)
        .bind(e.user_agent)
        .bind(e.ip_address)
        .bind(e.details)
        .bind(e.change_details)
        .execute(&mut *conn)
        .await?;
        crate::subscriptions::enqueue_on(conn, &id).await?;
        index_documents(conn, seq, e.space_id.as_deref(), &related).await
    }
}

/// One `event_documents` row per distinct document of an event.
async fn index_documents(
    conn: &mut AnyConnection,
    seq: i64,
    space_id: Option<&str>,
    related: &[String],
) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for doc in related {
        if !seen.insert(doc.as_str()) {
            continue;
        }
        sqlx::query(
            "INSERT INTO event_documents (document_id, event_seq, document_type, space_id) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(doc)
        .bind(seq)
        .bind(document_type(doc))
        .bind(space_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Which events a list asks for. Every filter given must hold (AND); within
/// one filter any of its values will do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventQuery {
    /// Empty: every space's (and the installation's own) events.
    pub space_ids: Vec<String>,
    pub ids: Vec<String>,
    pub user_ids: Vec<String>,
    pub categories: Vec<String>,
    /// Each set: the event is about at least one of its documents.
    pub document_sets: Vec<Vec<String>>,
    /// The event is about a document of one of these collections.
    pub document_types: Vec<String>,
    /// The event is about none of these documents (those the reader may
    /// not see).
    pub excluded_documents: Vec<String>,
    /// Occurred at or after / at or before (timestamps as stored).
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub from_auto_id: Option<i64>,
    pub to_auto_id: Option<i64>,
    pub skip: i64,
    pub take: Option<i64>,
}

impl EventQuery {
    /// The WHERE clause the page and its count share. A document filter is
    /// an `IN` over `event_documents`' own index, never a text search.
    fn filter(&self, st: &mut Statement) -> String {
        let mut clauses: Vec<String> = vec!["1 = 1".into()];
        if !self.space_ids.is_empty() {
            clauses.push(format!("e.space_id IN ({})", st.args(&self.space_ids)));
        }
        if !self.ids.is_empty() {
            clauses.push(format!("e.id IN ({})", st.args(&self.ids)));
        }
        if !self.user_ids.is_empty() {
            clauses.push(format!("e.user_id IN ({})", st.args(&self.user_ids)));
        }
        if !self.categories.is_empty() {
            clauses.push(format!("e.category IN ({})", st.args(&self.categories)));
        }
        for set in &self.document_sets {
            clauses.push(format!(
                "e.seq IN (SELECT ed.event_seq FROM event_documents ed WHERE ed.document_id IN ({}))",
                st.args(set)
            ));
        }
        if !self.document_types.is_empty() {
            clauses.push(format!(
                "e.seq IN (SELECT et.event_seq FROM event_documents et WHERE et.document_type IN ({}))",
                st.args(&self.document_types)
            ));
        }
        if !self.excluded_documents.is_empty() {
            clauses.push(format!(
                "e.seq NOT IN (SELECT ex.event_seq FROM event_documents ex WHERE ex.document_id IN ({}))",
                st.args(&self.excluded_documents)
            ));
        }
        if let Some(from) = self.from {
            clauses.push(format!("e.occurred_at >= {}", st.arg(from.to_string())));
        }
        if let Some(to) = self.to {
            clauses.push(format!("e.occurred_at <= {}", st.arg(to.to_string())));
        }
        if let Some(n) = self.from_auto_id {
            clauses.push(format!("e.seq >= {}", st.arg(n)));
        }
        if let Some(n) = self.to_auto_id {
            clauses.push(format!("e.seq <= {}", st.arg(n)));
        }
        clauses.join(" AND ")
    }

    /// The page's statement: newest first, paged in SQL.
    pub fn page_statement(&self) -> Statement {
        let mut st = Statement::default();
        let filter = self.filter(&mut st);
        let take = self.take.unwrap_or(i64::MAX).max(0);
        st.sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE {filter} ORDER BY e.seq DESC LIMIT {take} OFFSET {}",
            self.skip.max(0)
        );
        st
    }

    /// How many events match. Filtered by one set of documents (and perhaps
    /// spaces) alone, as a project's or environment's log is, it counts
    /// `event_documents`' index entries without touching the events.
    pub fn count_statement(&self) -> Statement {
        let mut st = Statement::default();
        let documents_only = EventQuery {
            space_ids: self.space_ids.clone(),
            document_sets: self.document_sets.clone(),
            skip: self.skip,
            take: self.take,
            ..Default::default()
        };
        if let ([set], true) = (self.document_sets.as_slice(), self == &documents_only) {
            let mut sql = format!(
                "SELECT COUNT(DISTINCT ed.event_seq) FROM event_documents ed WHERE ed.document_id IN ({})",
                st.args(set)
            );
            if !self.space_ids.is_empty() {
                sql.push_str(&format!(
                    " AND ed.space_id IN ({})",
                    st.args(&self.space_ids)
                ));
            }
            st.sql = sql;
            return st;
        }
        let filter = self.filter(&mut st);
        st.sql = format!("SELECT COUNT(*) FROM events e WHERE {filter}");
        st
    }
}

fn event_of(row: &AnyRow) -> Result<StoredEvent> {
    let related: String = row.try_get(8)?;
    Ok(StoredEvent {
        id: row.try_get(0)?,
        seq: row.try_get(1)?,
        space_id: row.try_get(2)?,
        occurred: row.try_get(3)?,
        event: AuditEvent {
            space_id: row.try_get(2)?,
            user_id: row.try_get(4)?,
            username: row.try_get(5)?,
            category: row.try_get(6)?,
            message: row.try_get(7)?,
            related_document_ids: related
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            is_service: row.try_get::<i64, _>(9)? != 0,
            identity_established_with: row.try_get(10)?,
            user_agent: row.try_get(11)?,
            ip_address: row.try_get(12)?,
            details: row.try_get(13)?,
            change_details: row.try_get(14)?,
        },
    })
}

impl Store {
    /// A page of events, newest first, and how many match in all.
    pub async fn list_events(&self, q: &EventQuery) -> Result<(Vec<StoredEvent>, i64)> {
        let rows = q.page_statement().query().fetch_all(self.reader()).await?;
        let events = rows.iter().map(event_of).collect::<Result<Vec<_>>>()?;
        let total = match known_total(q.skip, q.take, events.len()) {
            Some(total) => total,
            None => {
                let row = q.count_statement().query().fetch_one(self.reader()).await?;
                row.try_get::<i64, _>(0)?
            }
        };
        Ok((events, total))
    }

    pub async fn event(&self, id: &str) -> Result<Option<StoredEvent>> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(event_of).transpose()
    }

    /// The categories events have been recorded under, sorted.
    pub async fn event_categories_in_use(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT category FROM events ORDER BY category")
                .fetch_all(self.reader())
                .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Indexes the documents of events written before `event_documents`
    /// existed, a batch at a time, once.
    pub(crate) async fn backfill_event_documents(&self) -> Result<()> {
        if self.setting(PENDING_BACKFILL).await?.is_none() {
            return Ok(());
        }
        let lock = self.node_lock(PENDING_BACKFILL).await?;
        if self.setting(PENDING_BACKFILL).await?.is_none() {
            return Ok(());
        }
        let mut after = -1i64;
        loop {
            let rows: Vec<(i64, Option<String>, String)> = sqlx::query_as(
                "SELECT seq, space_id, related_document_ids FROM events WHERE seq > $1 ORDER BY seq LIMIT 500",
            )
            .bind(after)
            .fetch_all(self.pool())
            .await?;
            let Some((last, _, _)) = rows.last() else {
                break;
            };
            after = *last;
            let mut tx = self.begin().await?;
            for (seq, space_id, related) in &rows {
                sqlx::query("DELETE FROM event_documents WHERE event_seq = $1")
                    .bind(seq)
                    .execute(&mut *tx.inner)
                    .await?;
                let ids: Vec<String> = related
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                index_documents(&mut tx.inner, *seq, space_id.as_deref(), &ids).await?;
            }
            tx.commit().await?;
        }
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(PENDING_BACKFILL)
            .execute(&mut *tx.inner)
            .await?;
        tx.commit().await?;
        if let Some(lock) = lock {
            lock.commit().await?;
        }
        Ok(())
    }
}

impl From<StoredEvent> for AuditEvent {
    fn from(e: StoredEvent) -> Self {
        e.event
    }
}

#[cfg(test)]
mod tests {
    use super::document_type;

    #[test]
    fn document_types_are_the_id_collection() {
        assert_eq!(document_type("Projects-7"), "Projects");
        assert_eq!(
            document_type("deploymentprocess-Projects-1"),
            "deploymentprocess"
        );
        assert_eq!(document_type("variableset-Projects-1"), "variableset");
        assert_eq!(document_type("feeds-builtin"), "feeds-builtin");
        assert_eq!(document_type("ServerTasks-12"), "ServerTasks");
    }
}
