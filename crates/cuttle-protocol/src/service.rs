//! The agent's side of a connection, whoever dialled: an HTTP/2 server that
//! answers the server's requests from an [`AgentService`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::messages::{
    valid_file_hash, valid_script_id, ErrorBody, FileList, FileStatus, Hello, ScriptStatus,
    StartScript, FILES_PATH, HELLO_PATH, MAX_CHUNK, SCRIPTS_PATH,
};

/// The longest long poll an agent grants; a server asking more gets this.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// A start request's body may not be larger (scripts and variables files).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Pings on an idle connection, so either side notices a dead peer.
pub(crate) const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub(crate) const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// What an agent does for its server. Implemented by the process that runs
/// scripts; this crate only carries the requests.
pub trait AgentService: Send + Sync + 'static {
    /// Who the agent is, asked first on every connection.
    fn hello(&self) -> Hello;
    /// Starts the script, or, when its id is known already, runs nothing and
    /// answers with that script's status. `Err` is a refusal the server
    /// should not retry (a message for the task log).
    fn start_script(&self, request: StartScript) -> Result<ScriptStatus, String>;
    /// The script's status with its lines from `from` on, waiting up to
    /// `wait` for a line or its end; `None` when the agent does not know it.
    fn script_status(
        &self,
        id: &str,
        from: u64,
        wait: Duration,
    ) -> impl Future<Output = Option<ScriptStatus>> + Send;
    /// Cancels the script (its whole process tree); `None` when unknown.
    fn cancel_script(&self, id: &str) -> impl Future<Output = Option<ScriptStatus>> + Send;

    /// The SHA-256s of the files in the cache.
    fn list_files(&self) -> impl Future<Output = Result<FileList, FileError>> + Send {
        async { Err(FileError::unsupported()) }
    }
    /// The rsync signature of a cached file, for a delta against it.
    fn file_signature(&self, hash: &str) -> impl Future<Output = Result<Bytes, FileError>> + Send {
        let _ = hash;
        async { Err(FileError::unsupported()) }
    }
    /// What the agent holds of the file with this SHA-256 (of its delta
    /// from `basis`, with one).
    fn file_status(
        &self,
        hash: &str,
        basis: Option<&str>,
    ) -> impl Future<Output = Result<FileStatus, FileError>> + Send {
        let _ = (hash, basis);
        async { Err(FileError::unsupported()) }
    }
    /// Appends a chunk at `offset`, which must be what it holds so far.
    fn write_chunk(
        &self,
        hash: &str,
        basis: Option<&str>,
        offset: u64,
        chunk: Bytes,
    ) -> impl Future<Output = Result<FileStatus, FileError>> + Send {
        let _ = (hash, basis, offset, chunk);
        async { Err(FileError::unsupported()) }
    }
    /// Checks the upload's size and SHA-256 (after applying the delta to
    /// `basis`, with one), and keeps it in the cache.
    fn complete_file(
        &self,
        hash: &str,
        basis: Option<&str>,
        size: u64,
    ) -> impl Future<Output = Result<FileStatus, FileError>> + Send {
        let _ = (hash, basis, size);
        async { Err(FileError::unsupported()) }
    }
}

/// Why an agent refused a file request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileError {
    /// A chunk's offset is not where the upload stands (answered 409).
    Offset { received_bytes: u64 },
    /// The finished upload is not the file it claims to be (answered 422);
    /// the agent has dropped it, so the next upload starts over.
    Mismatch(String),
    /// The agent cannot store files: a full disk, no permission (answered 500).
    Storage(String),
    /// This agent keeps no files (answered 501).
    Unsupported,
}

impl FileError {
    fn unsupported() -> FileError {
        FileError::Unsupported
    }

    fn answer(&self) -> Response<Full<Bytes>> {
        match self {
            FileError::Offset { received_bytes } => error(
                StatusCode::CONFLICT,
                format!("the upload stands at {received_bytes} bytes; send from there"),
            ),
            FileError::Mismatch(m) => error(StatusCode::UNPROCESSABLE_ENTITY, m.clone()),
            FileError::Storage(m) => error(StatusCode::INTERNAL_SERVER_ERROR, m.clone()),
            FileError::Unsupported => error(
                StatusCode::NOT_IMPLEMENTED,
                "this agent keeps no files".into(),
            ),
        }
    }
}

/// Serves the server's requests on an established (TLS) stream until the
/// peer closes it, or `stopping` turns true; then the requests in progress
/// finish and the connection closes.
pub async fn serve_connection<S, I>(
    io: I,
    service: Arc<S>,
    mut stopping: watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    S: AgentService,
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let handler = hyper::service::service_fn(move |request| {
        let service = service.clone();
        async move { Ok::<_, Infallible>(route(request, &*service).await) }
    });
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .serve_connection(TokioIo::new(io), handler);
    tokio::pin!(connection);
    if *stopping.borrow() {
        connection.as_mut().graceful_shutdown();
        return connection.await;
    }
    tokio::select! {
        result = connection.as_mut() => result,
        _ = stopping.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

async fn route<S: AgentService>(request: Request<Incoming>, service: &S) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    if path == HELLO_PATH {
        return match method {
            Method::GET => json(StatusCode::OK, &service.hello()),
            _ => error(StatusCode::METHOD_NOT_ALLOWED, format!("{path} takes GET")),
        };
    }
    if path == SCRIPTS_PATH {
        if method != Method::POST {
            return error(StatusCode::METHOD_NOT_ALLOWED, format!("{path} takes POST"));
        }
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the request body could not be read: {e}"),
                )
            }
        };
        let start: StartScript = match serde_json::from_slice(&body) {
            Ok(s) => s,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the script request is not valid: {e}"),
                )
            }
        };
        if !valid_script_id(&start.id) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("'{}' is not a valid script id", start.id),
            );
        }
        return match service.start_script(start) {
            Ok(status) => json(StatusCode::OK, &status),
            Err(message) => error(StatusCode::UNPROCESSABLE_ENTITY, message),
        };
    }
    if path == FILES_PATH {
        return match method {
            Method::GET => match service.list_files().await {
                Ok(list) => json(StatusCode::OK, &list),
                Err(e) => e.answer(),
            },
            _ => error(StatusCode::METHOD_NOT_ALLOWED, format!("{path} takes GET")),
        };
    }
    if let Some(rest) = path
        .strip_prefix(FILES_PATH)
        .and_then(|r| r.strip_prefix('/'))
    {
        return file_route(request, service, method, rest, &query).await;
    }
    let Some(id) = path
        .strip_prefix(SCRIPTS_PATH)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|id| valid_script_id(id))
    else {
        return error(
            StatusCode::NOT_FOUND,
            format!("this agent has no endpoint {path}"),
        );
    };
    let status = match method {
        Method::GET => {
            let (from, wait) = status_query(&query);
            service.script_status(id, from, wait.min(MAX_WAIT)).await
        }
        Method::DELETE => service.cancel_script(id).await,
        _ => {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{path} takes GET or DELETE"),
            )
        }
    };
    match status {
        Some(s) => json(StatusCode::OK, &s),
        None => error(
            StatusCode::NOT_FOUND,
            format!("this agent knows no script {id}"),
        ),
    }
}

/// `GET|PUT /v1/files/{hash}` and `POST /v1/files/{hash}/complete`.
async fn file_route<S: AgentService>(
    request: Request<Incoming>,
    service: &S,
    method: Method,
    rest: &str,
    query: &str,
) -> Response<Full<Bytes>> {
    if let Some(hash) = rest.strip_suffix("/signature") {
        if !valid_file_hash(hash) || method != Method::GET {
            return error(
                StatusCode::BAD_REQUEST,
                format!("'{hash}' is not a SHA-256 in lowercase hex, or not asked with GET"),
            );
        }
        return match service.file_signature(hash).await {
            Ok(bytes) => {
                let mut response = Response::new(Full::new(bytes));
                response.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/octet-stream"),
                );
                response
            }
            Err(e) => e.answer(),
        };
    }
    let (hash, complete) = match rest.strip_suffix("/complete") {
        Some(hash) => (hash, true),
        None => (rest, false),
    };
    if !valid_file_hash(hash) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("'{hash}' is not a SHA-256 in lowercase hex"),
        );
    }
    let basis = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "basis")
        .map(|(_, v)| v);
    if let Some(b) = basis.filter(|b| !valid_file_hash(b)) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("the basis '{b}' is not a SHA-256 in lowercase hex"),
        );
    }
    let number = |name: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse::<u64>().ok())
    };
    let result = match (method, complete) {
        (Method::GET, false) => service.file_status(hash, basis).await,
        (Method::PUT, false) => {
            let Some(offset) = number("offset") else {
                return error(StatusCode::BAD_REQUEST, "a chunk needs ?offset=N".into());
            };
            // A little over a chunk, so the agent's own limit is the one
            // that speaks.
            let chunk = match Limited::new(request.into_body(), MAX_CHUNK + 1)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("a chunk is at most {MAX_CHUNK} bytes: {e}"),
                    )
                }
            };
            if chunk.len() > MAX_CHUNK {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a chunk is at most {MAX_CHUNK} bytes"),
                );
            }
            service.write_chunk(hash, basis, offset, chunk).await
        }
        (Method::POST, true) => {
            let Some(size) = number("size") else {
                return error(StatusCode::BAD_REQUEST, "completing needs ?size=N".into());
            };
            service.complete_file(hash, basis, size).await
        }
        _ => {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{FILES_PATH}/{rest} does not take that method"),
            )
        }
    };
    match result {
        Ok(status) => json(StatusCode::OK, &status),
        Err(e) => e.answer(),
    }
}

/// `from=N&wait=MS`; anything unreadable counts as absent.
fn status_query(query: &str) -> (u64, Duration) {
    let mut from = 0;
    let mut wait = Duration::ZERO;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("from", v)) => from = v.parse().unwrap_or(0),
            Some(("wait", v)) => wait = Duration::from_millis(v.parse().unwrap_or(0)),
            _ => {}
        }
    }
    (from, wait)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(status_query(""), (0, Duration::ZERO));
        assert_eq!(
            status_query("from=12&wait=250"),
            (12, Duration::from_millis(250))
        );
        assert_eq!(status_query("from=x&wait=-1"), (0, Duration::ZERO));
    }
}
