//! The audit log, read-only: `GET /api/events` with Octopus's filters, one
//! event, and the categories, groups and document types to filter by.
//! Every other method is refused with 405: the log cannot be edited.

use super::{Id, Q};
use crate::auth::Caller;
use crate::authorize::Perms;
use crate::error::ApiResult;
use crate::links::{page, resource};
use crate::route_table::{get, op, Routes};
use crate::space::RouteSpace;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use cuttle_model::Permission;
use cuttle_model::{Event, EventGroup, EventKind};
use cuttle_service::events::{self as svc, EventFilters};
use cuttle_service::paging::ListParams;
use serde_json::Value;

const READ_ONLY: &str =
    "The audit log cannot be changed: events are only ever added, by the changes they record.";

pub fn routes(mut r: Routes) -> Routes {
    // The fixed lists first in the description; the router prefers literal
    // segments to `{id}` whatever the order.
    r = r.at(
        "/api/events/categories",
        get(
            categories,
            op("The event categories to filter by")
                .signed_in()
                .array::<EventKind>(),
        ),
    );
    r = r.at(
        "/api/events/groups",
        get(
            groups,
            op("The groups of event categories to filter by (Octopus's group ids), with the categories each holds")
                .signed_in()
                .array::<EventGroup>(),
        ),
    );
    r = r.at(
        "/api/events/documenttypes",
        get(
            document_types,
            op("The kinds of document events are about")
                .signed_in()
                .array::<EventKind>(),
        ),
    );
    r = r.space(
        "/events",
        get(
            list,
            op("Lists audit events, newest first (on /api/events, every space's the caller may see)")
                .requires_somewhere(Permission::EventView)
                .query::<ListParams>()
                .query::<EventFilters>()
                .page::<Event>(),
        )
        .refuse_other_methods(READ_ONLY),
    );
    r.space(
        "/events/{id}",
        get(
            event,
            op("One audit event")
                .requires_somewhere(Permission::EventView)
                .resource::<Event>(),
        )
        .refuse_other_methods(READ_ONLY),
    )
}

async fn list(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    RouteSpace(space): RouteSpace,
    Q(paging): Q<ListParams>,
    Q(filters): Q<EventFilters>,
) -> ApiResult<Json<Value>> {
    let path = match &space {
        Some(s) => format!("/api/{s}/events"),
        None => "/api/events".into(),
    };
    let reader = svc::EventReader::of(&inst.store, &perms, space.as_deref()).await?;
    let (events, total) =
        svc::list(&inst.store, &reader, space.as_deref(), &filters, &paging).await?;
    Ok(Json(page(&events, total, &paging, &path)))
}

async fn event(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    RouteSpace(space): RouteSpace,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    let reader = svc::EventReader::of(&inst.store, &perms, space.as_deref()).await?;
    let e = svc::get(&inst.store, &reader, space.as_deref(), &id).await?;
    Ok(Json(resource(&e)))
}

async fn categories(_: Caller) -> Json<Vec<EventKind>> {
    Json(svc::categories())
}

async fn groups(_: Caller) -> Json<Vec<EventGroup>> {
    Json(svc::group_list())
}

async fn document_types(_: Caller) -> Json<Vec<EventKind>> {
    Json(svc::document_types())
}
