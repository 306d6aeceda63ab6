//! Counts each answered request by its route *template* (from the router's
//! match, so `/api/Spaces-1/projects/Projects-7` counts as
//! `/api/{space}/projects/{id}`), method and status, and times it to its
//! headers. Requests no route matches count as `unmatched`, so a scanner
//! probing random paths adds one label value, not one per path. A request
//! that failed in the database also counts as a database error.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use cuttle_service::DatabaseFault;

pub async fn count(State(inst): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    // Other methods are few, but arbitrary tokens are allowed: bound them.
    let method = match *request.method() {
        Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::DELETE => {
            request.method().as_str().to_owned()
        }
        _ => "other".to_owned(),
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    if response.extensions().get::<DatabaseFault>().is_some() {
        inst.metrics.database_error("http");
    }
    inst.metrics.http_answered(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
