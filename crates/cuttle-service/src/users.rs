//! People and service accounts: listing, creating, modifying (disabling,
//! a new password) and removing them. A person
//! signs in with a password (hashed with argon2, never stored in the user
//! document); a service account has none and works through API keys.

use crate::actor::Actor;
use crate::passwords::Passwords;
use crate::resources::audit_changed;
use crate::{Result, ServiceError};
use cuttle_model::ids::Collection;
use cuttle_model::{Permission, Permissions, Scope, Team, User};
use cuttle_store::{Store, StoreError};

/// Shorter passwords fall to guessing too quickly.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longer is surely a paste gone wrong, and hashing it costs for nothing.
pub const MAX_PASSWORD_LEN: usize = 256;
pub const MAX_USERNAME_LEN: usize = 64;

/// What a new user is made from, as a client sends it.
#[derive(Clone, Debug, Default)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub email_address: String,
    pub password: String,
    pub is_service: bool,
    pub is_active: bool,
}

/// Every user, by id.
pub async fn list(store: &Store) -> Result<Vec<User>> {
    Ok(store.users().await?)
}

/// The users the caller may see: all with `UserView`, else only themself.
pub async fn visible(store: &Store, caller: &Actor, perms: &Permissions) -> Result<Vec<User>> {
    let all = store.users().await?;
    if perms.allows(Permission::UserView, &Scope::system()) {
        return Ok(all);
    }
    Ok(all.into_iter().filter(|u| u.id == caller.id).collect())
}

/// One user: themself, or anyone with `UserView`; others are not found.
pub async fn get(store: &Store, caller: &Actor, perms: &Permissions, id: &str) -> Result<User> {
    let user = store.user(id).await?;
    match user {
        Some(u) if u.id == caller.id || perms.allows(Permission::UserView, &Scope::system()) => {
            Ok(u)
        }
        _ => Err(ServiceError::not_found("user", id)),
    }
}

/// Acting on `user_id`'s account (keys, password): themself, or a holder
/// of `UserEdit`.
pub fn require_self_or_editor(caller: &Actor, perms: &Permissions, user_id: &str) -> Result<()> {
    if caller.id == user_id {
        return Ok(());
    }
    crate::permissions::require(perms, Permission::UserEdit, &Scope::system())
}

/// A change to a user, as a client sends it: `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct UserChange {
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub email_address: Option<String>,
    pub is_active: Option<bool>,
    pub password: Option<String>,
}

/// Modifies a user. Anyone may change their own display name, email
/// address and password; the username, disabling and others' accounts need
/// `UserEdit`. Disabling stops the user's sessions and API keys at once
/// (both are checked against the user on every request); a new password
/// ends the user's portal sessions.
pub async fn update(
    store: &Store,
    passwords: &Passwords,
    caller: &Actor,
    perms: &Permissions,
    id: &str,
    change: UserChange,
) -> Result<User> {
    let before = get(store, caller, perms, id).await?;
    require_self_or_editor(caller, perms, id)?;
    let mut after = before.clone();
    let mut problems = vec![];
    if let Some(username) = change.username.as_deref().map(str::trim) {
        if username != before.username {
            crate::permissions::require(perms, Permission::UserEdit, &Scope::system())?;
            let probe = NewUser {
                username: username.to_owned(),
                is_service: true,
                ..Default::default()
            };
            problems.extend(check(&probe));
            after.username = username.to_owned();
        }
    }
    if let Some(display) = change.display_name {
        if let Some(problem) = crate::text::name_problem("DisplayName", "user", display.trim()) {
            problems.push(problem);
        }
        after.display_name = match display.trim() {
            "" => after.username.clone(),
            d => d.to_owned(),
        };
    }
    if let Some(email) = change.email_address {
        let email = email.trim();
        if !email.is_empty() && !looks_like_email(email) {
            problems.push(format!(
                "Email address '{email}' is not an email address (name@example.com)"
            ));
        }
        after.email_address = email.to_owned();
    }
    if let Some(active) = change.is_active {
        if active != before.is_active {
            crate::permissions::require(perms, Permission::UserEdit, &Scope::system())?;
            if !active && caller.id == id {
                problems.push("You cannot disable yourself".into());
            }
            after.is_active = active;
        }
    }
    let password = change.password.filter(|p| !p.is_empty());
    if let Some(p) = &password {
        if before.is_service {
            problems.push("A service account has no password: it signs in with API keys".into());
        } else {
            problems.extend(password_problem(p, &after.username));
        }
    }
    if !problems.is_empty() {
        return Err(ServiceError::invalid(problems));
    }
    if before.is_active && !after.is_active {
        crate::teams::check_user_change(store, caller, id, false).await?;
    }
    let hash = match &password {
        Some(p) => Some(passwords.hash(p).await?),
        None => None,
    };
    let mut tx = store.begin().await?;
    match tx.update_user(&after).await {
        Err(StoreError::Conflict(_)) => {
            return Err(ServiceError::invalid(vec![taken(&after.username)]))
        }
        other => other?,
    }
    let mut notes = vec![];
    if let Some(hash) = &hash {
        tx.set_password_hash(id, hash).await?;
        let ended = tx.end_sessions_of(id, None).await?;
        notes.push(format!("password changed, {ended} session(s) ended"));
    }
    if before.is_active && !after.is_active {
        let ended = tx.end_sessions_of(id, None).await?;
        notes.push(format!("disabled, {ended} session(s) ended"));
    }
    let entry = crate::audit::Entry::new(
        crate::audit::category::MODIFIED,
        None,
        format!("user {} was modified", after.username),
    )
    .about([id.to_owned()])
    .changed(Some(&before), Some(&after))
    .details(notes.join("; "));
    crate::audit::record(&mut tx, caller, entry).await?;
    tx.commit().await?;
    Ok(after)
}

/// Removes a user with their keys and sessions, and from every team.
pub async fn delete(store: &Store, caller: &Actor, perms: &Permissions, id: &str) -> Result<()> {
    let user = get(store, caller, perms, id).await?;
    crate::permissions::require(perms, Permission::UserEdit, &Scope::system())?;
    if caller.id == id {
        return Err(ServiceError::bad_request(
            "You cannot delete yourself: ask another user with UserEdit",
        ));
    }
    crate::teams::check_user_change(store, caller, id, true).await?;
    let teams = store.access_documents().await?.teams;
    let mut tx = store.begin().await?;
    for team in teams
        .iter()
        .filter(|t| t.member_user_ids.iter().any(|m| m == id))
    {
        if let Some(mut t) = tx.lock::<Team>(&team.id).await? {
            t.member_user_ids.retain(|m| m != id);
            t.version += 1;
            tx.update(&t).await?;
        }
    }
    tx.delete_user(id).await?;
    let entry = crate::audit::Entry::new(
        crate::audit::category::DELETED,
        None,
        format!("user {} was deleted", user.username),
    )
    .about([id.to_owned()])
    .changed(Some(&user), None);
    crate::audit::record(&mut tx, caller, entry).await?;
    tx.commit().await?;
    Ok(())
}

/// Creates a user after checking every field, reporting all problems at
/// once; the username is unique regardless of case.
pub async fn create(
    store: &Store,
    passwords: &Passwords,
    caller: &Actor,
    new: &NewUser,
) -> Result<User> {
    caller.require(Permission::UserEdit, &Scope::system())?;
    let username = new.username.trim();
    let mut problems = check(new);
    // A NUL is refused by `check` already, and PostgreSQL cannot look one up.
    if !username.is_empty()
        && !username.contains('\0')
        && store.user_with_password(username).await?.is_some()
    {
        problems.push(taken(username));
    }
    if !problems.is_empty() {
        return Err(ServiceError::invalid(problems));
    }
    let hash = match new.is_service {
        true => None,
        false => Some(passwords.hash(&new.password).await?),
    };
    let mut tx = store.begin().await?;
    let user = User {
        id: tx.next_id(Collection::Users).await?,
        username: username.to_owned(),
        display_name: match new.display_name.trim() {
            "" => username.to_owned(),
            d => d.to_owned(),
        },
        email_address: new.email_address.trim().to_owned(),
        is_active: new.is_active,
        is_service: new.is_service,
        can_password_be_edited: !new.is_service,
        is_requestor: false,
    };
    match tx.insert_user(&user, hash.as_deref()).await {
        // Someone took the name since the check above.
        Err(StoreError::Conflict(_)) => return Err(ServiceError::invalid(vec![taken(username)])),
        other => other?,
    }
    let kind = if user.is_service {
        "service account"
    } else {
        "user"
    };
    audit_changed(
        &mut tx,
        caller,
        None,
        "Created",
        format!("{kind} {} was created", user.username),
        vec![user.id.clone()],
        None,
        Some(&user),
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

fn taken(username: &str) -> String {
    format!("A user with the username '{username}' already exists")
}

/// The problems with a new user that need no look-up.
fn check(new: &NewUser) -> Vec<String> {
    let mut problems = vec![];
    let username = new.username.trim();
    if username.is_empty() {
        problems.push("Username is required".to_owned());
    } else if username.chars().count() > MAX_USERNAME_LEN {
        problems.push(format!(
            "Username must be at most {MAX_USERNAME_LEN} characters long"
        ));
    } else if username
        .chars()
        .any(|c| c.is_whitespace() || crate::text::is_forbidden_in_name(c))
    {
        problems.push(
            "Username cannot contain spaces, control, bidirectional or invisible characters"
                .to_owned(),
        );
    }
    if let Some(problem) = crate::text::name_problem("DisplayName", "user", new.display_name.trim())
    {
        problems.push(problem);
    }
    let email = new.email_address.trim();
    if email.chars().any(crate::text::is_forbidden_in_name) {
        problems.push(
            "EmailAddress cannot contain control, bidirectional or invisible characters".into(),
        );
    } else if !email.is_empty() && !looks_like_email(email) {
        problems.push(format!(
            "Email address '{email}' is not an email address (name@example.com)"
        ));
    }
    if new.is_service {
        if !new.password.is_empty() {
            problems.push(
                "Password must be empty for a service account: it signs in with API keys".into(),
            );
        }
    } else {
        problems.extend(password_problem(&new.password, username));
    }
    problems
}

fn looks_like_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// Why a password will not do, if it will not: too short, too long, the
/// username itself, or too few different characters to be hard to guess.
fn password_problem(password: &str, username: &str) -> Option<String> {
    let len = password.chars().count();
    if len == 0 {
        return Some("Password is required for a user who signs in".into());
    }
    if len < MIN_PASSWORD_LEN {
        return Some(format!(
            "Password must be at least {MIN_PASSWORD_LEN} characters long"
        ));
    }
    if len > MAX_PASSWORD_LEN {
        return Some(format!(
            "Password must be at most {MAX_PASSWORD_LEN} characters long"
        ));
    }
    if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
        return Some("Password must not contain the username".into());
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 5 {
        return Some(
            "Password is too easy to guess: use more different characters, or a passphrase".into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(username: &str, password: &str) -> NewUser {
        NewUser {
            username: username.into(),
            password: password.into(),
            is_active: true,
            ..Default::default()
        }
    }

    #[test]
    fn checks_each_field() {
        assert!(check(&person("alice", "correct horse")).is_empty());
        assert_eq!(
            check(&person("  ", "correct horse")),
            ["Username is required"]
        );
        assert!(check(&person("al ice", "correct horse"))[0].contains("spaces"));
        assert!(check(&person("alice", "short"))[0].contains("at least 8"));
        assert!(check(&person("alice", "aaaaaaaaaa"))[0].contains("easy to guess"));
        assert!(check(&person("alice", "xxALICExx1"))[0].contains("username"));
        let mut bad_mail = person("alice", "correct horse");
        bad_mail.email_address = "alice.example.com".into();
        assert!(check(&bad_mail)[0].contains("not an email address"));
        let mut robot = person("deployer", "");
        robot.is_service = true;
        assert!(check(&robot).is_empty());
        robot.password = "correct horse".into();
        assert!(check(&robot)[0].contains("service account"));
    }

    #[tokio::test]
    async fn creates_once_per_username() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Store::sqlite_url(&dir.path().join("c.db")))
            .await
            .unwrap();
        let caller = Actor::from(User {
            id: "Users-0".into(),
            username: "admin".into(),
            ..Default::default()
        });
        let passwords = Passwords::new(1);
        let alice = create(
            &store,
            &passwords,
            &caller,
            &person("alice", "correct horse"),
        )
        .await
        .unwrap();
        assert_eq!(alice.display_name, "alice");
        assert!(alice.can_password_be_edited && alice.is_active);
        assert!(
            crate::auth::check_password(&store, &passwords, "alice", "correct horse")
                .await
                .is_ok()
        );
        let again = create(
            &store,
            &passwords,
            &caller,
            &person("ALICE", "another pass"),
        )
        .await
        .unwrap_err();
        match again {
            ServiceError::BadRequest { errors, .. } => {
                assert_eq!(errors, ["A user with the username 'ALICE' already exists"])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(list(&store).await.unwrap().len(), 1);
    }
}
