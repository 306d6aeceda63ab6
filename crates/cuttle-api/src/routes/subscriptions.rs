//! Subscriptions: Octopus's `/api/{space}/subscriptions`, and each one's
//! delivery history (a Cuttle addition).

use super::{document_query, Id, Q};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::json::OctoJson;
use crate::links::{page, resource};
use crate::route_table::{get, op, Routes};
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cuttle_model::Permission;
use cuttle_model::Subscription;
use cuttle_service::paging::ListParams;
use cuttle_service::resources as svc;
use cuttle_service::subscriptions::{self as subs, DeliveryRecord};
use cuttle_store::DocumentQuery;
use serde_json::Value;

pub fn routes(r: Routes) -> Routes {
    let r = r.space(
        "/subscriptions",
        get(
            list,
            op("Lists the space's subscriptions")
                .requires(Permission::SubscriptionView)
                .query::<ListParams>()
                .page::<Subscription>(),
        )
        .post(
            create,
            op("Creates a subscription; without a WebhookSigningSecret it is given one, answered this once")
                .requires(Permission::SubscriptionEdit)
                .body::<Subscription>()
                .created::<Subscription>(),
        ),
    );
    let r = r.space(
        "/subscriptions/all",
        get(
            all,
            op("Every subscription in the space")
                .requires(Permission::SubscriptionView)
                .array::<Subscription>(),
        ),
    );
    let r = r.space(
        "/subscriptions/{id}",
        get(
            one,
            op("One subscription")
                .requires(Permission::SubscriptionView)
                .resource::<Subscription>(),
        )
        .put(
            update,
            op("Modifies a subscription; its signing secret stays unless a new one is given")
                .requires(Permission::SubscriptionEdit)
                .body::<Subscription>()
                .resource::<Subscription>(),
        )
        .delete(
            delete,
            op("Deletes a subscription with its undelivered events and its history")
                .requires(Permission::SubscriptionEdit)
                .no_content(),
        ),
    );
    r.space(
        "/subscriptions/{id}/deliveries",
        get(
            deliveries,
            op("A subscription's deliveries, newest first, with every attempt")
                .requires(Permission::SubscriptionView)
                .query::<ListParams>()
                .page::<DeliveryRecord>(),
        ),
    )
}

async fn list(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let found = svc::list::<Subscription>(&inst.store, &document_query(&s, &p)).await?;
    Ok(Json(page(
        &found.items,
        found.total,
        &p,
        &format!("/api/{s}/subscriptions"),
    )))
}

async fn all(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
) -> ApiResult<Json<Value>> {
    let q = DocumentQuery::in_space(&s);
    let found = svc::list::<Subscription>(&inst.store, &q).await?;
    Ok(Json(Value::Array(
        found.items.iter().map(resource).collect(),
    )))
}

async fn one(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    let found: Subscription = svc::get_in_space(&inst.store, &s, &id).await?;
    Ok(Json(resource(&found)))
}

async fn create(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    OctoJson(body): OctoJson<Subscription>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let created = subs::create_subscription(&inst, &c, &s, body).await?;
    inst.dispatcher.wake();
    Ok((StatusCode::CREATED, Json(resource(&created))))
}

async fn update(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<Subscription>,
) -> ApiResult<Json<Value>> {
    let updated = subs::update_subscription(&inst, &c, &s, &id, body).await?;
    inst.dispatcher.wake();
    Ok(Json(resource(&updated)))
}

async fn delete(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    subs::delete_subscription(&inst, &c, &s, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn deliveries(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let (found, total) = subs::deliveries(&inst.store, &s, &id, p.skip(), p.take()).await?;
    Ok(Json(page(
        &found,
        total,
        &p,
        &format!("/api/{s}/subscriptions/{id}/deliveries"),
    )))
}
