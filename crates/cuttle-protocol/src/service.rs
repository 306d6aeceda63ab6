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
    valid_script_id, ErrorBody, Hello, ScriptStatus, StartScript, HELLO_PATH, SCRIPTS_PATH,
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
