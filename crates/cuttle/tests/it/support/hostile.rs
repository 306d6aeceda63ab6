//! A hostile agent: real pinned TLS and HTTP/2 on 127.0.0.1, presenting a
//! registered agent's identity, but answering the server's requests with
//! bodies no honest agent sends (endless, dripping, lying about their
//! length, not JSON). It counts what it managed to hand to the connection,
//! so a test can tell how much the server read.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use cuttle_protocol::messages::{ScriptState, ScriptStatus, HELLO_PATH};
use cuttle_protocol::trust::server_config;
use cuttle_protocol::{Hello, Identity, TrustedThumbprints, PROTOCOL_VERSION};
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How the hostile agent answers one kind of request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Honestly: a valid hello, or (to anything else) a script that is
    /// still running.
    Honest,
    /// `200` with this many bytes of `x`, in 64 KiB frames, as fast as the
    /// server takes them.
    Huge(u64),
    /// `200` with one byte of `x` every interval, forever.
    Drip(Duration),
    /// `200` with this body.
    Text(&'static str),
    /// `200` with these bytes (shared, so a large answer costs its bytes once).
    Bytes(Bytes),
    /// `500` with this many bytes of `x` as its error message.
    HugeError(u64),
    /// `409`: another upload's chunk got there first (always, for a liar).
    Conflict,
    /// `200` claiming a `Content-Length` of `claimed` and sending `Huge`.
    Claiming { claimed: u64, sent: u64 },
}

/// The answers to `/v1/hello`, to file chunks (`PUT`), and to everything
/// else.
#[derive(Clone, Debug)]
pub struct Behaviour {
    pub hello: Answer,
    pub other: Answer,
    /// For `PUT` requests; `other` when `None`.
    pub chunks: Option<Answer>,
}

/// A hostile agent listening on 127.0.0.1; stops when dropped.
pub struct HostileAgent {
    pub uri: String,
    /// Body bytes handed to the connection so far, over all requests.
    pub sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostileAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileAgent {
    /// Serves `behaviour` on `listener` as `identity`, trusting only
    /// `server`'s certificate, as a registered agent would. Call within a
    /// Tokio runtime.
    pub fn serve(
        listener: std::net::TcpListener,
        identity: &Identity,
        server: cuttle_protocol::Thumbprint,
        behaviour: Behaviour,
    ) -> HostileAgent {
        listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let uri = format!("https://{}/", listener.local_addr().unwrap());
        let tls = server_config(identity, TrustedThumbprints::new([server])).unwrap();
        let acceptor = TlsAcceptor::from(tls);
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, behaviour, counter) =
                    (acceptor.clone(), behaviour.clone(), counter.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        answer(tls, behaviour, counter).await;
                    }
                });
            }
        });
        HostileAgent { uri, sent, task }
    }

    /// A polling agent: dials the server's polling port at `address` as
    /// `identity`, trusting only `server`'s certificate, and answers the
    /// server's requests over that connection, dialling again whenever the
    /// server drops it. Call within a Tokio runtime.
    pub fn poll(
        address: String,
        identity: &Identity,
        server: cuttle_protocol::Thumbprint,
        behaviour: Behaviour,
    ) -> HostileAgent {
        let tls =
            cuttle_protocol::trust::client_config(identity, TrustedThumbprints::new([server]))
                .unwrap();
        let connector = tokio_rustls::TlsConnector::from(tls);
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let uri = format!("poll://{address}/");
        let task = tokio::spawn(async move {
            loop {
                if let Ok(tcp) = tokio::net::TcpStream::connect(&address).await {
                    let name = cuttle_protocol::trust::server_name();
                    if let Ok(tls) = connector.connect(name, tcp).await {
                        answer(tls, behaviour.clone(), counter.clone()).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        HostileAgent { uri, sent, task }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// Answers the server's requests on one connection as `behaviour` says.
async fn answer<I>(io: I, behaviour: Behaviour, counter: Arc<AtomicU64>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let handler = hyper::service::service_fn(move |request: Request<_>| {
        let is_hello = request.uri().path() == HELLO_PATH;
        let answer = match (&behaviour.chunks, request.method()) {
            _ if is_hello => behaviour.hello.clone(),
            (Some(chunks), &hyper::Method::PUT) => chunks.clone(),
            _ => behaviour.other.clone(),
        };
        let counter = counter.clone();
        async move { Ok::<_, Infallible>(respond(answer, is_hello, counter)) }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(io), handler)
        .await;
}

fn respond(answer: Answer, is_hello: bool, counter: Arc<AtomicU64>) -> Response<Hostile> {
    let body = |kind| Hostile {
        kind,
        counter: counter.clone(),
        sleep: None,
    };
    let (status, hostile, length) = match answer {
        Answer::Honest if is_hello => (200, body(Kind::Once(Some(hello_json()))), None),
        Answer::Honest => (200, body(Kind::Once(Some(running_json()))), None),
        Answer::Huge(n) => (200, body(Kind::Huge(n)), None),
        Answer::Drip(every) => (200, body(Kind::Drip(every)), None),
        Answer::Bytes(b) => (200, body(Kind::Once(Some(b))), None),
        Answer::Conflict => (
            409,
            body(Kind::Once(Some(Bytes::from_static(
                br#"{"ErrorMessage":"the upload stands elsewhere"}"#,
            )))),
            None,
        ),
        Answer::Text(t) => (
            200,
            body(Kind::Once(Some(Bytes::from_static(t.as_bytes())))),
            None,
        ),
        Answer::HugeError(n) => (500, body(Kind::Huge(n)), None),
        Answer::Claiming { claimed, sent } => (200, body(Kind::Huge(sent)), Some(claimed)),
    };
    let mut response = Response::new(hostile);
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    if let Some(n) = length {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_LENGTH, n.into());
    }
    response
}

fn hello_json() -> Bytes {
    Bytes::from(
        serde_json::to_vec(&Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            operating_system: "linux".into(),
            architecture: "x86_64".into(),
            free_disk_bytes: 1 << 30,
            name: "hostile".into(),
        })
        .unwrap(),
    )
}

fn running_json() -> Bytes {
    Bytes::from(
        serde_json::to_vec(&ScriptStatus {
            id: "s".into(),
            state: ScriptState::Running,
            exit_code: None,
            signal: None,
            error: None,
            from: 0,
            lines: vec![],
            next: 0,
        })
        .unwrap(),
    )
}

enum Kind {
    Once(Option<Bytes>),
    Huge(u64),
    Drip(Duration),
}

/// A response body that hands out its bytes as the connection asks.
struct Hostile {
    kind: Kind,
    counter: Arc<AtomicU64>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

const FRAME: usize = 64 * 1024;

impl Body for Hostile {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let chunk = match &mut this.kind {
            Kind::Once(b) => b.take(),
            Kind::Huge(left) if *left == 0 => None,
            Kind::Huge(left) => {
                let n = (*left).min(FRAME as u64);
                *left -= n;
                Some(Bytes::from(vec![b'x'; n as usize]))
            }
            Kind::Drip(every) => {
                let every = *every;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.sleep = None;
                Some(Bytes::from_static(b" "))
            }
        };
        match chunk {
            Some(b) => {
                this.counter.fetch_add(b.len() as u64, Ordering::Relaxed);
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            None => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Once(Some(b)) => SizeHint::with_exact(b.len() as u64),
            _ => SizeHint::default(),
        }
    }
}
