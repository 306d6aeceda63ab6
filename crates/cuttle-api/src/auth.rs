//! The caller of a request, from its API key: `X-Octopus-ApiKey`,
//! `Authorization: Bearer …`, or the `apikey` query parameter. An empty
//! header counts as none. Without a key, a GET may instead carry the web
//! portal's session cookie (so the portal's pages can read the live log);
//! only reads, because the API checks no CSRF token.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};
use cuttle_service::actor::{established_with, Actor, Origin};
use cuttle_service::sessions;

/// The caller and where the request came from (see [`Actor`]).
pub struct Caller(pub Actor);

fn api_key_of(parts: &Parts) -> Option<String> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    if let Some(k) = header("x-octopus-apikey") {
        return Some(k);
    }
    if let Some(auth) = header("authorization") {
        // The scheme is case-insensitive (RFC 9110 §11.1): `BEARER` counts.
        if let Some((scheme, token)) = auth.split_once(|c: char| c.is_ascii_whitespace()) {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some(token.trim().to_owned()).filter(|t| !t.is_empty());
            }
        }
    }
    parts.uri.query().and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            k.eq_ignore_ascii_case("apikey")
                .then(|| v.to_owned())
                .filter(|v| !v.is_empty())
        })
    })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // The route's check has already identified the caller.
        if let Some(a) = parts.extensions.get::<crate::authorize::Authorized>() {
            return Ok(Caller(a.actor.clone()));
        }
        let key = api_key_of(parts);
        if key.is_none() && (parts.method == Method::GET || parts.method == Method::HEAD) {
            let cookies = parts
                .headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok());
            if let Some(token) = sessions::cookie(cookies, sessions::SESSION_COOKIE) {
                let session = sessions::authenticate(&state.store, token).await?;
                let origin = origin_of(parts, Some(established_with::SESSION));
                return Ok(Caller(Actor::new(session.user, origin)));
            }
        }
        let key = key.unwrap_or_default();
        let origin = origin_of(parts, None);
        let actor = cuttle_service::auth::authenticate_api_key(&state.store, &key, &origin).await?;
        Ok(Caller(actor))
    }
}

/// The peer address (see [`crate::connections::peer_of`]) and user agent
/// of a request.
fn origin_of(parts: &Parts, established_with: Option<&str>) -> Origin {
    let agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let peer = crate::connections::peer_of(&parts.extensions).map(|a| a.ip());
    Origin::of_request(peer, agent, established_with)
}
