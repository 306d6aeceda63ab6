//! Worker pools: the list, with the default one marked and how many
//! workers each has, a form that creates one, and deleting one (which the
//! service refuses for the default pool and for pools with workers; its
//! reason is shown above the list).

use super::{head, name_field, page, CsrfOnly, Tab};
use crate::error::PortalError;
use crate::forms::{self, Problems};
use crate::session::Viewer;
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use cuttle_model::space::DEFAULT_SPACE_ID;
use cuttle_model::WorkerPool;
use cuttle_service::machines::MachineFilters;
use cuttle_service::{resources, workers, Instance};
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::HashMap;

const HERE: &str = "/infrastructure/worker-pools";

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewPool {
    csrf: Option<String>,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Description")]
    description: String,
}

struct Listing {
    pools: Vec<WorkerPool>,
    workers: HashMap<String, usize>,
}

async fn load(inst: &Instance) -> Result<Listing, PortalError> {
    // In their order: the store lists them by it.
    let pools = resources::list::<WorkerPool>(&inst.store, &crate::default_space())
        .await?
        .items;
    let all = workers::list_workers(
        &inst.store,
        crate::default_space(),
        &MachineFilters::default(),
    )
    .await?;
    let mut counts = HashMap::new();
    for id in all.iter().flat_map(|w| &w.worker_pool_ids) {
        *counts.entry(id.clone()).or_insert(0) += 1;
    }
    Ok(Listing {
        pools,
        workers: counts,
    })
}

/// `GET /infrastructure/worker-pools`
pub async fn list(State(inst): State<AppState>, viewer: Viewer) -> Result<Markup, PortalError> {
    let listing = load(&inst).await?;
    Ok(render(
        &viewer,
        &listing,
        &NewPool::default(),
        &Problems::none(),
        &Problems::none(),
    ))
}

/// `POST /infrastructure/worker-pools`
pub async fn create(
    State(inst): State<AppState>,
    viewer: Viewer,
    Form(f): Form<NewPool>,
) -> Response {
    let shown = async {
        viewer.check_csrf(f.csrf.as_deref())?;
        let pool = WorkerPool {
            name: f.name.clone(),
            description: f.description.clone(),
            ..Default::default()
        };
        let user = &viewer.actor;
        let Err(err) = workers::create_worker_pool(&inst.store, user, DEFAULT_SPACE_ID, pool).await
        else {
            return Ok(Redirect::to(HERE).into_response());
        };
        let (status, problems) = Problems::from_error(err, name_field)?;
        let listing = load(&inst).await?;
        let page = render(&viewer, &listing, &f, &problems, &Problems::none());
        Ok::<_, PortalError>((status, page).into_response())
    };
    shown.await.unwrap_or_else(|e| e.page(Some(HERE)))
}

/// `POST /infrastructure/worker-pools/{id}/delete`
pub async fn delete(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let shown = async {
        viewer.check_csrf(f.csrf.as_deref())?;
        let user = &viewer.actor;
        let Err(err) = workers::delete_worker_pool(&inst.store, user, DEFAULT_SPACE_ID, &id).await
        else {
            return Ok(Redirect::to(HERE).into_response());
        };
        let (status, refused) = Problems::from_error(err, |_| None)?;
        let listing = load(&inst).await?;
        let empty = NewPool::default();
        let page = render(&viewer, &listing, &empty, &Problems::none(), &refused);
        Ok::<_, PortalError>((status, page).into_response())
    };
    shown.await.unwrap_or_else(|e| e.page(Some(HERE)))
}

fn render(
    viewer: &Viewer,
    listing: &Listing,
    form: &NewPool,
    problems: &Problems,
    refused: &Problems,
) -> Markup {
    let body = html! {
        (head(Tab::Pools, "Worker pools",
            "Groups of workers; a step that runs on a worker names the pool to take one from.",
            html! {}))
        (refused.summary())
        div.infra-split {
            section aria-labelledby="pools-title" {
                h2.sr-only #pools-title { "Worker pools" }
                div.table-wrap {
                    table.pools {
                        thead {
                            tr {
                                th scope="col" { "Name" }
                                th.count scope="col" { "Workers" }
                                th scope="col" { span.sr-only { "Actions" } }
                            }
                        }
                        tbody {
                            @for p in &listing.pools {
                                tr data-id=(p.id) {
                                    td {
                                        span.pool-name { (p.name) }
                                        @if p.is_default { " " span.tag.default { "default" } }
                                        @if !p.description.is_empty() {
                                            p.muted.description { (p.description) }
                                        }
                                    }
                                    td.count { (listing.workers.get(&p.id).copied().unwrap_or(0)) }
                                    td.row-actions {
                                        @if !p.is_default {
                                            form.inline method="post" action=(format!("{HERE}/{}/delete", p.id)) {
                                                (forms::csrf(viewer.csrf()))
                                                button.small.danger type="submit"
                                                    aria-label=(format!("Delete {}", p.name))
                                                    data-confirm=(format!("Delete the worker pool {}?", p.name)) { "Delete" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section.panel.infra-form aria-labelledby="create-pool-title" {
                h2 #create-pool-title { "Add a worker pool" }
                form method="post" action=(HERE) {
                    (forms::csrf(viewer.csrf()))
                    (problems.summary())
                    (forms::text_field(problems, "pool-name", "Name", "Name", &form.name, None))
                    (forms::text_area(problems, "pool-description", "Description", "Description", &form.description, 2))
                    div.form-actions {
                        button.primary #create-pool type="submit" { "Create worker pool" }
                    }
                }
            }
        }
    };
    page(viewer, "Worker pools", body)
}
