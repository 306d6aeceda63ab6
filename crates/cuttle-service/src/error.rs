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
    /// The server cannot take the request now but will later; nothing was
    /// changed.
    #[error("{0}")]
    Unavailable(String),
    /// The database's storage is full: nothing was saved, and the same
    /// request succeeds once space is freed.
    #[error("{0}")]
    StorageFull(String),
    /// The database failed (unreachable, a query refused, data unreadable);
    /// the detail is for the server's log, not for clients.
    #[error("{0}")]
    Database(String),
    #[error("{0}")]
    Internal(String),
}

/// Marks an HTTP response whose request failed in the database, so the
/// request metrics count a database error.
#[derive(Clone, Copy, Debug)]
pub struct DatabaseFault;

impl ServiceError {
    /// The database failed (rather than the request being wrong).
    pub fn is_database_fault(&self) -> bool {
        matches!(
            self,
            ServiceError::Database(_) | ServiceError::StorageFull(_)
        )
    }

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
                ServiceError::StorageFull(
                    "The server's storage is full, so nothing was saved. Try again once space \
                     has been freed."
                        .into(),
                )
            }
            other => ServiceError::Database(other.to_string()),
        }
    }
}
