//! Teams, user roles, scoped user roles and permissions: who may do what.

use super::{Id, Q};
use crate::auth::Caller;
use crate::authorize::Perms;
use crate::error::ApiResult;
use crate::json::OctoJson;
use crate::links::{page_of, resource};
use crate::route_table::{get, op, Routes};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cuttle_model::{Permission, ScopedUserRole, Team, UserRole};
use cuttle_service::paging::ListParams;
use cuttle_service::teams as svc;
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes(mut r: Routes) -> Routes {
    r = r.at(
        "/api/teams",
        get(
            list_teams,
            op("Lists the teams the caller may see")
                .requires_somewhere(Permission::TeamView)
                .query::<ListParams>()
                .page::<Team>(),
        )
        .post(
            create_team,
            op("Creates a team, in a space or (without SpaceId) installation-wide")
                .signed_in()
                .body::<TeamBody>()
                .created::<Team>(),
        ),
    );
    r = r.at(
        "/api/teams/{id}",
        get(
            team,
            op("One team")
                .requires_somewhere(Permission::TeamView)
                .resource::<Team>(),
        )
        .put(
            update_team,
            op("Modifies a team; its Version must be the one read")
                .signed_in()
                .body::<TeamBody>()
                .resource::<Team>(),
        )
        .delete(
            delete_team,
            op("Deletes a team and the roles it holds")
                .signed_in()
                .no_content(),
        ),
    );
    r = r.at(
        "/api/teams/{id}/scopeduserroles",
        get(
            team_scoped_roles,
            op("The roles a team holds, with their scopes")
                .requires_somewhere(Permission::TeamView)
                .query::<ListParams>()
                .page::<ScopedUserRole>(),
        ),
    );
    r = r.at(
        "/api/userroles",
        get(
            list_roles,
            op("Lists user roles, built in and custom")
                .requires(Permission::UserRoleView)
                .query::<ListParams>()
                .page::<UserRole>(),
        )
        .post(
            create_role,
            op("Creates a custom user role; an unknown permission name is refused, named")
                .requires(Permission::UserRoleEdit)
                .body::<UserRole>()
                .created::<UserRole>(),
        ),
    );
    r = r.at(
        "/api/userroles/{id}",
        get(
            role,
            op("One user role")
                .requires(Permission::UserRoleView)
                .resource::<UserRole>(),
        )
        .put(
            update_role,
            op("Modifies a custom user role")
                .requires(Permission::UserRoleEdit)
                .body::<UserRole>()
                .resource::<UserRole>(),
        )
        .delete(
            delete_role,
            op("Deletes a custom user role no team holds")
                .requires(Permission::UserRoleEdit)
                .no_content(),
        ),
    );
    r = r.at(
        "/api/scopeduserroles",
        get(
            list_scoped,
            op("Lists the roles given to the teams the caller may see")
                .requires_somewhere(Permission::TeamView)
                .query::<ListParams>()
                .page::<ScopedUserRole>(),
        )
        .post(
            create_scoped,
            op("Gives a team a role, in a space and optionally for projects, project groups, environments and tenants")
                .signed_in()
                .body::<ScopedUserRole>()
                .created::<ScopedUserRole>(),
        ),
    );
    r = r.at(
        "/api/scopeduserroles/{id}",
        get(
            scoped,
            op("One scoped user role")
                .requires_somewhere(Permission::TeamView)
                .resource::<ScopedUserRole>(),
        )
        .put(
            update_scoped,
            op("Changes a team's role or its scope")
                .signed_in()
                .body::<ScopedUserRole>()
                .resource::<ScopedUserRole>(),
        )
        .delete(
            delete_scoped,
            op("Takes a role from a team").signed_in().no_content(),
        ),
    );
    r = r.at(
        "/api/permissions/all",
        get(
            all_permissions,
            op("Every permission, by Octopus's name, with its description and level").signed_in(),
        ),
    );
    r.at(
        "/api/users/{id}/permissions",
        get(
            user_permissions,
            op("What a user may do, and where (the caller's own, or anyone's with UserView)")
                .signed_in(),
        ),
    )
}

/// A team as clients send it.
#[derive(Deserialize, serde::Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
struct TeamBody {
    name: String,
    description: String,
    space_id: Option<String>,
    member_user_ids: Vec<String>,
    /// The version read; required to modify, so a stale write is refused.
    version: Option<i64>,
}

impl From<TeamBody> for svc::TeamChange {
    fn from(b: TeamBody) -> Self {
        svc::TeamChange {
            name: b.name,
            description: b.description,
            space_id: b.space_id.filter(|s| !s.is_empty()),
            member_user_ids: b.member_user_ids,
            version: b.version,
        }
    }
}

async fn list_teams(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let mut teams = svc::list(&inst.store, &perms).await?;
    let ids = p.ids();
    if !ids.is_empty() {
        teams.retain(|t| ids.contains(&t.id));
    }
    if let Some(part) = p.partial_name.as_deref().filter(|s| !s.is_empty()) {
        let part = part.to_lowercase();
        teams.retain(|t| t.name.to_lowercase().contains(&part));
    }
    Ok(Json(page_of(teams, &p, "/api/teams")))
}

async fn team(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(&svc::get(&inst.store, &perms, &id).await?)))
}

async fn create_team(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    OctoJson(body): OctoJson<TeamBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let t = svc::create(&inst.store, &c, &perms, body.into()).await?;
    Ok((StatusCode::CREATED, Json(resource(&t))))
}

async fn update_team(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    Id(id): Id,
    OctoJson(body): OctoJson<TeamBody>,
) -> ApiResult<Json<Value>> {
    let t = svc::update(&inst.store, &c, &perms, &id, body.into()).await?;
    Ok(Json(resource(&t)))
}

async fn delete_team(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    svc::delete(&inst.store, &c, &perms, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn team_scoped_roles(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    Id(id): Id,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    svc::get(&inst.store, &perms, &id).await?;
    let items = svc::list_scoped(&inst.store, &perms, Some(&id)).await?;
    Ok(Json(page_of(
        items,
        &p,
        &format!("/api/teams/{id}/scopeduserroles"),
    )))
}

async fn list_roles(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let roles = svc::list_roles(&inst.store, &perms).await?;
    Ok(Json(page_of(roles, &p, "/api/userroles")))
}

async fn role(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &svc::get_role(&inst.store, &perms, &id).await?,
    )))
}

async fn create_role(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    OctoJson(body): OctoJson<UserRole>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let r = svc::create_role(&inst.store, &c, &perms, body).await?;
    Ok((StatusCode::CREATED, Json(resource(&r))))
}

async fn update_role(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    Id(id): Id,
    OctoJson(body): OctoJson<UserRole>,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &svc::update_role(&inst.store, &c, &perms, &id, body).await?,
    )))
}

async fn delete_role(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    svc::delete_role(&inst.store, &c, &perms, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_scoped(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let items = svc::list_scoped(&inst.store, &perms, None).await?;
    Ok(Json(page_of(items, &p, "/api/scopeduserroles")))
}

async fn scoped(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &svc::get_scoped(&inst.store, &perms, &id).await?,
    )))
}

async fn create_scoped(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    OctoJson(body): OctoJson<ScopedUserRole>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let s = svc::create_scoped(&inst.store, &c, &perms, body).await?;
    Ok((StatusCode::CREATED, Json(resource(&s))))
}

async fn update_scoped(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    Id(id): Id,
    OctoJson(body): OctoJson<ScopedUserRole>,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &svc::update_scoped(&inst.store, &c, &perms, &id, body).await?,
    )))
}

async fn delete_scoped(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    svc::delete_scoped(&inst.store, &c, &perms, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every permission, keyed by name as Octopus's `/api/permissions/all` is.
async fn all_permissions() -> Json<Value> {
    let mut all = serde_json::Map::new();
    for p in Permission::ALL {
        let level = match p.level() {
            cuttle_model::permission::Level::System => vec!["System"],
            cuttle_model::permission::Level::Space => vec!["Space"],
            cuttle_model::permission::Level::Both => vec!["System", "Space"],
        };
        all.insert(
            p.name().to_owned(),
            json!({"Description": p.description(), "SupportedRestrictions": [], "Levels": level}),
        );
    }
    Json(Value::Object(all))
}

/// What a user may do, and where: system permissions, and per space the
/// permissions with the projects, environments and tenants they are
/// narrowed to (Octopus's `UserPermissionSetResource` shape).
async fn user_permissions(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    Perms(perms): Perms,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    let user = cuttle_service::users::get(&inst.store, &caller, &perms, &id).await?;
    let theirs = cuttle_service::permissions::of_user(&inst.store, &user).await?;
    let mut system: Vec<&str> = vec![];
    let mut space: serde_json::Map<String, Value> = serde_json::Map::new();
    for g in &theirs.grants {
        for p in &g.permissions {
            match &g.space_id {
                None => system.push(p.name()),
                Some(s) => {
                    let entry = space
                        .entry(p.name().to_owned())
                        .or_insert_with(|| Value::Array(vec![]));
                    if let Value::Array(list) = entry {
                        list.push(json!({
                            "SpaceId": s,
                            "RestrictedToProjectIds": g.project_ids,
                            "RestrictedToProjectGroupIds": g.project_group_ids,
                            "RestrictedToEnvironmentIds": g.environment_ids,
                            "RestrictedToTenantIds": g.tenant_ids,
                        }));
                    }
                }
            }
        }
    }
    system.sort_unstable();
    system.dedup();
    Ok(Json(json!({
        "Id": user.id,
        "IsAdministrator": theirs.administrator,
        "SystemPermissions": system,
        "SpacePermissions": space,
        "Teams": theirs.grants.iter().map(|g| g.team_id.clone()).collect::<std::collections::BTreeSet<_>>(),
        "Links": {"Self": format!("/api/users/{}/permissions", user.id)},
    })))
}
