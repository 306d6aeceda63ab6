//! Authentication: argon2 password hashes for people, and API keys for
//! automation. An API key is 128 random bits and more, so a fast hash
//! (SHA-256) is enough to store it safely and lets every request be checked
//! with one indexed lookup; passwords, being guessable, get argon2.

use crate::actor::{established_with, Actor, Origin};
use crate::{Result, ServiceError};
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use cuttle_model::ids::Collection;
use cuttle_model::user::ADMIN_USERNAME;
use cuttle_model::{ApiKey, Permissions, Timestamp, User};
use cuttle_store::Store;
use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::path::Path;

pub const API_KEY_PREFIX: &str = "API-";
pub const MIN_BOOTSTRAP_KEY_LEN: usize = 32;

pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Internal(format!("password hashing failed: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn random_text(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A new API key: `API-` and 32 upper-case letters and digits, as Octopus's look.
pub fn generate_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", random_text(32).to_uppercase())
}

/// How often one API key's use is written to the audit log: the first use,
/// then at most once an hour, so a client polling every second leaves one
/// event an hour rather than thousands.
pub const API_KEY_USE_INTERVAL_MS: i64 = 60 * 60 * 1000;

/// The caller an API key belongs to; any failure is the same 401, so a
/// caller cannot tell a revoked key from one that never existed. The key's
/// use is recorded (see [`API_KEY_USE_INTERVAL_MS`]).
pub async fn authenticate_api_key(store: &Store, key: &str, origin: &Origin) -> Result<Actor> {
    let key = key.trim();
    if key.is_empty() {
        return Err(ServiceError::Unauthorized(
            "You must be logged in to perform this action. Send an API key in the X-Octopus-ApiKey header.".into(),
        ));
    }
    let Some((key_id, user, recorded)) = store.api_key_holder(&hash_api_key(key)).await? else {
        return Err(ServiceError::Unauthorized(
            "The API key you provided was not valid, has expired or was revoked.".into(),
        ));
    };
    let actor = Actor::new(
        user,
        Origin {
            established_with: Some(established_with::API_KEY.into()),
            ..origin.clone()
        },
    );
    let now = Timestamp::now();
    let since = now.add_millis(-API_KEY_USE_INTERVAL_MS);
    // Read without a write first: nearly every request finds it recent.
    if recorded.is_none_or(|at| at < since) {
        let mut tx = store.begin().await?;
        if tx.mark_api_key_use(&key_id, now, since).await? {
            let entry = crate::audit::Entry::new(
                crate::audit::category::API_KEY_USED,
                None,
                format!("API key {key_id} of {} was used", actor.username),
            )
            .about([key_id.clone(), actor.id.clone()]);
            crate::audit::record(&mut tx, &actor, entry).await?;
        }
        tx.commit().await?;
    }
    Ok(actor)
}

/// Creates an API key for `user_id` (the caller's own, or anyone's with
/// `UserEdit`), expiring at `expires` if given; the secret is returned
/// once, here.
pub async fn create_api_key(
    store: &Store,
    caller: &Actor,
    perms: &Permissions,
    user_id: &str,
    purpose: &str,
    expires: Option<Timestamp>,
) -> Result<ApiKey> {
    crate::users::require_self_or_editor(caller, perms, user_id)?;
    if store.user(user_id).await?.is_none() {
        return Err(ServiceError::not_found("user", user_id));
    }
    if expires.is_some_and(|e| e <= Timestamp::now()) {
        return Err(ServiceError::invalid(vec![
            "Expires must be in the future".into()
        ]));
    }
    if purpose.trim().is_empty() {
        return Err(ServiceError::invalid(vec![
            "Purpose is required: say what the key is for".into(),
        ]));
    }
    if let Some(problem) = crate::text::name_problem("Purpose", "API key", purpose) {
        return Err(ServiceError::invalid(vec![problem]));
    }
    let secret = generate_api_key();
    let mut tx = store.begin().await?;
    let key = ApiKey {
        id: tx.next_id(Collection::ApiKeys).await?,
        user_id: user_id.to_owned(),
        purpose: purpose.trim().to_owned(),
        created: Some(Timestamp::now()),
        expires,
        api_key: None,
    };
    tx.insert_api_key(&key, &hash_api_key(&secret)).await?;
    let entry = crate::audit::Entry::new(
        crate::audit::category::CREATED,
        None,
        format!(
            "API key {} created for {user_id} by {}",
            key.id, caller.username
        ),
    )
    .about([key.id.clone(), user_id.to_owned()])
    .changed(None, Some(&key));
    crate::audit::record(&mut tx, caller, entry).await?;
    tx.commit().await?;
    Ok(ApiKey {
        api_key: Some(secret),
        ..key
    })
}

/// Revokes one of `user_id`'s keys (the caller's own, or anyone's with
/// `UserEdit`); it stops working at once.
pub async fn revoke_api_key(
    store: &Store,
    caller: &Actor,
    perms: &Permissions,
    user_id: &str,
    key_id: &str,
) -> Result<()> {
    crate::users::require_self_or_editor(caller, perms, user_id)?;
    let before = store
        .api_keys(user_id)
        .await?
        .into_iter()
        .find(|k| k.id == key_id);
    let mut tx = store.begin().await?;
    tx.revoke_api_key(user_id, key_id).await?;
    let entry = crate::audit::Entry::new(
        crate::audit::category::DELETED,
        None,
        format!(
            "API key {key_id} of {user_id} was revoked by {}",
            caller.username
        ),
    )
    .about([key_id.to_owned(), user_id.to_owned()])
    .changed(before.as_ref(), None);
    crate::audit::record(&mut tx, caller, entry).await?;
    tx.commit().await?;
    Ok(())
}

/// What bootstrapping created, for the binary to tell the operator.
#[derive(Debug, Default)]
pub struct AdminBootstrap {
    /// Set when the password was generated; shown once.
    pub generated_password: Option<String>,
    pub created_admin: bool,
    pub created_api_key: bool,
}

/// Checks a key supplied through `CUTTLE_ADMIN_API_KEY` before anything is written.
pub fn validate_bootstrap_key(key: &str) -> Result<()> {
    if !key.starts_with(API_KEY_PREFIX) || key.len() < MIN_BOOTSTRAP_KEY_LEN {
        return Err(ServiceError::bad_request(format!(
            "CUTTLE_ADMIN_API_KEY must start with '{API_KEY_PREFIX}' and be at least {MIN_BOOTSTRAP_KEY_LEN} characters long"
        )));
    }
    if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(ServiceError::bad_request(
            "CUTTLE_ADMIN_API_KEY may contain only letters, digits and '-'",
        ));
    }
    Ok(())
}

/// On an empty database, creates the administrator `admin` (with `password`,
/// or a generated one written to `<data_dir>/initial-admin.txt`, mode 0600);
/// and makes sure `api_key`, when given, belongs to the administrator.
pub async fn bootstrap_admin(
    store: &Store,
    data_dir: &Path,
    password: Option<&str>,
    api_key: Option<&str>,
) -> Result<AdminBootstrap> {
    if let Some(key) = api_key {
        validate_bootstrap_key(key)?;
    }
    let mut report = AdminBootstrap::default();
    if store.user_count().await? == 0 {
        let generated = password.is_none().then(|| random_text(24));
        let pass = password
            .map(str::to_owned)
            .or_else(|| generated.clone())
            .unwrap_or_default();
        let hash = hash_password(&pass)?;
        let mut tx = store.begin().await?;
        let user = User {
            id: tx.next_id(Collection::Users).await?,
            username: ADMIN_USERNAME.into(),
            display_name: "Administrator".into(),
            email_address: String::new(),
            is_active: true,
            is_service: false,
            can_password_be_edited: true,
            is_requestor: false,
        };
        tx.insert_user(&user, Some(&hash)).await?;
        tx.commit().await?;
        crate::permissions::make_administrator(store, &user.id).await?;
        if let Some(generated) = &generated {
            write_secret_file(
                &data_dir.join("initial-admin.txt"),
                &format!("username: admin\npassword: {generated}\n"),
            )?;
        }
        report.generated_password = generated;
        report.created_admin = true;
    }
    if let Some(key) = api_key {
        let hash = hash_api_key(key);
        if !store.api_key_exists(&hash).await? {
            let (admin, _) = store
                .user_with_password(ADMIN_USERNAME)
                .await?
                .ok_or_else(|| {
                    ServiceError::Internal("the administrator account is missing".into())
                })?;
            let mut tx = store.begin().await?;
            let record = ApiKey {
                id: tx.next_id(Collection::ApiKeys).await?,
                user_id: admin.id,
                purpose: "Created from CUTTLE_ADMIN_API_KEY".into(),
                created: Some(Timestamp::now()),
                expires: None,
                api_key: None,
            };
            tx.insert_api_key(&record, &hash).await?;
            tx.commit().await?;
            report.created_api_key = true;
        }
    }
    Ok(report)
}

fn write_secret_file(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ServiceError::Internal(format!("could not write {}: {e}", path.display())))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| ServiceError::Internal(format!("could not write {}: {e}", path.display())))
}

/// The user whose username and password these are. The password is
/// checked on the hashing pool, and against a stand-in hash when there is
/// no such active user with a password, so every refusal costs the same.
pub async fn check_password(
    store: &Store,
    passwords: &crate::passwords::Passwords,
    username: &str,
    password: &str,
) -> Result<User> {
    // No username holds one, and PostgreSQL cannot even look one up.
    crate::text::check_no_nul("Username", username)?;
    let found = store.user_with_password(username).await?;
    let hash = found
        .as_ref()
        .filter(|(user, _)| user.is_active)
        .and_then(|(_, hash)| hash.as_deref());
    let matched = passwords.verify(password, hash).await?;
    match found {
        Some((user, _)) if matched => Ok(user),
        _ => Err(ServiceError::Unauthorized(
            "The username or password is not correct".into(),
        )),
    }
}

/// Checks a username and password for a sign-in from `client`: refused
/// without checking after too many failures for the username or from the
/// address (see [`crate::sign_in_throttle`]), and counted when wrong.
pub async fn sign_in(
    inst: &crate::Instance,
    username: &str,
    password: &str,
    origin: &Origin,
) -> Result<User> {
    let username = username.trim();
    let client = origin
        .ip_address
        .as_deref()
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok());
    if let Err(refused) = inst.sign_ins.check(username, client) {
        record_failed_sign_in(&inst.store, username, origin, "refused: too many failures").await?;
        return Err(refused);
    }
    match check_password(&inst.store, &inst.passwords, username, password).await {
        Ok(user) => {
            inst.sign_ins.succeeded(username);
            Ok(user)
        }
        Err(ServiceError::Unauthorized(m)) => {
            inst.sign_ins.failed(username, client);
            record_failed_sign_in(&inst.store, username, origin, "wrong username or password")
                .await?;
            Err(ServiceError::Unauthorized(m))
        }
        Err(other) => Err(other),
    }
}

/// A `LoginFailed` event naming the username tried (which may be no user's)
/// and where the attempt came from; never the password.
async fn record_failed_sign_in(
    store: &Store,
    username: &str,
    origin: &Origin,
    why: &str,
) -> Result<()> {
    // A name sent by anyone: bounded, so failures cannot bloat the log.
    let tried: String = username.chars().take(200).collect();
    let known = store.user_with_password(&tried).await.ok().flatten();
    let anonymous = Actor::new(
        User {
            id: known
                .as_ref()
                .map(|(u, _)| u.id.clone())
                .unwrap_or_default(),
            username: tried.clone(),
            ..Default::default()
        },
        Origin {
            established_with: Some(established_with::PASSWORD.into()),
            ..origin.clone()
        },
    );
    let mut tx = store.begin().await?;
    let entry = crate::audit::Entry::new(
        crate::audit::category::LOGIN_FAILED,
        None,
        format!(
            "Sign-in as '{tried}' failed from {}: {why}",
            origin.ip_address.as_deref().unwrap_or("an unknown address")
        ),
    )
    .about(known.map(|(u, _)| u.id));
    crate::audit::record(&mut tx, &anonymous, entry).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_keys() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2"));
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("s3cret", "not a hash"));
        let k = generate_api_key();
        assert!(k.starts_with("API-") && k.len() == 36);
        assert_ne!(hash_api_key(&k), hash_api_key(&generate_api_key()));
        assert!(validate_bootstrap_key("API-short").is_err());
        assert!(validate_bootstrap_key("KEY-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").is_err());
        assert!(validate_bootstrap_key("API-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").is_ok());
    }

    #[tokio::test]
    async fn bootstrap_creates_admin_once_and_secret_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Store::sqlite_url(&dir.path().join("c.db")))
            .await
            .unwrap();
        let key = "API-BOOTSTRAPBOOTSTRAPBOOTSTRAP0001";
        let r = bootstrap_admin(&store, dir.path(), None, Some(key))
            .await
            .unwrap();
        let pass = r.generated_password.clone().unwrap();
        assert!(r.created_admin && r.created_api_key);
        let file = dir.path().join("initial-admin.txt");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(std::fs::read_to_string(&file).unwrap().contains(&pass));
        let passwords = crate::passwords::Passwords::new(1);
        assert_eq!(
            check_password(&store, &passwords, "admin", &pass)
                .await
                .unwrap()
                .username,
            "admin"
        );
        assert!(check_password(&store, &passwords, "admin", "nope")
            .await
            .is_err());
        assert!(check_password(&store, &passwords, "nobody", &pass)
            .await
            .is_err());
        assert_eq!(passwords.checks(), 3, "an unknown user costs a check too");
        assert_eq!(
            authenticate_api_key(&store, key, &Origin::default())
                .await
                .unwrap()
                .username,
            "admin"
        );
        assert!(
            authenticate_api_key(&store, "API-UNKNOWN", &Origin::default())
                .await
                .is_err()
        );

        let again = bootstrap_admin(&store, dir.path(), None, Some(key))
            .await
            .unwrap();
        assert!(
            !again.created_admin && !again.created_api_key && again.generated_password.is_none()
        );
        assert_eq!(store.user_count().await.unwrap(), 1);
        let bad = bootstrap_admin(&store, dir.path(), None, Some("API-x")).await;
        assert!(matches!(bad, Err(ServiceError::BadRequest { .. })));
    }
}
