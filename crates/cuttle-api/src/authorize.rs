//! The check every route runs before its handler: who the caller is, what
//! they may do ([`Permissions`], computed once per request), and whether
//! the route's [`Access`] lets them in. A handler that needs finer checks
//! (one project, one environment) reads the same permissions through
//! [`Perms`].
//!
//! A route under `/api/{space}/…` in a space where the caller holds nothing
//! answers as if the space did not exist.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::route_table::MethodRouter;
use crate::route_table::{Access, Op};
use crate::AppState;
use axum::extract::{FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cuttle_model::permission::Level;
use cuttle_model::space::DEFAULT_SPACE_ID;
use cuttle_model::{Permission, Permissions, Scope};
use cuttle_service::actor::Actor;
use cuttle_service::permissions;
use std::collections::HashMap;
use std::sync::Arc;

/// The caller and their permissions, once the route's check has passed.
#[derive(Clone)]
pub struct Authorized {
    pub actor: Actor,
    pub permissions: Arc<Permissions>,
}

/// Wraps one handler's route in its operation's check.
pub fn guard(router: MethodRouter<AppState>, op: &Op) -> MethodRouter<AppState> {
    match op.access() {
        // No check at all: the route is public (or, without an access, the
        // route table refuses it when it is registered).
        Some(Access::Public) | None => router,
        Some(access) => router.route_layer(axum::middleware::from_fn(
            move |request: Request, next: Next| check(access, request, next),
        )),
    }
}

async fn check(access: Access, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    match authorize(access, &mut parts).await {
        Ok(authorized) => {
            parts.extensions.insert(authorized);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => e.into_response(),
    }
}

fn state_of(parts: &Parts) -> Result<AppState, ApiError> {
    parts.extensions.get::<AppState>().cloned().ok_or_else(|| {
        ApiError::from(cuttle_service::ServiceError::Internal(
            "the router was built without its instance".into(),
        ))
    })
}

async fn authorize(access: Access, parts: &mut Parts) -> Result<Authorized, ApiError> {
    let state = state_of(parts)?;
    let Caller(actor) = Caller::from_request_parts(parts, &state).await?;
    let perms = permissions::of_user(&state.store, &actor.user).await?;
    let params = Path::<HashMap<String, String>>::from_request_parts(parts, &state)
        .await
        .map(|p| p.0)
        .unwrap_or_default();
    let route_space = params.get("space").map(String::as_str);
    if let Some(space) = route_space {
        if !space_visible(&perms, space) {
            return Err(ApiError::not_found(format!(
                "The space '{space}' was not found"
            )));
        }
    }
    let allowed = match access {
        Access::Public | Access::SignedIn => true,
        Access::Requires(p) => allowed_here(&perms, p, route_space),
        Access::RequiresSomewhere(p) => match route_space {
            Some(_) => allowed_here(&perms, p, route_space),
            None => {
                perms.allows_somewhere(p) || (p.is_system() && perms.allows(p, &Scope::system()))
            }
        },
    };
    if !allowed {
        let p = match access {
            Access::Requires(p) | Access::RequiresSomewhere(p) => p,
            _ => Permission::AdministerSystem,
        };
        return Err(permissions::missing(p, &scope_of(p, route_space)).into());
    }
    let perms = Arc::new(perms);
    Ok(Authorized {
        actor: actor.with_permissions(perms.clone()),
        permissions: perms,
    })
}

/// A caller sees a space when they hold anything there.
fn space_visible(perms: &Permissions, space: &str) -> bool {
    perms.sees_space(space)
}

fn scope_of(p: Permission, route_space: Option<&str>) -> Scope<'_> {
    match p.level() {
        Level::System => Scope::system(),
        _ => Scope::space(route_space.unwrap_or(DEFAULT_SPACE_ID)),
    }
}

fn allowed_here(perms: &Permissions, p: Permission, route_space: Option<&str>) -> bool {
    match p.level() {
        Level::System => perms.allows(p, &Scope::system()),
        Level::Space => perms.allows(p, &scope_of(p, route_space)),
        Level::Both => {
            perms.allows(p, &scope_of(p, route_space)) || perms.allows(p, &Scope::system())
        }
    }
}

/// The caller's permissions, for a handler's finer checks.
pub struct Perms(pub Arc<Permissions>);

impl FromRequestParts<AppState> for Perms {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(a) = parts.extensions.get::<Authorized>() {
            return Ok(Perms(a.permissions.clone()));
        }
        let Caller(actor) = Caller::from_request_parts(parts, state).await?;
        let perms = Arc::new(permissions::of_user(&state.store, &actor.user).await?);
        parts.extensions.insert(Authorized {
            actor: actor.with_permissions(perms.clone()),
            permissions: perms.clone(),
        });
        Ok(Perms(perms))
    }
}

/// Checks on the things of one space that belong to a project and an
/// environment (releases, deployments, tasks, interruptions).
pub struct SpaceView {
    pub perms: Arc<Permissions>,
    pub space: String,
}

impl SpaceView {
    pub fn new(perms: Arc<Permissions>, space: &str) -> SpaceView {
        SpaceView {
            perms,
            space: space.to_owned(),
        }
    }

    /// Whether `p` is allowed for a thing of `project` in `environment`.
    pub fn allows(&self, p: Permission, project: Option<&str>, environment: Option<&str>) -> bool {
        let mut scope = Scope::space(&self.space);
        if let Some(project) = project.filter(|x| !x.is_empty()) {
            scope = scope.project(project);
        }
        if let Some(env) = environment.filter(|x| !x.is_empty()) {
            scope = scope.environment(env);
        }
        self.perms.allows(p, &scope)
    }

    /// Whether `p` holds for everything in the space (no grant narrows it),
    /// so a list needs no filtering.
    pub fn whole(&self, p: Permission) -> bool {
        self.perms.whole_in_space(p, &self.space)
    }
}
