//! Errors as pages: the service's error, with the status the API would
//! give it, shown to a person with a way back.

use crate::layout;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cuttle_service::ServiceError;
use maud::html;

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The request itself is malformed (a filter that does not parse).
    #[error("{0}")]
    BadRequest(String),
}

impl From<cuttle_store::StoreError> for PortalError {
    fn from(e: cuttle_store::StoreError) -> Self {
        PortalError::Service(e.into())
    }
}

impl PortalError {
    fn status(&self) -> StatusCode {
        match self {
            PortalError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PortalError::Service(e) => match e {
                ServiceError::BadRequest { .. } => StatusCode::BAD_REQUEST,
                ServiceError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
                ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
                ServiceError::Conflict(_) | ServiceError::AlreadyExists { .. } => {
                    StatusCode::CONFLICT
                }
                ServiceError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
                ServiceError::Unavailable(_) | ServiceError::StorageFull(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                ServiceError::Internal(_) | ServiceError::Database(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
        }
    }

    /// What the person reads: the service's own words, except for internal
    /// errors, whose details go to the server's log only.
    fn message(&self) -> (String, Vec<String>) {
        match self {
            PortalError::Service(ServiceError::Internal(m) | ServiceError::Database(m)) => {
                tracing::error!(error = %m, "internal error in the portal");
                (
                    "The server hit an internal error; it has been logged.".into(),
                    vec![],
                )
            }
            PortalError::Service(ServiceError::BadRequest { message, errors }) => {
                (message.clone(), errors.clone())
            }
            other => (other.to_string(), vec![]),
        }
    }
}

impl PortalError {
    /// The error page, with a link back to `back` (the page the person
    /// acted on) besides the dashboard.
    pub fn page(self, back: Option<&str>) -> Response {
        self.render(None, back)
    }

    /// The error page in the signed-in frame, so that a person refused
    /// everywhere (nothing granted in this space) can still sign out.
    pub fn page_for(self, viewer: &crate::session::Viewer) -> Response {
        self.render(Some(viewer), None)
    }

    fn render(self, viewer: Option<&crate::session::Viewer>, back: Option<&str>) -> Response {
        let status = self.status();
        let database_fault = matches!(&self, PortalError::Service(e) if e.is_database_fault());
        let (message, details) = self.message();
        let title = status.canonical_reason().unwrap_or("Error");
        let body = html! {
            section.panel.error-page {
                h1 { (title) }
                p.lead { (message) }
                @if !details.is_empty() {
                    ul { @for d in &details { li { (d) } } }
                }
                p.actions {
                    @if let Some(back) = back {
                        a.button href=(back) { "Go back" }
                    }
                    a.button.secondary href="/" { "Dashboard" }
                }
            }
        };
        let page = match viewer {
            Some(v) => layout::page(v, title, layout::Nav::None, body),
            None => layout::bare(title, body),
        };
        let mut response = (status, page).into_response();
        if database_fault {
            response
                .extensions_mut()
                .insert(cuttle_service::DatabaseFault);
        }
        response
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        self.page(None)
    }
}
