//! Polling mode: the agent dials the server and keeps the connection open;
//! over it the server still asks and the agent answers (docs/agent-protocol.md).
//!
//! The server side is a [`PollingHub`]: it accepts agents whose certificates
//! it trusts and keeps one [`AgentConnection`] per thumbprint. The agent side
//! is [`poll`]: dial, serve, and dial again with backoff when the connection
//! drops, so an agent outlives a server restart.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::accept::next_connection;
use crate::client::{open_connection, AgentConnection};
use crate::identity::Thumbprint;
use crate::service::{serve_connection, AgentService};
use crate::trust::{self, untrusted_peer};
use crate::PROTOCOL_VERSION;

/// A handshake that has not finished by then is dropped.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Whether a certificate belongs to a registered agent; asked after every
/// polling agent's handshake.
pub type Registered =
    Arc<dyn Fn(Thumbprint) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// The polling agents connected to this server, by certificate thumbprint.
#[derive(Default)]
pub struct PollingHub {
    connections: Mutex<HashMap<Thumbprint, AgentConnection>>,
    /// Bumped whenever an agent connects or its connection ends, to wake
    /// those waiting for one and those recording who is connected.
    connected: watch::Sender<u64>,
}

impl PollingHub {
    pub fn new() -> Arc<PollingHub> {
        Arc::new(PollingHub::default())
    }

    /// The open connection of the agent with this certificate, if any.
    pub fn connection(&self, thumbprint: &Thumbprint) -> Option<AgentConnection> {
        open_connection(&self.connections, thumbprint)
    }

    /// The certificates of the agents connected now.
    pub fn connected(&self) -> Vec<Thumbprint> {
        let kept = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter()
            .filter(|(_, c)| !c.is_closed())
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Changes whenever an agent connects or its connection ends.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.connected.subscribe()
    }

    /// Waits up to `limit` for the agent with this certificate to be connected.
    pub async fn wait_for(
        &self,
        thumbprint: &Thumbprint,
        limit: Duration,
    ) -> Option<AgentConnection> {
        let mut changes = self.connected.subscribe();
        let waiting = async {
            loop {
                if let Some(c) = self.connection(thumbprint) {
                    return c;
                }
                if changes.changed().await.is_err() {
                    // The hub is going away; nothing will connect.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(limit, waiting).await.ok()
    }

    /// Accepts polling agents on `listener` until `shutdown` completes. `tls`
    /// is [`trust::polling_server_config`]; `registered` decides which
    /// certificates are let in.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        registered: Registered,
        shutdown: impl Future<Output = ()>,
    ) {
        let acceptor = TlsAcceptor::from(tls);
        let mut handshakes = JoinSet::new();
        tokio::pin!(shutdown);
        while let Some((tcp, peer)) =
            next_connection(&listener, shutdown.as_mut(), "a polling agent's connection").await
        {
            while handshakes.try_join_next().is_some() {}
            let (acceptor, hub, registered) = (acceptor.clone(), self.clone(), registered.clone());
            handshakes.spawn(async move {
                let accepting = hub.accept(acceptor, registered, tcp, peer);
                match tokio::time::timeout(HANDSHAKE_LIMIT, accepting).await {
                    Ok(Ok(())) => {}
                    Ok(Err(message)) => tracing::warn!(%peer, "{message}"),
                    Err(_) => {
                        tracing::warn!(%peer, "a polling agent's handshake did not finish in time")
                    }
                }
            });
        }
        handshakes.abort_all();
        // Dropping the connections closes them; agents redial the next server.
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Drops the connections that ended and wakes those watching.
    fn forget_closed(&self) {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, c| !c.is_closed());
        self.connected.send_modify(|n| *n += 1);
    }

    /// Accepts one agent.
    async fn accept(
        self: &Arc<Self>,
        acceptor: TlsAcceptor,
        registered: Registered,
        tcp: TcpStream,
        peer: std::net::SocketAddr,
    ) -> Result<(), String> {
        let tls = acceptor
            .accept(tcp)
            .await
            .map_err(|e| match untrusted_peer(&e) {
                Some(u) => format!(
                    "refused a polling agent with the unregistered certificate {}",
                    u.thumbprint
                ),
                None => format!("a polling agent's TLS handshake failed: {e}"),
            })?;
        self.admit(tls, peer, registered).await
    }

    /// Takes in an agent whose TLS handshake another listener made (a host
    /// that accepts the agents of many installations on one port): let in
    /// only if `registered` knows its certificate, then kept as that
    /// certificate's connection.
    pub async fn admit(
        self: &Arc<Self>,
        tls: tokio_rustls::server::TlsStream<TcpStream>,
        peer: std::net::SocketAddr,
        registered: Registered,
    ) -> Result<(), String> {
        let presented = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| c.to_vec())
            .ok_or("a polling agent presented no certificate")?;
        let thumbprint = Thumbprint::of(&presented);
        if !registered(thumbprint.clone()).await {
            // Dropping the stream closes it before any request is made.
            return Err(format!(
                "refused a polling agent with the unregistered certificate {thumbprint}"
            ));
        }
        let connection = AgentConnection::handshake(tls, peer.to_string())
            .await
            .map_err(|e| format!("a polling agent's HTTP/2 handshake failed: {e}"))?
            .with_peer_certificate(Some(&presented));
        let hello = connection.hello().await.map_err(|e| e.to_string())?;
        tracing::info!(%peer, name = %hello.name, %thumbprint, "a polling agent connected");
        let closed = connection.when_closed();
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(thumbprint, connection);
        self.connected.send_modify(|n| *n += 1);
        // Outlives the handshake: forgets the connection once it ends, and
        // says so to those watching.
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            closed.await;
            if let Some(hub) = hub.upgrade() {
                hub.forget_closed();
            }
        });
        Ok(())
    }

    /// Whether any agent is connected now.
    pub fn any_connected(&self) -> bool {
        let mut kept = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|_, c| !c.is_closed());
        !kept.is_empty()
    }

    /// Closes every agent's connection (they dial again).
    pub fn disconnect_all(&self) {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Where a connection on a shared polling port goes: the hub of the
/// installation that registered the agent, and how that installation
/// checks its registrations.
pub struct Destination {
    pub hub: Arc<PollingHub>,
    pub registered: Registered,
}

/// Picks the destination of an agent's connection from the name it sent
/// (SNI) and its certificate's thumbprint; an `Err` refuses it, saying why.
pub type Route = Arc<
    dyn Fn(
            Option<String>,
            Thumbprint,
        ) -> Pin<Box<dyn Future<Output = Result<Destination, String>> + Send>>
        + Send
        + Sync,
>;

/// The certificate an installation presents, by the name an agent sent.
pub type Identities = Arc<dyn Fn(&str) -> Option<Arc<crate::Identity>> + Send + Sync>;

/// Accepts the polling agents of many installations on `listener` until
/// `shutdown` completes: each handshake presents the certificate of the
/// installation the agent names (`identities`), then `route` hands the
/// connection to the hub of the installation that registered it.
pub async fn serve_shared(
    listener: TcpListener,
    identities: Identities,
    route: Route,
    shutdown: impl Future<Output = ()>,
) -> Result<(), trust::ConfigError> {
    let tls = trust::polling_server_config_resolving(Arc::new(trust::ByServerName(identities)))?;
    let acceptor = TlsAcceptor::from(tls);
    let mut handshakes = JoinSet::new();
    tokio::pin!(shutdown);
    while let Some((tcp, peer)) =
        next_connection(&listener, shutdown.as_mut(), "a polling agent's connection").await
    {
        while handshakes.try_join_next().is_some() {}
        let (acceptor, route) = (acceptor.clone(), route.clone());
        handshakes.spawn(async move {
            let accepting = async {
                let tls = acceptor.accept(tcp).await.map_err(|e| {
                    format!("a polling agent's TLS handshake failed (an instance it named?): {e}")
                })?;
                let (_, session) = tls.get_ref();
                let name = session.server_name().map(str::to_owned);
                let thumbprint = session
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .map(|c| Thumbprint::of(c))
                    .ok_or("a polling agent presented no certificate")?;
                let to = route(name, thumbprint).await?;
                to.hub.admit(tls, peer, to.registered).await
            };
            match tokio::time::timeout(HANDSHAKE_LIMIT, accepting).await {
                Ok(Ok(())) => {}
                Ok(Err(message)) => tracing::warn!(%peer, "{message}"),
                Err(_) => {
                    tracing::warn!(%peer, "a polling agent's handshake did not finish in time")
                }
            }
        });
    }
    handshakes.abort_all();
    Ok(())
}

/// The longest pause between an agent's attempts to reach its server.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The agent's side of polling mode: dials `server` (`host:port`), serves
/// the server's requests over that connection, and dials again with backoff
/// whenever it ends, until `shutdown` completes.
pub async fn poll<S: AgentService>(
    server: String,
    server_name: rustls_pki_types::ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    service: Arc<S>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, stopping) = watch::channel(false);
    let connector = TlsConnector::from(tls);
    let mut backoff = FIRST_BACKOFF;
    let running = async {
        loop {
            let started = tokio::time::Instant::now();
            let dialled = dial_and_serve(
                &server,
                server_name.clone(),
                &connector,
                service.clone(),
                stopping.clone(),
            );
            match dialled.await {
                Ok(()) => tracing::info!(%server, "the connection to the server closed"),
                Err(e) => tracing::warn!(%server, "{e}"),
            }
            if *stopping.borrow() {
                return;
            }
            // A connection that lasted a while was a success: start over.
            if started.elapsed() > MAX_BACKOFF {
                backoff = FIRST_BACKOFF;
            }
            tracing::info!(%server, after_ms = backoff.as_millis() as u64, "dialling the server again");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    };
    tokio::pin!(running);
    tokio::select! {
        _ = &mut running => {}
        _ = shutdown => {
            let _ = stop.send(true);
            // Let the request in progress finish, then go.
            let _ = tokio::time::timeout(Duration::from_secs(5), running).await;
        }
    }
}

async fn dial_and_serve<S: AgentService>(
    server: &str,
    server_name: rustls_pki_types::ServerName<'static>,
    connector: &TlsConnector,
    service: Arc<S>,
    stopping: watch::Receiver<bool>,
) -> Result<(), String> {
    let tcp = TcpStream::connect(server)
        .await
        .map_err(|e| format!("could not connect to the server: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let tls = tokio::time::timeout(HANDSHAKE_LIMIT, connector.connect(server_name, tcp))
        .await
        .map_err(|_| "the server's TLS handshake did not finish in time".to_owned())?
        .map_err(|e| match untrusted_peer(&e) {
            Some(u) => format!(
                "refused the server: it presented certificate {}, which this agent does not trust",
                u.thumbprint
            ),
            None => format!("the TLS handshake with the server failed: {e}"),
        })?;
    tracing::info!(%server, protocol = PROTOCOL_VERSION, "connected to the server");
    serve_connection(tls, service, stopping)
        .await
        .map_err(|e| format!("the connection to the server ended: {e}"))
}
