//! Cuttle's REST API, shaped like Octopus Deploy's so that Octopus clients
//! and CI plugins work against it. Handlers only extract, call one service
//! function, and shape the response.
//!
//! # Layout
//! - [`serve`]: runs the API on a listener until a shutdown future resolves.
//! - [`connections`]: the accept loop, its connection cap and timeouts.
//! - [`json`]: case-insensitive request bodies.
//! - [`auth`]: the [`auth::Caller`] extractor (API keys).
//! - [`authorize`]: the permission check every route runs first.
//! - [`capabilities`]: the requests `/api/capabilities` lists, by Octopus's names.
//! - [`space`]: the space a request is about (`/api/{space}/…` or the default).
//! - [`links`]: `Links` and the paged collection envelope.
//! - [`answers`]: the shapes of answers that are not one resource.
//! - [`requests`]: checks every request passes, and its redacted trace span.
//! - [`request_id`]: each request's id, in its log span and `X-Request-Id`.
//! - [`http_metrics`]: requests counted and timed by route template.
//! - [`route_case`]: route paths match case-insensitively on their literals.
//! - [`error`]: the one error → response mapping.
//! - [`routes`]: the handlers, one module per area.
//! - [`route_table`]: registers each route with its description.
//! - [`openapi`]: the OpenAPI document built from that table.
//!
//! The web portal (`cuttle_portal`) is merged in at `/`.

pub mod answers;
pub mod auth;
pub mod authorize;
pub mod capabilities;
pub mod connections;
pub mod error;
pub mod http_metrics;
pub mod json;
pub mod links;
pub mod openapi;
pub mod request_id;
pub mod requests;
pub mod route_case;
pub mod route_table;
pub mod routes;
pub mod space;

use axum::{Extension, Router};
pub use connections::HttpLimits;
use cuttle_service::Instance;
use std::future::Future;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub type AppState = Arc<Instance>;

/// Cancelled when the server begins shutting down. Responses that last as
/// long as a task (log streams) end then; otherwise the graceful shutdown,
/// which waits for responses in flight, would wait for the tasks too.
#[derive(Clone, Default)]
pub struct Closing(pub CancellationToken);

/// The whole API as an axum router.
pub fn router(instance: AppState) -> Router {
    app(instance, Closing::default())
}

/// The whole API as an axum router, whose long responses (log streams) end
/// when `closing` is cancelled: for a host that serves many instances and
/// stops one while the others go on.
pub fn router_closing(instance: AppState, closing: Closing) -> Router {
    app(instance, closing)
}

/// The OpenAPI document of the whole API, as `/api/openapi.json` serves it.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::finish(routes::all()).1
}

/// Every operation the API's router answers, with who may call it, from
/// the same registrations the router is built from.
pub fn route_table() -> Vec<route_table::RouteEntry> {
    openapi::with_document(routes::all()).table().to_vec()
}

fn app(instance: AppState, closing: Closing) -> Router {
    let (api, doc) = openapi::finish(routes::all());
    let counted = instance.config.count_metrics;
    let metrics_state = instance.clone();
    // The document names every route, its own included.
    let case = Arc::new(route_case::RouteCase::new(
        doc.paths.paths.keys().map(String::as_str),
    ));
    let routed = api
        // The portal's pages, over the same services; none is under /api.
        .merge(cuttle_portal::router())
        .fallback(routes::not_found)
        .layer(Extension(closing))
        // The routes' permission checks read the instance from here.
        .layer(Extension(instance.clone()))
        .layer(axum::middleware::from_fn(requests::refuse_nul))
        // A bug in one handler answers that request with a 500 and leaves
        // the connection, and every other request, alone.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            error::panicked,
        ))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(requests::RedactedSpan),
        );
    // Outside the catch-panic layer, so a panic counts as the 500 it answers.
    let routed = if counted {
        routed.layer(axum::middleware::from_fn_with_state(
            metrics_state,
            http_metrics::count,
        ))
    } else {
        routed
    };
    let routed = routed.with_state(instance);
    // Layers on a router run once a route has matched; the path's spelling
    // must be settled before, so the rewrite wraps the whole router.
    Router::new()
        .fallback_service(
            routed.map_request(move |request: axum::extract::Request| case.rewrite(request)),
        )
        .layer(axum::middleware::from_fn(request_id::assign))
}

/// Serves `/metrics`, `/healthz` and `/readyz` without an API key on
/// `listener` (the `--metrics-listen` address, which the operator keeps
/// private) until `shutdown` resolves. It keeps answering while the main
/// listener drains, so `/readyz` shows the shutdown.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    instance: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (router, _, _) = routes::operations::metrics_listener_routes().into_parts();
    let app = router
        .fallback(routes::not_found)
        .layer(Extension(instance.clone()))
        .with_state(instance)
        .layer(axum::middleware::from_fn(request_id::assign));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves the API on `listener` until `shutdown` resolves, then lets requests
/// in flight finish; within the default [`HttpLimits`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    instance: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, instance, HttpLimits::default(), shutdown).await
}

/// As [`serve`], within `limits`.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    instance: AppState,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closing = Closing::default();
    let token = closing.0.clone();
    let draining = instance.clone();
    connections::serve(listener, app(instance, closing), limits, async move {
        shutdown.await;
        draining.begin_draining();
        token.cancel();
    })
    .await
}
