//! What every request passes through before its handler: a NUL in its path,
//! query or form body is refused once, here, for every route (ids and filters reach
//! the database, where PostgreSQL cannot hold a NUL and SQLite can), and
//! the trace span that names it in debug logs leaves out API keys.

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cuttle_service::text::check_no_nul;
use percent_encoding::percent_decode_str;

/// The largest form body read to check it: axum's own limit for forms.
const FORM_LIMIT: usize = 2 * 1024 * 1024;

/// Answers 400 to a request whose decoded path, query or form body (the
/// portal's forms) holds a NUL. JSON bodies are checked as they are parsed
/// (`crate::json`).
pub async fn refuse_nul(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let decoded = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let checked = check_no_nul("The request's path", &decoded(uri.path()))
        .and_then(|()| check_no_nul("The query string", &decoded(uri.query().unwrap_or(""))));
    if let Err(e) = checked {
        return ApiError::from(e).into_response();
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !is_form {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, FORM_LIMIT).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad_request(format!("The form could not be read: {e}"))
                .into_response()
        }
    };
    // One that does not parse is left to the handler to refuse.
    if let Ok(fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes) {
        for (name, value) in &fields {
            let checked =
                check_no_nul("A form field's name", name).and_then(|()| check_no_nul(name, value));
            if let Err(e) = checked {
                return ApiError::from(e).into_response();
            }
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The query parameters whose values are secrets.
const SECRET_PARAMETERS: &[&str] = &["apikey"];

/// `uri` with the value of every secret query parameter replaced, for logs.
pub fn redacted(uri: &Uri) -> String {
    let Some(query) = uri.query() else {
        return uri.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _))
                if SECRET_PARAMETERS
                    .iter()
                    .any(|s| decoded_name(name).eq_ignore_ascii_case(s)) =>
            {
                format!("{name}=[redacted]")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{}?{}", uri.path(), query.join("&"))
}

fn decoded_name(name: &str) -> String {
    percent_decode_str(&name.replace('+', " "))
        .decode_utf8_lossy()
        .trim()
        .to_owned()
}

/// The span each request is traced in: tower-http's default fields, with
/// the URI redacted.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedactedSpan;

impl<B> tower_http::trace::MakeSpan<B> for RedactedSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> tracing::Span {
        // tower-http's target, so that `RUST_LOG=tower_http=debug` still
        // shows each request's span with its events.
        tracing::debug_span!(
            target: "tower_http::trace",
            "request",
            method = %request.method(),
            uri = %redacted(request.uri()),
            version = ?request.version(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_in_queries_are_redacted() {
        let uri: Uri = "/api/tasks?take=1&apikey=API-SECRET&ApiKey=API-TWO&%61pikey=API-3"
            .parse()
            .unwrap();
        let shown = redacted(&uri);
        assert!(!shown.contains("API-"), "{shown}");
        assert!(
            shown.starts_with("/api/tasks?take=1&apikey=[redacted]"),
            "{shown}"
        );
        let plain: Uri = "/api/tasks?take=1".parse().unwrap();
        assert_eq!(redacted(&plain), "/api/tasks?take=1");
    }
}
