//! What decides a user's permissions: teams, user roles and scoped user
//! roles (kept as documents), read together; and the writes to a user that
//! change what they may do (disabling, a new password, removal).

use crate::{Result, Store, StoreError, Tx};
use cuttle_model::{ScopedUserRole, Team, User, UserRole};

/// The documents a user's permissions are computed from.
#[derive(Clone, Debug, Default)]
pub struct AccessDocuments {
    pub teams: Vec<Team>,
    pub scoped_roles: Vec<ScopedUserRole>,
    pub roles: Vec<UserRole>,
}

fn corrupt(kind: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("{kind}: {e}"))
}

impl Store {
    /// Every team, scoped user role and user role, in one read: a request
    /// checks its caller's permissions from these, so they must be cheap.
    pub async fn access_documents(&self) -> Result<AccessDocuments> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT collection, body FROM documents \
             WHERE collection IN ('Teams', 'ScopedUserRoles', 'UserRoles') ORDER BY sort_key, id",
        )
        .fetch_all(self.reader())
        .await?;
        let mut out = AccessDocuments::default();
        for (collection, body) in rows {
            match collection.as_str() {
                "Teams" => out
                    .teams
                    .push(serde_json::from_str(&body).map_err(|e| corrupt("team", e))?),
                "ScopedUserRoles" => out
                    .scoped_roles
                    .push(serde_json::from_str(&body).map_err(|e| corrupt("scoped user role", e))?),
                _ => out
                    .roles
                    .push(serde_json::from_str(&body).map_err(|e| corrupt("user role", e))?),
            }
        }
        Ok(out)
    }

    /// A user's password hash (`None` for a service account).
    pub async fn password_hash(&self, user_id: &str) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT password_hash FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(self.reader())
                .await?;
        Ok(row.and_then(|(h,)| h))
    }
}

impl Tx {
    /// Rewrites a user's document (its username stays unique).
    pub async fn update_user(&mut self, user: &User) -> Result<()> {
        let body = serde_json::to_string(user).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let r = sqlx::query("UPDATE users SET body = $1, username_lower = $2 WHERE id = $3")
            .bind(body)
            .bind(user.username.to_lowercase())
            .bind(&user.id)
            .execute(&mut *self.inner)
            .await;
        match r {
            Ok(r) if r.rows_affected() == 0 => {
                Err(StoreError::NotFound(format!("The user '{}'", user.id)))
            }
            Ok(_) => Ok(()),
            Err(e) if crate::is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "A user with the username '{}' already exists",
                user.username
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a user and locks the row until the transaction ends.
    pub async fn lock_user(&mut self, id: &str) -> Result<Option<User>> {
        let backend = crate::dialect::Backend::of_connection(self.inner.backend_name());
        let sql = format!("SELECT body FROM users WHERE id = $1{}", backend.lock_row());
        let row: Option<(String,)> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&mut *self.inner)
            .await?;
        row.map(|(b,)| serde_json::from_str(&b).map_err(|e| corrupt("user", e)))
            .transpose()
    }

    pub async fn set_password_hash(&mut self, user_id: &str, hash: &str) -> Result<()> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    /// Ends a user's portal sessions, all but `keep` (a token hash);
    /// returns how many ended.
    pub async fn end_sessions_of(&mut self, user_id: &str, keep: Option<&str>) -> Result<u64> {
        let r = sqlx::query("DELETE FROM portal_sessions WHERE user_id = $1 AND id <> $2")
            .bind(user_id)
            .bind(keep.unwrap_or(""))
            .execute(&mut *self.inner)
            .await?;
        Ok(r.rows_affected())
    }

    /// Removes a user with their keys and sessions.
    pub async fn delete_user(&mut self, user_id: &str) -> Result<()> {
        for sql in [
            "DELETE FROM api_keys WHERE user_id = $1",
            "DELETE FROM portal_sessions WHERE user_id = $1",
        ] {
            sqlx::query(sql)
                .bind(user_id)
                .execute(&mut *self.inner)
                .await?;
        }
        let r = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *self.inner)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("The user '{user_id}'")));
        }
        Ok(())
    }
}
