//! Variable sets: `GET`/`PUT /api/{space}/variables/{id}`.

use super::Id;
use crate::auth::Caller;
use crate::authorize::Perms;
use crate::error::ApiResult;
use crate::json::OctoJson;
use crate::links::resource;
use crate::route_table::{get, op, Routes};
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use cuttle_model::Permission;
use cuttle_model::VariableSet;
use cuttle_service::variables::{self as svc, VariableSetView};
use serde_json::Value;

pub fn routes(r: Routes) -> Routes {
    r.space(
        "/variables/{id}",
        get(
            variable_set,
            op("A variable set; sensitive values are never sent")
                .requires(Permission::VariableView)
                .resource::<VariableSetView>(),
        )
        .put(
            update_variable_set,
            op("Replaces a variable set's variables; its Version must be the one loaded")
                .requires(Permission::VariableEdit)
                .body::<VariableSet>()
                .resource::<VariableSetView>(),
        ),
    )
}

/// Checks `p` on the project that owns a variable set (a library set's
/// permission is the route's); one of a project the caller may not see
/// answers as missing.
async fn check_owner(
    inst: &AppState,
    perms: &cuttle_model::Permissions,
    space: &str,
    owner_id: &str,
    id: &str,
    p: Permission,
) -> ApiResult<()> {
    if owner_id.starts_with("Projects-") {
        super::projects::project_for(&inst.store, perms, space, owner_id, p)
            .await
            .map_err(|e| match e.status {
                axum::http::StatusCode::NOT_FOUND => {
                    cuttle_service::ServiceError::not_found("variable set", id).into()
                }
                _ => e,
            })?;
    }
    Ok(())
}

async fn variable_set(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    let mut view = svc::get_variable_set(&inst.store, &s, &id).await?;
    check_owner(
        &inst,
        &perms,
        &s,
        &view.set.owner_id,
        &id,
        Permission::VariableView,
    )
    .await?;
    cuttle_service::variable_access::retain_visible(&perms, &s, &mut view);
    Ok(Json(resource(&view)))
}

async fn update_variable_set(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<VariableSet>,
) -> ApiResult<Json<Value>> {
    let before = svc::get_variable_set(&inst.store, &s, &id).await?;
    check_owner(
        &inst,
        &perms,
        &s,
        &before.set.owner_id,
        &id,
        Permission::VariableEdit,
    )
    .await?;
    let mut saved =
        svc::update_variable_set(&inst.store, &inst.master_key, &c, &s, &id, body).await?;
    cuttle_service::variable_access::retain_visible(&perms, &s, &mut saved);
    Ok(Json(resource(&saved)))
}
