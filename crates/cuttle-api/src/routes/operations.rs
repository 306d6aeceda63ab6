//! For the people and machines that run the server: `/metrics` (Prometheus,
//! with an API key here; without one on the `--metrics-listen` address),
//! `/healthz` (the process serves) and `/readyz` (it should get traffic).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::route_table::{get, op, Routes, TEXT};
use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use cuttle_model::Permission;

pub fn routes(r: Routes) -> Routes {
    r.at(
        "/metrics",
        get(
            metrics,
            op("The server's metrics in the Prometheus (OpenMetrics) text format")
                .requires(Permission::ConfigureServer)
                .media(cuttle_metrics::CONTENT_TYPE),
        ),
    )
    .at("/healthz", health_endpoint())
    .at("/readyz", readiness_endpoint())
}

/// The routes of the metrics listener: the same answers, without a key
/// (the operator keeps that address private).
pub fn metrics_listener_routes() -> Routes {
    Routes::new()
        .at(
            "/metrics",
            get(
                open_metrics,
                op("The server's metrics in the Prometheus (OpenMetrics) text format")
                    .public()
                    .media(cuttle_metrics::CONTENT_TYPE),
            ),
        )
        .at("/healthz", health_endpoint())
        .at("/readyz", readiness_endpoint())
}

fn health_endpoint() -> crate::route_table::Endpoint {
    get(
        healthz,
        op("Answers 200 while the process serves requests")
            .public()
            .media(TEXT),
    )
}

fn readiness_endpoint() -> crate::route_table::Endpoint {
    get(
        readyz,
        op(
            "Answers 200 when the server should get traffic: its database answers, \
            its migrations are applied and it is not shutting down; 503 with the reason otherwise",
        )
        .public()
        .media(TEXT),
    )
}

async fn metrics(State(inst): State<AppState>, _: Caller) -> Response {
    open_metrics(State(inst)).await
}

async fn open_metrics(State(inst): State<AppState>) -> Response {
    let text = cuttle_service::metrics::scrape(&inst).await;
    ([(header::CONTENT_TYPE, cuttle_metrics::CONTENT_TYPE)], text).into_response()
}

async fn healthz() -> Response {
    ([(header::CONTENT_TYPE, TEXT)], "ok\n").into_response()
}

async fn readyz(State(inst): State<AppState>) -> ApiResult<Response> {
    match cuttle_service::metrics::unready_reason(&inst).await {
        None => Ok(([(header::CONTENT_TYPE, TEXT)], "ready\n").into_response()),
        Some(reason) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, reason)),
    }
}
