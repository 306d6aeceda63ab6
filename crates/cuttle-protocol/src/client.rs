//! The server's side of a connection to an agent: an HTTP/2 client over a
//! pinned TLS stream, whoever dialled (see `agents` for listening agents
//! dialled by the server and `polling` for agents that dial it).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Bytes};
use hyper::client::conn::http2::SendRequest;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::identity::{Identity, Thumbprint};
use crate::messages::{
    ErrorBody, FileList, FileStatus, Hello, ScriptStatus, StartScript, FILES_PATH, HELLO_PATH,
    MAX_CONTROL_ANSWER, MAX_FILE_LIST_ANSWER, MAX_SIGNATURE_ANSWER, MAX_STATUS_ANSWER,
    SCRIPTS_PATH,
};
use crate::service::{KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT};
use crate::trust::{self, untrusted_peer, TrustedThumbprints};
use crate::{LISTENING_PORT, PROTOCOL_VERSION};

/// How long an agent has to answer one request, from sending it to the
/// last byte of the answer, past any long-poll wait the request asks for.
/// Generous, since completing a large upload means hashing it (or
/// applying a delta to it) first; its job is that an agent dripping an
/// answer byte by byte cannot hold a deployment (or the server's memory)
/// for ever.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(5 * 60);

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
    #[error(
        "the polling agent with certificate {thumbprint} has not connected to this server \
         within {} s", after.as_secs_f64()
    )]
    NotConnected {
        thumbprint: Thumbprint,
        after: Duration,
    },
    #[error("the connection to the agent at {address} was lost: {reason}")]
    Lost { address: String, reason: String },
    #[error("the agent at {address} answered {status}: {message}")]
    Status {
        address: String,
        status: u16,
        message: String,
    },
    #[error(
        "the agent at {address} sent an answer larger than {limit} bytes, \
         more than an agent ever sends; it was cut off"
    )]
    TooLarge { address: String, limit: usize },
    #[error("the agent at {address} broke off its answer: {reason}")]
    BrokenAnswer { address: String, reason: String },
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
    dial(uri, thumbprint, identity, timeout)
        .await
        .map(|(_, hello)| hello)
}

/// Dials the listening agent at `uri` as [`hello`] does, and keeps the
/// connection for further requests.
pub async fn dial(
    uri: &str,
    thumbprint: &Thumbprint,
    identity: &Identity,
    timeout: Duration,
) -> Result<(AgentConnection, Hello), ProtocolError> {
    let address = address_of(uri)?;
    let config = trust::client_config(identity, TrustedThumbprints::new([thumbprint.clone()]))?;
    let dialling = dial_within(&address, config, thumbprint, identity.thumbprint());
    tokio::time::timeout(timeout, dialling)
        .await
        .map_err(|_| ProtocolError::Timeout {
            address: address.clone(),
            after: timeout,
        })?
}

async fn dial_within(
    address: &str,
    config: Arc<rustls::ClientConfig>,
    expected: &Thumbprint,
    server: &Thumbprint,
) -> Result<(AgentConnection, Hello), ProtocolError> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|source| ProtocolError::Connect {
            address: address.to_owned(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
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
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|c| c.to_vec());
    let connection = AgentConnection::handshake(tls, address.to_owned())
        .await
        .map_err(|e| refused(&e))?
        .with_peer_certificate(presented.as_deref());
    // The agent checks this server's certificate after the handshake is
    // done on this side, so its refusal arrives with the first answer.
    let hello = match connection.hello().await {
        Err(ProtocolError::Lost { reason, .. }) => {
            return Err(ProtocolError::Refused {
                address: address.to_owned(),
                server: server.clone(),
                reason,
            })
        }
        other => other?,
    };
    Ok((connection, hello))
}

/// The open connection kept under `key`; a closed one is forgotten.
pub(crate) fn open_connection<K: Eq + std::hash::Hash>(
    kept: &std::sync::Mutex<std::collections::HashMap<K, AgentConnection>>,
    key: &K,
) -> Option<AgentConnection> {
    let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
    match kept.get(key) {
        Some(c) if !c.is_closed() => Some(c.clone()),
        Some(_) => {
            kept.remove(key);
            None
        }
        None => None,
    }
}

/// Past a relayed request's own limit, how long its trip through the
/// database (to the holding node and back) may take.
const RELAY_MARGIN: Duration = Duration::from_secs(30);

/// A request for a polling agent connected to another node of the cluster,
/// as it travels to that node (see [`Relay`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayedRequest {
    pub method: String,
    /// With its query.
    pub path: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// How long the agent may hold the answer on purpose (a long poll).
    pub wait: Duration,
    /// The most bytes of answer read.
    pub max_bytes: usize,
}

/// Carries requests to polling agents connected to other nodes of the
/// cluster, and their answers back (on PostgreSQL, through the database).
pub trait Relay: Send + Sync {
    /// The live node, other than this one, that holds the connection of
    /// the polling agent with this certificate.
    fn holder<'a>(&'a self, thumbprint: &'a Thumbprint) -> BoxFuture<'a, Option<String>>;

    /// Has `holder` carry `request` to the agent once, at most: the
    /// answer's status and bytes. A request the holder may have sent when
    /// it stopped is not sent again; it fails as a lost connection would.
    fn send<'a>(
        &'a self,
        thumbprint: &'a Thumbprint,
        holder: &'a str,
        request: RelayedRequest,
    ) -> BoxFuture<'a, Result<(u16, Vec<u8>), ProtocolError>>;
}

/// A boxed future that can be sent between threads.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Told of each command's round trip to an agent: the command's name (one
/// of a few), how long it took, and whether it failed.
pub type RoundTrips = Arc<dyn Fn(&'static str, Duration, bool) + Send + Sync>;

/// The names [`RoundTrips`] are told.
pub const COMMANDS: [&str; 9] = [
    "hello",
    "start_script",
    "script_status",
    "cancel_script",
    "list_files",
    "file_signature",
    "file_status",
    "put_chunk",
    "complete_file",
];

/// A command's name by its method and path, for round-trip figures.
fn command_name(method: &Method, path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or(path);
    if path == HELLO_PATH {
        "hello"
    } else if path.starts_with(SCRIPTS_PATH) {
        match *method {
            Method::POST => "start_script",
            Method::DELETE => "cancel_script",
            _ => "script_status",
        }
    } else if path.starts_with(FILES_PATH) {
        match *method {
            Method::PUT => "put_chunk",
            Method::POST => "complete_file",
            _ if path == FILES_PATH => "list_files",
            _ if path.ends_with("/signature") => "file_signature",
            _ => "file_status",
        }
    } else {
        "other"
    }
}

/// One HTTP/2 connection to an agent; clones share it, and it closes when
/// the last clone is dropped.
#[derive(Clone)]
pub struct AgentConnection {
    link: Link,
    address: Arc<str>,
    /// Each request's deadline past its long-poll wait ([`ANSWER_LIMIT`]).
    answer_limit: Duration,
    /// Told of every command's round trip (the server's metrics).
    round_trips: Option<RoundTrips>,
    /// When the agent's certificate expires (Unix seconds), if known.
    peer_expires_at: Option<i64>,
}

/// How requests reach the agent: over this process's own connection, or
/// through the node of the cluster that holds the polling agent's one.
#[derive(Clone)]
enum Link {
    Direct {
        sender: SendRequest<Full<Bytes>>,
        /// Turns true once the connection has ended.
        ended: tokio::sync::watch::Receiver<bool>,
        _driver: Arc<AbortOnDrop>,
    },
    Relayed {
        relay: Arc<dyn Relay>,
        thumbprint: Thumbprint,
        holder: Arc<str>,
    },
}

impl AgentConnection {
    /// Speaks HTTP/2 as the client over an established stream. `address`
    /// names the agent in errors.
    pub async fn handshake<I>(io: I, address: String) -> Result<AgentConnection, hyper::Error>
    where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(io))
            .await?;
        let (ended_tx, ended) = tokio::sync::watch::channel(false);
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "an agent connection ended");
            }
            let _ = ended_tx.send(true);
        });
        Ok(AgentConnection {
            link: Link::Direct {
                sender,
                ended,
                _driver: Arc::new(AbortOnDrop(driver)),
            },
            address: address.into(),
            answer_limit: ANSWER_LIMIT,
            round_trips: None,
            peer_expires_at: None,
        })
    }

    /// The polling agent with certificate `thumbprint`, whose connection the
    /// node `holder` of the cluster holds: each request goes through `relay`.
    pub fn relayed(relay: Arc<dyn Relay>, thumbprint: Thumbprint, holder: &str) -> AgentConnection {
        AgentConnection {
            address: format!("{thumbprint} (connected to the server node {holder})").into(),
            link: Link::Relayed {
                relay,
                thumbprint,
                holder: holder.into(),
            },
            answer_limit: ANSWER_LIMIT,
            round_trips: None,
            peer_expires_at: None,
        }
    }

    /// The node holding the agent's connection, for a relayed one.
    pub fn relayed_through(&self) -> Option<&str> {
        match &self.link {
            Link::Relayed { holder, .. } => Some(holder),
            Link::Direct { .. } => None,
        }
    }

    /// Completes once the connection has ended (never, for a relayed one:
    /// its requests fail instead). It holds no clone of the connection, so
    /// waiting on it does not keep the connection open.
    pub fn when_closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let ended = match &self.link {
            Link::Direct { ended, .. } => Some(ended.clone()),
            Link::Relayed { .. } => None,
        };
        async move {
            match ended {
                // An error means the driver is gone: ended too.
                Some(mut ended) => {
                    let _ = ended.wait_for(|e| *e).await;
                }
                None => std::future::pending().await,
            }
        }
    }

    /// Carries out a request another node relayed (see [`Relay`]) over
    /// this connection: the answer's status and bytes, at most the
    /// request's `max_bytes` of them, within its wait and the answer limit.
    pub async fn carry(&self, request: &RelayedRequest) -> Result<(u16, Bytes), ProtocolError> {
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|e| self.malformed(format!("a relayed request's method: {e}")))?;
        let answer = Answer {
            max_bytes: request.max_bytes.min(MAX_STATUS_ANSWER),
            wait: request.wait.min(crate::service::MAX_WAIT),
        };
        let mut builder = hyper::Request::builder().method(method).uri(format!(
            "https://{}{}",
            trust::SERVER_NAME,
            request.path
        ));
        if let Some(t) = &request.content_type {
            builder = builder.header(hyper::header::CONTENT_TYPE, t.as_str());
        }
        let built = builder
            .body(Full::new(Bytes::from(request.body.clone())))
            .map_err(|e| self.malformed(e.to_string()))?;
        let limit = answer.wait + self.answer_limit;
        let (status, bytes) = tokio::time::timeout(limit, self.exchange(built, answer))
            .await
            .map_err(|_| ProtocolError::Timeout {
                address: self.address.to_string(),
                after: limit,
            })??;
        Ok((status.as_u16(), bytes))
    }

    /// When the certificate the agent presented expires (Unix seconds).
    pub fn peer_expires_at(&self) -> Option<i64> {
        self.peer_expires_at
    }

    pub(crate) fn with_peer_certificate(mut self, der: Option<&[u8]>) -> AgentConnection {
        self.peer_expires_at = der.and_then(crate::identity::certificate_expiry);
        self
    }

    /// This connection, telling `round_trips` of each command it sends.
    pub fn reporting_to(mut self, round_trips: Option<RoundTrips>) -> AgentConnection {
        self.round_trips = round_trips;
        self
    }

    /// This connection with `limit` instead of [`ANSWER_LIMIT`] for each
    /// request; clones made before keep theirs.
    pub fn answering_within(mut self, limit: Duration) -> AgentConnection {
        self.answer_limit = limit;
        self
    }

    /// The agent's address (or, for a polling agent, where it connected from).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the connection has ended; a closed one answers nothing more.
    pub fn is_closed(&self) -> bool {
        match &self.link {
            Link::Direct { sender, .. } => sender.is_closed(),
            Link::Relayed { .. } => false,
        }
    }

    /// `GET /v1/hello`, refusing an agent whose protocol version differs.
    pub async fn hello(&self) -> Result<Hello, ProtocolError> {
        let hello: Hello = self
            .call(Method::GET, HELLO_PATH.to_owned(), None, Answer::control())
            .await?
            .ok_or_else(|| self.malformed("the agent has no hello endpoint".into()))?;
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(ProtocolError::Version {
                address: self.address.to_string(),
                agent: hello.protocol_version,
                server: PROTOCOL_VERSION,
            });
        }
        Ok(hello)
    }

    /// Starts a script, or learns the status of the one with its id.
    pub async fn start_script(&self, start: &StartScript) -> Result<ScriptStatus, ProtocolError> {
        let body = serde_json::to_vec(start).map_err(|e| self.malformed(e.to_string()))?;
        self.call(
            Method::POST,
            SCRIPTS_PATH.to_owned(),
            Some(Body::json(body)),
            Answer::status(Duration::ZERO),
        )
        .await?
        .ok_or_else(|| self.malformed("the agent cannot run scripts".into()))
    }

    /// The script's lines from `from` on, waiting up to `wait` for news;
    /// `None` when the agent does not know the script (it restarted).
    pub async fn script_status(
        &self,
        id: &str,
        from: u64,
        wait: Duration,
    ) -> Result<Option<ScriptStatus>, ProtocolError> {
        let path = format!("{SCRIPTS_PATH}/{id}?from={from}&wait={}", wait.as_millis());
        self.call(Method::GET, path, None, Answer::status(wait))
            .await
    }

    /// Cancels the script; `None` when the agent does not know it.
    pub async fn cancel_script(&self, id: &str) -> Result<Option<ScriptStatus>, ProtocolError> {
        // The agent waits a while for the script to end before answering.
        let answer = Answer::status(crate::service::MAX_WAIT);
        self.call(Method::DELETE, format!("{SCRIPTS_PATH}/{id}"), None, answer)
            .await
    }

    /// The SHA-256s of the files in the agent's cache.
    pub async fn list_files(&self) -> Result<FileList, ProtocolError> {
        let answer = Answer::of(MAX_FILE_LIST_ANSWER);
        self.call(Method::GET, FILES_PATH.to_owned(), None, answer)
            .await?
            .ok_or_else(|| self.malformed("the agent cannot receive files".into()))
    }

    /// The rsync signature of a file in the agent's cache.
    pub async fn file_signature(&self, hash: &str) -> Result<Bytes, ProtocolError> {
        let path = format!("{FILES_PATH}/{hash}/signature");
        self.raw(Method::GET, path, None, Answer::of(MAX_SIGNATURE_ANSWER))
            .await?
            .ok_or_else(|| self.malformed(format!("the agent does not hold {hash}")))
    }

    /// What the agent holds of the file with this SHA-256 (lowercase hex),
    /// or of its delta from `basis`.
    pub async fn file_status(
        &self,
        hash: &str,
        basis: Option<&str>,
    ) -> Result<FileStatus, ProtocolError> {
        let path = format!("{FILES_PATH}/{hash}{}", basis_query('?', basis));
        self.call(Method::GET, path, None, Answer::control())
            .await?
            .ok_or_else(|| self.malformed("the agent cannot receive files".into()))
    }

    /// Appends `chunk` at `offset` (of the file, or of its delta from
    /// `basis`); a 409 means the agent holds another length (ask
    /// [`Self::file_status`] and send from there).
    pub async fn put_chunk(
        &self,
        hash: &str,
        basis: Option<&str>,
        offset: u64,
        chunk: Bytes,
    ) -> Result<FileStatus, ProtocolError> {
        let body = Body {
            bytes: chunk,
            content_type: "application/octet-stream",
        };
        let path = format!(
            "{FILES_PATH}/{hash}?offset={offset}{}",
            basis_query('&', basis)
        );
        self.call(Method::PUT, path, Some(body), Answer::control())
            .await?
            .ok_or_else(|| self.malformed("the agent cannot receive files".into()))
    }

    /// Asks the agent to verify the upload (`size` bytes with this SHA-256,
    /// once a delta is applied to `basis`) and keep it in its cache.
    pub async fn complete_file(
        &self,
        hash: &str,
        basis: Option<&str>,
        size: u64,
    ) -> Result<FileStatus, ProtocolError> {
        let path = format!(
            "{FILES_PATH}/{hash}/complete?size={size}{}",
            basis_query('&', basis)
        );
        self.call(Method::POST, path, None, Answer::control())
            .await?
            .ok_or_else(|| self.malformed("the agent cannot receive files".into()))
    }

    /// One request with a JSON answer; `Ok(None)` for a 404.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<Body>,
        answer: Answer,
    ) -> Result<Option<T>, ProtocolError> {
        match self.raw(method, path, body, answer).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.malformed(e.to_string())),
        }
    }

    /// One request; its answer's bytes, `Ok(None)` for a 404, the agent's
    /// message for another error status. The whole exchange has the
    /// request's wait plus the connection's answer limit, and no more than
    /// `answer.max_bytes` of the answer is read.
    async fn raw(
        &self,
        method: Method,
        path: String,
        body: Option<Body>,
        answer: Answer,
    ) -> Result<Option<Bytes>, ProtocolError> {
        let Some(report) = &self.round_trips else {
            return self.round_trip(method, path, body, answer).await;
        };
        let command = command_name(&method, &path);
        let started = std::time::Instant::now();
        let result = self.round_trip(method, path, body, answer).await;
        report(command, started.elapsed(), result.is_err());
        result
    }

    async fn round_trip(
        &self,
        method: Method,
        path: String,
        body: Option<Body>,
        answer: Answer,
    ) -> Result<Option<Bytes>, ProtocolError> {
        let limit = answer.wait + self.answer_limit;
        let (status, bytes) = match &self.link {
            Link::Relayed {
                relay,
                thumbprint,
                holder,
            } => {
                let request = RelayedRequest {
                    method: method.to_string(),
                    path,
                    content_type: body.as_ref().map(|b| b.content_type.to_owned()),
                    body: body.map(|b| b.bytes.to_vec()).unwrap_or_default(),
                    wait: answer.wait,
                    max_bytes: answer.max_bytes,
                };
                // The holder keeps the limit on the agent; this one is for
                // the trip through the database on top of it.
                let limit = limit + RELAY_MARGIN;
                let (status, bytes) =
                    tokio::time::timeout(limit, relay.send(thumbprint, holder, request))
                        .await
                        .map_err(|_| ProtocolError::Timeout {
                            address: self.address.to_string(),
                            after: limit,
                        })??;
                if bytes.len() > answer.max_bytes.max(MAX_CONTROL_ANSWER) {
                    return Err(ProtocolError::TooLarge {
                        address: self.address.to_string(),
                        limit: answer.max_bytes,
                    });
                }
                let status = StatusCode::from_u16(status)
                    .map_err(|e| self.malformed(format!("a relayed answer's status: {e}")))?;
                (status, Bytes::from(bytes))
            }
            Link::Direct { .. } => {
                let mut request = hyper::Request::builder()
                    .method(method)
                    .uri(format!("https://{}{path}", trust::SERVER_NAME));
                if let Some(b) = &body {
                    request = request.header(hyper::header::CONTENT_TYPE, b.content_type);
                }
                let request = request
                    .body(Full::new(body.map(|b| b.bytes).unwrap_or_default()))
                    .map_err(|e| self.malformed(e.to_string()))?;
                // Dropping the exchange on time resets its stream, so the
                // agent's further bytes are refused by HTTP/2 rather than
                // buffered.
                tokio::time::timeout(limit, self.exchange(request, answer))
                    .await
                    .map_err(|_| ProtocolError::Timeout {
                        address: self.address.to_string(),
                        after: limit,
                    })??
            }
        };
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error_message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(300).collect());
            return Err(ProtocolError::Status {
                address: self.address.to_string(),
                status: status.as_u16(),
                message,
            });
        }
        Ok(Some(bytes))
    }

    /// Sends the request and reads its answer, at most `answer.max_bytes`
    /// of it (an error answer's message is a control answer, whatever was
    /// asked).
    async fn exchange(
        &self,
        request: hyper::Request<Full<Bytes>>,
        answer: Answer,
    ) -> Result<(StatusCode, Bytes), ProtocolError> {
        let lost = |e: &(dyn std::error::Error + 'static)| ProtocolError::Lost {
            address: self.address.to_string(),
            reason: error_chain(e),
        };
        let Link::Direct { sender, .. } = &self.link else {
            return Err(lost(&std::io::Error::other(
                "a relayed connection carries no request of its own",
            )));
        };
        let mut sender = sender.clone();
        sender.ready().await.map_err(|e| lost(&e))?;
        let response = sender.send_request(request).await.map_err(|e| lost(&e))?;
        let status = response.status();
        let max_bytes = if status.is_success() {
            answer.max_bytes
        } else {
            MAX_CONTROL_ANSWER
        };
        let too_large = || ProtocolError::TooLarge {
            address: self.address.to_string(),
            limit: max_bytes,
        };
        let body = response.into_body();
        // A declared length past the limit is refused before any of it is read.
        if body.size_hint().lower() > max_bytes as u64 {
            return Err(too_large());
        }
        match Limited::new(body, max_bytes).collect().await {
            Ok(collected) => Ok((status, collected.to_bytes())),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Err(e) => Err(ProtocolError::BrokenAnswer {
                address: self.address.to_string(),
                reason: error_chain(&*e),
            }),
        }
    }

    fn malformed(&self, reason: String) -> ProtocolError {
        ProtocolError::Malformed {
            address: self.address.to_string(),
            reason,
        }
    }
}

/// `basis=B` after `sep`, or nothing.
fn basis_query(sep: char, basis: Option<&str>) -> String {
    basis.map(|b| format!("{sep}basis={b}")).unwrap_or_default()
}

/// What a request may take in answer: how many bytes, and how long the
/// agent may hold it on purpose (a long poll) before its answer limit runs.
#[derive(Clone, Copy)]
struct Answer {
    max_bytes: usize,
    wait: Duration,
}

impl Answer {
    fn of(max_bytes: usize) -> Answer {
        Answer {
            max_bytes,
            wait: Duration::ZERO,
        }
    }

    fn control() -> Answer {
        Answer::of(MAX_CONTROL_ANSWER)
    }

    /// A script's status; the agent caps `wait` at its `MAX_WAIT`.
    fn status(wait: Duration) -> Answer {
        Answer {
            max_bytes: MAX_STATUS_ANSWER,
            wait: wait.min(crate::service::MAX_WAIT),
        }
    }
}

/// A request body and its media type.
struct Body {
    bytes: Bytes,
    content_type: &'static str,
}

impl Body {
    fn json(bytes: Vec<u8>) -> Body {
        Body {
            bytes: Bytes::from(bytes),
            content_type: "application/json",
        }
    }
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

/// Stops driving the connection when its last user is gone.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

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
