//! Configuration: the users of the installation (and adding one), and the
//! signed-in person's API keys. A new key's secret is only ever in the
//! response to the form that made it (the portal sends every page with
//! `Cache-Control: no-store`), never in a redirect or a later page: the
//! server keeps only its hash.

use crate::error::PortalError;
use crate::forms::CsrfOnly;
use crate::forms::{self, Problems};
use crate::layout::{self, Nav};
use crate::session::Viewer;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use cuttle_model::{ApiKey, Timestamp, User};
use cuttle_service::users::{self, NewUser};
use cuttle_service::{auth, Instance};
use maud::{html, Markup};
use serde::Deserialize;

const USERS: &str = "/configuration/users";
const API_KEYS: &str = "/configuration/api-keys";
const TEAMS: &str = "/configuration/teams";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/configuration",
            get(|viewer: Viewer| async move {
                // Users for those who may see them; everyone has their keys.
                Redirect::to(if viewer.may(cuttle_model::Permission::UserView) {
                    USERS
                } else {
                    API_KEYS
                })
            }),
        )
        .route(USERS, get(users_page).post(create_user))
        .route(API_KEYS, get(keys_page).post(create_key))
        .route(TEAMS, get(teams_page))
        .route(crate::nodes::NODES, get(crate::nodes::page))
        .route("/configuration/api-keys/{id}/revoke", post(revoke_key))
}

/// The section's head, with the tab whose href is `current` marked.
pub(crate) fn head(current: &str) -> Markup {
    let tabs = [
        ("Users", USERS),
        ("Teams", TEAMS),
        ("API keys", API_KEYS),
        ("Nodes", crate::nodes::NODES),
    ];
    html! {
        div.page-head {
            h1 { "Configuration" }
            (layout::tabs("Configuration", &tabs, current))
        }
    }
}

// ---- users ----

/// The create-user form as posted; an unticked checkbox sends nothing.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct UserForm {
    csrf: Option<String>,
    username: String,
    display_name: String,
    email: String,
    password: String,
    is_service: Option<String>,
    is_active: Option<String>,
}

impl UserForm {
    /// What the form shows before anything is typed.
    fn blank() -> Self {
        UserForm {
            is_active: Some("on".into()),
            ..Default::default()
        }
    }
}

/// `GET /configuration/users`
async fn users_page(State(inst): State<AppState>, viewer: Viewer) -> Response {
    match users_view(&inst, &viewer, &UserForm::blank(), &Problems::none()).await {
        Ok(page) => page.into_response(),
        Err(e) => e.page(None),
    }
}

/// `POST /configuration/users`
async fn create_user(
    State(inst): State<AppState>,
    viewer: Viewer,
    Form(form): Form<UserForm>,
) -> Response {
    if let Err(e) = viewer.check_csrf(form.csrf.as_deref()) {
        return e.page(Some(USERS));
    }
    let new = NewUser {
        username: form.username.clone(),
        display_name: form.display_name.clone(),
        email_address: form.email.clone(),
        password: form.password.clone(),
        is_service: form.is_service.is_some(),
        is_active: form.is_active.is_some(),
    };
    let err = match users::create(&inst.store, &inst.passwords, &viewer.actor, &new).await {
        Ok(_) => return Redirect::to(USERS).into_response(),
        Err(e) => e,
    };
    let (status, problems) = match Problems::from_error(err, user_field) {
        Ok(p) => p,
        Err(e) => return e.page(Some(USERS)),
    };
    // The password is not sent back: the browser should not keep it in a page.
    let typed = UserForm {
        password: String::new(),
        ..form
    };
    match users_view(&inst, &viewer, &typed, &problems).await {
        Ok(page) => (status, page).into_response(),
        Err(e) => e.page(Some(USERS)),
    }
}

/// The field a service message about a new user concerns.
fn user_field(message: &str) -> Option<&'static str> {
    let lower = message.to_ascii_lowercase();
    if lower.starts_with("password") {
        Some("password")
    } else if lower.starts_with("username") || lower.contains("username '") {
        Some("username")
    } else if lower.starts_with("email") {
        Some("email")
    } else {
        None
    }
}

async fn users_view(
    inst: &Instance,
    viewer: &Viewer,
    form: &UserForm,
    problems: &Problems,
) -> Result<Markup, PortalError> {
    let all = users::list(&inst.store).await?;
    let body = html! {
        (head(USERS))
        div.config-grid {
            section aria-labelledby="users-title" {
                h2 #users-title { "Users" }
                (users_table(&all, &viewer.actor))
            }
            @if viewer.may(cuttle_model::Permission::UserEdit) {
                (user_form(viewer, form, problems))
            }
        }
    };
    Ok(layout::page(viewer, "Users", Nav::Configuration, body))
}

fn users_table(all: &[User], me: &User) -> Markup {
    html! {
        div.table-wrap {
            table.users {
                thead {
                    tr {
                        th scope="col" { "Username" }
                        th scope="col" { "Display name" }
                        th scope="col" { "Email" }
                        th scope="col" { "Status" }
                        th scope="col" { "Kind" }
                    }
                }
                tbody {
                    @for u in all {
                        tr {
                            td {
                                (u.username)
                                @if u.id == me.id { " " span.tag { "you" } }
                            }
                            td { (u.display_name) }
                            td { (u.email_address) }
                            td {
                                @if u.is_active {
                                    span.badge.state-success { "Active" }
                                } @else {
                                    span.badge.state-canceled { "Inactive" }
                                }
                            }
                            td {
                                @if u.is_service { "Service account" } @else { "Person" }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn user_form(viewer: &Viewer, form: &UserForm, problems: &Problems) -> Markup {
    html! {
        section.panel.config-form aria-labelledby="new-user-title" {
            h2 #new-user-title { "Add a user" }
            form method="post" action=(USERS) novalidate {
                (forms::csrf(viewer.csrf()))
                (problems.summary())
                (forms::text_field(problems, "user-username", "username", "Username", &form.username, None))
                (forms::text_field(problems, "user-display-name", "display_name", "Display name", &form.display_name, Some("Shown instead of the username; the username when empty.")))
                (forms::text_field(problems, "user-email", "email", "Email", &form.email, None))
                (password_field(problems))
                div.field.config-checks {
                    label.config-check for="user-is-active" {
                        input #user-is-active type="checkbox" name="is_active" checked[form.is_active.is_some()];
                        " Active (can sign in)"
                    }
                    label.config-check for="user-is-service" {
                        input #user-is-service type="checkbox" name="is_service" checked[form.is_service.is_some()];
                        " Service account (no password; uses API keys)"
                    }
                }
                div.actions {
                    button #create-user.primary type="submit" { "Add user" }
                }
            }
        }
    }
}

/// The password input: never filled in again after a failed post.
fn password_field(problems: &Problems) -> Markup {
    let invalid = problems.has("password");
    let described = if invalid {
        "user-password-error"
    } else {
        "user-password-hint"
    };
    html! {
        div.field.invalid[invalid] {
            label for="user-password" { "Password" }
            input #user-password type="password" name="password" autocomplete="new-password"
                aria-invalid=[invalid.then_some("true")] aria-describedby=(described);
            @if !invalid {
                p.hint #user-password-hint {
                    "At least " (users::MIN_PASSWORD_LEN) " characters. Leave empty for a service account."
                }
            }
            (problems.under("user-password", "password"))
        }
    }
}

// ---- API keys ----

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct KeyForm {
    csrf: Option<String>,
    purpose: String,
}

// ---- teams ----

/// `GET /configuration/teams`: the teams the person may see, their members
/// and the roles they hold, with where each applies.
async fn teams_page(State(inst): State<AppState>, viewer: Viewer) -> Response {
    let found = async {
        let teams = cuttle_service::teams::list(&inst.store, &viewer.permissions).await?;
        let scoped =
            cuttle_service::teams::list_scoped(&inst.store, &viewer.permissions, None).await?;
        let users = users::list(&inst.store).await?;
        let roles = inst.store.access_documents().await?.roles;
        Ok::<_, PortalError>((teams, scoped, users, roles))
    };
    let (teams, scoped, users, roles) = match found.await {
        Ok(f) => f,
        Err(e) => return e.page(None),
    };
    let username = |id: &str| {
        users
            .iter()
            .find(|u| u.id == id)
            .map(|u| u.username.clone())
            .unwrap_or_else(|| id.to_owned())
    };
    let role_name = |id: &str| {
        roles
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.name.clone())
            .unwrap_or_else(|| id.to_owned())
    };
    let body = html! {
        (head(TEAMS))
        div.table-wrap {
            table.teams {
                thead {
                    tr {
                        th scope="col" { "Team" }
                        th scope="col" { "Space" }
                        th scope="col" { "Members" }
                        th scope="col" { "Roles" }
                    }
                }
                tbody {
                    @for t in &teams {
                        tr {
                            td { (t.name) }
                            td { (t.space_id.as_deref().unwrap_or("Every space")) }
                            td {
                                @if t.id == cuttle_model::permission::EVERYONE_TEAM_ID {
                                    "Every user"
                                } @else {
                                    (t.member_user_ids.iter().map(|m| username(m)).collect::<Vec<_>>().join(", "))
                                }
                            }
                            td {
                                @for s in scoped.iter().filter(|s| s.team_id == t.id) {
                                    div {
                                        (role_name(&s.user_role_id))
                                        @let narrowed = [&s.project_ids, &s.project_group_ids, &s.environment_ids, &s.tenant_ids]
                                            .iter().flat_map(|l| l.iter().cloned()).collect::<Vec<_>>();
                                        @if !narrowed.is_empty() {
                                            " (" (narrowed.join(", ")) ")"
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page(&viewer, "Teams", Nav::Configuration, body).into_response()
}

/// `GET /configuration/api-keys`
async fn keys_page(State(inst): State<AppState>, viewer: Viewer) -> Response {
    match keys_view(&inst, &viewer, "", None, &Problems::none()).await {
        Ok(page) => page.into_response(),
        Err(e) => e.page(None),
    }
}

/// `POST /configuration/api-keys`: the new key's secret is in this
/// response and nowhere else.
async fn create_key(
    State(inst): State<AppState>,
    viewer: Viewer,
    Form(form): Form<KeyForm>,
) -> Response {
    if let Err(e) = viewer.check_csrf(form.csrf.as_deref()) {
        return e.page(Some(API_KEYS));
    }
    let user = &viewer.actor;
    let (status, created, problems, purpose) = match auth::create_api_key(
        &inst.store,
        user,
        &viewer.permissions,
        &user.id,
        &form.purpose,
        None,
    )
    .await
    {
        Ok(key) => (StatusCode::OK, Some(key), Problems::none(), String::new()),
        Err(e) => match Problems::from_error(e, |_| Some("purpose")) {
            Ok((status, p)) => (status, None, p, form.purpose),
            Err(e) => return e.page(Some(API_KEYS)),
        },
    };
    match keys_view(&inst, &viewer, &purpose, created.as_ref(), &problems).await {
        Ok(page) => (status, page).into_response(),
        Err(e) => e.page(Some(API_KEYS)),
    }
}

/// `POST /configuration/api-keys/{id}/revoke`
async fn revoke_key(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let done = async {
        viewer.check_csrf(form.csrf.as_deref())?;
        let user = &viewer.actor;
        auth::revoke_api_key(&inst.store, user, &viewer.permissions, &user.id, &id).await?;
        Ok::<_, PortalError>(())
    };
    match done.await {
        Ok(()) => Redirect::to(API_KEYS).into_response(),
        Err(e) => e.page(Some(API_KEYS)),
    }
}

async fn keys_view(
    inst: &Instance,
    viewer: &Viewer,
    purpose: &str,
    created: Option<&ApiKey>,
    problems: &Problems,
) -> Result<Markup, PortalError> {
    let keys = inst.store.api_keys(&viewer.actor.id).await?;
    let now = Timestamp::now();
    let body = html! {
        (head(API_KEYS))
        @if let Some(key) = created {
            (new_key(key))
        }
        div.config-grid {
            section aria-labelledby="keys-title" {
                h2 #keys-title { "Your API keys" }
                p.muted {
                    "Scripts and tools send a key in the " code { "X-Octopus-ApiKey" }
                    " header to act as you. Only a hash of each key is kept."
                }
                @if keys.is_empty() {
                    div.panel.empty { p { "You have no API keys." } }
                } @else {
                    (keys_table(&keys, viewer.csrf(), now))
                }
            }
            (key_form(viewer, purpose, problems))
        }
    };
    Ok(layout::page(viewer, "API keys", Nav::Configuration, body))
}

/// The secret of a key just made, with a way to copy it.
fn new_key(key: &ApiKey) -> Markup {
    let secret = key.api_key.as_deref().unwrap_or_default();
    html! {
        section.panel.config-new-key role="status" aria-labelledby="new-key-title" {
            h2 #new-key-title { "Your new API key: " (key.purpose) }
            p { strong { "Copy it now." } " It is not stored and will not be shown again." }
            div.config-key-copy {
                label.sr-only for="new-api-key" { "API key" }
                input #new-api-key type="text" readonly value=(secret) spellcheck="false" autocomplete="off";
                button #copy-api-key.primary type="button" data-copy="new-api-key" hidden { "Copy" }
            }
            p.config-copy-status.muted #copy-status aria-live="polite" {}
        }
    }
}

fn keys_table(keys: &[ApiKey], csrf: &str, now: Timestamp) -> Markup {
    html! {
        div.table-wrap {
            table.api-keys {
                thead {
                    tr {
                        th scope="col" { "Purpose" }
                        th scope="col" { "Key id" }
                        th scope="col" { "Created" }
                        th scope="col" { "Expires" }
                        th scope="col" { span.sr-only { "Actions" } }
                    }
                }
                tbody {
                    @for k in keys {
                        tr {
                            td { (k.purpose) }
                            td { code { (k.id) } }
                            td { @if let Some(c) = k.created { (layout::when(c, now)) } }
                            td {
                                @if let Some(e) = k.expires { (e.to_string().get(..10).unwrap_or_default()) }
                                @else { span.muted { "Never" } }
                            }
                            td.config-actions {
                                form method="post" action=(format!("/configuration/api-keys/{}/revoke", k.id)) {
                                    (forms::csrf(csrf))
                                    button.danger.small type="submit"
                                        data-confirm=(format!("Revoke the API key '{}'? Anything using it stops working at once.", k.purpose)) {
                                        "Revoke"
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn key_form(viewer: &Viewer, purpose: &str, problems: &Problems) -> Markup {
    html! {
        section.panel.config-form aria-labelledby="new-key-form-title" {
            h2 #new-key-form-title { "New API key" }
            form method="post" action=(API_KEYS) novalidate {
                (forms::csrf(viewer.csrf()))
                (problems.summary())
                (forms::text_field(problems, "api-key-purpose", "purpose", "Purpose", purpose, Some("What the key is for, e.g. \"Build server\".")))
                div.actions {
                    button #create-api-key.primary type="submit" { "Generate key" }
                }
            }
        }
    }
}
