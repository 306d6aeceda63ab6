//! The `Health` task: asks each agent who it is (`GET /v1/hello`)
//! and records on its machine whether it answered, and what it runs on.
//!
//! Arguments: `{"MachineIds": [...], "WorkerIds": [...]}`; without any,
//! every deployment target and worker in the task's space. Each is checked
//! at once and independently, within its machine policy's
//! `ConnectionConnectTimeout`. An agent older than the server is a warning.

use crate::deploy::Outcome;
use crate::log::{ActivityLog, TaskLog};
use cuttle_model::machine::{
    AgentFacts, AgentMachine, CommunicationStyle, HealthCheck, HealthStatus,
};
use cuttle_model::version_rule::Version;
use cuttle_model::{
    ActivityStatus, LogCategory, Machine, ServerTask, TaskState, Timestamp, Worker,
};
use cuttle_protocol::{AgentEndpoint, Agents, Hello, Thumbprint};
use cuttle_store::{DocumentQuery, Store};
use tokio_util::sync::CancellationToken;

pub async fn run(
    store: &Store,
    agents: Option<&Agents>,
    task: &ServerTask,
    log: &TaskLog,
    cancel: CancellationToken,
) -> Outcome {
    let root = log.activity(None, &task.description).await;
    root.start().await;
    let fail = |message: String| async {
        root.log(LogCategory::Fatal, &message);
        root.finish(ActivityStatus::Failed).await;
        Outcome::failed(message)
    };
    let Some(agents) = agents else {
        return fail("This server has no TLS identity, so it cannot connect to agents".into())
            .await;
    };
    let (machines, workers) = match machines_of(store, task).await {
        Ok(m) => m,
        Err(e) => return fail(e).await,
    };
    let total = machines.len() + workers.len();
    if total == 0 {
        root.info("There are no machines to check.");
        root.finish(ActivityStatus::Success).await;
        return Outcome {
            state: TaskState::Success,
            error: None,
        };
    }

    let checks = futures::future::join(
        futures::future::join_all(machines.iter().map(|m| check(store, agents, m, &root))),
        futures::future::join_all(workers.iter().map(|w| check(store, agents, w, &root))),
    );
    let (machine_results, worker_results) = tokio::select! {
        r = checks => r,
        _ = cancel.cancelled() => {
            root.finish(ActivityStatus::Canceled).await;
            return Outcome { state: TaskState::Canceled, error: None };
        }
    };
    let names = machines
        .iter()
        .map(|m| m.name.as_str())
        .chain(workers.iter().map(|w| w.name.as_str()));
    let unavailable: Vec<&str> = names
        .zip(machine_results.iter().chain(&worker_results))
        .filter(|(_, healthy)| !**healthy)
        .map(|(name, _)| name)
        .collect();
    if unavailable.is_empty() {
        root.info(format!("All {total} machines are healthy."));
        root.finish(ActivityStatus::Success).await;
        Outcome {
            state: TaskState::Success,
            error: None,
        }
    } else {
        fail(format!(
            "{} of {total} machines could not be reached: {}",
            unavailable.len(),
            unavailable.join(", ")
        ))
        .await
    }
}

/// The machines and workers the task names (`MachineIds`, `WorkerIds`), or
/// all of them in its space.
async fn machines_of(
    store: &Store,
    task: &ServerTask,
) -> Result<(Vec<Machine>, Vec<Worker>), String> {
    let ids = |key: &str| -> Result<Vec<String>, String> {
        match task.arguments.get(key) {
            None | Some(serde_json::Value::Null) => Ok(vec![]),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|_| format!("The task's {key} is not a list of ids")),
        }
    };
    let (machine_ids, worker_ids) = (ids("MachineIds")?, ids("WorkerIds")?);
    let err = |e: cuttle_store::StoreError| e.to_string();
    if machine_ids.is_empty() && worker_ids.is_empty() {
        let space = task
            .space_id
            .as_deref()
            .ok_or("The task names no machines and no space")?;
        let q = DocumentQuery {
            space_id: Some(space.to_owned()),
            ..Default::default()
        };
        return Ok((
            store.machines_in_space(space).await.map_err(err)?,
            store.list::<Worker>(&q).await.map_err(err)?.items,
        ));
    }
    let mut machines = Vec::with_capacity(machine_ids.len());
    for id in machine_ids {
        machines.push(store.require::<Machine>(&id).await.map_err(err)?);
    }
    let mut workers = Vec::with_capacity(worker_ids.len());
    for id in worker_ids {
        workers.push(store.require::<Worker>(&id).await.map_err(err)?);
    }
    Ok((machines, workers))
}

/// Checks one machine or worker, records the result on it and logs it;
/// returns whether it is healthy.
async fn check<M>(store: &Store, agents: &Agents, machine: &M, root: &ActivityLog) -> bool
where
    M: AgentMachine + cuttle_store::Document,
{
    let result = ask(store, agents, machine).await;
    let healthy = result.is_ok();
    let server_version = env!("CARGO_PKG_VERSION");
    // Decided once: the status, its summary and the log line all say it.
    let older = result
        .as_ref()
        .is_ok_and(|hello| newer_than(server_version, &hello.agent_version) == Some(true));
    let outcome = match &result {
        Ok(hello) => HealthCheck {
            status: if older {
                HealthStatus::HasWarnings
            } else {
                HealthStatus::Healthy
            },
            summary: match (older, machine.endpoint().communication_style) {
                (true, _) => format!(
                    "The agent answered, but runs version {}, older than this server ({server_version}); upgrade it.",
                    hello.agent_version
                ),
                (false, Some(CommunicationStyle::TentacleActive)) => {
                    "The polling agent answered over its connection.".to_owned()
                }
                (false, _) => format!("The agent answered at {}.", machine.endpoint().uri),
            },
            agent: Some(AgentFacts {
                operating_system: hello.operating_system.clone(),
                architecture: hello.architecture.clone(),
                version: hello.agent_version.clone(),
                seen: Timestamp::now(),
            }),
        },
        Err(reason) => HealthCheck {
            status: HealthStatus::Unavailable,
            summary: reason.clone(),
            agent: None,
        },
    };
    let recorded = store
        .change_machine::<M>(AgentMachine::id(machine), |m| m.record_health(&outcome))
        .await;
    let name = AgentMachine::name(machine);
    match (&result, recorded) {
        (_, Err(e)) => root.error(format!("{name}: the result could not be recorded: {e}")),
        (_, Ok(None)) => root.info(format!("{name} was deleted during the check")),
        (Ok(hello), Ok(Some(_))) => {
            root.info(format!(
                "{name} is healthy: agent {} on {} {}",
                hello.agent_version, hello.operating_system, hello.architecture
            ));
            if older {
                root.log(
                    LogCategory::Warning,
                    format!(
                        "{name} runs agent {}, older than this server ({server_version}); upgrade it",
                        hello.agent_version
                    ),
                );
            }
        }
        (Err(reason), Ok(Some(_))) => root.error(format!("{name} is unavailable: {reason}")),
    }
    healthy
}

/// Whether version `a` is newer than `b`, by the SemVer precedence the
/// rest of Cuttle uses; `None` when either cannot be read.
fn newer_than(a: &str, b: &str) -> Option<bool> {
    Some(Version::parse(a)? > Version::parse(b)?)
}

async fn ask<M: AgentMachine>(
    store: &Store,
    agents: &Agents,
    machine: &M,
) -> Result<Hello, String> {
    let endpoint = machine.endpoint();
    let thumbprint: Thumbprint = endpoint.thumbprint.parse().map_err(|e| format!("{e}"))?;
    let endpoint = match endpoint.communication_style {
        Some(CommunicationStyle::TentaclePassive) => AgentEndpoint::Listening {
            uri: &endpoint.uri,
            thumbprint: &thumbprint,
        },
        Some(CommunicationStyle::TentacleActive) => AgentEndpoint::Polling {
            thumbprint: &thumbprint,
        },
        None => return Err("The machine has no communication style".to_owned()),
    };
    let policy = crate::remote::policy_of(store, machine.machine_policy_id()).await;
    let timeout = crate::remote::ConnectionLimits::of(&policy).connect;
    agents
        .hello(endpoint, timeout)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::newer_than;

    #[test]
    fn versions() {
        assert_eq!(newer_than("0.2.0", "0.1.9"), Some(true));
        assert_eq!(newer_than("0.1.0", "0.1.0"), Some(false));
        assert_eq!(newer_than("0.1.0", "0.10.0"), Some(false));
        assert_eq!(newer_than("x", "0.1.0"), None);
    }
}
