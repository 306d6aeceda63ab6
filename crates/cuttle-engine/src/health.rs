//! The `Health` task: asks each listening agent who it is (`GET /v1/hello`)
//! and records on its machine whether it answered, and what it runs on.
//!
//! Arguments: `{"MachineIds": [...]}`; without any, every machine in the
//! task's space. Each machine is checked at once and independently, each
//! within its machine policy's `ConnectionConnectTimeout`.

use crate::deploy::Outcome;
use crate::log::{ActivityLog, TaskLog};
use cuttle_model::machine::{CommunicationStyle, HealthStatus};
use cuttle_model::machine_policy::parse_timespan;
use cuttle_model::{
    ActivityStatus, LogCategory, Machine, MachinePolicy, ServerTask, TaskState, Timestamp,
};
use cuttle_protocol::{Hello, Identity, Thumbprint};
use cuttle_store::Store;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// When a machine's policy is missing or its timeout unreadable.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(
    store: &Store,
    identity: Option<&Identity>,
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
    let Some(identity) = identity else {
        return fail("This server has no TLS identity, so it cannot connect to agents".into())
            .await;
    };
    let machines = match machines_of(store, task).await {
        Ok(m) => m,
        Err(e) => return fail(e).await,
    };
    if machines.is_empty() {
        root.info("There are no machines to check.");
        root.finish(ActivityStatus::Success).await;
        return Outcome {
            state: TaskState::Success,
            error: None,
        };
    }

    let checks = machines.iter().map(|m| check(store, identity, m, &root));
    let results = tokio::select! {
        r = futures::future::join_all(checks) => r,
        _ = cancel.cancelled() => {
            root.finish(ActivityStatus::Canceled).await;
            return Outcome { state: TaskState::Canceled, error: None };
        }
    };
    let unavailable: Vec<&str> = machines
        .iter()
        .zip(&results)
        .filter(|(_, healthy)| !**healthy)
        .map(|(m, _)| m.name.as_str())
        .collect();
    if unavailable.is_empty() {
        root.info(format!("All {} machines are healthy.", machines.len()));
        root.finish(ActivityStatus::Success).await;
        Outcome {
            state: TaskState::Success,
            error: None,
        }
    } else {
        fail(format!(
            "{} of {} machines could not be reached: {}",
            unavailable.len(),
            machines.len(),
            unavailable.join(", ")
        ))
        .await
    }
}

/// The machines the task names, or all in its space.
async fn machines_of(store: &Store, task: &ServerTask) -> Result<Vec<Machine>, String> {
    let ids: Vec<String> = match task.arguments.get("MachineIds") {
        None | Some(serde_json::Value::Null) => vec![],
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| "The task's MachineIds is not a list of machine ids".to_owned())?,
    };
    if ids.is_empty() {
        let space = task
            .space_id
            .as_deref()
            .ok_or("The task names no machines and no space")?;
        return store
            .machines_in_space(space)
            .await
            .map_err(|e| e.to_string());
    }
    let mut machines = Vec::with_capacity(ids.len());
    for id in ids {
        machines.push(
            store
                .require::<Machine>(&id)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(machines)
}

/// Checks one machine, records the result on it and logs it; returns whether
/// the machine is healthy.
async fn check(store: &Store, identity: &Identity, machine: &Machine, root: &ActivityLog) -> bool {
    let result = match machine.endpoint.communication_style {
        Some(CommunicationStyle::TentaclePassive) => ask(store, identity, machine).await,
        _ => Err("Only listening agents can be health-checked yet".to_owned()),
    };
    let now = Timestamp::now();
    let healthy = result.is_ok();
    let recorded = store
        .change_machine(&machine.id, |m| match &result {
            Ok(hello) => {
                m.health_status = HealthStatus::Healthy;
                m.status_summary = format!("The agent answered at {}.", m.endpoint.uri);
                m.operating_system = hello.operating_system.clone();
                m.architecture = hello.architecture.clone();
                m.agent_version = hello.agent_version.clone();
                m.last_seen = Some(now);
            }
            Err(reason) => {
                m.health_status = HealthStatus::Unavailable;
                m.status_summary = reason.clone();
            }
        })
        .await;
    match (&result, recorded) {
        (_, Err(e)) => root.error(format!(
            "{}: the result could not be recorded: {e}",
            machine.name
        )),
        (_, Ok(None)) => root.info(format!("{} was deleted during the check", machine.name)),
        (Ok(hello), Ok(Some(_))) => root.info(format!(
            "{} is healthy: agent {} on {} {}",
            machine.name, hello.agent_version, hello.operating_system, hello.architecture
        )),
        (Err(reason), Ok(Some(_))) => {
            root.error(format!("{} is unavailable: {reason}", machine.name))
        }
    }
    healthy
}

async fn ask(store: &Store, identity: &Identity, machine: &Machine) -> Result<Hello, String> {
    let thumbprint: Thumbprint = machine
        .endpoint
        .thumbprint
        .parse()
        .map_err(|e| format!("{e}"))?;
    let timeout = match store.get::<MachinePolicy>(&machine.machine_policy_id).await {
        Ok(Some(p)) => {
            parse_timespan(&p.connection_connect_timeout).unwrap_or(DEFAULT_CONNECT_TIMEOUT)
        }
        _ => DEFAULT_CONNECT_TIMEOUT,
    };
    cuttle_protocol::client::hello(&machine.endpoint.uri, &thumbprint, identity, timeout)
        .await
        .map_err(|e| e.to_string())
}
