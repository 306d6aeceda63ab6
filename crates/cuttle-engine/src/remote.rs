//! Running a script on an agent (a deployment target or a worker): start it
//! by its command id, follow its lines with long polls, and survive lost
//! connections by asking again with the same id, which never runs it twice.

use std::time::Duration;

use cuttle_model::machine::{CommunicationStyle, Endpoint};
use cuttle_model::machine_policy::parse_timespan;
use cuttle_model::MachinePolicy;
use cuttle_protocol::messages::{ScriptState, ScriptStatus, ScriptStream, StartScript};
use cuttle_protocol::{AgentConnection, AgentEndpoint, Agents, ProtocolError, Thumbprint};
use cuttle_store::Store;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::script::{OutputLine, OutputStream, ScriptOutcome};

/// How long one long poll waits on the agent for news.
const LONG_POLL: Duration = Duration::from_secs(10);
/// Past the script's own timeout (which the agent enforces), how long the
/// server waits before it cancels the script itself.
const TIMEOUT_GRACE: Duration = Duration::from_secs(30);

/// The agent a script runs on, as the machine or worker resource names it.
pub struct AgentTarget<'a> {
    pub name: &'a str,
    pub endpoint: &'a Endpoint,
    pub machine_policy_id: &'a str,
}

/// The connection limits of a machine's policy.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// For one attempt to reach the agent.
    pub connect: Duration,
    /// How long an agent may stay unreachable while its script runs before
    /// the step fails saying the connection was lost.
    pub retry: Duration,
    /// Between attempts.
    pub retry_sleep: Duration,
}

/// A machine's policy, or the defaults when it is gone or unreadable.
pub async fn policy_of(store: &Store, policy_id: &str) -> MachinePolicy {
    store
        .get::<MachinePolicy>(policy_id)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

impl ConnectionLimits {
    pub fn of(policy: &MachinePolicy) -> ConnectionLimits {
        let defaults = MachinePolicy::default();
        let span = |text: &str, default: &str| {
            parse_timespan(text)
                .or_else(|_| parse_timespan(default))
                .unwrap_or(Duration::from_secs(60))
        };
        ConnectionLimits {
            connect: span(
                &policy.connection_connect_timeout,
                &defaults.connection_connect_timeout,
            ),
            retry: span(
                &policy.connection_retry_time_limit,
                &defaults.connection_retry_time_limit,
            ),
            retry_sleep: span(
                &policy.connection_retry_sleep_interval,
                &defaults.connection_retry_sleep_interval,
            )
            .max(Duration::from_millis(100)),
        }
    }
}

/// Reads a machine's endpoint as something to connect to.
fn endpoint_of<'a>(
    endpoint: &'a Endpoint,
    thumbprint: &'a Thumbprint,
) -> Result<AgentEndpoint<'a>, String> {
    match endpoint.communication_style {
        Some(CommunicationStyle::TentaclePassive) => Ok(AgentEndpoint::Listening {
            uri: &endpoint.uri,
            thumbprint,
        }),
        Some(CommunicationStyle::TentacleActive) => Ok(AgentEndpoint::Polling { thumbprint }),
        other => Err(format!(
            "the endpoint's communication style {other:?} cannot run scripts"
        )),
    }
}

/// Where an answer's lines begin and end, for a caller that records how
/// far the log has got along the script's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch {
    Start,
    /// The lines before `next` have all been delivered.
    End {
        next: u64,
    },
}

/// Runs `start` on the agent, delivering its lines to `on_line`, until it
/// ends, `cancel` fires (the agent then kills it), or the agent stays
/// unreachable past the policy's retry limit. After each answer's lines,
/// `settled` is awaited before more are asked for: lines are taken no
/// faster than they are stored, so an agent flooding them cannot pile them
/// up in the server's memory.
///
/// `resume_from` is how many of the script's lines an earlier holder of
/// the task already logged (re-attaching after a takeover): those are
/// delivered again, flagged as replayed (to read its output variables
/// from, not to show). `on_batch` is told where each answer's lines
/// begin and end.
#[allow(clippy::too_many_arguments)]
pub async fn run_on_agent<S: std::future::Future<Output = ()>>(
    agents: &Agents,
    target: &AgentTarget<'_>,
    limits: ConnectionLimits,
    start: StartScript,
    cancel: CancellationToken,
    resume_from: u64,
    mut on_line: impl FnMut(OutputStream, OutputLine, bool) + Send,
    mut on_batch: impl FnMut(Batch) + Send,
    settled: impl Fn() -> S,
) -> Result<ScriptOutcome, String> {
    let deadline = Instant::now() + Duration::from_secs(start.timeout_seconds) + TIMEOUT_GRACE;
    let mut session = Session::open(agents, target, limits)?;

    // Starting is idempotent by id. Still, once an attempt may have
    // reached the agent, the next one first asks for the script by its id
    // (a relayed request whose holder stopped is never repeated blindly).
    let mut asked_before = false;
    let mut status = loop {
        let attempt = async {
            let c = session.connection().await?;
            if asked_before {
                if let Some(known) = c.script_status(&start.id, 0, Duration::ZERO).await? {
                    return Ok(known);
                }
            }
            c.start_script(&start).await
        };
        let result = tokio::select! {
            r = attempt => r,
            _ = cancel.cancelled() => return Ok(ScriptOutcome::Canceled),
        };
        match result {
            Ok(s) => break s,
            Err(ProtocolError::Status { message, .. }) => {
                return Err(format!("{} refused the script: {message}", target.name))
            }
            Err(e) => {
                asked_before = true;
                session.lost(e).await?
            }
        }
    };
    session.reached();

    let mut next = 0;
    loop {
        on_batch(Batch::Start);
        let from = status.from;
        for (i, line) in status.lines.drain(..).enumerate() {
            let stream = match line.stream {
                ScriptStream::Stdout => OutputStream::Stdout,
                ScriptStream::Stderr => OutputStream::Stderr,
            };
            on_line(
                stream,
                OutputLine {
                    text: line.text,
                    continues: line.continues,
                },
                from + (i as u64) < resume_from,
            );
        }
        next = next.max(status.next);
        // Replayed lines were logged already: the log is never behind them.
        on_batch(Batch::End {
            next: next.max(resume_from),
        });
        settled().await;
        if status.is_finished() {
            return outcome(target.name, &status);
        }
        if Instant::now() > deadline {
            return session.cancel(&start.id).await;
        }
        let asking = async {
            let c = session.connection().await?;
            c.script_status(&start.id, next, LONG_POLL).await
        };
        let result = tokio::select! {
            r = asking => r,
            _ = cancel.cancelled() => return session.cancel(&start.id).await,
        };
        status = match result {
            Ok(Some(s)) => {
                session.reached();
                s
            }
            Ok(None) => {
                return Err(format!(
                    "{} no longer knows the script (the agent restarted while it ran), \
                     so its outcome is unknown",
                    target.name
                ))
            }
            Err(e) => {
                session.lost(e).await?;
                continue;
            }
        };
    }
}

/// What an upload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    /// The agent had the file already; nothing was sent.
    pub cached: bool,
    /// Bytes sent in this call: the file's (less after a resume) or its
    /// delta's.
    pub sent_bytes: u64,
    /// How many times the upload resumed after a lost connection.
    pub resumes: u32,
    /// The cached file the agent rebuilt it from, when a delta was sent.
    pub delta_from: Option<String>,
}

/// How much of a file one request carries.
const CHUNK: usize = 1024 * 1024;
/// How many conflicts (409: another upload's chunk got there first) in a
/// row, with not a chunk more held in between, an upload takes before it
/// gives up: two uploads of one file make progress between them, a lying
/// agent none.
const MAX_CONFLICTS: u32 = 10;

/// What is being sent: the file, or a delta from a file the agent has.
enum Payload {
    Whole,
    Delta { basis: String, bytes: Vec<u8> },
}

/// Uploads the file at `path` (`size` bytes, SHA-256 `hash` in lowercase
/// hex) into the agent's cache: skipped if the agent has it; sent as a
/// delta from the first of `bases` (SHA-256s of earlier versions, best
/// first) that the agent holds, when that is smaller; resumed from where
/// the agent stands after a lost connection (until the policy's retry
/// limit); and verified by the agent before it keeps it.
pub async fn upload_file(
    agents: &Agents,
    target: &AgentTarget<'_>,
    limits: ConnectionLimits,
    path: &std::path::Path,
    hash: &str,
    size: u64,
    bases: &[String],
) -> Result<Upload, String> {
    let mut session = Session::open(agents, target, limits)?;
    let mut report = Upload {
        cached: false,
        sent_bytes: 0,
        resumes: 0,
        delta_from: None,
    };
    let mut payload: Option<Payload> = None;
    let mut first = true;
    // Where the agent's copy stood at most, whoever sent it.
    let mut stood = 0u64;
    let (mut conflicts, mut progress_at_conflict) = (0, 0);
    loop {
        let attempt = async {
            let c = session.connection().await?;
            let held = c.file_status(hash, None).await?;
            stood = stood.max(held.received_bytes.min(size));
            if held.complete {
                return Ok(true);
            }
            if payload.is_none() {
                payload = Some(choose_payload(&c, path, size, bases).await?);
            }
            if !first {
                report.resumes += 1;
            }
            first = false;
            match payload.as_ref() {
                Some(Payload::Delta { basis, bytes }) => {
                    send_delta(&c, hash, basis, bytes, size, &mut report).await?
                }
                _ => send_whole(&c, path, hash, held.received_bytes, size, &mut report).await?,
            }
            Ok::<_, UploadError>(false)
        };
        match attempt.await {
            Ok(was_cached) => {
                report.cached = was_cached && report.sent_bytes == 0;
                return Ok(report);
            }
            // Someone else's chunk got there first: ask again where it
            // stands, unless the agent keeps saying so while nothing moves.
            Err(UploadError::Agent(ProtocolError::Status { status: 409, .. })) => {
                // Progress by either upload, by at least a chunk (a liar's
                // copy cannot grow past the file's size).
                let progress = stood.max(report.sent_bytes);
                if progress >= progress_at_conflict + CHUNK as u64 {
                    conflicts = 0;
                    progress_at_conflict = progress;
                }
                conflicts += 1;
                if conflicts > MAX_CONFLICTS {
                    return Err(format!(
                        "{} answered {MAX_CONFLICTS} times in a row that the upload stood \
                         elsewhere while it took nothing; it was given up",
                        target.name
                    ));
                }
                continue;
            }
            // The delta did not rebuild the file: send the whole file instead.
            Err(UploadError::Agent(ProtocolError::Status {
                status: 422,
                message,
                ..
            })) if matches!(payload, Some(Payload::Delta { .. })) => {
                tracing::warn!(agent = target.name, %message, "a delta did not apply; sending the whole file");
                payload = Some(Payload::Whole);
                report.delta_from = None;
            }
            Err(UploadError::Agent(ProtocolError::Status { message, .. })) => {
                return Err(format!("{} refused the file: {message}", target.name))
            }
            Err(UploadError::Local(why)) => return Err(why),
            Err(UploadError::Agent(e)) => session.lost(e).await?,
        }
    }
}

/// A delta from the best basis the agent holds, if it is smaller than the
/// file; else the whole file.
async fn choose_payload(
    c: &AgentConnection,
    path: &std::path::Path,
    size: u64,
    bases: &[String],
) -> Result<Payload, UploadError> {
    if bases.is_empty() {
        return Ok(Payload::Whole);
    }
    let held = c.list_files().await?.hashes;
    let Some(basis) = bases.iter().find(|b| held.contains(b)) else {
        return Ok(Payload::Whole);
    };
    let signature = c.file_signature(basis).await?.to_vec();
    let new_file = path.to_path_buf();
    let computed =
        tokio::task::spawn_blocking(move || crate::delta::delta_for(&new_file, signature))
            .await
            .map_err(|e| UploadError::Local(format!("computing a delta failed: {e}")))?;
    match computed {
        Ok(bytes) if (bytes.len() as u64) < size => Ok(Payload::Delta {
            basis: basis.clone(),
            bytes,
        }),
        Ok(_) => Ok(Payload::Whole),
        Err(e) => {
            tracing::warn!(error = %e, "no delta could be computed; sending the whole file");
            Ok(Payload::Whole)
        }
    }
}

/// Sends the file from `from`, the length the agent already holds.
async fn send_whole(
    c: &AgentConnection,
    path: &std::path::Path,
    hash: &str,
    from: u64,
    size: u64,
    report: &mut Upload,
) -> Result<(), UploadError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| UploadError::Local(local(path, e)))?;
    file.seek(std::io::SeekFrom::Start(from))
        .await
        .map_err(|e| UploadError::Local(local(path, e)))?;
    let mut buffer = vec![0u8; CHUNK];
    let mut offset = from;
    while offset < size {
        let want = CHUNK.min((size - offset) as usize);
        file.read_exact(&mut buffer[..want])
            .await
            .map_err(|e| UploadError::Local(local(path, e)))?;
        let chunk = hyper::body::Bytes::copy_from_slice(&buffer[..want]);
        c.put_chunk(hash, None, offset, chunk).await?;
        report.sent_bytes += want as u64;
        offset += want as u64;
    }
    c.complete_file(hash, None, size).await?;
    Ok(())
}

async fn send_delta(
    c: &AgentConnection,
    hash: &str,
    basis: &str,
    delta: &[u8],
    size: u64,
    report: &mut Upload,
) -> Result<(), UploadError> {
    let status = c.file_status(hash, Some(basis)).await?;
    let mut offset = usize::try_from(status.received_bytes)
        .unwrap_or(usize::MAX)
        .min(delta.len());
    while offset < delta.len() {
        let end = (offset + CHUNK).min(delta.len());
        let chunk = hyper::body::Bytes::copy_from_slice(&delta[offset..end]);
        c.put_chunk(hash, Some(basis), offset as u64, chunk).await?;
        report.sent_bytes += (end - offset) as u64;
        offset = end;
    }
    report.delta_from = Some(basis.to_owned());
    c.complete_file(hash, Some(basis), size).await?;
    Ok(())
}

/// Why one upload attempt stopped: the agent (retried while it is lost) or
/// the server's own copy of the file (not retried).
enum UploadError {
    Agent(ProtocolError),
    Local(String),
}

impl From<ProtocolError> for UploadError {
    fn from(e: ProtocolError) -> Self {
        UploadError::Agent(e)
    }
}

fn local(path: &std::path::Path, e: std::io::Error) -> String {
    format!("could not read {}: {e}", path.display())
}

/// One agent's connection as a script run sees it: reconnected on demand,
/// and given up on after the policy's retry limit.
struct Session<'a> {
    agents: &'a Agents,
    /// The listening agent's uri; `None` for a polling agent.
    listening_uri: Option<&'a str>,
    thumbprint: Thumbprint,
    limits: ConnectionLimits,
    name: &'a str,
    connection: Option<AgentConnection>,
    unreachable_since: Option<Instant>,
    /// Whether the agent has been connected at all in this session.
    connected_once: bool,
}

impl<'a> Session<'a> {
    /// A session with the agent, refusing a machine that cannot be reached
    /// at all (no valid thumbprint, no communication style).
    fn open(
        agents: &'a Agents,
        target: &'a AgentTarget<'a>,
        limits: ConnectionLimits,
    ) -> Result<Session<'a>, String> {
        let thumbprint: Thumbprint = target
            .endpoint
            .thumbprint
            .parse()
            .map_err(|e| format!("{} has no valid thumbprint: {e}", target.name))?;
        let listening_uri = match endpoint_of(target.endpoint, &thumbprint)? {
            AgentEndpoint::Listening { .. } => Some(target.endpoint.uri.as_str()),
            AgentEndpoint::Polling { .. } => None,
        };
        Ok(Session {
            agents,
            listening_uri,
            thumbprint,
            limits,
            name: target.name,
            connection: None,
            unreachable_since: None,
            connected_once: false,
        })
    }

    fn endpoint(&self) -> AgentEndpoint<'_> {
        match self.listening_uri {
            Some(uri) => AgentEndpoint::Listening {
                uri,
                thumbprint: &self.thumbprint,
            },
            None => AgentEndpoint::Polling {
                thumbprint: &self.thumbprint,
            },
        }
    }

    async fn connection(&mut self) -> Result<AgentConnection, ProtocolError> {
        if let Some(c) = self.connection.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = self
            .agents
            .connect(self.endpoint(), self.limits.connect)
            .await?;
        self.connection = Some(c.clone());
        self.connected_once = true;
        Ok(c)
    }

    fn reached(&mut self) {
        self.unreachable_since = None;
    }

    /// After a failed request: drop the connection and pause, or give up
    /// once the agent has been unreachable for the policy's retry limit. A
    /// polling agent that has not connected at all within the connect
    /// timeout is given up on at once: it is not running, and retrying
    /// would only keep the task waiting for the whole retry limit.
    async fn lost(&mut self, error: ProtocolError) -> Result<(), String> {
        self.connection = None;
        self.agents.forget(self.endpoint());
        if let ProtocolError::NotConnected { after, .. } = &error {
            if !self.connected_once {
                return Err(format!(
                    "The polling agent on {} did not connect within {}",
                    self.name,
                    crate::polling_wait::seconds(*after)
                ));
            }
        }
        let since = *self.unreachable_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.limits.retry {
            return Err(format!(
                "the connection to {} was lost and not restored within {} s: {error}",
                self.name,
                self.limits.retry.as_secs()
            ));
        }
        tracing::debug!(agent = self.name, %error, "retrying an agent request");
        tokio::time::sleep(self.limits.retry_sleep).await;
        Ok(())
    }

    /// Asks the agent to kill the script; the run ends `Canceled` whether or
    /// not the agent could be told (it then kills it at its own timeout).
    async fn cancel(&mut self, id: &str) -> Result<ScriptOutcome, String> {
        let limit = self.limits.connect;
        let asking = async {
            let c = self.connection().await?;
            c.cancel_script(id).await
        };
        match tokio::time::timeout(limit, asking).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(agent = self.name, %e, "could not cancel a script"),
            Err(_) => tracing::warn!(agent = self.name, "cancelling a script timed out"),
        }
        Ok(ScriptOutcome::Canceled)
    }
}

fn outcome(name: &str, status: &ScriptStatus) -> Result<ScriptOutcome, String> {
    Ok(match status.state {
        ScriptState::Exited => ScriptOutcome::Exited(status.exit_code.unwrap_or(-1)),
        ScriptState::Killed => ScriptOutcome::Killed {
            signal: status.signal.unwrap_or(0),
        },
        ScriptState::TimedOut => ScriptOutcome::TimedOut,
        ScriptState::Canceled => ScriptOutcome::Canceled,
        ScriptState::Failed => {
            return Err(format!(
                "{name} could not run the script: {}",
                status.error.as_deref().unwrap_or("no reason given")
            ))
        }
        ScriptState::Running => return Err(format!("{name} reported the script as still running")),
    })
}
