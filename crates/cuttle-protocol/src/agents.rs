//! The server's connections to its agents: one long-lived HTTP/2 connection
//! per agent, dialled (listening agents) or waited for (polling agents).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::{dial, open_connection, AgentConnection, ProtocolError, Relay, RoundTrips};
use crate::identity::{Identity, Thumbprint};
use crate::polling::PollingHub;
use crate::Hello;

/// How to reach one agent.
#[derive(Clone, Copy, Debug)]
pub enum AgentEndpoint<'a> {
    /// The server dials `https://host:port/`.
    Listening {
        uri: &'a str,
        thumbprint: &'a Thumbprint,
    },
    /// The agent dials the server.
    Polling { thumbprint: &'a Thumbprint },
}

/// The server's side of every agent connection.
pub struct Agents {
    identity: Arc<Identity>,
    hub: Arc<PollingHub>,
    dialled: Mutex<HashMap<(String, Thumbprint), AgentConnection>>,
    /// Told of every command's round trip on the connections handed out.
    round_trips: Option<RoundTrips>,
    /// When each agent's certificate expires (Unix seconds), as presented
    /// on its last connection; one entry per agent, so bounded by them.
    expiries: Mutex<HashMap<Thumbprint, i64>>,
    /// Reaches polling agents connected to other nodes of the cluster;
    /// `None` on a single node.
    relay: Option<Arc<dyn Relay>>,
}

/// How often a wait for a polling agent looks for it on other nodes.
const ELSEWHERE_EVERY: Duration = Duration::from_millis(250);

impl std::fmt::Debug for Agents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agents")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Agents {
    pub fn new(identity: Arc<Identity>, hub: Arc<PollingHub>) -> Agents {
        Agents {
            identity,
            hub,
            dialled: Mutex::default(),
            round_trips: None,
            expiries: Mutex::default(),
            relay: None,
        }
    }

    /// These connections, reaching polling agents connected to other nodes
    /// of the cluster through `relay`.
    pub fn with_relay(mut self, relay: Arc<dyn Relay>) -> Agents {
        self.relay = Some(relay);
        self
    }

    /// Waits up to `limit` for the polling agent with this certificate to
    /// be connected to this node or, with a relay, to another live one.
    pub async fn wait_for_polling(&self, thumbprint: &Thumbprint, limit: Duration) -> bool {
        self.polling_connection(thumbprint, limit).await.is_some()
    }

    /// The polling agent's connection here, else one relayed through the
    /// node that holds it; waited for up to `limit`.
    async fn polling_connection(
        &self,
        thumbprint: &Thumbprint,
        limit: Duration,
    ) -> Option<AgentConnection> {
        let Some(relay) = &self.relay else {
            return self.hub.wait_for(thumbprint, limit).await;
        };
        let deadline = tokio::time::Instant::now() + limit;
        let mut changes = self.hub.changes();
        loop {
            // This node's own connection first: no trip through the database.
            if let Some(c) = self.hub.connection(thumbprint) {
                return Some(c);
            }
            if let Some(holder) = relay.holder(thumbprint).await {
                return Some(AgentConnection::relayed(
                    relay.clone(),
                    thumbprint.clone(),
                    &holder,
                ));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return None;
            }
            let pause = (deadline - now).min(ELSEWHERE_EVERY);
            let _ = tokio::time::timeout(pause, changes.changed()).await;
        }
    }

    /// The earliest expiry (Unix seconds) of the certificates agents have
    /// presented since this server started.
    pub fn earliest_certificate_expiry(&self) -> Option<i64> {
        let expiries = self.expiries.lock().unwrap_or_else(|p| p.into_inner());
        expiries.values().min().copied()
    }

    fn note_expiry(&self, thumbprint: &Thumbprint, connection: &AgentConnection) {
        if let Some(at) = connection.peer_expires_at() {
            self.expiries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(thumbprint.clone(), at);
        }
    }

    /// These connections, reporting each command's round trip to `round_trips`.
    pub fn with_round_trips(mut self, round_trips: RoundTrips) -> Agents {
        self.round_trips = Some(round_trips);
        self
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn polling(&self) -> &Arc<PollingHub> {
        &self.hub
    }

    /// An open connection to the agent, dialling (listening) or waiting for
    /// it to connect (polling) within `timeout`.
    pub async fn connect(
        &self,
        endpoint: AgentEndpoint<'_>,
        timeout: Duration,
    ) -> Result<AgentConnection, ProtocolError> {
        match endpoint {
            AgentEndpoint::Listening { uri, thumbprint } => {
                let key = (uri.to_owned(), thumbprint.clone());
                if let Some(c) = self.cached(&key) {
                    return Ok(c);
                }
                let (connection, _) = dial(uri, thumbprint, &self.identity, timeout).await?;
                let connection = connection.reporting_to(self.round_trips.clone());
                self.note_expiry(thumbprint, &connection);
                self.keep(key, connection.clone());
                Ok(connection)
            }
            AgentEndpoint::Polling { thumbprint } => self
                .polling_connection(thumbprint, timeout)
                .await
                .map(|c| {
                    self.note_expiry(thumbprint, &c);
                    c.reporting_to(self.round_trips.clone())
                })
                .ok_or_else(|| ProtocolError::NotConnected {
                    thumbprint: thumbprint.clone(),
                    after: timeout,
                }),
        }
    }

    /// Asks the agent who it is, over a fresh connection for a listening
    /// agent (a health check proves the agent can be dialled now).
    pub async fn hello(
        &self,
        endpoint: AgentEndpoint<'_>,
        timeout: Duration,
    ) -> Result<Hello, ProtocolError> {
        match endpoint {
            AgentEndpoint::Listening { uri, thumbprint } => {
                let (connection, hello) = dial(uri, thumbprint, &self.identity, timeout).await?;
                let connection = connection.reporting_to(self.round_trips.clone());
                self.note_expiry(thumbprint, &connection);
                self.keep((uri.to_owned(), thumbprint.clone()), connection);
                Ok(hello)
            }
            AgentEndpoint::Polling { .. } => {
                let connection = self.connect(endpoint, timeout).await?;
                let address = connection.address().to_owned();
                tokio::time::timeout(timeout, connection.hello())
                    .await
                    .map_err(|_| ProtocolError::Timeout {
                        address,
                        after: timeout,
                    })?
            }
        }
    }

    /// Forgets a connection that failed, so the next request dials anew.
    pub fn forget(&self, endpoint: AgentEndpoint<'_>) {
        if let AgentEndpoint::Listening { uri, thumbprint } = endpoint {
            self.dialled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(uri.to_owned(), thumbprint.clone()));
        }
    }

    fn cached(&self, key: &(String, Thumbprint)) -> Option<AgentConnection> {
        open_connection(&self.dialled, key)
    }

    fn keep(&self, key: (String, Thumbprint), connection: AgentConnection) {
        self.dialled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, connection);
    }
}
