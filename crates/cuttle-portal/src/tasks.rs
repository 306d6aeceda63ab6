//! Tasks: the list, filterable by state and project, and a task's page. The
//! page renders the log tree as it stands (task → steps → targets → lines);
//! the page script then follows the API's live stream
//! (`/api/tasks/{id}/stream`, which accepts the session cookie for reads)
//! from the last line rendered, and refreshes the header when the task's
//! state or its pending interruptions change. Cancel and the answers to an
//! interruption are forms posted here, to the same service functions the
//! API calls.

use crate::error::PortalError;
use crate::forms::CsrfOnly;
use crate::layout::{self, activity_icon, clock, task_badge, Nav};
use crate::session::{FragmentViewer, Viewer, CSRF_FIELD};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use cuttle_model::interruption::Control;
use cuttle_model::space::DEFAULT_SPACE_ID;
use cuttle_model::task::{Activity, LogLine};
use cuttle_model::time::human_duration;
use cuttle_model::{Interruption, ServerTask, TaskState, Timestamp};
use cuttle_service::dashboard::{self as svc, TaskContext, TaskFilter};
use cuttle_service::interruptions::{self, InterruptionFilter};
use cuttle_service::Instance;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;

const PAGE_SIZE: i64 = 30;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    state: Option<String>,
    project: Option<String>,
    skip: Option<i64>,
}

/// `GET /tasks`
pub async fn list(
    State(inst): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Markup, PortalError> {
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<TaskState>().map_err(PortalError::BadRequest)?),
        None => None,
    };
    let project = q.project.clone().filter(|p| !p.is_empty());
    let skip = q.skip.unwrap_or(0).max(0);
    let filter = TaskFilter {
        states: state.into_iter().collect(),
        project_id: project.clone(),
        skip,
        take: PAGE_SIZE,
    };
    let found = svc::task_list(&inst, &viewer.actor, DEFAULT_SPACE_ID, &filter).await?;
    let project_names: HashMap<&str, &str> = found
        .projects
        .iter()
        .map(|p| (p.id.as_str(), p.name.as_str()))
        .collect();
    let now = Timestamp::now();
    let page_link = |skip: i64| {
        let mut query = vec![("skip", skip.to_string())];
        if let Some(s) = state {
            query.push(("state", s.as_str().to_owned()));
        }
        if let Some(p) = &project {
            query.push(("project", p.clone()));
        }
        format!(
            "/tasks?{}",
            serde_urlencoded::to_string(&query).unwrap_or_default()
        )
    };
    let body = html! {
        div.page-head {
            h1 { "Tasks" }
        }
        form.filters method="get" action="/tasks" {
            div.field {
                label for="state" { "State" }
                select #state name="state" {
                    option value="" selected[state.is_none()] { "Any state" }
                    @for s in TaskState::ALL {
                        option value=(s.as_str()) selected[state == Some(s)] { (state_name(s)) }
                    }
                }
            }
            div.field {
                label for="project" { "Project" }
                select #project name="project" {
                    option value="" selected[project.is_none()] { "Any project" }
                    @for p in &found.projects {
                        option value=(p.id) selected[project.as_deref() == Some(p.id.as_str())] { (p.name) }
                    }
                }
            }
            button type="submit" { "Filter" }
            @if state.is_some() || project.is_some() {
                a.clear href="/tasks" { "Clear" }
            }
        }
        @if found.tasks.is_empty() {
            div.panel.empty { p { "No tasks match." } }
        } @else {
            div.table-wrap {
                table.tasks {
                    thead {
                        tr {
                            th scope="col" { "Task" }
                            th scope="col" { "Project" }
                            th scope="col" { "Environment" }
                            th scope="col" { "State" }
                            th scope="col" { "When" }
                            th scope="col" { "Duration" }
                        }
                    }
                    tbody {
                        @for t in &found.tasks {
                            tr {
                                td { a href=(format!("/tasks/{}", t.id)) { (t.description) } }
                                td { (t.project_id.as_deref().and_then(|p| project_names.get(p).copied()).unwrap_or("")) }
                                td { (t.environment_id.as_ref().and_then(|e| found.environment_names.get(e)).map(String::as_str).unwrap_or("")) }
                                td { (task_badge(t)) }
                                td { (layout::when(t.start_time.unwrap_or(t.queue_time), now)) }
                                td { @if t.start_time.is_some() { (t.duration) } }
                            }
                        }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if skip > 0 {
                    a href=(page_link((skip - PAGE_SIZE).max(0))) { "← Newer" }
                }
                span.muted {
                    (skip + 1) "–" (skip + found.tasks.len() as i64) " of " (found.total)
                }
                @if skip + PAGE_SIZE < found.total {
                    a href=(page_link(skip + PAGE_SIZE)) { "Older →" }
                }
            }
        }
    };
    Ok(layout::page(&viewer, "Tasks", Nav::Tasks, body))
}

fn state_name(s: TaskState) -> &'static str {
    match s {
        TaskState::TimedOut => "Timed out",
        other => other.as_str(),
    }
}

/// The interruptions of a task still waiting for an answer.
async fn pending_interruptions(
    inst: &Instance,
    viewer: &Viewer,
    task: &ServerTask,
) -> Result<Vec<Interruption>, PortalError> {
    if !task.has_pending_interruptions || task.is_completed {
        return Ok(vec![]);
    }
    let filter = InterruptionFilter {
        regarding: Some(task.id.clone()),
        pending_only: true,
        ids: vec![],
    };
    let space = task.space_id.as_deref().unwrap_or(DEFAULT_SPACE_ID);
    Ok(interruptions::list(inst, &viewer.actor, space, &filter).await?)
}

/// `GET /tasks/{id}`
pub async fn page(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Markup, PortalError> {
    let snap = svc::task_snapshot(&inst, &viewer.actor, &id).await?;
    let task = &snap.context.task;
    let pending = pending_interruptions(&inst, &viewer, task).await?;
    let now = Timestamp::now();
    let body = html! {
        div #task data-task=(task.id) data-position=(snap.position)
            data-completed=(task.is_completed) data-state=(task.state.as_str())
            data-pending=(task.has_pending_interruptions) {
            div #task-header aria-live="polite" {
                (header(&snap.context, &pending, viewer.csrf(), now))
            }
            section.log aria-labelledby="log-title" {
                div.log-head {
                    h2 #log-title { "Task log" }
                    div.log-tools {
                        label.check {
                            input #show-verbose type="checkbox";
                            " Verbose lines"
                        }
                        button.small type="button" data-expand="all" { "Expand all" }
                        button.small type="button" data-expand="none" { "Collapse all" }
                        a.small href=(format!("/api/tasks/{}/raw", task.id)) { "Raw" }
                    }
                }
                div #log-tree.tree {
                    (log_tree(&task.id, &snap.activities, &snap.lines, &snap.omitted))
                }
                @if snap.activities.is_empty() && !task.is_completed {
                    p.muted #log-waiting { "Waiting for the task to start…" }
                }
            }
            (layout::icon_templates())
        }
    };
    Ok(layout::page(&viewer, &task.description, Nav::Tasks, body))
}

/// `GET /tasks/{id}/header`: the page's header alone, for the page script
/// to refresh when the task's state or interruptions change.
pub async fn header_fragment(
    State(inst): State<AppState>,
    FragmentViewer(viewer): FragmentViewer,
    Path(id): Path<String>,
) -> Result<Markup, PortalError> {
    let context = svc::task_context(&inst, &viewer.actor, &id).await?;
    let pending = pending_interruptions(&inst, &viewer, &context.task).await?;
    Ok(header(&context, &pending, viewer.csrf(), Timestamp::now()))
}

fn header(ctx: &TaskContext, pending: &[Interruption], csrf: &str, now: Timestamp) -> Markup {
    let task = &ctx.task;
    html! {
        div.page-head.task-head data-state=(task.state.as_str()) data-pending=(task.has_pending_interruptions) {
            p.crumbs { a href="/tasks" { "Tasks" } " / " (task.id) }
            div.title-row {
                h1 { (task.description) }
                (task_badge(task))
            }
            dl.meta {
                @if let Some(p) = &ctx.project { div { dt { "Project" } dd { (p.name) } } }
                @if let Some(e) = &ctx.environment { div { dt { "Environment" } dd { (e.name) } } }
                @if let Some(r) = &ctx.release { div { dt { "Release" } dd { (r.version) } } }
                @if let Some(d) = &ctx.deployment {
                    @if !d.deployed_by.is_empty() { div { dt { "Deployed by" } dd { (d.deployed_by) } } }
                }
                div { dt { "Queued" } dd { (layout::when(task.queue_time, now)) } }
                @if let Some(s) = task.start_time { div { dt { "Started" } dd { (layout::when(s, now)) } } }
                @if task.start_time.is_some() { div { dt { "Duration" } dd { (task.duration) } } }
            }
            @if !task.is_completed {
                div.actions {
                    form method="post" action=(format!("/tasks/{}/cancel", task.id)) {
                        input type="hidden" name=(CSRF_FIELD) value=(csrf);
                        @if task.state == TaskState::Cancelling {
                            button.danger type="submit" disabled { "Cancelling…" }
                        } @else {
                            button.danger type="submit" data-confirm="Cancel this task? Running steps are stopped." { "Cancel" }
                        }
                    }
                }
            }
        }
        @if task.is_completed {
            (summary(ctx, now))
        }
        @for i in pending {
            (interruption_form(task, i, csrf))
        }
    }
}

fn summary(ctx: &TaskContext, now: Timestamp) -> Markup {
    let task = &ctx.task;
    let icon = layout::deployment_icon(cuttle_service::dashboard::DeploymentState::of(task));
    let what = match (&ctx.release, &ctx.environment) {
        (Some(r), Some(e)) => format!("release {} to {}", r.version, e.name),
        _ => task.description.clone(),
    };
    let headline = match task.state {
        TaskState::Success if task.has_warnings_or_errors => {
            format!("Deployed {what}, with warnings")
        }
        TaskState::Success if ctx.deployment.is_some() => format!("Deployed {what}"),
        TaskState::Success => format!("{what}: succeeded"),
        TaskState::Canceled => format!("Canceled: {what}"),
        TaskState::TimedOut => format!("Timed out: {what}"),
        _ => format!("Failed: {what}"),
    };
    html! {
        section class=(format!("summary state-{}", icon.key())) role="status" {
            (icon.markup())
            div {
                p.headline { (headline) }
                @if let Some(e) = &task.error_message {
                    p.error-message { (e) }
                }
                p.muted {
                    "Finished "
                    @if let Some(c) = task.completed_time { (layout::when(c, now)) }
                    @if task.start_time.is_some() { " after " (task.duration) }
                    "."
                }
            }
        }
    }
}

fn interruption_form(task: &ServerTask, i: &Interruption, csrf: &str) -> Markup {
    html! {
        section.interruption aria-labelledby=(format!("title-{}", i.id)) {
            h2 #(format!("title-{}", i.id)) {
                (layout::Icon::Waiting.markup()) " " (i.title)
            }
            form method="post" action=(format!("/tasks/{}/interruptions/{}", task.id, i.id)) {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                @for e in &i.form.elements {
                    @match &e.control {
                        Control::Paragraph { text, .. } => p.instructions { (text) },
                        Control::TextArea { label } => {
                            label for=(format!("{}-{}", e.name, i.id)) { (label) }
                            textarea #(format!("{}-{}", e.name, i.id)) name=(e.name) rows="3" {}
                        },
                        Control::SubmitButtonGroup { buttons } => div.buttons {
                            @for b in buttons {
                                button type="submit" name=(e.name) value=(b.value)
                                    class=(button_class(&b.value))
                                    data-confirm=[b.requires_confirmation.then(|| format!("{} this deployment step?", b.text))] {
                                    (b.text)
                                }
                            }
                        },
                    }
                }
            }
        }
    }
}

fn button_class(value: &str) -> &'static str {
    match value {
        "Proceed" | "Retry" => "primary",
        "Abort" | "Fail" => "danger",
        _ => "secondary",
    }
}

/// The activity tree with each node's lines, from the flat rows. A long
/// activity shows its last lines, after a note with a link to the raw log.
fn log_tree(
    task_id: &str,
    activities: &[Activity],
    lines: &[LogLine],
    omitted: &HashMap<String, i64>,
) -> Markup {
    let mut children: HashMap<Option<&str>, Vec<&Activity>> = HashMap::new();
    for a in activities {
        children.entry(a.parent_id.as_deref()).or_default().push(a);
    }
    let mut by_activity: HashMap<&str, Vec<&LogLine>> = HashMap::new();
    for l in lines {
        by_activity
            .entry(l.activity_id.as_str())
            .or_default()
            .push(l);
    }
    let tree = Tree {
        task_id,
        children,
        lines: by_activity,
        omitted,
    };
    tree.nodes(None)
}

struct Tree<'a> {
    task_id: &'a str,
    omitted: &'a HashMap<String, i64>,
    children: HashMap<Option<&'a str>, Vec<&'a Activity>>,
    lines: HashMap<&'a str, Vec<&'a LogLine>>,
}

impl Tree<'_> {
    fn nodes(&self, parent: Option<&str>) -> Markup {
        html! {
            @for a in self.children.get(&parent).into_iter().flatten() {
                (self.node(a))
            }
        }
    }

    fn node(&self, a: &Activity) -> Markup {
        let icon = activity_icon(a.status);
        let duration = match (a.started, a.ended) {
            (Some(s), Some(e)) => Some(human_duration(e.millis() - s.millis())),
            _ => None,
        };
        // Lines and child activities interleaved as they happened (a line
        // by its time, a child by its start; unstarted children last), the
        // order in which the live stream appends them.
        let mut entries: Vec<(Option<Timestamp>, Entry)> = self
            .lines
            .get(a.id.as_str())
            .into_iter()
            .flatten()
            .map(|l| (Some(l.occurred_at), Entry::Line(l)))
            .collect();
        entries.extend(
            self.children
                .get(&Some(a.id.as_str()))
                .into_iter()
                .flatten()
                .map(|c| (c.started, Entry::Child(c))),
        );
        entries.sort_by_key(|(t, _)| (t.is_none(), *t));
        html! {
            details class=(format!("act status-{}", icon.key())) data-id=(a.id)
                data-started=[a.started.map(|t| t.to_string())] open {
                summary {
                    span.act-icon { (icon.markup()) }
                    span.name { (a.name) }
                    span.status { (a.status.as_str()) }
                    span.times {
                        @if let Some(s) = a.started { (clock(s)) }
                        @if let Some(d) = duration { " · " (d) }
                    }
                }
                div.entries {
                    @if let Some(n) = self.omitted.get(&a.id) {
                        div.omitted {
                            (n) " earlier line" @if *n != 1 { "s" } " not shown. "
                            a href=(format!("/api/tasks/{}/raw", self.task_id)) { "The raw log" }
                            " has every line."
                        }
                    }
                    @for (_, e) in &entries {
                        @match e {
                            Entry::Line(l) => (line(l)),
                            Entry::Child(c) => (self.node(c)),
                        }
                    }
                }
            }
        }
    }
}

enum Entry<'a> {
    Line(&'a LogLine),
    Child(&'a Activity),
}

/// One log line; the page script builds streamed lines the same way.
fn line(l: &LogLine) -> Markup {
    let category = l.category.as_str();
    html! {
        div class=(format!("line cat-{}", category.to_ascii_lowercase())) {
            (clock(l.occurred_at))
            span.lvl { (category) }
            span.msg { (l.message) }
            @if let Some(d) = &l.detail { pre.detail { (d) } }
        }
    }
}

/// `POST /tasks/{id}/cancel`
pub async fn cancel(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let back = format!("/tasks/{id}");
    let done = async {
        viewer.check_csrf(f.csrf.as_deref())?;
        cuttle_service::tasks::cancel(&inst, &viewer.actor, None, &id).await?;
        Ok::<_, PortalError>(())
    };
    match done.await {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(e) => e.page(Some(&back)),
    }
}

/// `POST /tasks/{id}/interruptions/{interruption}`: the form's fields (the
/// notes, and the pressed button's `Result` or `Guidance`) are submitted as
/// the interruption's form values, as an API client would send them.
pub async fn answer(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path((id, interruption)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let back = format!("/tasks/{id}");
    let done = async {
        let csrf = fields
            .iter()
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.as_str());
        viewer.check_csrf(csrf)?;
        let user = &viewer.actor;
        let task = cuttle_service::tasks::visible_task(&inst, user, None, &id).await?;
        let space = task.space_id.as_deref().unwrap_or(DEFAULT_SPACE_ID);
        let i = interruptions::get(&inst, user, space, &interruption).await?;
        if i.task_id != task.id {
            return Err(
                cuttle_service::ServiceError::not_found("interruption", &interruption).into(),
            );
        }
        let values: Map<String, Value> = fields
            .into_iter()
            .filter(|(k, _)| k != CSRF_FIELD)
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        interruptions::submit(&inst, user, space, &interruption, &values).await?;
        Ok::<_, PortalError>(())
    };
    match done.await {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(e) => e.page(Some(&back)),
    }
}
