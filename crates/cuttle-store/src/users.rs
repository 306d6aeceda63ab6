//! Users and API keys. Password hashes and key hashes are stored beside the
//! user document, never inside it, so they cannot reach an API response.

use crate::{is_unique_violation, Result, Store, StoreError, Tx};
use cuttle_model::{ApiKey, Timestamp, User};
use sqlx::Row;

fn decode_user(body: &str) -> Result<User> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("user: {e}")))
}

impl Tx {
    /// Revokes a key; it stops working at once.
    pub async fn revoke_api_key(&mut self, user_id: &str, key_id: &str) -> Result<()> {
        let r = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL")
            .bind(Timestamp::now().to_string())
            .bind(key_id)
            .bind(user_id)
            .execute(&mut *self.inner)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("The API key '{key_id}'")));
        }
        Ok(())
    }

    /// Marks key `key_id`'s use as written to the log at `now`, unless
    /// that happened at or after `since` (by another request or node);
    /// true when this call marked it, and so should write the event.
    pub async fn mark_api_key_use(
        &mut self,
        key_id: &str,
        now: Timestamp,
        since: Timestamp,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET use_recorded_at = $1 WHERE id = $2 \
             AND (use_recorded_at IS NULL OR use_recorded_at < $3)",
        )
        .bind(now.to_string())
        .bind(key_id)
        .bind(since.to_string())
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn insert_user(&mut self, user: &User, password_hash: Option<&str>) -> Result<()> {
        let body = serde_json::to_string(user).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let res = sqlx::query(
            "INSERT INTO users (id, username_lower, body, password_hash) VALUES ($1, $2, $3, $4)",
        )
        .bind(&user.id)
        .bind(user.username.to_lowercase())
        .bind(body)
        .bind(password_hash)
        .execute(&mut *self.inner)
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "A user with the username '{}' already exists",
                user.username
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores an API key by the hash of its secret.
    pub async fn insert_api_key(&mut self, key: &ApiKey, key_hash: &str) -> Result<()> {
        let res = sqlx::query(
            "INSERT INTO api_keys (id, user_id, key_hash, purpose, created, expires) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.id)
        .bind(&key.user_id)
        .bind(key_hash)
        .bind(&key.purpose)
        .bind(key.created.unwrap_or_else(Timestamp::now).to_string())
        .bind(key.expires.map(|t| t.to_string()))
        .execute(&mut *self.inner)
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict("That API key already exists".into()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Store {
    pub async fn user_count(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(self.reader())
            .await?;
        Ok(n)
    }

    pub async fn user(&self, id: &str) -> Result<Option<User>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT body FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        row.map(|(b,)| decode_user(&b)).transpose()
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT body FROM users ORDER BY id")
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(|(b,)| decode_user(b)).collect()
    }

    /// A user and their password hash, by username (case-insensitive).
    pub async fn user_with_password(
        &self,
        username: &str,
    ) -> Result<Option<(User, Option<String>)>> {
        let row = sqlx::query("SELECT body, password_hash FROM users WHERE username_lower = $1")
            .bind(username.to_lowercase())
            .fetch_optional(self.reader())
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((
                decode_user(&r.try_get::<String, _>("body")?)?,
                r.try_get("password_hash")?,
            ))),
        }
    }

    /// The active user owning an unrevoked, unexpired key with this hash.
    pub async fn user_by_api_key_hash(&self, key_hash: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT u.body, k.expires FROM api_keys k JOIN users u ON u.id = k.user_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(self.reader())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let expires: Option<String> = r.try_get("expires")?;
        if let Some(exp) = expires.and_then(|e| Timestamp::parse(&e)) {
            if exp < Timestamp::now() {
                return Ok(None);
            }
        }
        let user = decode_user(&r.try_get::<String, _>("body")?)?;
        Ok(user.is_active.then_some(user))
    }

    /// The key's id, its user, and when its use was last written to the
    /// audit log, for a valid key.
    pub async fn api_key_holder(
        &self,
        key_hash: &str,
    ) -> Result<Option<(String, User, Option<Timestamp>)>> {
        let row = sqlx::query(
            "SELECT k.id, u.body, k.expires, k.use_recorded_at FROM api_keys k JOIN users u ON u.id = k.user_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(self.reader())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let expires: Option<String> = r.try_get("expires")?;
        if expires
            .and_then(|e| Timestamp::parse(&e))
            .is_some_and(|exp| exp < Timestamp::now())
        {
            return Ok(None);
        }
        let id: String = r.try_get("id")?;
        let user = decode_user(&r.try_get::<String, _>("body")?)?;
        let recorded: Option<String> = r.try_get("use_recorded_at")?;
        let recorded = recorded.and_then(|t| Timestamp::parse(&t));
        Ok(user.is_active.then_some((id, user, recorded)))
    }

    pub async fn api_key_exists(&self, key_hash: &str) -> Result<bool> {
        let row: Option<(String,)> = sqlx::query_as("SELECT id FROM api_keys WHERE key_hash = $1")
            .bind(key_hash)
            .fetch_optional(self.reader())
            .await?;
        Ok(row.is_some())
    }

    /// A user's unrevoked keys (without secrets).
    pub async fn api_keys(&self, user_id: &str) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, user_id, purpose, created, expires FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created, id",
        )
        .bind(user_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiKey {
                    id: r.try_get("id")?,
                    user_id: r.try_get("user_id")?,
                    purpose: r.try_get("purpose")?,
                    created: r
                        .try_get::<String, _>("created")
                        .ok()
                        .and_then(|t| Timestamp::parse(&t)),
                    expires: r
                        .try_get::<Option<String>, _>("expires")?
                        .and_then(|t| Timestamp::parse(&t)),
                    api_key: None,
                })
            })
            .collect()
    }
}
