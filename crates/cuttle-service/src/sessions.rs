//! The web portal's sign-in sessions. Signing in with a username and
//! password starts a session; the browser keeps its random 256-bit token in
//! a cookie and the store keeps only the token's SHA-256 (like API keys, a
//! token this long needs no slow hash), with the user, a per-session CSRF
//! token and an expiry. The API accepts the same cookie for reads, so the
//! portal's pages can follow a task's live log.

use crate::actor::{established_with, Actor, Origin};
use crate::resources::audit;
use crate::{Result, ServiceError};
use cuttle_model::{Timestamp, User};
use cuttle_store::sessions::PortalSession;
use cuttle_store::Store;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The cookie that carries the session token.
pub const SESSION_COOKIE: &str = "cuttle_session";
/// How long a session lasts from sign-in: a working day, after which the
/// portal asks for the password again.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// A signed-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    pub user: User,
    /// Every form the portal serves carries this; every POST must return it.
    pub csrf_token: String,
    pub expires: Timestamp,
}

/// A session just started: `token` goes into the cookie and is not kept.
pub struct Started {
    pub token: String,
    pub session: Session,
}

/// 256 random bits from the operating system, as 64 hex digits.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn expired() -> ServiceError {
    ServiceError::Unauthorized("Your session has expired or was ended; sign in again.".into())
}

/// Checks a username and password from `client` (throttled, see
/// [`crate::auth::sign_in`]) and starts a session for that user.
pub async fn sign_in(
    inst: &crate::Instance,
    username: &str,
    password: &str,
    origin: &Origin,
) -> Result<Started> {
    let user = crate::auth::sign_in(inst, username, password, origin).await?;
    let actor = Actor::new(
        user,
        Origin {
            established_with: Some(established_with::PASSWORD.into()),
            ..origin.clone()
        },
    );
    start(&inst.store, &actor, SESSION_LIFETIME).await
}

/// Starts a session for `user` lasting `lifetime`, clearing out sessions that
/// have expired (so the table does not grow without end).
pub async fn start(store: &Store, user: &Actor, lifetime: Duration) -> Result<Started> {
    let token = random_token();
    let now = Timestamp::now();
    let lifetime_ms = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
    let record = PortalSession {
        token_hash: hash_token(&token),
        user_id: user.id.clone(),
        csrf_token: random_token(),
        created: now,
        expires: now.add_millis(lifetime_ms),
    };
    let mut tx = store.begin().await?;
    tx.delete_expired_portal_sessions(now).await?;
    tx.insert_portal_session(&record).await?;
    audit(
        &mut tx,
        user,
        None,
        "LoginSucceeded",
        format!("{} signed in to the portal", user.username),
        vec![user.id.clone()],
    )
    .await?;
    tx.commit().await?;
    Ok(Started {
        token,
        session: Session {
            user: user.user.clone(),
            csrf_token: record.csrf_token,
            expires: record.expires,
        },
    })
}

/// The session a cookie's token belongs to; an unknown, malformed, expired
/// or ended one is the same `Unauthorized`.
pub async fn authenticate(store: &Store, token: &str) -> Result<Session> {
    let token = token.trim();
    // Anything but our own 64 hex digits cannot be a session: no query.
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(expired());
    }
    let (record, user) = store
        .portal_session(&hash_token(token), Timestamp::now())
        .await?
        .ok_or_else(expired)?;
    Ok(Session {
        user,
        csrf_token: record.csrf_token,
        expires: record.expires,
    })
}

/// Ends the session of `token` (signing out); an unknown one is no error.
pub async fn sign_out(store: &Store, token: &str, user: &Actor) -> Result<()> {
    let mut tx = store.begin().await?;
    if tx.delete_portal_session(&hash_token(token.trim())).await? {
        audit(
            &mut tx,
            user,
            None,
            "Logout",
            format!("{} signed out of the portal", user.username),
            vec![user.id.clone()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Checks the CSRF token a form sent back against the session's, in time
/// that does not depend on where they differ.
pub fn check_csrf(session: &Session, submitted: Option<&str>) -> Result<()> {
    if constant_time_eq(
        session.csrf_token.as_bytes(),
        submitted.unwrap_or("").as_bytes(),
    ) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "The form was not sent from this session's page (its security token is missing or \
             stale); reload the page and try again."
                .into(),
        ))
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` among `Cookie` header values, if present.
pub fn cookie<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers
        .into_iter()
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuttle_model::ids::Collection;

    #[test]
    fn cookies_and_tokens() {
        let headers = ["a=1; cuttle_session=abc", "b=2"];
        assert_eq!(cookie(headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(["cuttle_session="], SESSION_COOKIE), None);
        assert_eq!(cookie(["xcuttle_session=1"], SESSION_COOKIE), None);
        let t = random_token();
        assert_eq!(t.len(), 64);
        assert_ne!(t, random_token());
        assert_eq!(hash_token(&t).len(), 64);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[tokio::test]
    async fn sessions_start_authenticate_expire_and_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Store::sqlite_url(&dir.path().join("c.db")))
            .await
            .unwrap();
        let mut tx = store.begin().await.unwrap();
        let user = User {
            id: tx.next_id(Collection::Users).await.unwrap(),
            username: "alice".into(),
            is_active: true,
            ..Default::default()
        };
        let hash = crate::auth::hash_password("pw").unwrap();
        tx.insert_user(&user, Some(&hash)).await.unwrap();
        tx.commit().await.unwrap();

        let passwords = crate::passwords::Passwords::new(1);
        assert!(matches!(
            crate::auth::check_password(&store, &passwords, "alice", "wrong").await,
            Err(ServiceError::Unauthorized(_))
        ));
        let alice = crate::auth::check_password(&store, &passwords, "Alice", "pw")
            .await
            .unwrap();
        let started = start(&store, &alice.into(), SESSION_LIFETIME)
            .await
            .unwrap();
        let s = authenticate(&store, &started.token).await.unwrap();
        assert_eq!(s.user.id, user.id);
        assert_eq!(s.csrf_token, started.session.csrf_token);
        assert!(check_csrf(&s, Some(&s.csrf_token)).is_ok());
        assert!(matches!(
            check_csrf(&s, None),
            Err(ServiceError::Forbidden(_))
        ));
        assert!(authenticate(&store, "not-a-token").await.is_err());
        assert!(authenticate(&store, &random_token()).await.is_err());

        let brief = start(&store, &user.clone().into(), Duration::ZERO)
            .await
            .unwrap();
        assert!(authenticate(&store, &brief.token).await.is_err());

        sign_out(&store, &started.token, &user.clone().into())
            .await
            .unwrap();
        assert!(authenticate(&store, &started.token).await.is_err());
    }
}
