//! The control plane: the host operator's API on a listener of its own,
//! behind one bearer token. Handlers only read the request, call the host
//! and shape the answer.

use super::instances::{Host, HostError, Limits, DEFAULT_STORAGE_QUOTA_MIB, DEFAULT_TASK_CAP};
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq as _;

/// The control plane's router; every route needs `token`.
pub fn router(host: Arc<Host>, token: String) -> axum::Router {
    let token = Arc::new(token);
    axum::Router::new()
        .route("/instances", post(create).get(list))
        .route("/instances/{name}", get(show).patch(change).delete(delete))
        .route("/instances/{name}/suspend", post(suspend))
        .route("/instances/{name}/resume", post(resume))
        .route(
            "/instances/{name}/hosted-worker",
            post(lease_worker).delete(end_worker_lease),
        )
        .route("/hosted-workers", get(hosted_workers))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "The control plane has no such route".into(),
            )
        })
        .with_state(host)
        .layer(axum::middleware::from_fn(move |request, next| {
            let token = token.clone();
            async move { authorize(&token, request, next).await }
        }))
}

/// 401 unless the request bears the token, compared in constant time.
async fn authorize(token: &str, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "The control plane needs its token: Authorization: Bearer <token>".into(),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    next.run(request).await
}

fn error(status: StatusCode, message: String) -> Response {
    (
        status,
        Json(json!({ "ErrorMessage": message, "Errors": [] })),
    )
        .into_response()
}

impl IntoResponse for HostError {
    fn into_response(self) -> Response {
        let status = match &self {
            HostError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HostError::NotFound(_) => StatusCode::NOT_FOUND,
            HostError::Conflict(_) => StatusCode::CONFLICT,
            HostError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(status, self.to_string())
    }
}

/// A request body: a JSON object whose field names match in any case.
fn body(
    bytes: &[u8],
    allowed: &[&str],
) -> Result<serde_json::Map<String, serde_json::Value>, HostError> {
    let value: serde_json::Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| HostError::BadRequest(format!("The body is not JSON: {e}")))?
    };
    let serde_json::Value::Object(fields) = value else {
        return Err(HostError::BadRequest(
            "The body must be a JSON object".into(),
        ));
    };
    let mut out = serde_json::Map::new();
    for (key, value) in fields {
        let Some(known) = allowed.iter().find(|a| a.eq_ignore_ascii_case(&key)) else {
            return Err(HostError::BadRequest(format!(
                "'{key}' is not a field here; the fields are {}",
                allowed.join(", ")
            )));
        };
        out.insert((*known).to_owned(), value);
    }
    Ok(out)
}

fn integer(
    fields: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<i64>, HostError> {
    match fields.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| HostError::BadRequest(format!("{name} must be a whole number"))),
    }
}

async fn create(State(host): State<Arc<Host>>, bytes: Bytes) -> Result<Response, HostError> {
    let fields = body(&bytes, &["Name", "TaskCap", "StorageQuotaMiB"])?;
    let name = match fields.get("Name") {
        Some(serde_json::Value::String(name)) => name.clone(),
        Some(_) => return Err(HostError::BadRequest("Name must be a string".into())),
        None => return Err(HostError::BadRequest("An instance needs a Name".into())),
    };
    let limits = Limits {
        task_cap: integer(&fields, "TaskCap")?.unwrap_or(DEFAULT_TASK_CAP),
        storage_quota_mib: integer(&fields, "StorageQuotaMiB")?
            .unwrap_or(DEFAULT_STORAGE_QUOTA_MIB),
    };
    let created = host.create(&name, limits).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list(State(host): State<Arc<Host>>) -> Result<Response, HostError> {
    let items = host.list().await?;
    Ok(Json(json!({ "Items": items })).into_response())
}

async fn show(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> Result<Response, HostError> {
    Ok(Json(host.get(&name).await?).into_response())
}

async fn change(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Response, HostError> {
    let fields = body(&bytes, &["TaskCap", "StorageQuotaMiB"])?;
    let view = host
        .change_limits(
            &name,
            integer(&fields, "TaskCap")?,
            integer(&fields, "StorageQuotaMiB")?,
        )
        .await?;
    Ok(Json(view).into_response())
}

async fn suspend(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> Result<Response, HostError> {
    Ok(Json(host.suspend(&name).await?).into_response())
}

async fn resume(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> Result<Response, HostError> {
    Ok(Json(host.resume(&name).await?).into_response())
}

async fn delete(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> Result<Response, HostError> {
    let archive = host.delete(&name).await?;
    Ok(Json(json!({ "Name": name, "Archive": archive.display().to_string() })).into_response())
}

/// Leases a hosted worker to the instance now (201), or shows the one it has.
async fn lease_worker(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> Result<Response, HostError> {
    let lease = super::workers::lease_to(&host, &name).await?;
    Ok((StatusCode::CREATED, Json(lease)).into_response())
}

/// Ends the instance's lease: its hosted worker is wiped.
async fn end_worker_lease(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> Result<Response, HostError> {
    super::workers::end_lease_of(&host, &name).await?;
    Ok(Json(json!({ "Name": name, "Wiped": true })).into_response())
}

/// The host's hosted workers: how many, how long they may idle, and the
/// leases now.
async fn hosted_workers(State(host): State<Arc<Host>>) -> Result<Response, HostError> {
    let (size, idle, (items, waiting)) = match &host.config.hosted_workers {
        Some(w) => (w.settings().count, w.settings().idle.as_secs(), w.leases()),
        None => (0, 0, (vec![], 0)),
    };
    Ok(
        Json(json!({ "Size": size, "IdleSeconds": idle, "Waiting": waiting, "Items": items }))
            .into_response(),
    )
}
