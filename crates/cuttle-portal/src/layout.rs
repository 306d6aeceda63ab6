//! The frame every page shares, state icons and labels, and times.

use crate::assets;
use crate::session::{Viewer, CSRF_FIELD};
use cuttle_model::{ActivityStatus, Permission, Project, ServerTask, TaskState, Timestamp};
use cuttle_service::dashboard::DeploymentState;
use maud::{html, Markup, PreEscaped, DOCTYPE};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// No area is current (an error page in the signed-in frame).
    None,
    Dashboard,
    Projects,
    Infrastructure,
    Library,
    Tasks,
    Audit,
    Configuration,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Cuttle" }
            link rel="stylesheet" href=(assets::CSS.path());
            link rel="icon" type="image/svg+xml" href=(assets::ICON.path());
            script src=(assets::JS.path()) defer {}
        }
    }
}

/// A page for a signed-in person: the top bar with navigation and sign-out.
pub fn page(viewer: &Viewer, title: &str, nav: Nav, body: Markup) -> Markup {
    let user = &viewer.actor;
    let name = if user.display_name.is_empty() {
        &user.username
    } else {
        &user.display_name
    };
    let current = |n: Nav| (nav == n).then_some("page");
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { (PreEscaped(LOGO)) span { "Cuttle" } }
                    nav aria-label="Main" {
                        // Only the areas the person may see.
                        @if viewer.may(Permission::ProjectView) {
                            a href="/" aria-current=[current(Nav::Dashboard)] { "Dashboard" }
                            a href="/projects" aria-current=[current(Nav::Projects)] { "Projects" }
                        }
                        @if viewer.may(Permission::EnvironmentView) {
                            a href="/infrastructure" aria-current=[current(Nav::Infrastructure)] { "Infrastructure" }
                        }
                        @if viewer.may(Permission::FeedView) {
                            a href="/library" aria-current=[current(Nav::Library)] { "Library" }
                        }
                        @if viewer.may(Permission::TaskView) {
                            a href="/tasks" aria-current=[current(Nav::Tasks)] { "Tasks" }
                        }
                        @if viewer.may(Permission::EventView) {
                            a href="/audit" aria-current=[current(Nav::Audit)] { "Audit" }
                        }
                        a href="/configuration" aria-current=[current(Nav::Configuration)] { "Configuration" }
                    }
                    form.signout method="post" action="/signout" {
                        span.user title=(user.username) { (name) }
                        input type="hidden" name=(CSRF_FIELD) value=(viewer.csrf());
                        button.link type="submit" { "Sign out" }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// A page without the signed-in frame (sign-in, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                main #main {
                    a.brand.standalone href="/" { (PreEscaped(LOGO)) span { "Cuttle" } }
                    (body)
                }
            }
        }
    }
}

/// The sections of a project's pages, as tabs under its name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ProjectTab {
    Overview,
    Process,
    Variables,
    Releases,
}

/// The head of every project page: where it sits, its name, its tabs.
/// `extra` is the page's own breadcrumb beyond the project (or empty).
pub fn project_head(project: &Project, tab: ProjectTab, extra: Markup) -> Markup {
    let base = format!("/projects/{}", project.id);
    let hrefs = [
        (ProjectTab::Overview, "Overview", base.clone()),
        (ProjectTab::Process, "Process", format!("{base}/process")),
        (
            ProjectTab::Variables,
            "Variables",
            format!("{base}/variables"),
        ),
        (ProjectTab::Releases, "Releases", format!("{base}/releases")),
    ];
    let items: Vec<(&str, &str)> = hrefs.iter().map(|(_, l, h)| (*l, h.as_str())).collect();
    let current = hrefs
        .iter()
        .find(|(t, _, _)| *t == tab)
        .map_or("", |(_, _, h)| h.as_str());
    html! {
        div.page-head.project-head {
            p.crumbs { a href="/projects" { "Projects" } " / " (project.name) (extra) }
            div.title-row {
                h1 { (project.name) }
                @if project.is_disabled { span.tag { "disabled" } }
            }
            (tabs("Project", &items, current))
        }
    }
}

/// Tabs across a section's pages, `(label, href)` each; the one whose href
/// is `current` is marked as the page shown.
pub fn tabs(section: &str, items: &[(&str, &str)], current: &str) -> Markup {
    html! {
        nav.tabs aria-label=(section) {
            @for (label, href) in items {
                a href=(href) aria-current=[(*href == current).then_some("page")] { (label) }
            }
        }
    }
}

const LOGO: &str = r##"<svg class="logo" viewBox="0 0 24 24" aria-hidden="true"><ellipse cx="12" cy="9" rx="7" ry="6" fill="currentColor"/><path d="M7 13.5c0 4-2 6.5-2 6.5M10 14.5c0 3-1 5.5-1 5.5M14 14.5c0 3 1 5.5 1 5.5M17 13.5c0 4 2 6.5 2 6.5" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round"/><circle cx="9.5" cy="8.5" r="1.3" fill="#fff"/><circle cx="14.5" cy="8.5" r="1.3" fill="#fff"/></svg>"##;

/// The icon kinds, each an inline SVG drawn in `currentColor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Icon {
    Success,
    Warning,
    Failed,
    Canceled,
    Queued,
    Running,
    Waiting,
    Skipped,
    Pending,
}

impl Icon {
    pub const ALL: [Icon; 9] = [
        Icon::Success,
        Icon::Warning,
        Icon::Failed,
        Icon::Canceled,
        Icon::Queued,
        Icon::Running,
        Icon::Waiting,
        Icon::Skipped,
        Icon::Pending,
    ];

    /// The CSS class suffix, and the key the page script looks icons up by.
    pub fn key(self) -> &'static str {
        match self {
            Icon::Success => "success",
            Icon::Warning => "warning",
            Icon::Failed => "failed",
            Icon::Canceled => "canceled",
            Icon::Queued => "queued",
            Icon::Running => "running",
            Icon::Waiting => "waiting",
            Icon::Skipped => "skipped",
            Icon::Pending => "pending",
        }
    }

    fn svg(self) -> &'static str {
        match self {
            Icon::Success => r#"<path d="M3.5 8.5l3 3 6-7"/>"#,
            Icon::Warning => r#"<path d="M8 2.5l6 11H2z"/><path d="M8 7v2.8M8 11.6v.1"/>"#,
            Icon::Failed => r#"<path d="M4.5 4.5l7 7M11.5 4.5l-7 7"/>"#,
            Icon::Canceled => r#"<circle cx="8" cy="8" r="5.5"/><path d="M4.2 11.8l7.6-7.6"/>"#,
            Icon::Queued => r#"<circle cx="8" cy="8" r="5.5"/><path d="M8 5v3.2l2.2 1.3"/>"#,
            Icon::Running => {
                r#"<circle class="spin" cx="8" cy="8" r="5.5" stroke-dasharray="22 13"/>"#
            }
            Icon::Waiting => r#"<path d="M6 4v8M10 4v8"/>"#,
            Icon::Skipped => r#"<path d="M4 4l5 4-5 4M11.5 4v8"/>"#,
            Icon::Pending => r#"<circle cx="8" cy="8" r="2.5"/>"#,
        }
    }

    pub fn markup(self) -> Markup {
        html! {
            (PreEscaped(format!(
                r#"<svg class="icon icon-{}" viewBox="0 0 16 16" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">{}</svg>"#,
                self.key(),
                self.svg()
            )))
        }
    }
}

/// Every icon once, in a `<template>` the page script clones icons from.
pub fn icon_templates() -> Markup {
    html! {
        template #icons {
            @for i in Icon::ALL {
                span data-icon=(i.key()) { (i.markup()) }
            }
        }
    }
}

pub fn deployment_icon(state: DeploymentState) -> Icon {
    match state {
        DeploymentState::Success => Icon::Success,
        DeploymentState::SuccessWithWarnings => Icon::Warning,
        DeploymentState::Failed => Icon::Failed,
        DeploymentState::Canceled => Icon::Canceled,
        DeploymentState::Queued => Icon::Queued,
        DeploymentState::Running => Icon::Running,
        DeploymentState::Waiting => Icon::Waiting,
    }
}

pub fn deployment_label(state: DeploymentState) -> &'static str {
    match state {
        DeploymentState::Success => "Success",
        DeploymentState::SuccessWithWarnings => "Success with warnings",
        DeploymentState::Failed => "Failed",
        DeploymentState::Canceled => "Canceled",
        DeploymentState::Queued => "Queued",
        DeploymentState::Running => "Running",
        DeploymentState::Waiting => "Waiting for intervention",
    }
}

/// A task's state as a person reads it; finer than the dashboard's.
pub fn task_label(task: &ServerTask) -> &'static str {
    match task.state {
        TaskState::Cancelling => "Cancelling",
        TaskState::TimedOut => "Timed out",
        _ => deployment_label(DeploymentState::of(task)),
    }
}

/// A coloured badge with icon and words: colour is never the only signal.
pub fn task_badge(task: &ServerTask) -> Markup {
    let icon = deployment_icon(DeploymentState::of(task));
    html! {
        span class=(format!("badge state-{}", icon.key())) {
            (icon.markup()) span { (task_label(task)) }
        }
    }
}

pub fn activity_icon(status: ActivityStatus) -> Icon {
    match status {
        ActivityStatus::Pending => Icon::Pending,
        ActivityStatus::Running => Icon::Running,
        ActivityStatus::Success => Icon::Success,
        ActivityStatus::Failed => Icon::Failed,
        ActivityStatus::Skipped => Icon::Skipped,
        ActivityStatus::SuccessWithWarning => Icon::Warning,
        ActivityStatus::Canceled => Icon::Canceled,
    }
}

/// `HH:MM:SS` in UTC, which the page script turns into the reader's time.
pub fn clock(ts: Timestamp) -> Markup {
    let text = ts.to_string();
    html! {
        time.clock datetime=(text) title=(text) { (text.get(11..19).unwrap_or(&text)) }
    }
}

/// "5 minutes ago", with the exact time on hover.
pub fn when(ts: Timestamp, now: Timestamp) -> Markup {
    let text = ts.to_string();
    let exact = format!(
        "{} {} UTC",
        text.get(..10).unwrap_or(&text),
        text.get(11..19).unwrap_or("")
    );
    html! {
        time.stamp datetime=(text) title=(exact) { (ago(ts, now)) }
    }
}

pub fn ago(ts: Timestamp, now: Timestamp) -> String {
    let secs = (now.millis() - ts.millis()).max(0) / 1000;
    let (n, unit) = match secs {
        0..=9 => return "just now".into(),
        10..=59 => (secs, "second"),
        60..=3599 => (secs / 60, "minute"),
        3600..=86_399 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        let now = Timestamp::from_millis(10_000_000_000);
        let before = |s: i64| Timestamp::from_millis(now.millis() - s * 1000);
        assert_eq!(ago(before(3), now), "just now");
        assert_eq!(ago(before(30), now), "30 seconds ago");
        assert_eq!(ago(before(60), now), "1 minute ago");
        assert_eq!(ago(before(7200), now), "2 hours ago");
        assert_eq!(ago(before(86_400 * 3), now), "3 days ago");
        assert_eq!(ago(now.add_millis(5000), now), "just now");
    }
}
