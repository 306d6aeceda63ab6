//! Polling agents with several nodes on PostgreSQL: a step on one node
//! reaches a polling agent connected to another through the database.
//!
//! - Each node records which polling agents it holds the connection of
//!   ([`record_held_agents`]): at once when one connects, and the rest
//!   every few seconds; a node that stopped heartbeating holds nothing.
//! - A node running a step that finds the agent connected elsewhere queues
//!   each request for the holder ([`DatabaseRelay`]) and waits for the
//!   answer's notification.
//! - The holder claims requests queued for it ([`carry_requests`]), each
//!   marked sent in the claiming statement, so none goes on the wire twice,
//!   carries them over its connection and writes the answers back.
//! - A requester that sees the holder's heartbeat lapse gives the request
//!   up: never sent, it says so; perhaps sent, it says that its outcome is
//!   unknown, and the step's own logic (which asks the agent where things
//!   stand before it repeats anything) decides what comes next.

use cuttle_protocol::polling::PollingHub;
use cuttle_protocol::{BoxFuture, ProtocolError, Relay, RelayedRequest, Thumbprint};
use cuttle_store::agent_relay::{RelayRequest, RelayState, ANSWERS_CHANNEL, REQUESTS_CHANNEL};
use cuttle_store::{Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How often a waiting requester reads its request again, should a
/// notification have been lost, and checks the holder's heartbeat.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How often a holder looks for requests without being woken.
const CLAIM_EVERY: Duration = Duration::from_secs(1);
/// How many requests a holder claims at once.
const CLAIM_BATCH: i64 = 64;
/// How often a node records every agent it holds, and forgets those of
/// nodes that stopped.
const RECORD_EVERY: Duration = Duration::from_secs(5);
/// Requests older than this are removed: their requester stopped waiting.
const KEEP_REQUESTS: Duration = Duration::from_secs(60 * 60);

/// The requester's side: requests for polling agents held by other nodes.
pub struct DatabaseRelay {
    store: Store,
    node: String,
    /// A node not seen for this long is taken for dead.
    lapse_ms: i64,
    /// Woken when the answer to the request of that id is written.
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
}

impl DatabaseRelay {
    /// Listens for answers; `lapse` is how long a holder may go without a
    /// heartbeat before it is taken for dead.
    pub async fn start(
        store: Store,
        node: String,
        lapse: Duration,
    ) -> Result<Arc<DatabaseRelay>, StoreError> {
        let relay = Arc::new(DatabaseRelay {
            store,
            node,
            lapse_ms: millis(lapse),
            waiting: Mutex::default(),
        });
        let weak = Arc::downgrade(&relay);
        relay
            .store
            .listen(ANSWERS_CHANNEL, move |id| match weak.upgrade() {
                Some(relay) => {
                    relay.wake(id);
                    true
                }
                None => false,
            })
            .await?;
        Ok(relay)
    }

    /// Wakes the waiter for `id`, or every waiter when a notification may
    /// have been lost.
    fn wake(&self, id: Option<&str>) {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        match id {
            Some(id) => {
                if let Some(n) = waiting.get(id) {
                    n.notify_one();
                }
            }
            None => waiting.values().for_each(|n| n.notify_one()),
        }
    }

    async fn send_once(
        &self,
        thumbprint: &Thumbprint,
        holder: &str,
        request: RelayedRequest,
    ) -> Result<(u16, Vec<u8>), ProtocolError> {
        let address = format!("{thumbprint} (connected to the server node {holder})");
        let lost = |reason: String| ProtocolError::Lost {
            address: address.clone(),
            reason,
        };
        let row = RelayRequest {
            id: uuid::Uuid::new_v4().to_string(),
            thumbprint: thumbprint.to_string(),
            method: request.method,
            path: request.path,
            content_type: request.content_type,
            body: request.body,
            wait_ms: millis(request.wait),
            max_bytes: i64::try_from(request.max_bytes).unwrap_or(i64::MAX),
        };
        // Registered before the request is queued, so its answer is heard.
        let woken = Arc::new(Notify::new());
        let waiter = Waiter {
            relay: self,
            id: row.id.clone(),
            done: false,
        };
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(row.id.clone(), woken.clone());
        let mut waiter = waiter;
        self.store
            .queue_relay_request(holder, &self.node, &row)
            .await
            .map_err(|e| lost(format!("the request could not be queued: {e}")))?;
        loop {
            let _ = tokio::time::timeout(LOOK_EVERY, woken.notified()).await;
            let state = match self.store.relay_request_state(&row.id, self.lapse_ms).await {
                Ok(s) => s,
                Err(e) => {
                    // The caller's own time limit bounds how long this goes on.
                    tracing::warn!(error = %e, "could not read a relayed request; trying again");
                    continue;
                }
            };
            match state {
                RelayState::Answered { status, body } => {
                    waiter.done = true;
                    self.forget(&row.id).await;
                    return Ok((status, body));
                }
                RelayState::Failed { error } => {
                    waiter.done = true;
                    self.forget(&row.id).await;
                    return Err(lost(error));
                }
                RelayState::Queued {
                    holder_alive: false,
                } => {
                    if self.give_up(&row.id, "queued").await {
                        waiter.done = true;
                        return Err(lost(format!(
                            "the server node {holder}, which holds the agent's connection, \
                             stopped before it sent the request; it was not sent"
                        )));
                    }
                }
                RelayState::Sent {
                    holder_alive: false,
                } => {
                    if self.give_up(&row.id, "sent").await {
                        waiter.done = true;
                        return Err(lost(format!(
                            "the server node {holder}, which holds the agent's connection, \
                             stopped while the request was on its way; it may have reached \
                             the agent, so it is not sent again"
                        )));
                    }
                }
                RelayState::Gone => {
                    waiter.done = true;
                    return Err(lost("the relayed request is gone".into()));
                }
                RelayState::Queued { .. } | RelayState::Sent { .. } => {}
            }
        }
    }

    /// Gives the request up if it is still in `state`; then removes it.
    async fn give_up(&self, id: &str, state: &str) -> bool {
        match self.store.abandon_relay_request(id, state).await {
            Ok(true) => {
                self.forget(id).await;
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, "could not give a relayed request up");
                false
            }
        }
    }

    async fn forget(&self, id: &str) {
        if let Err(e) = self.store.delete_relay_request(id).await {
            tracing::debug!(error = %e, "could not remove a relayed request; it is swept later");
        }
    }
}

/// Stops listening for a request's answer, and removes the request when
/// its caller stopped waiting (a time limit, a cancelled task): one still
/// queued is then never sent.
struct Waiter<'a> {
    relay: &'a DatabaseRelay,
    id: String,
    done: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.relay
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        if !self.done {
            let (store, id) = (self.relay.store.clone(), self.id.clone());
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = store.delete_relay_request(&id).await;
                });
            }
        }
    }
}

impl Relay for DatabaseRelay {
    fn holder<'a>(&'a self, thumbprint: &'a Thumbprint) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            match self
                .store
                .polling_agent_holder(thumbprint.as_str(), self.lapse_ms, &self.node)
                .await
            {
                Ok(holder) => holder,
                Err(e) => {
                    tracing::warn!(error = %e, "could not look up which node holds a polling agent");
                    None
                }
            }
        })
    }

    fn send<'a>(
        &'a self,
        thumbprint: &'a Thumbprint,
        holder: &'a str,
        request: RelayedRequest,
    ) -> BoxFuture<'a, Result<(u16, Vec<u8>), ProtocolError>> {
        Box::pin(self.send_once(thumbprint, holder, request))
    }
}

/// The holder's side: claims the requests queued for `node` and carries
/// each over this node's connection to its agent, for as long as the
/// process runs.
pub async fn carry_requests(
    store: Store,
    hub: Arc<PollingHub>,
    node: String,
) -> Result<(), StoreError> {
    let wake = Arc::new(Notify::new());
    let woken = Arc::downgrade(&wake);
    let me = node.clone();
    store
        .listen(REQUESTS_CHANNEL, move |holder| match woken.upgrade() {
            Some(wake) => {
                if holder.is_none_or(|h| h == me) {
                    wake.notify_one();
                }
                true
            }
            None => false,
        })
        .await?;
    let hub = Arc::downgrade(&hub);
    tokio::spawn(async move {
        loop {
            let _ = tokio::time::timeout(CLAIM_EVERY, wake.notified()).await;
            // The node's agents are gone with its hub, or its store is
            // closed: nothing to carry.
            let Some(hub) = hub.upgrade().filter(|_| !store.is_closed()) else {
                return;
            };
            loop {
                match store.claim_relay_requests(&node, CLAIM_BATCH).await {
                    Ok(claimed) if claimed.is_empty() => break,
                    Ok(claimed) => {
                        for request in claimed {
                            tokio::spawn(carry(store.clone(), hub.clone(), node.clone(), request));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not claim relayed agent requests");
                        break;
                    }
                }
            }
        }
    });
    Ok(())
}

/// Carries one claimed (already marked sent) request and records its end.
async fn carry(store: Store, hub: Arc<PollingHub>, node: String, request: RelayRequest) {
    let connection = request
        .thumbprint
        .parse::<Thumbprint>()
        .ok()
        .and_then(|t| hub.connection(&t));
    let recorded = match connection {
        None => {
            store
                .fail_relay_request(
                    &request.id,
                    &format!("the polling agent is no longer connected to the server node {node}"),
                )
                .await
        }
        Some(c) => {
            let relayed = RelayedRequest {
                method: request.method,
                path: request.path,
                content_type: request.content_type,
                body: request.body,
                wait: Duration::from_millis(u64::try_from(request.wait_ms).unwrap_or(0)),
                max_bytes: usize::try_from(request.max_bytes).unwrap_or(0),
            };
            match c.carry(&relayed).await {
                Ok((status, bytes)) => {
                    store
                        .answer_relay_request(&request.id, status, &bytes)
                        .await
                }
                Err(e) => store.fail_relay_request(&request.id, &e.to_string()).await,
            }
        }
    };
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "could not record the end of a relayed agent request");
    }
}

/// Records, for as long as the process runs, which polling agents this
/// node holds the connection of: a newly connected one at once (the newest
/// connection wins), all of them every few seconds (an agent lost is
/// forgotten). Also forgets the agents of nodes not seen for `lapse` and
/// requests left over by requesters that stopped waiting.
pub fn record_held_agents(store: Store, hub: &Arc<PollingHub>, node: String, lapse: Duration) {
    let mut changes = hub.changes();
    let hub = Arc::downgrade(hub);
    tokio::spawn(async move {
        let mut recorded: HashSet<Thumbprint> = HashSet::new();
        let mut last_full: Option<tokio::time::Instant> = None;
        loop {
            let Some(connected) = hub
                .upgrade()
                .filter(|_| !store.is_closed())
                .map(|h| h.connected())
            else {
                return;
            };
            let now: HashSet<Thumbprint> = connected.into_iter().collect();
            let mut ok = true;
            for t in now.difference(&recorded) {
                if let Err(e) = store.hold_polling_agent(t.as_str(), &node).await {
                    tracing::warn!(error = %e, "could not record a polling agent's connection");
                    ok = false;
                }
            }
            let lost_some = recorded.difference(&now).next().is_some();
            if lost_some || last_full.is_none_or(|at| at.elapsed() >= RECORD_EVERY) {
                let held: Vec<String> = now.iter().map(|t| t.to_string()).collect();
                let tidied = async {
                    store.held_polling_agents(&node, &held).await?;
                    store.forget_lapsed_holders(millis(lapse)).await?;
                    store.sweep_relay_requests(millis(KEEP_REQUESTS)).await
                };
                match tidied.await {
                    Ok(_) => last_full = Some(tokio::time::Instant::now()),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not record the polling agents connected here");
                        ok = false;
                    }
                }
            }
            recorded = if ok { now } else { HashSet::new() };
            if let Ok(Err(_)) = tokio::time::timeout(RECORD_EVERY, changes.changed()).await {
                // The hub is gone.
                return;
            }
        }
    });
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuttle_store::testing::ScratchPostgres;

    fn thumbprint() -> Thumbprint {
        "AB".repeat(32).parse().unwrap()
    }

    fn status_request() -> RelayedRequest {
        RelayedRequest {
            method: "GET".into(),
            path: "/v1/scripts/s1?from=0&wait=0".into(),
            content_type: None,
            body: vec![],
            wait: Duration::ZERO,
            max_bytes: 1024,
        }
    }

    /// The holder's side played by hand: the requester gets the answer
    /// written for its request; and when the holder stops, a request it
    /// never claimed is given up unsent, one it claimed is not sent again,
    /// and neither can be claimed afterwards.
    #[tokio::test]
    async fn fault_a_requester_gives_up_on_a_stopped_holder_without_resending() {
        let Some(pg) = ScratchPostgres::create("relay_requester").await else {
            return;
        };
        let store = Store::open(&pg.url).await.unwrap();
        store.register_node("holder", 8, "test").await.unwrap();
        let relay = DatabaseRelay::start(store.clone(), "asker".into(), Duration::from_secs(60))
            .await
            .unwrap();
        let t = thumbprint();

        // Answered: the answer comes back as the agent gave it.
        let asking = {
            let relay = relay.clone();
            let t = t.clone();
            tokio::spawn(async move { relay.send(&t, "holder", status_request()).await })
        };
        let claimed = loop {
            let c = store.claim_relay_requests("holder", 10).await.unwrap();
            if !c.is_empty() {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].path, "/v1/scripts/s1?from=0&wait=0");
        store
            .answer_relay_request(&claimed[0].id, 200, b"{\"Id\":\"s1\"}")
            .await
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), asking)
            .await
            .expect("the answer was heard")
            .unwrap()
            .unwrap();
        assert_eq!(answer, (200, b"{\"Id\":\"s1\"}".to_vec()));

        // The holder claims one request (it is on the wire) and stops
        // before it claims the next.
        let short = DatabaseRelay::start(store.clone(), "asker".into(), Duration::from_millis(500))
            .await
            .unwrap();
        let send = |relay: Arc<DatabaseRelay>| {
            let t = t.clone();
            tokio::spawn(async move { relay.send(&t, "holder", status_request()).await })
        };
        let on_the_wire = send(short.clone());
        let on_the_wire_id = loop {
            let c = store.claim_relay_requests("holder", 10).await.unwrap();
            if let Some(r) = c.first() {
                break r.id.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let never_sent = send(short.clone());
        tokio::time::sleep(Duration::from_millis(100)).await;
        store.node_stopped("holder").await.unwrap();
        let lost = |r: Result<(u16, Vec<u8>), ProtocolError>| match r {
            Err(ProtocolError::Lost { reason, .. }) => reason,
            other => panic!("expected a lost request, got {other:?}"),
        };
        let wait = Duration::from_secs(10);
        let reason = lost(
            tokio::time::timeout(wait, never_sent)
                .await
                .unwrap()
                .unwrap(),
        );
        assert!(reason.contains("it was not sent"), "{reason}");
        let reason = lost(
            tokio::time::timeout(wait, on_the_wire)
                .await
                .unwrap()
                .unwrap(),
        );
        assert!(reason.contains("it is not sent again"), "{reason}");
        // Back again, the holder finds nothing to send, and its late answer
        // to the request it had claimed goes nowhere.
        store.register_node("holder", 8, "test").await.unwrap();
        assert!(store
            .claim_relay_requests("holder", 10)
            .await
            .unwrap()
            .is_empty());
        store
            .answer_relay_request(&on_the_wire_id, 200, b"late")
            .await
            .unwrap();
        assert_eq!(
            store
                .relay_request_state(&on_the_wire_id, 60_000)
                .await
                .unwrap(),
            RelayState::Gone
        );
        store.close().await;
    }
}
