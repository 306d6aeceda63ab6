//! The space a request acts in: the `{space}` route segment, or the default
//! space on the space-less routes (`/api/projects`).

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use cuttle_model::space::DEFAULT_SPACE_ID;
use cuttle_model::Space;
use std::collections::HashMap;

pub struct SpaceId(pub String);

impl FromRequestParts<AppState> for SpaceId {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let params = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|p| p.0)
            .unwrap_or_default();
        let Some(id) = params.get("space") else {
            return Ok(SpaceId(DEFAULT_SPACE_ID.into()));
        };
        match state.store.get::<Space>(id).await? {
            Some(space) => Ok(SpaceId(space.id)),
            None => Err(ApiError::not_found(format!(
                "The space '{id}' was not found"
            ))),
        }
    }
}

/// The `{space}` of a route that also exists without one: `None` on the
/// space-less route (`/api/tasks/…`, `/api/events`), which spans every
/// space. A resource of another space than the route's is not found.
pub struct RouteSpace(pub Option<String>);

impl FromRequestParts<AppState> for RouteSpace {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let params = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !params.contains_key("space") {
            return Ok(RouteSpace(None));
        }
        let SpaceId(space) = SpaceId::from_request_parts(parts, state).await?;
        Ok(RouteSpace(Some(space)))
    }
}
