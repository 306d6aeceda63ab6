//! Accepting TCP connections, as listening agents and the server's polling
//! endpoint both do.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// The next connection on `listener`, or `None` once `shutdown` completes.
/// A failure to accept (out of file descriptors and the like) is logged and
/// retried after a pause rather than spun on. Connections get TCP_NODELAY:
/// HTTP/2's small frames must not wait for delayed ACKs.
pub(crate) async fn next_connection<F: Future<Output = ()>>(
    listener: &TcpListener,
    mut shutdown: Pin<&mut F>,
    what: &str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.as_mut() => return None,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    return Some((tcp, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not accept {what}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}
