//! Deciding what a caller may do: their [`Permissions`], computed once per
//! request from the teams, roles and scoped roles in the store, and the
//! errors a refusal answers with. The rules themselves are pure
//! (`cuttle_model::permission`); this module reads and answers.

use crate::{Result, ServiceError};
use cuttle_model::permission::{
    administrators_grant, builtin_roles, builtin_teams, ADMINISTRATORS_TEAM_ID,
};
use cuttle_model::user::ADMIN_USERNAME;
use cuttle_model::Project;
use cuttle_model::{Permission, Permissions, Scope, ScopedUserRole, Team, User, UserRole};
use cuttle_store::{DocumentQuery, Store, StoreError};

/// What `user` may do, now. A disabled user may do nothing.
pub async fn of_user(store: &Store, user: &User) -> Result<Permissions> {
    let docs = store.access_documents().await?;
    let mut perms = Permissions::of(
        &user.id,
        user.is_active,
        &docs.teams,
        &docs.scoped_roles,
        &docs.roles,
    );
    // Only where a grant names project groups: most users never pay for it.
    for space in perms.group_narrowed_spaces() {
        let projects = store
            .list::<Project>(&DocumentQuery::in_space(&space))
            .await?;
        perms.project_groups.extend(
            projects
                .items
                .into_iter()
                .map(|p| (p.id, p.project_group_id)),
        );
    }
    Ok(perms)
}

/// The refusal of `p` at `scope`, naming both, as Octopus answers a
/// missing permission.
pub fn missing(p: Permission, scope: &Scope) -> ServiceError {
    ServiceError::Forbidden(format!(
        "You do not have permission to perform this action. Missing permission: {p} ({scope})"
    ))
}

/// Allowed, or the 403 that names what is missing.
pub fn require(perms: &Permissions, p: Permission, scope: &Scope) -> Result<()> {
    if perms.allows(p, scope) {
        Ok(())
    } else {
        Err(missing(p, scope))
    }
}

/// Allowed, or the same 404 as a document that does not exist: what a
/// caller may not see must not be told apart from what is not there.
pub fn require_visible(
    perms: &Permissions,
    p: Permission,
    scope: &Scope,
    kind: &str,
    id: &str,
) -> Result<()> {
    if perms.allows(p, scope) {
        Ok(())
    } else {
        Err(ServiceError::not_found(kind, id))
    }
}

/// The roles, teams and administrators' grant every installation has, and
/// the `admin` user in the administrators team when that team is new (an
/// installation from before teams existed). Run at every start; built-in
/// roles are brought up to date with this version's permission names.
/// Several nodes may start at once: a conflict means another wrote it.
pub async fn ensure_builtins(store: &Store) -> Result<()> {
    for role in builtin_roles() {
        let mut tx = store.begin().await?;
        let done = match tx.get::<UserRole>(&role.id).await? {
            None => tx.insert(&role).await,
            Some(existing) if existing != role => tx.update(&role).await,
            Some(_) => Ok(()),
        };
        settle(done, tx).await?;
    }
    for mut team in builtin_teams() {
        if store.get::<Team>(&team.id).await?.is_some() {
            continue;
        }
        if team.id == ADMINISTRATORS_TEAM_ID {
            if let Some((admin, _)) = store.user_with_password(ADMIN_USERNAME).await? {
                team.member_user_ids.push(admin.id);
            }
        }
        let mut tx = store.begin().await?;
        let done = tx.insert(&team).await;
        settle(done, tx).await?;
    }
    let grant = administrators_grant();
    if store.get::<ScopedUserRole>(&grant.id).await?.is_none() {
        let mut tx = store.begin().await?;
        let done = tx.insert(&grant).await;
        settle(done, tx).await?;
    }
    Ok(())
}

async fn settle(done: Result<(), StoreError>, tx: cuttle_store::Tx) -> Result<()> {
    match done {
        Ok(()) => match tx.commit().await {
            Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e.into()),
        },
        Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Puts `user_id` in the administrators team (the first administrator).
pub async fn make_administrator(store: &Store, user_id: &str) -> Result<()> {
    ensure_builtins(store).await?;
    let mut tx = store.begin().await?;
    let Some(mut team) = tx.lock::<Team>(ADMINISTRATORS_TEAM_ID).await? else {
        return Err(ServiceError::Internal(
            "the administrators team is missing".into(),
        ));
    };
    if !team.member_user_ids.iter().any(|m| m == user_id) {
        team.member_user_ids.push(user_id.to_owned());
        team.version += 1;
        tx.update(&team).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The active users who hold `AdministerSystem`, from the documents given.
pub fn administrators(
    users: &[User],
    teams: &[Team],
    scoped: &[ScopedUserRole],
    roles: &[UserRole],
) -> Vec<String> {
    users
        .iter()
        .filter(|u| Permissions::of(&u.id, u.is_active, teams, scoped, roles).administrator)
        .map(|u| u.id.clone())
        .collect()
}
