//! The dashboard: each project group a table of its projects against the
//! space's environments, each cell the newest deployment there. While
//! anything is queued, running or waiting, the page script fetches
//! `/fragments/dashboard` every few seconds and swaps the board in.

use crate::error::PortalError;
use crate::layout::{self, deployment_icon, deployment_label, Nav};
use crate::session::{FragmentViewer, Viewer};
use crate::AppState;
use axum::extract::State;
use cuttle_model::space::DEFAULT_SPACE_ID;
use cuttle_model::Timestamp;
use cuttle_service::dashboard::{self as svc, Cell, Dashboard};
use maud::{html, Markup};

pub async fn page(State(inst): State<AppState>, viewer: Viewer) -> Result<Markup, PortalError> {
    let d = svc::dashboard(&inst, &viewer.actor, DEFAULT_SPACE_ID).await?;
    let body = html! {
        div.page-head {
            h1 { "Dashboard" }
            p.muted { "The newest deployment of each project to each environment." }
        }
        (board(&d, Timestamp::now()))
    };
    Ok(layout::page(&viewer, "Dashboard", Nav::Dashboard, body))
}

pub async fn fragment(
    State(inst): State<AppState>,
    FragmentViewer(viewer): FragmentViewer,
) -> Result<Markup, PortalError> {
    let d = svc::dashboard(&inst, &viewer.actor, DEFAULT_SPACE_ID).await?;
    Ok(board(&d, Timestamp::now()))
}

fn board(d: &Dashboard, now: Timestamp) -> Markup {
    html! {
        div #dashboard data-live=(d.live) data-refresh="/fragments/dashboard" {
            @if d.groups.is_empty() {
                div.panel.empty {
                    h2 { "No projects yet" }
                    p {
                        "Add the environments you deploy to under "
                        a href="/infrastructure/environments" { "Infrastructure" }
                        ", then "
                        a href="/projects" { "create a project" }
                        "; its deployments will show here."
                    }
                }
            } @else if d.environments.is_empty() {
                div.panel.empty {
                    h2 { "No environments yet" }
                    p { a href="/infrastructure/environments" { "Create an environment" } " to deploy to." }
                }
            }
            @for g in &d.groups {
                @if !d.environments.is_empty() {
                    section.group aria-labelledby=(format!("group-{}", g.group.id)) {
                        h2 #(format!("group-{}", g.group.id)) { (g.group.name) }
                        div.table-wrap.board-wrap {
                            table.board {
                                thead {
                                    tr {
                                        th scope="col" { "Project" }
                                        @for e in &d.environments {
                                            th scope="col" { (e.name) }
                                        }
                                    }
                                }
                                tbody {
                                    @for row in &g.projects {
                                        tr {
                                            th scope="row" {
                                                span.project-name { (row.project.name) }
                                                @if row.project.is_disabled {
                                                    " " span.tag { "disabled" }
                                                }
                                            }
                                            @for (cell, env) in row.cells.iter().zip(&d.environments) {
                                                td {
                                                    @match cell {
                                                        Some(c) => (cell_link(c, &env.name, now, true)),
                                                        None => span.none title=(format!("Not deployed to {}", env.name)) { "—" },
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
            }
        }
    }
}

/// A deployment in a board's cell: state by colour, icon and words, and
/// when. A project's board leaves out the version, which heads its row.
pub(crate) fn cell_link(c: &Cell, environment: &str, now: Timestamp, version: bool) -> Markup {
    let icon = deployment_icon(c.state);
    let label = deployment_label(c.state);
    let at = c.at;
    html! {
        a class=(format!("cell state-{}", icon.key()))
            href=(format!("/tasks/{}", c.task_id))
            aria-label=(format!("{} to {}: {label}, {}", c.release_version, environment, layout::ago(at, now)))
            data-state=(icon.key()) {
            @if version {
                span.cell-top {
                    (icon.markup())
                    span.version { (c.release_version) }
                }
                span.cell-bottom {
                    span.state-label { (label) }
                    " · "
                    (layout::when(at, now))
                }
            } @else {
                span.cell-top {
                    (icon.markup())
                    span.state-label { (label) }
                }
                span.cell-bottom { (layout::when(at, now)) }
            }
        }
    }
}
