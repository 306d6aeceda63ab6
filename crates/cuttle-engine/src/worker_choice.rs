//! Which worker runs a step that targets no roles: one from the action's
//! worker pool (or the space's default pool), else the built-in worker when
//! the default pool has no workers at all.

use cuttle_model::machine::HealthStatus;
use cuttle_model::{Action, Worker, WorkerPool};
use cuttle_store::{DocumentQuery, Store};

/// Where a worker step runs.
#[derive(Debug)]
pub enum WorkerChoice {
    /// The server's own built-in worker.
    BuiltIn,
    Worker(Box<Worker>),
}

/// Chooses a worker for `action` in `space_id`. `spread` varies the choice
/// among equally good workers (e.g. a hash of the task), so that parallel
/// deployments do not all land on the first one.
pub async fn choose(
    store: &Store,
    space_id: &str,
    action: &Action,
    spread: usize,
) -> Result<WorkerChoice, String> {
    let q = DocumentQuery {
        space_id: Some(space_id.to_owned()),
        ..Default::default()
    };
    let err = |e: cuttle_store::StoreError| e.to_string();
    let pools = store.list::<WorkerPool>(&q).await.map_err(err)?.items;
    let asked = action
        .worker_pool_id
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let pool = match asked {
        Some(id) => pools
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| format!("The worker pool {id} does not exist"))?,
        None => match pools.iter().find(|p| p.is_default) {
            Some(p) => p,
            None => return Ok(WorkerChoice::BuiltIn),
        },
    };
    let workers: Vec<Worker> = store
        .list::<Worker>(&q)
        .await
        .map_err(err)?
        .items
        .into_iter()
        .filter(|w| !w.is_disabled && w.worker_pool_ids.contains(&pool.id))
        .collect();
    if workers.is_empty() {
        // The built-in worker stands in for an empty default pool, as it
        // does in Octopus; a pool chosen on purpose must have workers.
        return if pool.is_default {
            Ok(WorkerChoice::BuiltIn)
        } else {
            Err(format!(
                "The worker pool '{}' has no enabled workers",
                pool.name
            ))
        };
    }
    pick(&pool.name, workers, spread).map(|w| WorkerChoice::Worker(Box::new(w)))
}

/// A healthy worker if there is one, else one not known to be unhealthy
/// (never checked yet); an error listing them all when none is usable.
fn pick(pool: &str, workers: Vec<Worker>, spread: usize) -> Result<Worker, String> {
    let rank = |w: &Worker| match w.health_status {
        HealthStatus::Healthy | HealthStatus::HasWarnings => Some(0),
        HealthStatus::Unknown => Some(1),
        HealthStatus::Unhealthy | HealthStatus::Unavailable => None,
    };
    let Some(best) = workers.iter().filter_map(rank).min() else {
        let listed: Vec<String> = workers
            .iter()
            .map(|w| format!("{} is {:?}", w.name, w.health_status))
            .collect();
        return Err(format!(
            "No healthy worker in the worker pool '{pool}': {}",
            listed.join(", ")
        ));
    };
    let mut candidates: Vec<Worker> = workers
        .into_iter()
        .filter(|w| rank(w) == Some(best))
        .collect();
    let index = spread % candidates.len();
    Ok(candidates.swap_remove(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(name: &str, status: HealthStatus) -> Worker {
        Worker {
            name: name.into(),
            health_status: status,
            ..Default::default()
        }
    }

    #[test]
    fn prefers_healthy_workers_and_names_the_unusable() {
        let chosen = pick(
            "Linux",
            vec![
                worker("a", HealthStatus::Unknown),
                worker("b", HealthStatus::Healthy),
                worker("c", HealthStatus::Unavailable),
            ],
            7,
        )
        .unwrap();
        assert_eq!(chosen.name, "b");
        let unknown = pick("Linux", vec![worker("a", HealthStatus::Unknown)], 0).unwrap();
        assert_eq!(unknown.name, "a");
        let err = pick(
            "Linux",
            vec![
                worker("a", HealthStatus::Unavailable),
                worker("b", HealthStatus::Unhealthy),
            ],
            0,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "No healthy worker in the worker pool 'Linux': a is Unavailable, b is Unhealthy"
        );
    }

    #[test]
    fn spreads_over_equals() {
        let names: Vec<String> = (0..2)
            .map(|spread| {
                pick(
                    "p",
                    vec![
                        worker("a", HealthStatus::Healthy),
                        worker("b", HealthStatus::Healthy),
                    ],
                    spread,
                )
                .unwrap()
                .name
            })
            .collect();
        assert_eq!(names, ["a", "b"]);
    }
}
