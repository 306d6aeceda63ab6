//! The errors every command can return. Messages are written for the people
//! who read them in clients.

use cuttle_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is invalid; `errors` lists each problem.
    #[error("{message}")]
    BadRequest {
        message: String,
        errors: Vec<String>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A conflict that Octopus clients recognise by Octopus's own wording,
    /// which `octopus` holds word for word; `detail` is the explanation
    /// people read.
    #[error("{detail}")]
    AlreadyExists {
        octopus: &'static str,
        detail: String,
    },
    /// Refused for now, after too many attempts; try again after `retry_after`.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: std::time::Duration,
    },
    /// The server cannot take the request now but will later (its storage
    /// is full); nothing was changed.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        let message = message.into();
        ServiceError::BadRequest {
            errors: vec![message.clone()],
            message,
        }
    }

    /// A validation failure listing every problem found.
    pub fn invalid(errors: Vec<String>) -> Self {
        ServiceError::BadRequest {
            message: "There was a problem with your request.".into(),
            errors,
        }
    }

    pub fn not_found(kind: &str, id: &str) -> Self {
        ServiceError::NotFound(format!("The {kind} '{id}' was not found"))
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ServiceError::NotFound(format!("{what} was not found")),
            StoreError::Conflict(m) => ServiceError::Conflict(m),
            StoreError::StorageFull(e) => {
                tracing::error!(error = %e, "the database's storage is full");
                ServiceError::Unavailable(
                    "The server's storage is full, so nothing was saved. Try again once space \
                     has been freed."
                        .into(),
                )
            }
            other => ServiceError::Internal(other.to_string()),
        }
    }
}
