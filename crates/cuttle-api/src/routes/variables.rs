//! Variable sets: `GET`/`PUT /api/{space}/variables/{id}`.

use super::{scoped, Id};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::json::OctoJson;
use crate::links::resource;
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use cuttle_model::VariableSet;
use cuttle_service::variables as svc;
use serde_json::Value;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    scoped(
        r,
        "/variables/{id}",
        get(variable_set).put(update_variable_set),
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
