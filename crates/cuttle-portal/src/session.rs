//! Who is signed in. Pages take a [`Viewer`]: without a valid session a
//! GET is sent to the sign-in page and back afterwards (`?next=`), and a
//! fragment fetched by the page's script gets a bare 401 so the script can
//! do the same. Every POST checks the session's CSRF token.

use crate::error::PortalError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::{self, HeaderMap};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use cuttle_service::actor::{established_with, Actor, Origin};
use cuttle_service::sessions::{self, Session, SESSION_COOKIE, SESSION_LIFETIME};
use cuttle_service::ServiceError;

/// The form field every portal form carries the CSRF token in.
pub const CSRF_FIELD: &str = "csrf";

/// The signed-in person looking at a page.
#[derive(Clone)]
pub struct Viewer {
    pub session: Session,
    /// The person and where the request came from, for the commands a
    /// page runs (their audit events say both).
    pub actor: Actor,
    /// What the person may do: pages hide what they may not, and every
    /// submit is checked again.
    pub permissions: std::sync::Arc<cuttle_model::Permissions>,
    /// The cookie's token, kept to end the session on sign-out.
    pub(crate) token: String,
}

impl Viewer {
    pub fn csrf(&self) -> &str {
        &self.session.csrf_token
    }

    /// Whether the person may do `p` anywhere in the portal's space.
    pub fn may(&self, p: cuttle_model::Permission) -> bool {
        self.permissions
            .allows_in_space(p, cuttle_model::space::DEFAULT_SPACE_ID)
            || (p.is_system() && self.permissions.allows(p, &cuttle_model::Scope::system()))
    }

    /// Refuses with the 403 naming `p` unless the person may do it.
    pub fn require(&self, p: cuttle_model::Permission) -> Result<(), PortalError> {
        if self.may(p) {
            Ok(())
        } else {
            let scope = match p.level() {
                cuttle_model::permission::Level::System => cuttle_model::Scope::system(),
                _ => cuttle_model::Scope::space(cuttle_model::space::DEFAULT_SPACE_ID),
            };
            Err(cuttle_service::permissions::missing(p, &scope).into())
        }
    }

    /// Whether the person may see the environment `id` of the portal's space.
    pub fn sees_environment(&self, id: &str) -> bool {
        self.permissions.allows_in_environments(
            cuttle_model::Permission::EnvironmentView,
            cuttle_model::space::DEFAULT_SPACE_ID,
            &[id],
        )
    }

    /// Refuses with the 403 naming `p` and the environment `id` unless the
    /// person may do `p` there.
    pub fn require_in_environment(
        &self,
        p: cuttle_model::Permission,
        id: &str,
    ) -> Result<(), PortalError> {
        let space = cuttle_model::space::DEFAULT_SPACE_ID;
        match self.permissions.allows_in_environments(p, space, &[id]) {
            true => Ok(()),
            false => {
                let scope = cuttle_model::Scope::space(space).environment(id);
                Err(cuttle_service::permissions::missing(p, &scope).into())
            }
        }
    }

    /// Whether the person may see the deployment target `m` (in one of its
    /// environments).
    pub fn sees_machine(&self, m: &cuttle_model::Machine) -> bool {
        let envs: Vec<&str> = m.environment_ids.iter().map(String::as_str).collect();
        self.permissions.allows_in_environments(
            cuttle_model::Permission::MachineView,
            cuttle_model::space::DEFAULT_SPACE_ID,
            &envs,
        )
    }

    /// Checks the CSRF token a form sent back; a wrong or missing one is 403.
    pub fn check_csrf(&self, submitted: Option<&str>) -> Result<(), PortalError> {
        Ok(sessions::check_csrf(&self.session, submitted)?)
    }
}

/// Where a request came from: the peer address the accept loop recorded
/// (a reverse proxy's, behind one) and the browser's user agent.
pub fn origin(parts: &Parts, established_with: Option<&str>) -> Origin {
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    Origin::of_request(peer, agent, established_with)
}

/// A [`Viewer`] for fragments the page's script fetches: no redirect, a 401.
pub struct FragmentViewer(pub Viewer);

pub(crate) fn cookie_values(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
}

pub(crate) fn session_token(headers: &HeaderMap) -> Option<&str> {
    sessions::cookie(cookie_values(headers), SESSION_COOKIE)
}

async fn viewer(parts: &Parts, state: &AppState) -> Result<Option<Viewer>, PortalError> {
    // The page's permission check has already read the session.
    if let Some(v) = parts.extensions.get::<Viewer>() {
        return Ok(Some(v.clone()));
    }
    let Some(token) = session_token(&parts.headers) else {
        return Ok(None);
    };
    match sessions::authenticate(&state.store, token).await {
        Ok(session) => {
            let permissions = std::sync::Arc::new(
                cuttle_service::permissions::of_user(&state.store, &session.user).await?,
            );
            Ok(Some(Viewer {
                actor: Actor::new(
                    session.user.clone(),
                    origin(parts, Some(established_with::SESSION)),
                )
                .with_permissions(permissions.clone()),
                permissions,
                session,
                token: token.to_owned(),
            }))
        }
        Err(ServiceError::Unauthorized(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match viewer(parts, state).await {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(to_sign_in(parts)),
            Err(e) => Err(e.into_response()),
        }
    }
}

impl FromRequestParts<AppState> for FragmentViewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match viewer(parts, state).await {
            Ok(Some(v)) => Ok(FragmentViewer(v)),
            Ok(None) => Err((StatusCode::UNAUTHORIZED, "Sign in again").into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// Sends the browser to sign in, then back to where it was: the page asked
/// for, or for a form posted, the page the form was on. A stale session
/// cookie is cleared on the way.
fn to_sign_in(parts: &Parts) -> Response {
    let here = if parts.method == Method::GET || parts.method == Method::HEAD {
        parts.uri.path_and_query().map(|p| p.as_str().to_owned())
    } else {
        referring_path(&parts.headers)
    };
    let location = sign_in_location(here.as_deref().and_then(local_path));
    let clear = session_token(&parts.headers).map(|_| clear_session_cookie(is_https(parts)));
    (
        AppendHeaders(clear.map(|c| (header::SET_COOKIE, c))),
        Redirect::to(&location),
    )
        .into_response()
}

/// `/signin`, with `?next=` when there is somewhere to come back to.
pub fn sign_in_location(next: Option<&str>) -> String {
    match next.filter(|n| *n != "/") {
        Some(n) => match serde_urlencoded::to_string([("next", n)]) {
            Ok(q) => format!("/signin?{q}"),
            Err(_) => "/signin".into(),
        },
        None => "/signin".into(),
    }
}

/// The path of a same-origin `Referer` (the portal sends `same-origin`).
fn referring_path(headers: &HeaderMap) -> Option<String> {
    let referer = headers.get(header::REFERER)?.to_str().ok()?;
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let rest = referer
        .strip_prefix("http://")
        .or_else(|| referer.strip_prefix("https://"))?;
    let path = rest.strip_prefix(host)?;
    path.starts_with('/').then(|| path.to_owned())
}

/// `next` if it is a path on this server, else `None`: a `?next=` naming
/// another site (`//evil`, `/\evil`, `https://…`) must not redirect there.
pub fn local_path(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.chars().any(|c| c == '\\' || c.is_control())
        // Coming back to the sign-in page would loop.
        && !next.starts_with("/signin")
        && !next.starts_with("/signout");
    ok.then_some(next)
}

/// Whether the browser reached us over HTTPS: a TLS-terminating proxy says
/// so (the server itself speaks plain HTTP). Only ever used to add `Secure`.
pub fn is_https(parts: &Parts) -> bool {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    parts.uri.scheme_str() == Some("https")
        || header("x-forwarded-proto")
            .is_some_and(|p| p.split(',').next().map(str::trim) == Some("https"))
        || header("forwarded").is_some_and(|f| f.contains("proto=https"))
}

fn cookie_attributes(secure: bool) -> &'static str {
    // Lax: following a link to a task page from elsewhere stays signed in,
    // while cross-site POSTs arrive without the cookie (and without the
    // CSRF token, which every POST needs anyway).
    if secure {
        "Path=/; HttpOnly; SameSite=Lax; Secure"
    } else {
        "Path=/; HttpOnly; SameSite=Lax"
    }
}

pub fn session_cookie(token: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Max-Age={}; {}",
        SESSION_LIFETIME.as_secs(),
        cookie_attributes(secure)
    )
}

pub fn clear_session_cookie(secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}=; Max-Age=0; {}",
        cookie_attributes(secure)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_come_back() {
        assert_eq!(
            local_path("/tasks/ServerTasks-1"),
            Some("/tasks/ServerTasks-1")
        );
        assert_eq!(
            local_path("/tasks?state=Failed"),
            Some("/tasks?state=Failed")
        );
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "evil",
            "",
            "/signin?next=/",
            "/x\r\nSet-Cookie: a=b",
        ] {
            assert_eq!(local_path(bad), None, "{bad}");
        }
        assert_eq!(sign_in_location(Some("/")), "/signin");
        assert_eq!(
            sign_in_location(Some("/tasks?state=Failed&x=1")),
            "/signin?next=%2Ftasks%3Fstate%3DFailed%26x%3D1"
        );
    }
}
