//! Serving HTTP/1 connections within limits. A connection costs a file
//! descriptor and a task for as long as the client keeps it open, so a
//! client that connects and sends nothing, sends its headers a byte at a
//! time, or stops halfway through a body, is cut off after a while; and no
//! more than a set number are served at once, so those that do linger
//! cannot use up the descriptors every other part of the server needs. A
//! connection past the cap waits in the kernel's listen queue, and is
//! served as soon as another one closes.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

/// The limits of the HTTP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most connections served at once.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, counted from
    /// when the server starts waiting for them: on a new connection, and on
    /// a kept-alive one after each response. So this is also how long a
    /// connection may sit idle between requests.
    pub header_timeout: Duration,
    /// The longest pause allowed while a request's body is being read.
    pub body_timeout: Duration,
}

impl Default for HttpLimits {
    /// Half of the 1,024 descriptors a process commonly gets, leaving the
    /// rest to the database, agents, packages and logs; timeouts long enough
    /// for any client on a slow link. Idle connections are kept as long as
    /// Octopus Server keeps them (130 s): clients pool them on that
    /// assumption, and one whose event loop was busy longer than the server
    /// waited (Node.js zipping a package before pushing it) sends its next
    /// request on a connection already closed and fails with a reset.
    fn default() -> Self {
        HttpLimits {
            max_connections: 512,
            header_timeout: Duration::from_secs(130),
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// A failed accept (out of descriptors and the like) is retried after this
/// pause rather than spun on.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` within `limits` until `shutdown` resolves;
/// then accepts no more, asks every connection to close after its request
/// in flight, and returns once all have closed. Each request carries its
/// peer's address as [`ConnectInfo`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        // A slot first, then the connection: past the cap, clients wait in
        // the listen queue instead of holding a descriptor here.
        let permit = tokio::select! {
            _ = shutdown.as_mut() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = shutdown.as_mut() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "could not accept an HTTP connection");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let body_timeout = limits.body_timeout;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(|body| Body::new(TimeoutBody::new(body_timeout, body)));
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(tcp), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "an HTTP connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The peer a request came from, when it came through [`serve`].
pub fn peer_of(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}
