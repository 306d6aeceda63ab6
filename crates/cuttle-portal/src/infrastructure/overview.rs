//! The infrastructure overview: how many of each thing there are, and how
//! healthy the targets and workers are, each linking to its own page.

use super::{head, health_badge_counted, page, Tab};
use crate::error::PortalError;
use crate::session::Viewer;
use crate::AppState;
use axum::extract::State;
use cuttle_model::machine::HealthStatus;
use cuttle_model::{Environment, MachinePolicy, WorkerPool};
use cuttle_service::machines::{self, MachineFilters};
use cuttle_service::{resources, workers};
use cuttle_store::{Document, DocumentQuery, Store};
use maud::{html, Markup};

/// The health statuses in the order they are worth a look: worst first.
const WORST_FIRST: [HealthStatus; 5] = [
    HealthStatus::Unavailable,
    HealthStatus::Unhealthy,
    HealthStatus::HasWarnings,
    HealthStatus::Unknown,
    HealthStatus::Healthy,
];

/// How many machines have each status, leaving out those none have.
fn by_health(statuses: impl Iterator<Item = HealthStatus> + Clone) -> Vec<(HealthStatus, usize)> {
    WORST_FIRST
        .iter()
        .map(|s| (*s, statuses.clone().filter(|x| x == s).count()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// How many of a kind the space has: counted by the store, none read.
async fn count<D: Document>(store: &Store) -> Result<usize, PortalError> {
    let q = DocumentQuery {
        take: Some(0),
        ..crate::default_space()
    };
    let total = resources::list::<D>(store, &q).await?.total;
    Ok(usize::try_from(total).unwrap_or_default())
}

/// `GET /infrastructure`
pub async fn page_handler(
    State(inst): State<AppState>,
    viewer: Viewer,
) -> Result<Markup, PortalError> {
    let store = &inst.store;
    let targets =
        machines::list_machines(store, crate::default_space(), &MachineFilters::default()).await?;
    let workers =
        workers::list_workers(store, crate::default_space(), &MachineFilters::default()).await?;
    let cards = [
        card(
            Tab::Environments,
            count::<Environment>(store).await?,
            "environment",
            vec![],
        ),
        card(
            Tab::Targets,
            targets.len(),
            "deployment target",
            by_health(targets.iter().map(|m| m.health_status)),
        ),
        card(
            Tab::Workers,
            workers.len(),
            "worker",
            by_health(workers.iter().map(|w| w.health_status)),
        ),
        card(
            Tab::Pools,
            count::<WorkerPool>(store).await?,
            "worker pool",
            vec![],
        ),
        card(
            Tab::Policies,
            count::<MachinePolicy>(store).await?,
            "machine policy",
            vec![],
        ),
    ];
    let body = html! {
        (head(Tab::Overview, "Infrastructure",
            "Where deployments run: environments, the machines in them, and how those machines are looked after.",
            html! {}))
        ul.infra-cards {
            @for c in &cards { (c) }
        }
    };
    Ok(page(&viewer, "Infrastructure", body))
}

fn card(tab: Tab, count: usize, noun: &str, health: Vec<(HealthStatus, usize)>) -> Markup {
    let plural = match (count, noun.strip_suffix('y')) {
        (1, _) => noun.to_owned(),
        (_, Some(stem)) => format!("{stem}ies"),
        _ => format!("{noun}s"),
    };
    html! {
        li.panel.infra-card {
            h2 { a href=(tab.href()) { (tab.label()) } }
            p.count { span.number { (count) } " " (plural) }
            @if !health.is_empty() {
                ul.health-counts {
                    @for (status, n) in &health {
                        li { (health_badge_counted(*status, Some(*n))) }
                    }
                }
            }
        }
    }
}
