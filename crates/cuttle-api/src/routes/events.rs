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
use cuttle_model::{Event, EventKind};
use cuttle_model::{Permission, Permissions, Scope};
use cuttle_service::events::{self as svc, EventFilters};
use cuttle_service::paging::split_list;
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
            op("The groups of event categories to filter by")
                .signed_in()
                .array::<EventKind>(),
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

/// The spaces whose events the caller may read; `None`: every space's and
/// the installation's own.
fn readable_spaces(perms: &Permissions) -> Option<Vec<String>> {
    if perms.allows(Permission::EventView, &Scope::system()) {
        return None;
    }
    Some(
        perms
            .spaces()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| perms.allows_in_space(Permission::EventView, s))
            .collect(),
    )
}

async fn list(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    RouteSpace(space): RouteSpace,
    Q(paging): Q<ListParams>,
    Q(mut filters): Q<EventFilters>,
) -> ApiResult<Json<Value>> {
    let path = match &space {
        Some(s) => format!("/api/{s}/events"),
        None => "/api/events".into(),
    };
    if space.is_none() {
        if let Some(mine) = readable_spaces(&perms) {
            let asked = split_list(filters.spaces.as_deref());
            let spaces: Vec<String> = if asked.is_empty() {
                mine
            } else {
                asked.into_iter().filter(|s| mine.contains(s)).collect()
            };
            if spaces.is_empty() {
                return Ok(Json(page::<Event>(&[], 0, &paging, &path)));
            }
            filters.spaces = Some(spaces.join(","));
        }
    }
    let (events, total) = svc::list(&inst.store, space.as_deref(), &filters, &paging).await?;
    Ok(Json(page(&events, total, &paging, &path)))
}

async fn event(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    RouteSpace(space): RouteSpace,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    let e = svc::get(&inst.store, space.as_deref(), &id).await?;
    let readable = match (readable_spaces(&perms), e.space_id.as_deref()) {
        (None, _) => true,
        (Some(mine), Some(s)) => mine.iter().any(|m| m == s),
        (Some(_), None) => false,
    };
    if !readable {
        return Err(cuttle_service::ServiceError::not_found("event", &id).into());
    }
    Ok(Json(resource(&e)))
}

async fn categories(_: Caller) -> Json<Vec<EventKind>> {
    Json(svc::categories())
}

async fn groups(_: Caller) -> Json<Vec<EventKind>> {
    Json(svc::group_kinds())
}

async fn document_types(_: Caller) -> Json<Vec<EventKind>> {
    Json(svc::document_types())
}
