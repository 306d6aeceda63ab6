//! The web portal's sessions, kept server-side by the hash of their token.
//! Expiry is checked in the query, so an expired session reads as none.

use crate::{Result, Store, StoreError, Tx};
use cuttle_model::{Timestamp, User};
use sqlx::Row;

/// One signed-in browser, as stored (the token itself never is).
#[derive(Clone, Debug, PartialEq)]
pub struct PortalSession {
    /// SHA-256 of the cookie's token, in hex.
    pub token_hash: String,
    pub user_id: String,
    pub csrf_token: String,
    pub created: Timestamp,
    pub expires: Timestamp,
}

impl Tx {
    pub async fn insert_portal_session(&mut self, s: &PortalSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO portal_sessions (id, user_id, csrf_token, created, expires) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.token_hash)
        .bind(&s.user_id)
        .bind(&s.csrf_token)
        .bind(s.created.to_string())
        .bind(s.expires.to_string())
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// Removes sessions that expired before `now`; returns how many.
    pub async fn delete_expired_portal_sessions(&mut self, now: Timestamp) -> Result<u64> {
        let r = sqlx::query("DELETE FROM portal_sessions WHERE expires <= $1")
            .bind(now.to_string())
            .execute(&mut *self.inner)
            .await?;
        Ok(r.rows_affected())
    }

    /// Ends a session; returns whether there was one.
    pub async fn delete_portal_session(&mut self, token_hash: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM portal_sessions WHERE id = $1")
            .bind(token_hash)
            .execute(&mut *self.inner)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

impl Store {
    /// The unexpired session with this token hash and its user, if the user
    /// is still active: one indexed read per page.
    pub async fn portal_session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<(PortalSession, User)>> {
        let row = sqlx::query(
            "SELECT s.user_id, s.csrf_token, s.created, s.expires, u.body \
             FROM portal_sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id = $1 AND s.expires > $2",
        )
        .bind(token_hash)
        .bind(now.to_string())
        .fetch_optional(self.reader())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let time = |col: &str| -> Result<Timestamp> {
            let text: String = r.try_get(col)?;
            Timestamp::parse(&text)
                .ok_or_else(|| StoreError::Corrupt(format!("portal session {col}: '{text}'")))
        };
        let session = PortalSession {
            token_hash: token_hash.to_owned(),
            user_id: r.try_get("user_id")?,
            csrf_token: r.try_get("csrf_token")?,
            created: time("created")?,
            expires: time("expires")?,
        };
        let body: String = r.try_get("body")?;
        let user: User =
            serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(format!("user: {e}")))?;
        Ok(user.is_active.then_some((session, user)))
    }
}
