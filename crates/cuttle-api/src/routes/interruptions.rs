//! Interruptions: list, read, take responsibility, submit an answer.

use super::{scoped, Id, Q};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::OctoJson;
use crate::links::{page_of, resource};
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use cuttle_service::interruptions::{self as svc, InterruptionFilter};
use cuttle_service::paging::ListParams;
use serde::Deserialize;
use serde_json::Value;

pub fn routes(mut r: Router<AppState>) -> Router<AppState> {
    r = scoped(r, "/interruptions", get(list));
    r = scoped(r, "/interruptions/{id}", get(interruption));
    r = scoped(
        r,
        "/interruptions/{id}/responsible",
        get(responsible).put(take_responsibility),
    );
    scoped(r, "/interruptions/{id}/submit", post(submit))
}

/// Filters beside the paging parameters. `pendingOnly` is read as text:
/// clients send `true`, `True` or `False`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Filters {
    regarding: Option<String>,
    #[serde(rename = "pendingOnly", alias = "pendingonly")]
    pending_only: Option<String>,
}

async fn list(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    SpaceId(space): SpaceId,
    Q(params): Q<ListParams>,
    Q(f): Q<Filters>,
) -> ApiResult<Json<Value>> {
    let pending_only = match f.pending_only.as_deref().map(str::trim) {
        None | Some("") => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "pendingOnly must be true or false, not '{v}'"
            )))
        }
    };
    let filter = InterruptionFilter {
        regarding: f.regarding,
        pending_only,
        ids: params.ids(),
    };
    let found = svc::list(&inst, &caller, &space, &filter).await?;
    Ok(Json(page_of(
        found,
        &params,
        &format!("/api/{space}/interruptions"),
    )))
}

async fn interruption(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    SpaceId(space): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &svc::get(&inst, &caller, &space, &id).await?,
    )))
}

async fn responsible(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(space): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(match svc::responsible(&inst, &space, &id).await? {
        Some(user) => resource(&user),
        None => Value::Null,
    }))
}

async fn take_responsibility(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    SpaceId(space): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    let user = svc::take_responsibility(&inst, &caller, &space, &id).await?;
    Ok(Json(resource(&user)))
}

/// The body is the form's values, as Octopus clients send them back:
/// `{"Instructions": null, "Notes": "…", "Result": "Proceed"}` or
/// `{"Notes": "…", "Guidance": "Retry"}`.
async fn submit(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    SpaceId(space): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<Value>,
) -> ApiResult<Json<Value>> {
    let Value::Object(values) = body else {
        return Err(ApiError::bad_request(
            "The request body must be a JSON object of form values, such as {\"Notes\": \"…\", \"Result\": \"Proceed\"}",
        ));
    };
    let done = svc::submit(&inst, &caller, &space, &id, &values).await?;
    Ok(Json(resource(&done)))
}
