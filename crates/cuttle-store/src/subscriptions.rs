//! The subscriptions' durable outbox. Every audit event enters
//! `event_outbox` in the transaction that records it; a dispatcher moves
//! events from there into one delivery per matching subscription and channel
//! (in one transaction, so none is lost or doubled), and sends each
//! subscription's deliveries in order, recording every attempt.

use crate::{Result, Store, StoreError, Tx};
use cuttle_model::ids::sequence_of;
use cuttle_model::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// An event waiting to be fanned out.
#[derive(Clone, Debug)]
pub struct OutboxEvent {
    pub event_id: String,
    pub space_id: Option<String>,
    pub occurred_at: String,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub category: String,
    pub message: String,
    pub related_document_ids: Vec<String>,
}

/// A delivery to create: one event for one subscription's channel.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    /// From [`Tx::next_id`] with `SubscriptionDeliveries`, taken before the
    /// body is made so the body can carry it.
    pub id: String,
    pub subscription_id: String,
    pub channel: String,
    pub event_id: String,
    pub category: String,
    /// What is sent, fixed at fan-out so every retry sends the same bytes.
    pub body: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// Retried for as long as deliveries are kept trying, and never received.
    Abandoned,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "Pending",
            DeliveryState::Delivered => "Delivered",
            DeliveryState::Abandoned => "Abandoned",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        match text {
            "Pending" => Ok(DeliveryState::Pending),
            "Delivered" => Ok(DeliveryState::Delivered),
            "Abandoned" => Ok(DeliveryState::Abandoned),
            other => Err(StoreError::Corrupt(format!("delivery state '{other}'"))),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: String,
    pub subscription_id: String,
    pub channel: String,
    pub event_id: String,
    pub category: String,
    pub body: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// Milliseconds since the Unix epoch.
    pub next_attempt_at: i64,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub attempt: u32,
    pub at: String,
    pub succeeded: bool,
    /// The receiver's answer ("HTTP 200") or why it failed.
    pub outcome: String,
    pub duration_ms: i64,
}

/// What became of a delivery after an attempt.
#[derive(Clone, Copy, Debug)]
pub enum AfterAttempt {
    Delivered,
    RetryAt(i64),
    Abandon,
}

const DELIVERY_COLUMNS: &str = "id, subscription_id, channel, event_id, category, body, state, \
     attempts, next_attempt_at, created_at, delivered_at, last_error";

fn delivery(r: &AnyRow) -> Result<Delivery> {
    let attempts: i64 = r.try_get("attempts")?;
    Ok(Delivery {
        id: r.try_get("id")?,
        subscription_id: r.try_get("subscription_id")?,
        channel: r.try_get("channel")?,
        event_id: r.try_get("event_id")?,
        category: r.try_get("category")?,
        body: r.try_get("body")?,
        state: DeliveryState::parse(&r.try_get::<String, _>("state")?)?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at: r.try_get("next_attempt_at")?,
        created_at: r.try_get("created_at")?,
        delivered_at: r.try_get("delivered_at")?,
        last_error: r.try_get("last_error")?,
    })
}

/// Queues an event for the subscriptions; called where the event is
/// recorded, on its transaction's connection, so both commit or neither does.
pub(crate) async fn enqueue_on(conn: &mut AnyConnection, event_id: &str) -> Result<()> {
    sqlx::query("INSERT INTO event_outbox (event_id, seq) VALUES ($1, $2)")
        .bind(event_id)
        .bind(sequence_of(event_id))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Tx {
    /// The oldest events waiting to be fanned out, locked until this
    /// transaction ends (so two nodes never fan out the same event).
    pub async fn outbox_events(&mut self, limit: i64) -> Result<Vec<OutboxEvent>> {
        let backend = crate::dialect::Backend::of_connection(self.inner.backend_name());
        // Locked, not skipped: a second node waits rather than fanning out
        // later events first, which would break each subscription's order.
        let sql = format!(
            "SELECT o.event_id, e.space_id, e.occurred_at, e.user_id, e.username, e.category, \
             e.message, e.related_document_ids \
             FROM event_outbox o JOIN events e ON e.id = o.event_id \
             ORDER BY o.seq LIMIT $1{}",
            backend.lock_row().replace("FOR UPDATE", "FOR UPDATE OF o")
        );
        let rows = sqlx::query(&sql)
            .bind(limit)
            .fetch_all(&mut *self.inner)
            .await?;
        rows.iter()
            .map(|r| {
                let related: String = r.try_get("related_document_ids")?;
                Ok(OutboxEvent {
                    event_id: r.try_get("event_id")?,
                    space_id: r.try_get("space_id")?,
                    occurred_at: r.try_get("occurred_at")?,
                    user_id: r.try_get("user_id")?,
                    username: r.try_get("username")?,
                    category: r.try_get("category")?,
                    message: r.try_get("message")?,
                    related_document_ids: related
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                })
            })
            .collect()
    }

    pub async fn remove_from_outbox(&mut self, event_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM event_outbox WHERE event_id = $1")
            .bind(event_id)
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    /// Adds a delivery at the end of its subscription's queue, due now. An
    /// event already queued for that subscription and channel is not added
    /// twice.
    pub async fn insert_delivery(&mut self, d: &NewDelivery, now_ms: i64) -> Result<()> {
        let id = &d.id;
        sqlx::query(
            "INSERT INTO subscription_deliveries (id, seq, subscription_id, channel, event_id, \
             category, body, state, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'Pending', 0, $8, $9) \
             ON CONFLICT (subscription_id, channel, event_id) DO NOTHING",
        )
        .bind(id)
        .bind(sequence_of(id))
        .bind(&d.subscription_id)
        .bind(&d.channel)
        .bind(&d.event_id)
        .bind(&d.category)
        .bind(&d.body)
        .bind(now_ms)
        .bind(Timestamp::now().to_string())
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    pub async fn set_subscription_secret(
        &mut self,
        subscription_id: &str,
        sealed: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO subscription_secrets (subscription_id, sealed) VALUES ($1, $2) \
             ON CONFLICT (subscription_id) DO UPDATE SET sealed = excluded.sealed",
        )
        .bind(subscription_id)
        .bind(sealed)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// Removes what a deleted subscription leaves: its key, its queue and
    /// its history.
    pub async fn delete_subscription_rows(&mut self, subscription_id: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM subscription_attempts WHERE delivery_id IN \
             (SELECT id FROM subscription_deliveries WHERE subscription_id = $1)",
        )
        .bind(subscription_id)
        .execute(&mut *self.inner)
        .await?;
        for table in ["subscription_deliveries", "subscription_secrets"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE subscription_id = $1"))
                .bind(subscription_id)
                .execute(&mut *self.inner)
                .await?;
        }
        Ok(())
    }
}

impl Store {
    pub async fn subscription_secret(&self, subscription_id: &str) -> Result<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT sealed FROM subscription_secrets WHERE subscription_id = $1")
                .bind(subscription_id)
                .fetch_optional(self.reader())
                .await?;
        Ok(row.map(|(s,)| s))
    }

    /// Whether any event waits to be fanned out (a cheap check for the
    /// dispatcher's loop).
    pub async fn outbox_is_empty(&self) -> Result<bool> {
        let row: Option<(String,)> = sqlx::query_as("SELECT event_id FROM event_outbox LIMIT 1")
            .fetch_optional(self.reader())
            .await?;
        Ok(row.is_none())
    }

    /// The deliveries that may be attempted now: the head of each
    /// subscription's queue (so each is received in order) whose time has
    /// come, oldest first.
    pub async fn due_deliveries(&self, now_ms: i64, limit: i64) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM subscription_deliveries d \
             WHERE d.state = 'Pending' AND d.next_attempt_at <= $1 \
             AND d.seq = (SELECT MIN(h.seq) FROM subscription_deliveries h \
                          WHERE h.subscription_id = d.subscription_id \
                          AND h.channel = d.channel AND h.state = 'Pending') \
             ORDER BY d.seq LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(delivery).collect()
    }

    /// When the next pending delivery is due, if any is pending.
    pub async fn next_delivery_due(&self) -> Result<Option<i64>> {
        let row: Option<(Option<i64>,)> = sqlx::query_as(
            "SELECT MIN(next_attempt_at) FROM subscription_deliveries WHERE state = 'Pending'",
        )
        .fetch_optional(self.reader())
        .await?;
        Ok(row.and_then(|(m,)| m))
    }

    /// Takes a delivery for one attempt: pushes its next attempt to
    /// `lease_until` (so no other sender takes it while this one tries, and
    /// a sender that dies mid-attempt leaves it due again then) and counts
    /// the attempt. False when another sender took it first.
    pub async fn claim_delivery(&self, d: &Delivery, lease_until: i64) -> Result<bool> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE subscription_deliveries SET next_attempt_at = $1, attempts = attempts + 1 \
             WHERE id = $2 AND state = 'Pending' AND next_attempt_at = $3",
        )
        .bind(lease_until)
        .bind(&d.id)
        .bind(d.next_attempt_at)
        .execute(&mut *tx.inner)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records an attempt and what follows from it, in one transaction.
    pub async fn record_attempt(
        &self,
        delivery_id: &str,
        attempt: &Attempt,
        then: AfterAttempt,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            // Only while the delivery exists: its subscription may have
            // been deleted during the attempt.
            "INSERT INTO subscription_attempts (delivery_id, attempt, at, succeeded, outcome, duration_ms) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM subscription_deliveries WHERE id = $1) \
             ON CONFLICT (delivery_id, attempt) DO NOTHING",
        )
        .bind(delivery_id)
        .bind(i64::from(attempt.attempt))
        .bind(&attempt.at)
        .bind(i64::from(attempt.succeeded))
        .bind(&attempt.outcome)
        .bind(attempt.duration_ms)
        .execute(&mut *tx.inner)
        .await?;
        let error = (!attempt.succeeded).then_some(attempt.outcome.as_str());
        let q = match then {
            AfterAttempt::Delivered => sqlx::query(
                "UPDATE subscription_deliveries SET state = 'Delivered', delivered_at = $2, \
                 last_error = NULL WHERE id = $1",
            )
            .bind(delivery_id)
            .bind(&attempt.at),
            AfterAttempt::RetryAt(at) => sqlx::query(
                "UPDATE subscription_deliveries SET next_attempt_at = $2, last_error = $3 \
                 WHERE id = $1 AND state = 'Pending'",
            )
            .bind(delivery_id)
            .bind(at)
            .bind(error),
            AfterAttempt::Abandon => sqlx::query(
                "UPDATE subscription_deliveries SET state = 'Abandoned', last_error = $2 \
                 WHERE id = $1 AND state = 'Pending'",
            )
            .bind(delivery_id)
            .bind(error),
        };
        q.execute(&mut *tx.inner).await?;
        tx.commit().await
    }

    /// A subscription's deliveries, newest first, and how many there are.
    pub async fn subscription_deliveries(
        &self,
        subscription_id: &str,
        skip: i64,
        take: i64,
    ) -> Result<(Vec<Delivery>, i64)> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM subscription_deliveries \
             WHERE subscription_id = $1 ORDER BY seq DESC LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(&sql)
            .bind(subscription_id)
            .bind(take)
            .bind(skip)
            .fetch_all(self.reader())
            .await?;
        let (total,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM subscription_deliveries WHERE subscription_id = $1",
        )
        .bind(subscription_id)
        .fetch_one(self.reader())
        .await?;
        Ok((rows.iter().map(delivery).collect::<Result<_>>()?, total))
    }

    /// The attempts made at a delivery, in order.
    pub async fn delivery_attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT attempt, at, succeeded, outcome, duration_ms FROM subscription_attempts \
             WHERE delivery_id = $1 ORDER BY attempt",
        )
        .bind(delivery_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                let attempt: i64 = r.try_get("attempt")?;
                let succeeded: i64 = r.try_get("succeeded")?;
                Ok(Attempt {
                    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                    at: r.try_get("at")?,
                    succeeded: succeeded != 0,
                    outcome: r.try_get("outcome")?,
                    duration_ms: r.try_get("duration_ms")?,
                })
            })
            .collect()
    }
}
