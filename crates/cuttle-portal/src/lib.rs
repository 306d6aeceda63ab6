//! Cuttle's web portal: pages rendered on the server (maud, which escapes
//! every value it is given) with one small hand-written script for live
//! updates, served by `cuttle server` at `/` beside the API. Handlers call
//! the same service functions as the REST API; no rule lives only here.
//!
//! # Layout
//! - [`router`]: the pages, to be merged into the API's router.
//! - [`session`]: who is signed in (the [`session::Viewer`] extractor), the
//!   session cookie, CSRF checks, and the local `?next=` path.
//! - `signin`: signing in and out.
//! - `dashboard`: projects by group against environments, refreshing itself.
//! - `tasks`: the task list, and a task's page with its live log, Cancel
//!   and the answers to a pending interruption.
//! - `projects`: the project list, a project's overview, releases and
//!   deploying them.
//! - `process`: a project's deployment process editor.
//! - `variables`: the variables editor (projects and library sets).
//! - `infrastructure`: environments, targets, workers, pools, policies.
//! - `library`: packages in the built-in feed, library variable sets.
//! - `configuration`: users and API keys.
//! - `nodes`: the server nodes on this database, read only.
//! - `audit`: the audit log, with the API's filters.
//! - `gate`: the permission each page and form needs, checked first.
//! - `forms`: the CSRF field, labelled inputs, errors sorted onto fields.
//! - `layout`: the page frame, state icons and times.
//! - `assets`: the one CSS and one JS file, under content-hashed names.
//! - [`error`]: errors as pages.

mod assets;
mod audit;
mod configuration;
mod dashboard;
pub mod error;
mod forms;
mod gate;
mod infrastructure;
mod layout;
mod library;
mod nodes;
mod process;
mod projects;
pub mod session;
mod signin;
mod tasks;
mod variables;

use axum::extract::Request;
use axum::http::header::{self, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use cuttle_service::Instance;
use std::sync::Arc;

pub type AppState = Arc<Instance>;

/// Every document of a kind in the space the portal shows.
pub(crate) fn default_space() -> cuttle_store::DocumentQuery {
    cuttle_store::DocumentQuery::in_space(cuttle_model::space::DEFAULT_SPACE_ID)
}

/// The portal's routes. None starts with `/api`, so they merge into the
/// API's router without overlap.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/fragments/dashboard", get(dashboard::fragment))
        .route("/signin", get(signin::form).post(signin::submit))
        .route("/signout", post(signin::sign_out))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::page))
        .route("/tasks/{id}/header", get(tasks::header_fragment))
        .route("/tasks/{id}/cancel", post(tasks::cancel))
        .route(
            "/tasks/{id}/interruptions/{interruption}",
            post(tasks::answer),
        )
        .route("/audit", get(audit::page))
        .route("/assets/{file}", get(assets::serve))
        .merge(projects::routes())
        .merge(process::routes())
        .merge(variables::routes())
        .merge(infrastructure::routes())
        .merge(library::routes())
        .merge(configuration::routes())
        .layer(middleware::from_fn(gate::check))
        .layer(middleware::from_fn(security_headers))
}

/// Headers every portal response carries. The script is a file of our own,
/// so the policy allows no inline script at all: markup that slipped past
/// escaping still could not run.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name, value: &'static str| {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
         object-src 'none'",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "same-origin");
    // Pages carry CSRF tokens and change by the second; assets set their own.
    set(headers, header::CACHE_CONTROL, "no-store");
    response
}
