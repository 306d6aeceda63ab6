//! Infrastructure: environments (in their order, reordered and removed
//! here), deployment targets and workers with their health and the
//! commands that register a new agent, worker pools, and machine policies.
//! Every change goes through the same service functions as the REST API.
//!
//! # Layout
//! - this file: the routes, the tabs every page shares, health badges, and
//!   the few helpers the pages have in common.
//! - `overview`: counts per section, and the machines' health.
//! - `environments`: the ordered list, create, move up/down, delete, and
//!   an environment's own page (its settings and its targets).
//! - `agents`: deployment targets and workers, health checks, and the
//!   `cuttle agent` commands that add one.
//! - `pools`: worker pools: list, create, delete.
//! - `policies`: machine policies and their settings.

mod agents;
mod environments;
mod overview;
mod policies;
mod pools;

use crate::forms::CsrfOnly;
use crate::layout::{self, Icon, Nav};
use crate::session::Viewer;
use crate::AppState;
use axum::routing::{get, post};
use axum::Router;
use cuttle_model::machine::HealthStatus;
use maud::{html, Markup};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/infrastructure", get(overview::page_handler))
        .route(
            "/infrastructure/environments",
            get(environments::list).post(environments::create),
        )
        .route(
            "/infrastructure/environments/{id}",
            get(environments::detail).post(environments::update),
        )
        .route(
            "/infrastructure/environments/{id}/move",
            post(environments::move_one),
        )
        .route(
            "/infrastructure/environments/{id}/delete",
            post(environments::delete),
        )
        .route("/infrastructure/targets", get(agents::targets))
        .route(
            "/infrastructure/targets/check-health",
            post(agents::check_all),
        )
        .route(
            "/infrastructure/targets/{id}/check-health",
            post(agents::check_target),
        )
        .route("/infrastructure/workers", get(agents::workers))
        .route(
            "/infrastructure/workers/check-health",
            post(agents::check_workers),
        )
        .route(
            "/infrastructure/workers/{id}/check-health",
            post(agents::check_worker),
        )
        .route(
            "/infrastructure/worker-pools",
            get(pools::list).post(pools::create),
        )
        .route(
            "/infrastructure/worker-pools/{id}/delete",
            post(pools::delete),
        )
        .route("/infrastructure/machine-policies", get(policies::list))
        .route(
            "/infrastructure/machine-policies/{id}",
            get(policies::detail).post(policies::update),
        )
}

/// The infrastructure pages, as tabs under the section's title.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Overview,
    Environments,
    Targets,
    Workers,
    Pools,
    Policies,
}

impl Tab {
    const ALL: [Tab; 6] = [
        Tab::Overview,
        Tab::Environments,
        Tab::Targets,
        Tab::Workers,
        Tab::Pools,
        Tab::Policies,
    ];

    fn label(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::Environments => "Environments",
            Tab::Targets => "Deployment targets",
            Tab::Workers => "Workers",
            Tab::Pools => "Worker pools",
            Tab::Policies => "Machine policies",
        }
    }

    fn href(self) -> &'static str {
        match self {
            Tab::Overview => "/infrastructure",
            Tab::Environments => "/infrastructure/environments",
            Tab::Targets => "/infrastructure/targets",
            Tab::Workers => "/infrastructure/workers",
            Tab::Pools => "/infrastructure/worker-pools",
            Tab::Policies => "/infrastructure/machine-policies",
        }
    }
}

/// The head of every infrastructure page: where it is, its title, the
/// page's own buttons (`actions`), then the tabs.
fn head(tab: Tab, title: &str, lead: &str, actions: Markup) -> Markup {
    html! {
        div.page-head.infra-head {
            @if tab != Tab::Overview {
                p.crumbs { a href=(Tab::Overview.href()) { "Infrastructure" } " / " (tab.label()) }
            }
            div.title-row {
                h1 { (title) }
                div.infra-actions { (actions) }
            }
            @if !lead.is_empty() { p.muted { (lead) } }
            (tabs(tab))
        }
    }
}

/// The tabs across the infrastructure pages, `tab` marked as current.
fn tabs(tab: Tab) -> Markup {
    let items = Tab::ALL.map(|t| (t.label(), t.href()));
    layout::tabs("Infrastructure", &items, tab.href())
}

fn page(viewer: &Viewer, title: &str, body: Markup) -> Markup {
    layout::page(
        viewer,
        title,
        Nav::Infrastructure,
        html! { div.infra { (body) } },
    )
}

/// Which field a service message is about: the name, or the form as a whole.
fn name_field(message: &str) -> Option<&'static str> {
    message
        .to_ascii_lowercase()
        .contains("name")
        .then_some("Name")
}

/// A health status as a badge: icon and words, never colour alone.
fn health_badge(status: HealthStatus) -> Markup {
    health_badge_counted(status, None)
}

/// A health badge, with how many machines have that status when given.
fn health_badge_counted(status: HealthStatus, count: Option<usize>) -> Markup {
    let (icon, class, words) = match status {
        HealthStatus::Healthy => (Icon::Success, "state-success", "Healthy"),
        HealthStatus::HasWarnings => (Icon::Warning, "state-warning", "Has warnings"),
        HealthStatus::Unhealthy => (Icon::Failed, "state-failed", "Unhealthy"),
        HealthStatus::Unavailable => (Icon::Canceled, "state-failed", "Unavailable"),
        HealthStatus::Unknown => (Icon::Pending, "state-pending", "Unknown"),
    };
    html! {
        span class=(format!("badge health {class}")) data-health=(format!("{status:?}")) {
            (icon.markup())
            span { @if let Some(n) = count { (n) " " } (words) }
        }
    }
}

/// `text` as one shell word: bare when it is plainly safe, else quoted.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@=+,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("Production"), "Production");
        assert_eq!(shell_word("Web Servers"), "'Web Servers'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(shell_word(""), "''");
    }
}
