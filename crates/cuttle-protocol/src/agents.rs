//! The server's connections to its agents: one long-lived HTTP/2 connection
//! per agent, dialled (listening agents) or waited for (polling agents).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::{dial, open_connection, AgentConnection, ProtocolError, RoundTrips};
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
}

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
                self.keep(key, connection.clone());
                Ok(connection)
            }
            AgentEndpoint::Polling { thumbprint } => self
                .hub
                .wait_for(thumbprint, timeout)
                .await
                .map(|c| c.reporting_to(self.round_trips.clone()))
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
