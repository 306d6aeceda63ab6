//! The one mapping from errors to HTTP responses, in Octopus's error shape:
//! `{"ErrorMessage": "...", "Errors": ["..."]}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cuttle_service::{DatabaseFault, ServiceError};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub errors: Vec<String>,
    /// Seconds to wait before trying again (a 429's `Retry-After`).
    pub retry_after: Option<u64>,
    /// The database failed; the answer carries a [`DatabaseFault`] so the
    /// request metrics count it.
    pub database_fault: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            errors: vec![],
            retry_after: None,
            database_fault: false,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            errors: vec![message.clone()],
            message,
            retry_after: None,
            database_fault: false,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let (status, errors) = match &e {
            ServiceError::BadRequest { errors, .. } => (StatusCode::BAD_REQUEST, errors.clone()),
            ServiceError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, vec![]),
            ServiceError::Forbidden(_) => (StatusCode::FORBIDDEN, vec![]),
            ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, vec![]),
            ServiceError::Conflict(m) => (StatusCode::CONFLICT, vec![m.clone()]),
            ServiceError::AlreadyExists { detail, .. } => {
                (StatusCode::CONFLICT, vec![detail.clone()])
            }
            ServiceError::TooManyRequests { message, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, vec![message.clone()])
            }
            ServiceError::Unavailable(m) | ServiceError::StorageFull(m) => {
                (StatusCode::SERVICE_UNAVAILABLE, vec![m.clone()])
            }
            ServiceError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, vec![])
            }
            ServiceError::Database(m) => {
                tracing::error!(error = %m, "database error");
                (StatusCode::INTERNAL_SERVER_ERROR, vec![])
            }
        };
        let message = match &e {
            ServiceError::Internal(_) | ServiceError::Database(_) => {
                "The server hit an internal error; it has been logged.".to_owned()
            }
            // Clients compare this text; the explanation is in `Errors`.
            ServiceError::AlreadyExists { octopus, .. } => (*octopus).to_owned(),
            other => other.to_string(),
        };
        let retry_after = match &e {
            ServiceError::TooManyRequests { retry_after, .. } => Some(retry_after.as_secs()),
            _ => None,
        };
        ApiError {
            status,
            message,
            errors,
            retry_after,
            database_fault: e.is_database_fault(),
        }
    }
}

impl From<cuttle_store::StoreError> for ApiError {
    fn from(e: cuttle_store::StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"ErrorMessage": self.message, "Errors": self.errors})),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        if self.database_fault {
            response.extensions_mut().insert(DatabaseFault);
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The answer to a request whose handler panicked; the panic itself is
/// logged by the panic hook.
pub fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The server met an unexpected error while answering this request.",
    )
    .into_response()
}
