//! A listening agent's side: accept the server's pinned TLS connections and
//! answer its requests. HTTP/1.1 for now, as in `client`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::messages::{ErrorBody, Hello, HELLO_PATH};
use crate::trust::untrusted_peer;

/// A handshake that has not finished by then is dropped, so a peer that
/// connects and says nothing holds no task.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
/// On shutdown, how long open connections get to finish their request.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Serves the agent's endpoints on `listener` with `tls` (which pins the
/// servers this agent trusts) until `shutdown` completes; then stops
/// accepting and lets open connections finish their current request.
/// `hello` is called per request, as free disk space changes.
pub async fn serve<H>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    hello: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn() -> Hello + Send + Sync + 'static,
{
    let acceptor = TlsAcceptor::from(tls);
    let hello = Arc::new(hello);
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause, not spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        let (acceptor, hello, mut stopping) = (acceptor.clone(), hello.clone(), stopping.clone());
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
            let service = hyper::service::service_fn(move |request| {
                let hello = hello.clone();
                async move { Ok::<_, Infallible>(route(&request, &*hello)) }
            });
            let connection =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
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

fn route(
    request: &Request<Incoming>,
    hello: &(dyn Fn() -> Hello + Send + Sync),
) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, HELLO_PATH) => json(StatusCode::OK, &hello()),
        (_, HELLO_PATH) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{HELLO_PATH} takes GET"),
        ),
        (_, path) => error(
            StatusCode::NOT_FOUND,
            format!("this agent has no endpoint {path}"),
        ),
    }
}

fn error(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    json(
        status,
        &ErrorBody {
            error_message: message,
        },
    )
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    // Our own plain structs always serialise; an empty body would still be
    // an answer the server reports as malformed rather than a hang.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
