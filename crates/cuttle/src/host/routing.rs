//! The host's public listener: each request goes to the instance its
//! `Host` header names (`NAME.DOMAIN`, any port, any case), through that
//! instance's own router.

use super::hibernation::Unreachable;
use super::instances::{Host, Slot};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tower::ServiceExt as _;

/// The router of the public listener.
pub fn router(host: Arc<Host>) -> axum::Router {
    axum::Router::new().fallback(route).with_state(host)
}

async fn route(State(host): State<Arc<Host>>, request: Request) -> Response {
    let Some(authority) = authority(&request) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "The request names no host; an instance is reached at NAME.DOMAIN".into(),
        );
    };
    let Some(name) = instance_name(&authority, &host.config.domain) else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!(
                "'{authority}' is not an instance of this host; instances are reached at NAME.{}",
                host.config.domain
            ),
        );
    };
    let served = match host.wake(&name).await {
        Ok(served) => served,
        Err(Unreachable::Suspended) => return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The instance '{name}' is suspended; its data is kept, and it answers again once resumed"),
        ),
        Err(Unreachable::Busy) => return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The instance '{name}' is being set up or changed; try again in a moment"),
        ),
        Err(Unreachable::Failed) => return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The instance '{name}' could not be started; its operator has been told"),
        ),
        Err(Unreachable::Unknown) => return refuse(
            StatusCode::NOT_FOUND,
            format!("There is no instance '{name}' on this host"),
        ),
    };
    // Counted before the slot is looked at again: an instance put to sleep
    // meanwhile is then woken for this request rather than closed under it.
    let in_flight = served.begin_request();
    let (served, in_flight) = match host.slot(&name) {
        Some(Slot::Serving(now)) if Arc::ptr_eq(&now, &served) => (served, in_flight),
        _ => {
            drop(in_flight);
            match host.wake(&name).await {
                // Just opened: not idle, so not put to sleep under it.
                Ok(woken) => {
                    let in_flight = woken.begin_request();
                    (woken, in_flight)
                }
                Err(_) => {
                    return refuse(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("The instance '{name}' is being changed; try again in a moment"),
                    )
                }
            }
        }
    };
    let changes_agents = changes_agents(&request);
    let response = match served.router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if changes_agents && response.status().is_success() {
        super::polling::refresh(&host, &name, &served.instance).await;
    }
    // A streamed answer (a live log) keeps the instance awake to its end.
    if axum::body::HttpBody::size_hint(response.body())
        .exact()
        .is_some()
    {
        return response;
    }
    response.map(|body| {
        use futures_util::StreamExt as _;
        let stream = body.into_data_stream().map(move |chunk| {
            let _counted = &in_flight;
            chunk
        });
        axum::body::Body::from_stream(stream)
    })
}

/// Whether a request may register, change or delete polling agents (its
/// machines, workers or spaces), so the host's index of them is read again.
fn changes_agents(request: &Request) -> bool {
    if request.method() == axum::http::Method::GET || request.method() == axum::http::Method::HEAD {
        return false;
    }
    let path = request.uri().path().to_ascii_lowercase();
    ["machines", "workers", "spaces"]
        .iter()
        .any(|part| path.contains(part))
}

/// The host the client asked for: the `Host` header, or the request
/// target's authority.
fn authority(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
}

/// The instance `authority` names under `domain`: its first label, where
/// the rest is the domain (port and case ignored); `None` otherwise.
pub fn instance_name(authority: &str, domain: &str) -> Option<String> {
    let host = authority.trim();
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let (name, rest) = host.split_once('.')?;
    (rest == domain && !name.is_empty()).then(|| name.to_owned())
}

/// An answer from the host itself, as the API shapes its errors.
fn refuse(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({ "ErrorMessage": message, "Errors": [] });
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::instance_name;

    #[test]
    fn the_first_label_under_the_domain_names_the_instance() {
        let d = "cuttle.example";
        assert_eq!(
            instance_name("acme.cuttle.example", d).as_deref(),
            Some("acme")
        );
        assert_eq!(
            instance_name("ACME.Cuttle.Example:8080", d).as_deref(),
            Some("acme")
        );
        assert_eq!(
            instance_name("acme.cuttle.example.", d).as_deref(),
            Some("acme")
        );
        assert_eq!(instance_name("cuttle.example", d), None);
        assert_eq!(instance_name("a.b.cuttle.example", d), None);
        assert_eq!(instance_name("acme.other.example", d), None);
        assert_eq!(instance_name(".cuttle.example", d), None);
    }
}
