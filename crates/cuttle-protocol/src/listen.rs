//! A listening agent's side: accept the server's pinned TLS connections and
//! answer its requests over HTTP/2 (see `service`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::accept::next_connection;
use crate::service::{serve_connection, AgentService};
use crate::trust::untrusted_peer;

/// A handshake that has not finished by then is dropped, so a peer that
/// connects and says nothing holds no task.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
/// On shutdown, how long open connections get to finish their request.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Serves the agent's endpoints on `listener` with `tls` (which pins the
/// servers this agent trusts) until `shutdown` completes; then stops
/// accepting and lets open connections finish their current request.
pub async fn serve<S: AgentService>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: Arc<S>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    while let Some((tcp, peer)) =
        next_connection(&listener, shutdown.as_mut(), "a connection").await
    {
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        let (acceptor, service, stopping) = (acceptor.clone(), service.clone(), stopping.clone());
        connections.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    match untrusted_peer(&e) {
                        Some(u) => tracing::warn!(%peer, thumbprint = %u.thumbprint, "refused a connection from an untrusted certificate"),
                        None => tracing::warn!(%peer, error = %e, "a TLS handshake failed"),
                    }
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "a TLS handshake did not finish in time");
                    return;
                }
            };
            if let Err(e) = serve_connection(tls, service, stopping).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    let _ = stop.send(true);
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_LIMIT, drained).await.is_err() {
        tracing::warn!("closing connections still open at shutdown");
        connections.abort_all();
    }
}
