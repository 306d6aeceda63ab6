//! The server nodes sharing this installation's database: which leads,
//! which are online or draining, how busy each is, and whose clock is off.
//! Read only: nodes are drained and removed through the API.

use crate::error::PortalError;
use crate::layout::{self, Nav};
use crate::session::Viewer;
use crate::AppState;
use axum::extract::State;
use cuttle_model::server_node::ServerNode;
use cuttle_model::Timestamp;
use maud::{html, Markup};

pub const NODES: &str = "/configuration/nodes";

/// `GET /configuration/nodes`
pub async fn page(State(inst): State<AppState>, viewer: Viewer) -> Result<Markup, PortalError> {
    let nodes = cuttle_service::nodes::list(&inst).await?;
    let now = Timestamp::now();
    let body = html! {
        (crate::configuration::head(NODES))
        p.muted {
            "This page was served by " strong { (inst.config.node_name) } ". "
            "Drain a node (it finishes what it runs and takes nothing new) or change its task cap with "
            code { "PUT /api/octopusservernodes/{id}" } "."
        }
        div.table-wrap {
            table.nodes {
                thead {
                    tr {
                        th scope="col" { "Node" }
                        th scope="col" { "Rank" }
                        th scope="col" { "State" }
                        th scope="col" { "Last seen" }
                        th scope="col" { "Tasks" }
                        th scope="col" { "Clock" }
                        th scope="col" { "Version" }
                    }
                }
                tbody {
                    @for n in &nodes {
                        (row(n, now))
                    }
                }
            }
        }
    };
    Ok(layout::page(&viewer, "Nodes", Nav::Configuration, body))
}

fn row(n: &ServerNode, now: Timestamp) -> Markup {
    let state = match () {
        _ if n.is_offline => "Offline",
        _ if n.is_in_maintenance_mode => "Draining",
        _ => "Online",
    };
    html! {
        tr {
            td { (n.name) }
            td { span.tag { (n.rank) } }
            td { (state) }
            td { (layout::when(n.last_seen, now)) }
            td { (n.running_task_count) " of " (n.max_concurrent_tasks) }
            td {
                @if n.is_clock_skewed {
                    strong.warning { (n.clock_skew_milliseconds) " ms off the database's" }
                } @else {
                    span.muted { (n.clock_skew_milliseconds) " ms" }
                }
            }
            td.muted { (n.version) }
        }
    }
}
