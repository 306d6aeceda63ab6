//! The audit log: every space's events, newest first, filtered by category,
//! project, environment and dates, through the same service function and
//! filters as `GET /api/events`. Read only, like the log itself.

use crate::error::PortalError;
use crate::layout::{self, Nav};
use crate::session::Viewer;
use crate::AppState;
use axum::extract::{Query, State};
use cuttle_model::{Environment, Event, Project, Timestamp};
use cuttle_service::events::{self as svc, EventFilters};
use cuttle_service::paging::ListParams;
use maud::{html, Markup};
use serde::Deserialize;

const PAGE_SIZE: i64 = 30;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AuditQuery {
    #[serde(rename = "eventCategories")]
    category: Option<String>,
    #[serde(rename = "projects")]
    project: Option<String>,
    #[serde(rename = "environments")]
    environment: Option<String>,
    from: Option<String>,
    to: Option<String>,
    skip: Option<i64>,
}

/// `GET /audit`
pub async fn page(
    State(inst): State<AppState>,
    viewer: Viewer,
    Query(q): Query<AuditQuery>,
) -> Result<Markup, PortalError> {
    let given = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let filters = EventFilters {
        event_categories: given(&q.category),
        projects: given(&q.project),
        environments: given(&q.environment),
        from: given(&q.from),
        to: given(&q.to),
        ..Default::default()
    };
    let skip = q.skip.unwrap_or(0).max(0);
    let paging = ListParams {
        skip: Some(skip),
        take: Some(PAGE_SIZE),
        ..Default::default()
    };
    let reader = svc::EventReader::of(&inst.store, &viewer.permissions, None).await?;
    let (events, total) = svc::list(&inst.store, &reader, None, &filters, &paging).await?;
    let projects = inst
        .store
        .list::<Project>(&crate::default_space())
        .await?
        .items;
    let environments = inst
        .store
        .list::<Environment>(&crate::default_space())
        .await?
        .items;
    let page_link = |skip: i64| {
        let mut query = vec![("skip", skip.to_string())];
        for (k, v) in [
            ("eventCategories", &filters.event_categories),
            ("projects", &filters.projects),
            ("environments", &filters.environments),
            ("from", &filters.from),
            ("to", &filters.to),
        ] {
            if let Some(v) = v {
                query.push((k, v.clone()));
            }
        }
        format!(
            "/audit?{}",
            serde_urlencoded::to_string(&query).unwrap_or_default()
        )
    };
    let filtered = [
        &filters.event_categories,
        &filters.projects,
        &filters.environments,
        &filters.from,
        &filters.to,
    ]
    .iter()
    .any(|f| f.is_some());
    let now = Timestamp::now();
    let selected = |v: &Option<String>, id: &str| v.as_deref() == Some(id);
    let body = html! {
        div.page-head {
            h1 { "Audit" }
        }
        form.filters method="get" action="/audit" {
            div.field {
                label for="category" { "Category" }
                select #category name="eventCategories" {
                    option value="" selected[filters.event_categories.is_none()] { "Any category" }
                    @for c in svc::categories() {
                        option value=(c.id) selected[selected(&filters.event_categories, &c.id)] { (c.name) }
                    }
                }
            }
            div.field {
                label for="project" { "Project" }
                select #project name="projects" {
                    option value="" selected[filters.projects.is_none()] { "Any project" }
                    @for p in &projects {
                        option value=(p.id) selected[selected(&filters.projects, &p.id)] { (p.name) }
                    }
                }
            }
            div.field {
                label for="environment" { "Environment" }
                select #environment name="environments" {
                    option value="" selected[filters.environments.is_none()] { "Any environment" }
                    @for e in &environments {
                        option value=(e.id) selected[selected(&filters.environments, &e.id)] { (e.name) }
                    }
                }
            }
            div.field {
                label for="from" { "From" }
                input #from type="date" name="from" value=[filters.from.as_deref()];
            }
            div.field {
                label for="to" { "To" }
                input #to type="date" name="to" value=[filters.to.as_deref()];
            }
            button type="submit" { "Filter" }
            @if filtered {
                a.clear href="/audit" { "Clear" }
            }
        }
        @if events.is_empty() {
            div.panel.empty { p { "No events match." } }
        } @else {
            div.table-wrap {
                table.audit {
                    thead {
                        tr {
                            th scope="col" { "When" }
                            th scope="col" { "Who" }
                            th scope="col" { "Category" }
                            th scope="col" { "What" }
                            th scope="col" { "From" }
                        }
                    }
                    tbody {
                        @for e in &events {
                            (row(e, now))
                        }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if skip > 0 {
                    a href=(page_link((skip - PAGE_SIZE).max(0))) { "← Newer" }
                }
                span.muted {
                    (skip + 1) "–" (skip + events.len() as i64) " of " (total)
                }
                @if skip + PAGE_SIZE < total {
                    a href=(page_link(skip + PAGE_SIZE)) { "Older →" }
                }
            }
        }
    };
    Ok(layout::page(&viewer, "Audit", Nav::Audit, body))
}

fn row(e: &Event, now: Timestamp) -> Markup {
    let changes = e
        .change_details
        .as_ref()
        .and_then(|c| c["Differences"].as_array())
        .map_or(0, Vec::len);
    html! {
        tr {
            td { @if let Some(at) = e.occurred { (layout::when(at, now)) } }
            td { (e.username.as_deref().unwrap_or("the server")) }
            td { span.tag { (e.category) } }
            td {
                (e.message)
                @if changes > 0 {
                    " "
                    a.muted href=(format!("/api/events/{}", e.id)) {
                        (changes) @if changes == 1 { " change" } @else { " changes" }
                    }
                }
            }
            td.muted {
                (e.ip_address.as_deref().unwrap_or(""))
                @if let Some(agent) = &e.user_agent {
                    br;
                    small { (agent) }
                }
            }
        }
    }
}
