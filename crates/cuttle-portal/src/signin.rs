//! Signing in and out. The sign-in form has no session to take a CSRF token
//! from, so it carries a random one that must match a short-lived cookie
//! (SameSite=Strict, so another site's form cannot send it): someone else's
//! page cannot sign a browser in to an account of their choosing.

use crate::error::PortalError;
use crate::forms::CsrfOnly;
use crate::layout;
use crate::session::{self, Viewer, CSRF_FIELD};
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use axum::Form;
use cuttle_service::sessions;
use cuttle_service::ServiceError;
use maud::{html, Markup};
use serde::Deserialize;

const SIGNIN_COOKIE: &str = "cuttle_signin";

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NextParam {
    next: Option<String>,
}

fn next_or_home(next: Option<&str>) -> String {
    next.and_then(session::local_path).unwrap_or("/").to_owned()
}

fn signin_cookie(token: &str, secure: bool) -> String {
    format!(
        "{SIGNIN_COOKIE}={token}; Path=/signin; Max-Age=3600; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

fn form_page(token: &str, next: &str, username: &str, error: Option<&str>) -> Markup {
    let body = html! {
        section.panel.signin {
            h1 { "Sign in" }
            @if let Some(e) = error {
                p.alert role="alert" { (e) }
            }
            form method="post" action="/signin" {
                input type="hidden" name=(CSRF_FIELD) value=(token);
                input type="hidden" name="next" value=(next);
                label for="username" { "Username" }
                input #username type="text" name="username" value=(username)
                    autocomplete="username" autocapitalize="none" spellcheck="false"
                    required autofocus[error.is_none()];
                label for="password" { "Password" }
                input #password type="password" name="password"
                    autocomplete="current-password" required autofocus[error.is_some()];
                button.primary type="submit" { "Sign in" }
            }
        }
    };
    layout::bare("Sign in", body)
}

/// `GET /signin`: the form, or straight on for someone already signed in.
pub async fn form(
    State(inst): State<AppState>,
    parts: Parts,
    Query(q): Query<NextParam>,
) -> Result<Response, PortalError> {
    let next = next_or_home(q.next.as_deref());
    if let Some(token) = session::session_token(&parts.headers) {
        if sessions::authenticate(&inst.store, token).await.is_ok() {
            return Ok(Redirect::to(&next).into_response());
        }
    }
    let token = sessions::random_token();
    Ok((
        [(
            header::SET_COOKIE,
            signin_cookie(&token, session::is_https(&parts)),
        )],
        form_page(&token, &next, "", None),
    )
        .into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignIn {
    username: String,
    password: String,
    next: Option<String>,
    csrf: Option<String>,
}

/// `POST /signin`: checks the password, starts a session, goes to `next`.
pub async fn submit(
    State(inst): State<AppState>,
    parts: Parts,
    Form(f): Form<SignIn>,
) -> Result<Response, PortalError> {
    let expected = sessions::cookie(session::cookie_values(&parts.headers), SIGNIN_COOKIE);
    let submitted = f.csrf.as_deref().unwrap_or("");
    if !expected.is_some_and(|e| sessions::constant_time_eq(e.as_bytes(), submitted.as_bytes())) {
        return Err(ServiceError::Forbidden(
            "The sign-in form has expired or did not come from this server; load it again.".into(),
        )
        .into());
    }
    let next = next_or_home(f.next.as_deref());
    let secure = session::is_https(&parts);
    // The peer's address, as the API's accept loop records it. Behind a
    // reverse proxy that is the proxy's, which counts everyone together:
    // such servers set --sign-in-failures-per-address to 0 (per user holds).
    let origin = session::origin(&parts, None);
    match sessions::sign_in(&inst, &f.username, &f.password, &origin).await {
        Ok(started) => Ok((
            AppendHeaders([
                (
                    header::SET_COOKIE,
                    session::session_cookie(&started.token, secure),
                ),
                (
                    header::SET_COOKIE,
                    format!("{SIGNIN_COOKIE}=; Path=/signin; Max-Age=0; HttpOnly; SameSite=Strict"),
                ),
            ]),
            Redirect::to(&next),
        )
            .into_response()),
        Err(ServiceError::Unauthorized(message)) => {
            tracing::info!(username = %f.username, "portal sign-in refused");
            Ok((
                StatusCode::UNAUTHORIZED,
                form_page(submitted, &next, &f.username, Some(&message)),
            )
                .into_response())
        }
        Err(ServiceError::TooManyRequests {
            message,
            retry_after,
        }) => {
            tracing::warn!(username = %f.username, client = ?origin.ip_address, "portal sign-in throttled");
            Ok((
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after.as_secs().to_string())],
                form_page(submitted, &next, &f.username, Some(&message)),
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /signout`: ends the session here and in the browser.
pub async fn sign_out(
    State(inst): State<AppState>,
    viewer: Viewer,
    parts: Parts,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, PortalError> {
    viewer.check_csrf(f.csrf.as_deref())?;
    sessions::sign_out(&inst.store, &viewer.token, &viewer.actor).await?;
    Ok((
        [(
            header::SET_COOKIE,
            session::clear_session_cookie(session::is_https(&parts)),
        )],
        Redirect::to("/signin"),
    )
        .into_response())
}
