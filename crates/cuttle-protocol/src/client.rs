//! The server's side of a listening agent's connection: dial, pin, ask.
//!
//! HTTP/1.1 for now: one request per connection is all a health check
//! needs, and the offline build has no `h2`. The long-lived HTTP/2
//! connection of docs/agent-protocol.md replaces this when scripts run on
//! agents; the messages stay the same.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::identity::{Identity, Thumbprint};
use crate::messages::{ErrorBody, Hello, HELLO_PATH};
use crate::trust::{self, untrusted_peer, TrustedThumbprints};
use crate::{LISTENING_PORT, PROTOCOL_VERSION};

/// Why talking to an agent failed; each message names the agent's address.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("'{0}' is not a listening agent's address: expected https://host:port/")]
    InvalidUri(String),
    #[error("could not connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("{address} did not answer within {} s", after.as_secs_f64())]
    Timeout { address: String, after: Duration },
    #[error(
        "the agent at {address} presented certificate {presented}, \
         but this machine is registered with thumbprint {expected}"
    )]
    WrongThumbprint {
        address: String,
        presented: Thumbprint,
        expected: Thumbprint,
    },
    /// The agent closed the handshake or the first request: most often it
    /// does not trust this server's certificate.
    #[error(
        "the agent at {address} refused this server ({reason}); \
         does it trust this server's thumbprint {server}?"
    )]
    Refused {
        address: String,
        server: Thumbprint,
        reason: String,
    },
    #[error("the agent at {address} answered {status}: {message}")]
    Status {
        address: String,
        status: u16,
        message: String,
    },
    #[error("the agent at {address} sent an answer that could not be read: {reason}")]
    Malformed { address: String, reason: String },
    #[error(
        "the agent at {address} speaks protocol version {agent}, \
         but this server speaks version {server}"
    )]
    Version {
        address: String,
        agent: u32,
        server: u32,
    },
    #[error(transparent)]
    Config(#[from] trust::ConfigError),
}

/// The `host:port` to dial for a listening agent's `https://host:port/`
/// uri; the port defaults to [`LISTENING_PORT`].
pub fn address_of(uri: &str) -> Result<String, ProtocolError> {
    let invalid = || ProtocolError::InvalidUri(uri.to_owned());
    let rest = uri
        .trim()
        .get(..8)
        .filter(|s| s.eq_ignore_ascii_case("https://"))
        .and_then(|_| uri.trim().get(8..))
        .ok_or_else(invalid)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains('/') {
        return Err(invalid());
    }
    // `[v6]` or `host` without a port; `[v6]:port` and `host:port` as given.
    let has_port = match authority.rsplit_once(']') {
        Some((_, after)) => after.starts_with(':'),
        None => authority.contains(':'),
    };
    Ok(if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{LISTENING_PORT}")
    })
}

/// Dials the listening agent at `uri`, accepts it only if it presents the
/// certificate `thumbprint`, presents `identity`, and asks `GET /v1/hello`;
/// all of it within `timeout`.
pub async fn hello(
    uri: &str,
    thumbprint: &Thumbprint,
    identity: &Identity,
    timeout: Duration,
) -> Result<Hello, ProtocolError> {
    let address = address_of(uri)?;
    let config = trust::client_config(identity, TrustedThumbprints::new([thumbprint.clone()]))?;
    let asking = ask_hello(&address, config, thumbprint, identity.thumbprint());
    let hello =
        tokio::time::timeout(timeout, asking)
            .await
            .map_err(|_| ProtocolError::Timeout {
                address: address.clone(),
                after: timeout,
            })??;
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(ProtocolError::Version {
            address,
            agent: hello.protocol_version,
            server: PROTOCOL_VERSION,
        });
    }
    Ok(hello)
}

async fn ask_hello(
    address: &str,
    config: Arc<rustls::ClientConfig>,
    expected: &Thumbprint,
    server: &Thumbprint,
) -> Result<Hello, ProtocolError> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|source| ProtocolError::Connect {
            address: address.to_owned(),
            source,
        })?;
    // Ours refusing theirs names their certificate; anything else at this
    // stage or the next is most likely theirs refusing ours.
    let refused = |error: &(dyn std::error::Error + 'static)| match untrusted_peer(error) {
        Some(peer) => ProtocolError::WrongThumbprint {
            address: address.to_owned(),
            presented: peer.thumbprint.clone(),
            expected: expected.clone(),
        },
        None => ProtocolError::Refused {
            address: address.to_owned(),
            server: server.clone(),
            reason: error_chain(error),
        },
    };
    let tls = TlsConnector::from(config)
        .connect(trust::server_name(), tcp)
        .await
        .map_err(|e| refused(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| refused(&e))?;
    let driving = AbortOnDrop(tokio::spawn(connection));

    let request = hyper::Request::get(HELLO_PATH)
        .header(hyper::header::HOST, trust::SERVER_NAME)
        .body(Empty::<Bytes>::new())
        .map_err(|e| ProtocolError::Malformed {
            address: address.to_owned(),
            reason: e.to_string(),
        })?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| refused(&e))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| refused(&e))?
        .to_bytes();
    drop(driving);
    if !status.is_success() {
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error_message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(300).collect());
        return Err(ProtocolError::Status {
            address: address.to_owned(),
            status: status.as_u16(),
            message,
        });
    }
    serde_json::from_slice(&body).map_err(|e| ProtocolError::Malformed {
        address: address.to_owned(),
        reason: e.to_string(),
    })
}

/// An error with its causes, as one line: hyper's own messages ("connection
/// closed before message completed") say little without the TLS alert below.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        current = e.source();
    }
    text
}

/// Stops driving the connection when the request is done or abandoned (a
/// timeout drops the future mid-way).
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(address_of("https://web01:10933/").unwrap(), "web01:10933");
        assert_eq!(address_of("https://web01/").unwrap(), "web01:10933");
        assert_eq!(address_of("HTTPS://[::1]:1234/").unwrap(), "[::1]:1234");
        assert_eq!(address_of("https://[::1]").unwrap(), "[::1]:10933");
        assert!(address_of("poll://abc/").is_err());
        assert!(address_of("https://a/b/").is_err());
        assert!(address_of("https://").is_err());
    }
}
