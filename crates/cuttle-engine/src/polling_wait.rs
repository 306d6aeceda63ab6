//! Before a step runs on its targets: a polling agent that is not connected
//! is waited for, but only for its machine policy's connect timeout, so a
//! deployment to a machine whose agent is down fails (or skips it) within
//! that timeout rather than after the policy's whole retry limit.

use std::time::Duration;

use cuttle_model::machine::CommunicationStyle;
use cuttle_model::Machine;
use cuttle_protocol::{Agents, Thumbprint};
use cuttle_store::Store;
use tokio_util::sync::CancellationToken;

use crate::log::ActivityLog;
use crate::remote::{policy_of, ConnectionLimits};

/// A target whose polling agent did not connect in time.
pub struct NotConnected<'m> {
    pub machine: &'m Machine,
    pub waited: Duration,
}

impl NotConnected<'_> {
    pub fn describe(&self) -> String {
        format!(
            "The polling agent on machine '{}' ({}) did not connect within {}",
            self.machine.name,
            self.machine.id,
            seconds(self.waited)
        )
    }
}

/// The task was cancelled while its targets were waited for.
pub struct Canceled;

/// Waits, all at once, for the polling agents among `machines` that are not
/// connected; those that stay away past their policy's connect timeout are
/// returned. Listening targets are left to the connection attempts of the
/// step itself, as is a target whose thumbprint does not parse (running
/// the step then reports that).
pub async fn not_connected<'m>(
    agents: &Agents,
    store: &Store,
    machines: &[&'m Machine],
    activity: &ActivityLog,
    cancel: &CancellationToken,
) -> Result<Vec<NotConnected<'m>>, Canceled> {
    let waits = machines
        .iter()
        .filter(|m| m.endpoint.communication_style == Some(CommunicationStyle::TentacleActive))
        .map(|m| wait_for(agents, store, m, activity));
    let waiting = futures::future::join_all(waits);
    tokio::select! {
        ends = waiting => Ok(ends.into_iter().flatten().collect()),
        _ = cancel.cancelled() => Err(Canceled),
    }
}

async fn wait_for<'m>(
    agents: &Agents,
    store: &Store,
    machine: &'m Machine,
    activity: &ActivityLog,
) -> Option<NotConnected<'m>> {
    let thumbprint: Thumbprint = machine.endpoint.thumbprint.parse().ok()?;
    // Connected here, or (several nodes) to another live node.
    if agents.wait_for_polling(&thumbprint, Duration::ZERO).await {
        return None;
    }
    let limit = ConnectionLimits::of(&policy_of(store, &machine.machine_policy_id).await).connect;
    activity.info(format!(
        "Waiting up to {} for the polling agent on machine '{}' ({}) to connect",
        seconds(limit),
        machine.name,
        machine.id
    ));
    match agents.wait_for_polling(&thumbprint, limit).await {
        true => {
            activity.info(format!(
                "The polling agent on machine '{}' ({}) connected",
                machine.name, machine.id
            ));
            None
        }
        false => Some(NotConnected {
            machine,
            waited: limit,
        }),
    }
}

/// "60s", or "1.5s" for a timeout with a fraction.
pub fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_seconds() {
        assert_eq!(seconds(Duration::from_secs(60)), "60s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5s");
        assert_eq!(seconds(Duration::from_millis(100)), "0.1s");
    }
}
