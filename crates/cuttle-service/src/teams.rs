//! Teams, user roles and scoped user roles: the commands that change who
//! may do what. Each checks the caller's permission, refuses a change that
//! would leave no administrator (or take the caller's own administration
//! away), and writes its audit event in the change's transaction.

use crate::actor::Actor;
use crate::permissions::require;
use crate::resources::{audit_change, delete_existing, insert_new, update_existing};
use crate::{Result, ServiceError};
use cuttle_model::ids::Collection;
use cuttle_model::permission::role_problems;
use cuttle_model::Environment;
use cuttle_model::{
    Permission, Permissions, Project, ProjectGroup, Scope, ScopedUserRole, Space, Team, User,
    UserRole,
};
use cuttle_store::{AccessDocuments, Document, Store};

/// The scope a team's permissions are checked at: its space, or the system.
fn team_scope(space_id: Option<&str>) -> Scope<'_> {
    match space_id {
        Some(s) => Scope::space(s),
        None => Scope::system(),
    }
}

/// Whether the caller may see this team.
pub fn may_view(perms: &Permissions, team: &Team) -> bool {
    perms.allows(Permission::TeamView, &team_scope(team.space_id.as_deref()))
}

/// The teams the caller may see, optionally of one space (`Some(None)`: the
/// installation-wide teams only).
pub async fn list(store: &Store, perms: &Permissions) -> Result<Vec<Team>> {
    let docs = store.access_documents().await?;
    Ok(docs
        .teams
        .into_iter()
        .filter(|t| may_view(perms, t))
        .collect())
}

/// One team, or the same 404 as a missing one when the caller may not see it.
pub async fn get(store: &Store, perms: &Permissions, id: &str) -> Result<Team> {
    match store.get::<Team>(id).await? {
        Some(t) if may_view(perms, &t) => Ok(t),
        _ => Err(ServiceError::not_found(Team::KIND, id)),
    }
}

/// Refuses a change to who may do what when, applied to `after`, it leaves
/// no active administrator or takes the caller's own administration away.
async fn check_administrators(
    store: &Store,
    caller: &Actor,
    change: impl FnOnce(&mut AccessDocuments, &mut Vec<User>),
) -> Result<()> {
    let mut docs = store.access_documents().await?;
    let mut users = store.users().await?;
    let admins = |d: &AccessDocuments, u: &[User]| {
        crate::permissions::administrators(u, &d.teams, &d.scoped_roles, &d.roles)
    };
    let before = admins(&docs, &users);
    change(&mut docs, &mut users);
    let after = admins(&docs, &users);
    if before.contains(&caller.id) && !after.contains(&caller.id) {
        return Err(ServiceError::bad_request(
            "You cannot remove your own administrator permission: ask another administrator",
        ));
    }
    if after.is_empty() && !before.is_empty() {
        return Err(ServiceError::bad_request(
            "The last administrator cannot be disabled or removed from the administrators team",
        ));
    }
    Ok(())
}

/// What a client sends to create or modify a team.
#[derive(Clone, Debug, Default)]
pub struct TeamChange {
    pub name: String,
    pub description: String,
    pub space_id: Option<String>,
    pub member_user_ids: Vec<String>,
    /// The version the client read; a modification carrying an older one
    /// is refused.
    pub version: Option<i64>,
}

async fn check_team(store: &Store, change: &TeamChange, errors: &mut Vec<String>) -> Result<()> {
    crate::resources::check_name("team", &change.name, errors);
    if let Some(space) = &change.space_id {
        if store.get::<Space>(space).await?.is_none() {
            errors.push(format!("The space '{space}' was not found"));
        }
    }
    for id in &change.member_user_ids {
        if store.user(id).await?.is_none() {
            errors.push(format!("The user '{id}' was not found"));
        }
    }
    Ok(())
}

pub async fn create(
    store: &Store,
    caller: &Actor,
    perms: &Permissions,
    mut change: TeamChange,
) -> Result<Team> {
    require(
        perms,
        Permission::TeamCreate,
        &team_scope(change.space_id.as_deref()),
    )?;
    change.member_user_ids.dedup();
    let mut errors = vec![];
    check_team(store, &change, &mut errors).await?;
    if !errors.is_empty() {
        return Err(ServiceError::invalid(errors));
    }
    let team = Team {
        id: String::new(),
        name: change.name.trim().to_owned(),
        description: change.description,
        space_id: change.space_id,
        member_user_ids: change.member_user_ids,
        external_security_groups: vec![],
        can_be_deleted: true,
        can_be_renamed: true,
        can_change_roles: true,
        can_change_members: true,
        version: 1,
    };
    insert_new(store, caller, Collection::Teams, team, |t, id| t.id = id).await
}

pub async fn update(
    store: &Store,
    caller: &Actor,
    perms: &Permissions,
    id: &str,
    mut change: TeamChange,
) -> Result<Team> {
    let before = get(store, perms, id).await?;
    require(
        perms,
        Permission::TeamEdit,
        &team_scope(before.space_id.as_deref()),
    )?;
    change.member_user_ids.dedup();
    let mut errors = vec![];
    if change.version.is_none() {
        errors.push("Version is required: send the version of the team you read".into());
    }
    if change.space_id != before.space_id {
        errors.push("A team cannot move to another space: create a new team there".into());
    }
    if !before.can_be_renamed && change.name.trim() != before.name {
        errors.push(format!("The team '{}' cannot be renamed", before.name));
    }
    if !before.can_change_members && change.member_user_ids != before.member_user_ids {
        errors.push(format!(
            "The members of '{}' cannot be changed: every user is in it",
            before.name
        ));
    }
    check_team(store, &change, &mut errors).await?;
    if !errors.is_empty() {
        return Err(ServiceError::invalid(errors));
    }
    let members = change.member_user_ids.clone();
    check_administrators(store, caller, |docs, _| {
        if let Some(t) = docs.teams.iter_mut().find(|t| t.id == id) {
            t.member_user_ids = members;
        }
    })
    .await?;
    let mut tx = store.begin().await?;
    let Some(current) = tx.lock::<Team>(id).await? else {
        return Err(ServiceError::not_found(Team::KIND, id));
    };
    if let Some(read) = change.version {
        if read != current.version {
            return Err(ServiceError::Conflict(format!(
                "The team '{}' was changed by someone else since you read it (you read version {read}, it is now at version {}): read it again and reapply your change",
                current.name, current.version
            )));
        }
    }
    let after = Team {
        name: change.name.trim().to_owned(),
        description: change.description,
        member_user_ids: change.member_user_ids,
        version: current.version + 1,
        ..current.clone()
    };
    tx.update(&after).await?;
    let message = format!("team {} was modified", after.name);
    audit_change(
        &mut tx,
        caller,
        Some(&current),
        Some(&after),
        message,
        vec![],
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

pub async fn delete(store: &Store, caller: &Actor, perms: &Permissions, id: &str) -> Result<()> {
    let team = get(store, perms, id).await?;
    require(
        perms,
        Permission::TeamDelete,
        &team_scope(team.space_id.as_deref()),
    )?;
    if !team.can_be_deleted {
        return Err(ServiceError::bad_request(format!(
            "The team '{}' is built in and cannot be deleted",
            team.name
        )));
    }
    check_administrators(store, caller, |docs, _| {
        docs.teams.retain(|t| t.id != id);
    })
    .await?;
    let scoped = store.access_documents().await?.scoped_roles;
    let mut tx = store.begin().await?;
    for s in scoped.iter().filter(|s| s.team_id == id) {
        tx.delete::<ScopedUserRole>(&s.id).await?;
    }
    tx.delete::<Team>(id).await?;
    let message = format!("team {} was deleted", team.name);
    audit_change(&mut tx, caller, Some(&team), None, message, vec![]).await?;
    tx.commit().await?;
    Ok(())
}

// ---- user roles ----

pub async fn list_roles(store: &Store, perms: &Permissions) -> Result<Vec<UserRole>> {
    require(perms, Permission::UserRoleView, &Scope::system())?;
    Ok(store.access_documents().await?.roles)
}

pub async fn get_role(store: &Store, perms: &Permissions, id: &str) -> Result<UserRole> {
    require(perms, Permission::UserRoleView, &Scope::system())?;
    store
        .get::<UserRole>(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(UserRole::KIND, id))
}

fn check_role(role: &UserRole) -> Result<()> {
    let mut errors = vec![];
    crate::resources::check_name("user role", &role.name, &mut errors);
    errors.extend(role_problems(role));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::invalid(errors))
    }
}

pub async fn create_role(
    store: &Store,
    caller: &Actor,
    perms: &Permissions,
    mut role: UserRole,
) -> Result<UserRole> {
    require(perms, Permission::UserRoleEdit, &Scope::system())?;
    check_role(&role)?;
    role.name = role.name.trim().to_owned();
    role.can_be_deleted = true;
    insert_new(store, caller, Collection::UserRoles, role, |r, id| {
        r.id = id
    })
    .await
}

pub async fn update_role(
    store: &Store,
    caller: &Actor,
    perms: &Permissions,
    id: &str,
    role: UserRole,
) -> Result<UserRole> {
    let before = get_role(store, perms, id).await?;
    require(perms, Permission::UserRoleEdit, &Scope::system())?;
    if !before.can_be_deleted {
        return Err(ServiceError::bad_request(format!(
            "The user role '{}' is built in and cannot be changed: copy it into a role of your own",
            before.name
        )));
    }
    check_role(&role)?;
    let after = UserRole {
        id: before.id.clone(),
        name: role.name.trim().to_owned(),
        can_be_deleted: true,
        ..role
    };
    let changed = after.clone();
    check_administrators(store, caller, |docs, _| {
        if let Some(r) = docs.roles.iter_mut().find(|r| r.id == changed.id) {
            *r = changed;
        }
    })
    .await?;
    update_existing(store, caller, &before, &after).await?;
    Ok(after)
}

pub async fn delete_role(
    store: &Store,
    caller: &Actor,
    perms: &Permissions,
    id: &str,
) -> Result<()> {
    let role = get_role(store, perms, id).await?;
    require(perms, Permission::UserRoleEdit, &Scope::system())?;
    if !role.can_be_deleted {
        return Err(ServiceError::bad_request(format!(
            "The user role '{}' is built in and cannot be deleted",
            role.name
        )));
    }
    let used = store
        .access_documents()
        .await?
        .scoped_roles
        .iter()
        .filter(|s| s.user_role_id == id)
        .count();
    if used > 0 {
        return Err(ServiceError::Conflict(format!(
            "The user role '{}' is given to teams {used} time(s): take it from them first",
            role.name
        )));
    }
    delete_existing(store, caller, &role).await
}

// ---- scoped user roles ----

/// Scoped user roles are seen by those who may see their team.
pub async fn list_scoped(
    store: &Store,
    perms: &Permissions,
    team_id: Option<&str>,
) -> Result<Vec<ScopedUserRole>> {
    let docs = store.access_documents().await?;
    Ok(docs
        .scoped_roles
        .into_iter()
        .filter(|s| team_id.is_none_or(|t| s.team_id == t))
        .filter(|s| {
            docs.teams
                .iter()
                .find(|t| t.id == s.team_id)
                .is_some_and(|t| may_view(perms, t))
        })
        .collect())
}

pub async fn get_scoped(store: &Store, perms: &Permissions, id: &str) -> Result<ScopedUserRole> {
    let s = store
        .get::<ScopedUserRole>(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(ScopedUserRole::KIND, id))?;
    // A team the caller may not see hides its roles too.
    get(store, perms, &s.team_id)
        .await
        .map_err(|_| ServiceError::not_found(ScopedUserRole::KIND, id))?;
    Ok(s)
}

/// Checks a scoped role against its team and role, and fills in the
/// team's space. Every id it is narrowed to must exist in that space.
async fn check_scoped(store: &Store, perms: &Permissions, s: &mut ScopedUserRole) -> Result<Team> {
    let team = match store.get::<Team>(&s.team_id).await? {
        Some(t) if may_view(perms, &t) => t,
        _ => {
            return Err(ServiceError::invalid(vec![format!(
                "The team '{}' was not found",
                s.team_id
            )]))
        }
    };
    let mut errors = vec![];
    if !team.can_change_roles {
        errors.push(format!("The roles of '{}' cannot be changed", team.name));
    }
    let Some(role) = store.get::<UserRole>(&s.user_role_id).await? else {
        return Err(ServiceError::invalid(vec![format!(
            "The user role '{}' was not found",
            s.user_role_id
        )]));
    };
    if let Some(team_space) = &team.space_id {
        match &s.space_id {
            Some(given) if given != team_space => errors.push(format!(
                "The team '{}' belongs to {team_space}: its roles apply there only",
                team.name
            )),
            _ => s.space_id = Some(team_space.clone()),
        }
    }
    match &s.space_id {
        Some(space) => {
            if store.get::<Space>(space).await?.is_none() {
                errors.push(format!("The space '{space}' was not found"));
            }
            async fn each<D: Document>(
                store: &Store,
                space: &str,
                ids: &[String],
                errors: &mut Vec<String>,
            ) -> Result<()> {
                for id in ids {
                    match store.get::<D>(id).await? {
                        Some(d) if d.space_id() == Some(space) => {}
                        _ => {
                            errors.push(format!("The {} '{id}' was not found in {space}", D::KIND))
                        }
                    }
                }
                Ok(())
            }
            each::<Project>(store, space, &s.project_ids, &mut errors).await?;
            each::<ProjectGroup>(store, space, &s.project_group_ids, &mut errors).await?;
            each::<Environment>(store, space, &s.environment_ids, &mut errors).await?;
            if !s.tenant_ids.is_empty() {
                errors.push("TenantIds: this server has no tenants yet".into());
            }
        }
        None => {
            if !role.granted_space_permissions.is_empty()
                && role.granted_system_permissions.is_empty()
            {
                errors.push(format!(
                    "The user role '{}' holds only space permissions: give it with a SpaceId",
                    role.name
                ));
            }
            if !(s.project_ids.is_empty()
                && s.project_group_ids.is_empty()
                && s.environment_ids.is_empty()
                && s.tenant_ids.is_empty())
            {
                errors.push("A role given without a SpaceId cannot be narrowed to projects, environments or tenants".into());
            }
        }
    }
    if errors.is_empty() {
        Ok(team)
    } else {
        Err(ServiceError::invalid(errors))
    }
}

fn require_team_edit(perms: &Permissions, team: &Team) -> Result<()> {
    require(
        perms,
        Permission::TeamEdit,
        &team_scope(team.space_id.as_deref()),
    )
}

pub async fn create_scoped(
    store: &Store,
    caller: &Actor,
    perms: &Permissions,
    mut s: ScopedUserRole,
) -> Result<ScopedUserRole> {
    let team = check_scoped(store, perms, &mut s).await?;
    require_team_edit(perms, &team)?;
    let mut tx = store.begin().await?;
    s.id = tx.next_id(Collection::ScopedUserRoles).await?;
    tx.insert(&s).await?;
    let message = format!("role {} was given to team {}", s.user_role_id, team.name);
    audit_change(
        &mut tx,
        caller,
        None,
        Some(&s),
        message,
        vec![team.id.clone()],
    )
    .await?;
    tx.commit().await?;
    Ok(s)
}

pub async fn update_scoped(
    store: &Store,
    caller: &Actor,
    perms: &Permissions,
    id: &str,
    mut s: ScopedUserRole,
) -> Result<ScopedUserRole> {
    let before = get_scoped(store, perms, id).await?;
    s.id = before.id.clone();
    if s.team_id != before.team_id {
        return Err(ServiceError::bad_request(
            "A scoped user role cannot move to another team",
        ));
    }
    let team = check_scoped(store, perms, &mut s).await?;
    require_team_edit(perms, &team)?;
    let changed = s.clone();
    check_administrators(store, caller, |docs, _| {
        if let Some(x) = docs.scoped_roles.iter_mut().find(|x| x.id == changed.id) {
            *x = changed;
        }
    })
    .await?;
    let mut tx = store.begin().await?;
    tx.update(&s).await?;
    let message = format!("the roles of team {} were modified", team.name);
    audit_change(
        &mut tx,
        caller,
        Some(&before),
        Some(&s),
        message,
        vec![team.id.clone()],
    )
    .await?;
    tx.commit().await?;
    Ok(s)
}

pub async fn delete_scoped(
    store: &Store,
    caller: &Actor,
    perms: &Permissions,
    id: &str,
) -> Result<()> {
    let s = get_scoped(store, perms, id).await?;
    let team = get(store, perms, &s.team_id).await?;
    require_team_edit(perms, &team)?;
    if !team.can_change_roles {
        return Err(ServiceError::bad_request(format!(
            "The roles of '{}' cannot be changed",
            team.name
        )));
    }
    check_administrators(store, caller, |docs, _| {
        docs.scoped_roles.retain(|x| x.id != id);
    })
    .await?;
    let mut tx = store.begin().await?;
    tx.delete::<ScopedUserRole>(id).await?;
    let message = format!("role {} was taken from team {}", s.user_role_id, team.name);
    audit_change(
        &mut tx,
        caller,
        Some(&s),
        None,
        message,
        vec![team.id.clone()],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Refuses disabling or removing a user when that would leave no
/// administrator or take the caller's own away.
pub(crate) async fn check_user_change(
    store: &Store,
    caller: &Actor,
    user_id: &str,
    remove: bool,
) -> Result<()> {
    check_administrators(store, caller, |_, users| {
        if remove {
            users.retain(|u| u.id != user_id);
        } else if let Some(u) = users.iter_mut().find(|u| u.id == user_id) {
            u.is_active = false;
        }
    })
    .await
}

/// The team that manages a new space, holding Space Manager there.
pub fn space_managers_team(space_id: &str, members: Vec<String>) -> Team {
    Team {
        id: format!(
            "{}{}",
            cuttle_model::permission::SPACE_MANAGERS_TEAM_PREFIX,
            space_id.to_lowercase()
        ),
        name: "Space Managers".into(),
        description: "Members may do everything in this space".into(),
        space_id: Some(space_id.to_owned()),
        member_user_ids: members,
        external_security_groups: vec![],
        can_be_deleted: false,
        can_be_renamed: false,
        can_change_roles: false,
        can_change_members: true,
        version: 1,
    }
}

/// The Space Manager role of a space's managers team.
pub fn space_managers_grant(team: &Team) -> ScopedUserRole {
    ScopedUserRole {
        id: format!("scopeduserroles-{}", team.id),
        team_id: team.id.clone(),
        user_role_id: cuttle_model::permission::SPACE_MANAGER_ROLE_ID.into(),
        space_id: team.space_id.clone(),
        ..Default::default()
    }
}
