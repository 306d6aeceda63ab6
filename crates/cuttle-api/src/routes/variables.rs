//! Variable sets: `GET`/`PUT /api/{space}/variables/{id}`.

use super::Id;
use crate::auth::Caller;
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

async fn variable_set(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &svc::get_variable_set(&inst.store, &s, &id).await?,
    )))
}

async fn update_variable_set(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<VariableSet>,
) -> ApiResult<Json<Value>> {
    let saved = svc::update_variable_set(&inst.store, &inst.master_key, &c, &s, &id, body).await?;
    Ok(Json(resource(&saved)))
}
