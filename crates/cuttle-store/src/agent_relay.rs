//! Polling agents with several nodes (PostgreSQL): which node holds each
//! polling agent's connection, and the requests the other nodes relay to
//! the agent through that node, with their answers.
//!
//! A request row is `queued` by the node running a step, claimed by the
//! holder with `FOR UPDATE SKIP LOCKED` and marked `sent` in the same
//! committed statement before it goes on the wire, so no row is ever sent
//! twice; the holder then writes the answer (`answered`) or why there is
//! none (`failed`). Wake-ups are notifications ([`REQUESTS_CHANNEL`] with
//! the holder's name, [`ANSWERS_CHANNEL`] with the request's id); both
//! sides also look again on their own every so often, since a
//! notification is lost while a listening connection is down.

use crate::{Backend, Result, Store};
use base64::Engine as _;
use sqlx::Row;

/// Notified with the holder's node name when a request is queued for it.
pub const REQUESTS_CHANNEL: &str = "cuttle_agent_requests";
/// Notified with the request's id when it is answered or failed.
pub const ANSWERS_CHANNEL: &str = "cuttle_agent_answers";

/// A request as the holder carries it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayRequest {
    pub id: String,
    pub thumbprint: String,
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub wait_ms: i64,
    pub max_bytes: i64,
}

/// Where a request stands, as the requester reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayState {
    /// Not yet claimed by the holder.
    Queued {
        holder_alive: bool,
    },
    /// On the wire (or done and not yet recorded).
    Sent {
        holder_alive: bool,
    },
    Answered {
        status: u16,
        body: Vec<u8>,
    },
    Failed {
        error: String,
    },
    /// Given up on by the requester, or gone.
    Gone,
}

/// A node is alive while it has not stopped and was seen within `lapse_ms`.
fn alive(now: &str) -> String {
    format!("(n.stopped = 0 AND n.last_seen >= {now} - $2)")
}

fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode(text: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| crate::StoreError::Corrupt(format!("a relayed body is not base64: {e}")))
}

impl Store {
    /// Records that `node` holds the connection of the polling agent with
    /// this certificate: the newest connection wins.
    pub async fn hold_polling_agent(&self, thumbprint: &str, node: &str) -> Result<()> {
        let now = self.backend().now_millis();
        sqlx::query(&format!(
            "INSERT INTO polling_agent_holders (thumbprint, node, connected_at) VALUES ($1, $2, {now}) \
             ON CONFLICT (thumbprint) DO UPDATE SET node = excluded.node, connected_at = excluded.connected_at"
        ))
        .bind(thumbprint)
        .bind(node)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records that `node` holds these agents and no others: rows of
    /// agents it lost go; agents without a row get one, but one another
    /// node took (a newer connection) is left alone.
    pub async fn held_polling_agents(&self, node: &str, thumbprints: &[String]) -> Result<()> {
        let now = self.backend().now_millis();
        let mut tx = self.pool().begin().await?;
        let rows = sqlx::query("SELECT thumbprint FROM polling_agent_holders WHERE node = $1")
            .bind(node)
            .fetch_all(&mut *tx)
            .await?;
        for row in rows {
            let held: String = row.try_get("thumbprint")?;
            if !thumbprints.contains(&held) {
                sqlx::query(
                    "DELETE FROM polling_agent_holders WHERE thumbprint = $1 AND node = $2",
                )
                .bind(&held)
                .bind(node)
                .execute(&mut *tx)
                .await?;
            }
        }
        for t in thumbprints {
            sqlx::query(&format!(
                "INSERT INTO polling_agent_holders (thumbprint, node, connected_at) \
                 VALUES ($1, $2, {now}) ON CONFLICT (thumbprint) DO NOTHING"
            ))
            .bind(t)
            .bind(node)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets the agent connections recorded for nodes that stopped or
    /// were not seen within `lapse_ms`.
    pub async fn forget_lapsed_holders(&self, lapse_ms: i64) -> Result<u64> {
        let now = self.backend().now_millis();
        let r = sqlx::query(&format!(
            "DELETE FROM polling_agent_holders WHERE node NOT IN \
             (SELECT n.name FROM server_nodes n WHERE n.stopped = 0 AND n.last_seen >= {now} - $1)"
        ))
        .bind(lapse_ms)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected())
    }

    /// The live node other than `except` that holds the connection of the
    /// polling agent with this certificate.
    pub async fn polling_agent_holder(
        &self,
        thumbprint: &str,
        lapse_ms: i64,
        except: &str,
    ) -> Result<Option<String>> {
        let now = self.backend().now_millis();
        let row: Option<(String,)> = sqlx::query_as(&format!(
            "SELECT h.node FROM polling_agent_holders h JOIN server_nodes n ON n.name = h.node \
             WHERE h.thumbprint = $1 AND {} AND h.node <> $3",
            alive(now)
        ))
        .bind(thumbprint)
        .bind(lapse_ms)
        .bind(except)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(|r| r.0))
    }

    /// Queues a request (under its own id) for `holder` to carry to the
    /// agent and wakes that node.
    pub async fn queue_relay_request(
        &self,
        holder: &str,
        requester: &str,
        request: &RelayRequest,
    ) -> Result<()> {
        let now = self.backend().now_millis();
        sqlx::query(&format!(
            "INSERT INTO agent_relay_requests (id, thumbprint, holder, requester, method, path, \
             content_type, body, wait_ms, max_bytes, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', {now})"
        ))
        .bind(&request.id)
        .bind(&request.thumbprint)
        .bind(holder)
        .bind(requester)
        .bind(&request.method)
        .bind(&request.path)
        .bind(request.content_type.as_deref())
        .bind(encode(&request.body))
        .bind(request.wait_ms)
        .bind(request.max_bytes)
        .execute(self.pool())
        .await?;
        self.notify(REQUESTS_CHANNEL, holder).await
    }

    /// Claims up to `limit` requests queued for `node`, marking them sent
    /// in the same committed statement: a request is handed out once.
    pub async fn claim_relay_requests(&self, node: &str, limit: i64) -> Result<Vec<RelayRequest>> {
        let rows = sqlx::query(
            "UPDATE agent_relay_requests SET state = 'sent' WHERE id IN \
             (SELECT id FROM agent_relay_requests WHERE holder = $1 AND state = 'queued' \
              ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING id, thumbprint, method, path, content_type, body, wait_ms, max_bytes",
        )
        .bind(node)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RelayRequest {
                    id: r.try_get("id")?,
                    thumbprint: r.try_get("thumbprint")?,
                    method: r.try_get("method")?,
                    path: r.try_get("path")?,
                    content_type: r.try_get("content_type")?,
                    body: decode(&r.try_get::<String, _>("body")?)?,
                    wait_ms: r.try_get("wait_ms")?,
                    max_bytes: r.try_get("max_bytes")?,
                })
            })
            .collect()
    }

    /// Records the agent's answer to a sent request and wakes the requester.
    pub async fn answer_relay_request(&self, id: &str, status: u16, body: &[u8]) -> Result<()> {
        sqlx::query(
            "UPDATE agent_relay_requests SET state = 'answered', answer_status = $2, \
             answer_body = $3 WHERE id = $1 AND state = 'sent'",
        )
        .bind(id)
        .bind(i64::from(status))
        .bind(encode(body))
        .execute(self.pool())
        .await?;
        self.notify(ANSWERS_CHANNEL, id).await
    }

    /// Records why a sent request has no answer and wakes the requester.
    pub async fn fail_relay_request(&self, id: &str, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE agent_relay_requests SET state = 'failed', error = $2 \
             WHERE id = $1 AND state = 'sent'",
        )
        .bind(id)
        .bind(error)
        .execute(self.pool())
        .await?;
        self.notify(ANSWERS_CHANNEL, id).await
    }

    /// Where the request stands, and whether its holder is alive.
    pub async fn relay_request_state(&self, id: &str, lapse_ms: i64) -> Result<RelayState> {
        let now = self.backend().now_millis();
        let row = sqlx::query(&format!(
            "SELECT r.state, r.answer_status, r.answer_body, r.error, \
             CASE WHEN {} THEN 1 ELSE 0 END AS holder_alive \
             FROM agent_relay_requests r LEFT JOIN server_nodes n ON n.name = r.holder \
             WHERE r.id = $1",
            alive(now)
        ))
        .bind(id)
        .bind(lapse_ms)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(RelayState::Gone);
        };
        let holder_alive = row.try_get::<i32, _>("holder_alive")? != 0;
        let state: String = row.try_get("state")?;
        Ok(match state.as_str() {
            "queued" => RelayState::Queued { holder_alive },
            "sent" => RelayState::Sent { holder_alive },
            "answered" => RelayState::Answered {
                status: u16::try_from(row.try_get::<Option<i64>, _>("answer_status")?.unwrap_or(0))
                    .unwrap_or(0),
                body: decode(
                    &row.try_get::<Option<String>, _>("answer_body")?
                        .unwrap_or_default(),
                )?,
            },
            "failed" => RelayState::Failed {
                error: row
                    .try_get::<Option<String>, _>("error")?
                    .unwrap_or_default(),
            },
            _ => RelayState::Gone,
        })
    }

    /// Gives a request up if it is still `from` (`queued` or `sent`): a
    /// holder that comes back then neither claims nor answers it. Whether
    /// it was given up in that state.
    pub async fn abandon_relay_request(&self, id: &str, from: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE agent_relay_requests SET state = 'abandoned' WHERE id = $1 AND state = $2",
        )
        .bind(id)
        .bind(from)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Removes a request whose answer was read (or that was given up).
    pub async fn delete_relay_request(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM agent_relay_requests WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Removes requests older than `age_ms`, left by requesters that
    /// stopped waiting (a node that died, a cancelled task).
    pub async fn sweep_relay_requests(&self, age_ms: i64) -> Result<u64> {
        let now = self.backend().now_millis();
        let r = sqlx::query(&format!(
            "DELETE FROM agent_relay_requests WHERE created_at < {now} - $1"
        ))
        .bind(age_ms)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected())
    }

    async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(payload)
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }
}
