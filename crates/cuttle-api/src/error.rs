//! The one mapping from errors to HTTP responses, in Octopus's error shape:
//! `{"ErrorMessage": "...", "Errors": ["..."]}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cuttle_service::ServiceError;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub errors: Vec<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            errors: vec![],
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            errors: vec![message.clone()],
            message,
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
            ServiceError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, vec![m.clone()]),
            ServiceError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, vec![])
            }
        };
        let message = match &e {
            ServiceError::Internal(_) => {
                "The server hit an internal error; it has been logged.".to_owned()
            }
            other => other.to_string(),
        };
        ApiError {
            status,
            message,
            errors,
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
        (
            self.status,
            Json(json!({"ErrorMessage": self.message, "Errors": self.errors})),
        )
            .into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
