//! Interruptions: list, read, take responsibility, submit an answer.

use super::{Id, Q};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::OctoJson;
use crate::links::{page_of, resource};
use crate::route_table::{get, op, post, Routes};
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use cuttle_model::Permission;
use cuttle_model::{Interruption, User};
use cuttle_service::interruptions::{self as svc, InterruptionFilter};
use cuttle_service::paging::ListParams;
use serde::Deserialize;
use serde_json::Value;

pub fn routes(mut r: Routes) -> Routes {
    r = r.space(
        "/interruptions",
        get(
            list,
            op("Lists interruptions (manual interventions and guided failures)")
                .requires(Permission::InterruptionView)
                .query::<ListParams>()
                .query::<Filters>()
                .page::<Interruption>(),
        ),
    );
    r = r.space(
        "/interruptions/{id}",
        get(
            interruption,
            op("One interruption")
                .requires(Permission::InterruptionView)
                .resource::<Interruption>(),
        ),
    );
    r = r.space(
        "/interruptions/{id}/responsible",
        get(
            responsible,
            op("The user responsible for an interruption, or null")
                .requires(Permission::InterruptionView)
                .optional::<User>(),
        )
        .put(
            take_responsibility,
            op("Makes the caller responsible for an interruption")
                .requires(Permission::InterruptionViewSubmitResponsible)
                .resource::<User>(),
        ),
    );
    r.space(
        "/interruptions/{id}/submit",
        post(
            submit,
            op("Answers an interruption with its form's values")
                .requires(Permission::InterruptionViewSubmitResponsible)
                .body_object()
                .resource::<Interruption>(),
        ),
    )
}

/// Filters beside the paging parameters. `pendingOnly` is read as text:
/// clients send `true`, `True` or `False`.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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
