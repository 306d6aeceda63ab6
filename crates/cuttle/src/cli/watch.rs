//! Following a server task: read its live event stream, print each log line
//! under the headings of its activity, stop when the task completes.
//!
//! The pieces are kept apart so each can change alone: [`TaskStream`] is the
//! only code that talks to the server (`GET /api/tasks/{id}/stream`, Server-
//! Sent Events, read by [`SseParser`]), [`follow`] keeps the connection
//! going across drops, [`Watcher`] and [`LogFollower`] work out what to print
//! without any I/O, and [`render`] decides how it looks.

use std::{
    collections::{HashMap, VecDeque},
    io::Write,
    time::Duration,
};

use anyhow::{bail, Context as _};
use reqwest::{header, Method};
use serde::{de::DeserializeOwned, Deserialize};

use super::api::{is_transient, Api, ApiError};

/// The task, as `task` and `end` events carry it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Task {
    pub id: String,
    pub state: String,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub has_pending_interruptions: bool,
}

/// A node of the log tree (the task, a step, a target, …), as `activity`
/// events carry it; it always comes before the lines written under it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ActivityEvent {
    pub id: String,
    pub parent_id: Option<String>,
    pub name: String,
}

/// A log line, as `log` events carry it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct LogEvent {
    /// Orders the task's lines; the stream resumes after the last one seen.
    pub position: i64,
    pub activity_id: String,
    #[serde(flatten)]
    pub element: LogElement,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct LogElement {
    pub category: String,
    pub occurred_at: String,
    pub message_text: String,
}

/// One Server-Sent Event: its type and its (JSON) data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Longest line accepted from the server: a log line, JSON-encoded. Bounds
/// what a broken server or proxy can make the CLI hold.
const MAX_LINE: usize = 16 << 20;

/// Splits a byte stream into events, as the SSE specification reads them:
/// `field: value` lines, a blank line ending each event, `:` comments (the
/// server's keep-alives) skipped. Lines end in LF or CRLF.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// Appends the events completed by `bytes` to `out`; a partial line or
    /// event waits for the next chunk.
    pub(crate) fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut VecDeque<SseEvent>,
    ) -> anyhow::Result<()> {
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let (text, complete) = match piece.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (piece, false),
            };
            if self.line.len() + text.len() > MAX_LINE {
                bail!("the server sent a line of over {MAX_LINE} bytes");
            }
            self.line.extend_from_slice(text);
            if complete {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.take_line(&String::from_utf8_lossy(&line), out);
            }
        }
        Ok(())
    }

    fn take_line(&mut self, line: &str, out: &mut VecDeque<SseEvent>) {
        if line.is_empty() {
            // An event without data is not dispatched, as the specification says.
            let event = std::mem::take(&mut self.event);
            if std::mem::take(&mut self.has_data) {
                let mut data = std::mem::take(&mut self.data);
                data.pop(); // the newline after the last data line
                out.push_back(SseEvent {
                    event: if event.is_empty() {
                        "message".into()
                    } else {
                        event
                    },
                    data,
                });
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            // `id` (the position, also in the data) and `retry` are not needed.
            _ => {}
        }
    }
}

/// Where [`follow`] gets a task's events: the server, or canned ones in tests.
pub(crate) trait EventSource {
    /// (Re)connects, asking only for lines after position `after`.
    async fn open(&mut self, after: Option<i64>) -> anyhow::Result<()>;
    /// The next event; `None` when the server closed the stream.
    async fn next(&mut self) -> anyhow::Result<Option<SseEvent>>;
}

/// The server sends a keep-alive every 15 s; this long without a byte means
/// the connection died without closing (a lost network, say).
const SILENCE: Duration = Duration::from_secs(45);

/// `GET /api/tasks/{id}/stream`: the task's events as Server-Sent Events.
pub(crate) struct TaskStream<'a> {
    api: &'a Api,
    task_id: &'a str,
    body: Option<reqwest::Response>,
    parser: SseParser,
    ready: VecDeque<SseEvent>,
}

impl<'a> TaskStream<'a> {
    pub(crate) fn new(api: &'a Api, task_id: &'a str) -> Self {
        Self {
            api,
            task_id,
            body: None,
            parser: SseParser::default(),
            ready: VecDeque::new(),
        }
    }
}

impl EventSource for TaskStream<'_> {
    async fn open(&mut self, after: Option<i64>) -> anyhow::Result<()> {
        self.body = None;
        self.parser = SseParser::default();
        self.ready.clear();
        let mut request = self
            .api
            .request(Method::GET, &["api", "tasks", self.task_id, "stream"])
            .header(header::ACCEPT, "text/event-stream");
        if let Some(position) = after {
            request = request.header("Last-Event-ID", position.to_string());
        }
        // No overall timeout: the stream lasts as long as the task.
        let response = tokio::time::timeout(SILENCE, request.send())
            .await
            .context("the server did not answer")??;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(ApiError::from_body(status, &body).into());
        }
        self.body = Some(response);
        Ok(())
    }

    async fn next(&mut self) -> anyhow::Result<Option<SseEvent>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            let Some(body) = self.body.as_mut() else {
                return Ok(None);
            };
            let chunk = tokio::time::timeout(SILENCE, body.chunk())
                .await
                .with_context(|| format!("nothing from the server for {SILENCE:?}"))??;
            match chunk {
                Some(bytes) => self.parser.feed(&bytes, &mut self.ready)?,
                None => self.body = None,
            }
        }
    }
}

/// How long to wait before reconnecting (doubling each time), and how many
/// failed connections in a row to tolerate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub interval: Duration,
    pub retries: u32,
}

impl Pace {
    pub(crate) const DEFAULT: Pace = Pace {
        interval: Duration::from_millis(250),
        retries: 5,
    };
}

/// Follows a task to completion, printing its log to `out` as it grows, and
/// returns the exit code: 0 if the task succeeded, else 1. A dropped
/// connection is reopened after the last line printed, so no line is lost
/// or printed twice.
pub(crate) async fn follow(
    source: &mut impl EventSource,
    out: &mut (dyn Write + Send),
    color: bool,
    pace: Pace,
) -> anyhow::Result<i32> {
    let mut watcher = Watcher::default();
    // Failures are retried only once the server has answered: failing from
    // the start means a wrong --server, not a blip worth waiting out.
    let (mut reached, mut failures) = (false, 0);
    loop {
        let opened = tokio::time::Instant::now();
        let printed = watcher.last_position;
        let lost = match source.open(watcher.last_position).await {
            Ok(()) => {
                reached = true;
                loop {
                    match source.next().await {
                        Ok(Some(event)) => {
                            if let Some(code) = watcher.show(&event, out, color)? {
                                return Ok(code);
                            }
                            out.flush()?;
                        }
                        // Closed before `end`: the server is restarting, or a
                        // proxy cut a long response.
                        Ok(None) => break anyhow::anyhow!("the server closed the stream"),
                        Err(e) => break e,
                    }
                }
            }
            Err(e) if reached && is_transient(&e) => e,
            Err(e) => return Err(e),
        };
        // A connection that brought new lines, or lasted, was a good one: only
        // failures in a row count, so a proxy that cuts long responses now
        // and then is no reason to give up.
        if watcher.last_position != printed || opened.elapsed() >= SILENCE {
            failures = 0;
        }
        if failures >= pace.retries {
            return Err(lost.context("lost contact with the server"));
        }
        failures += 1;
        let delay = pace.interval * 2u32.pow(failures);
        eprintln!(
            "Lost contact with the server ({}); reconnecting in {delay:?} ({failures}/{})",
            lost.root_cause(),
            pace.retries
        );
        tokio::time::sleep(delay).await;
    }
}

/// What has been printed of one task, and what each event adds to it.
#[derive(Debug, Default)]
pub(crate) struct Watcher {
    log: LogFollower,
    /// The position of the last line printed: where to resume.
    last_position: Option<i64>,
    /// Whether the task was last seen waiting for a person.
    interrupted: bool,
}

impl Watcher {
    /// Prints what `event` adds; once the task has ended, returns its exit code.
    pub(crate) fn show(
        &mut self,
        event: &SseEvent,
        out: &mut dyn Write,
        color: bool,
    ) -> anyhow::Result<Option<i32>> {
        match event.event.as_str() {
            "activity" => self.log.activity(parse(event)?),
            "log" => {
                let line: LogEvent = parse(event)?;
                // A server resuming from the position never repeats a line;
                // this keeps the promise even if one did.
                if self.last_position.is_some_and(|p| line.position <= p) {
                    return Ok(None);
                }
                self.last_position = Some(line.position);
                render(out, &self.log.line(&line), color)?;
            }
            "task" => {
                let task: Task = parse(event)?;
                // Without this a task paused for guided failure looks merely slow.
                if task.has_pending_interruptions && !self.interrupted {
                    writeln!(
                        out,
                        "Task {} is waiting for someone to respond to an interruption (manual intervention or guided failure)",
                        task.id
                    )?;
                }
                self.interrupted = task.has_pending_interruptions;
            }
            "end" => {
                let task: Task = parse(event)?;
                write!(out, "Task {} finished: {}", task.id, task.state)?;
                match task.error_message.as_deref().filter(|m| !m.is_empty()) {
                    Some(message) => writeln!(out, ": {message}")?,
                    None => writeln!(out)?,
                }
                out.flush()?;
                return Ok(Some(if task.state == "Success" { 0 } else { 1 }));
            }
            // Events a newer server may add.
            _ => {}
        }
        Ok(None)
    }
}

fn parse<T: DeserializeOwned>(event: &SseEvent) -> anyhow::Result<T> {
    serde_json::from_str(&event.data)
        .with_context(|| format!("the server sent a malformed '{}' event", event.event))
}

/// What to print next: a heading naming an activity, or one of its log lines.
#[derive(Debug)]
pub(crate) enum Output<'a> {
    Header { depth: usize, name: String },
    Line { depth: usize, log: &'a LogElement },
}

#[derive(Debug)]
struct Node {
    parent: Option<String>,
    name: String,
}

/// Knows the activity tree, and which headings stand above the last line
/// printed, so that each line is printed under its own.
#[derive(Debug, Default)]
pub(crate) struct LogFollower {
    activities: HashMap<String, Node>,
    /// The ids of the activities whose headers stand above the last line
    /// printed, root first. When output moves to another branch (targets
    /// running in parallel) the headers of the new branch are printed again,
    /// so no line appears under the wrong heading.
    context: Vec<String>,
}

impl LogFollower {
    /// Learns of an activity, or of a change to one.
    pub(crate) fn activity(&mut self, a: ActivityEvent) {
        self.activities.insert(
            a.id,
            Node {
                parent: a.parent_id,
                name: a.name,
            },
        );
    }

    /// The headers not already shown, then the line itself. A line of an
    /// unknown activity is printed at the top level, without a heading.
    pub(crate) fn line<'a>(&mut self, line: &'a LogEvent) -> Vec<Output<'a>> {
        let path = self.path_to(&line.activity_id);
        let mut out = Vec::new();
        self.enter(&path, &mut out);
        out.push(Output::Line {
            depth: path.len(),
            log: &line.element,
        });
        out
    }

    /// The ids from the root down to `id`.
    fn path_to(&self, id: &str) -> Vec<String> {
        let mut path = Vec::new();
        let mut at = Some(id);
        while let Some(id) = at {
            // The length check stops at a (malformed) cycle.
            let Some(node) = self
                .activities
                .get(id)
                .filter(|_| path.len() <= self.activities.len())
            else {
                break;
            };
            path.push(id.to_owned());
            at = node.parent.as_deref();
        }
        path.reverse();
        path
    }

    /// Emits the headers of `path` that are not already above the last line.
    fn enter(&mut self, path: &[String], out: &mut Vec<Output<'_>>) {
        let shared = self
            .context
            .iter()
            .zip(path)
            .take_while(|(a, b)| a == b)
            .count();
        self.context.truncate(shared);
        for (depth, id) in path.iter().enumerate().skip(shared) {
            let name = self
                .activities
                .get(id)
                .map(|n| n.name.clone())
                .unwrap_or_default();
            out.push(Output::Header { depth, name });
            self.context.push(id.clone());
        }
    }
}

const INDENT: &str = "  ";
/// Width of `HH:MM:SS  Category ` before a message, for continuation lines.
const PREFIX_WIDTH: usize = 8 + 2 + 8 + 1;

pub(crate) fn render(
    out: &mut dyn Write,
    items: &[Output<'_>],
    color: bool,
) -> std::io::Result<()> {
    let paint = |code: &str, text: &str| match (color, code) {
        (true, code) if !code.is_empty() => format!("\x1b[{code}m{text}\x1b[0m"),
        _ => text.to_owned(),
    };
    for item in items {
        match item {
            Output::Header { depth, name } => {
                writeln!(out, "{}{}", INDENT.repeat(*depth), paint("1", name))?;
            }
            Output::Line { depth, log } => {
                let indent = INDENT.repeat(*depth);
                let code = match log.category.as_str() {
                    "Verbose" => "2",
                    "Warning" => "33",
                    "Error" | "Fatal" => "31",
                    "Highlight" => "1;36",
                    _ => "",
                };
                // A multi-line message keeps its later lines under its first.
                let text = log
                    .message_text
                    .lines()
                    .collect::<Vec<_>>()
                    .join(&format!("\n{indent}{:PREFIX_WIDTH$}", ""));
                let line = format!("{}  {:<8} {text}", clock(&log.occurred_at), log.category);
                writeln!(out, "{indent}{}", paint(code, &line))?;
            }
        }
    }
    Ok(())
}

/// `HH:MM:SS` out of an ISO 8601 timestamp, in the offset the server wrote.
fn clock(occurred_at: &str) -> &str {
    occurred_at
        .split_once('T')
        .and_then(|(_, time)| time.get(..8))
        .unwrap_or(occurred_at)
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use serde_json::json;

    use super::*;

    fn sse(event: &str, data: serde_json::Value) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.to_string(),
        }
    }

    fn task(event: &str, state: &str) -> SseEvent {
        sse(
            event,
            json!({
                "Id": "ServerTasks-5",
                "Name": "Deploy",
                "Description": "Deploy Hello release 0.0.1 to Dev",
                "State": state,
                "IsCompleted": matches!(state, "Success" | "Failed" | "Canceled" | "TimedOut"),
                "FinishedSuccessfully": state == "Success",
                "ErrorMessage": if state == "Failed" { "The step failed" } else { "" },
            }),
        )
    }

    fn activity(id: &str, parent: Option<&str>, name: &str) -> SseEvent {
        sse(
            "activity",
            json!({"Id": id, "ParentId": parent, "Name": name, "Status": "Running"}),
        )
    }

    fn log(position: i64, activity: &str, category: &str, second: u32, text: &str) -> SseEvent {
        sse(
            "log",
            json!({
                "Position": position,
                "ActivityId": activity,
                "Category": category,
                "OccurredAt": format!("2024-05-01T10:42:{second:02}.123+00:00"),
                "MessageText": text,
            }),
        )
    }

    /// A task with one step that runs on two targets, `A-a` and `A-b`.
    fn tree() -> Vec<SseEvent> {
        vec![
            activity("ServerTasks-5", None, "Deploy Hello release 0.0.1 to Dev"),
            activity("A-1", Some("ServerTasks-5"), "Step 1: Say hello"),
            activity("A-a", Some("A-1"), "web-1"),
            activity("A-b", Some("A-1"), "web-2"),
            activity("A-2", Some("ServerTasks-5"), "Step 2: Not yet"),
        ]
    }

    fn text(watcher: &mut Watcher, events: &[SseEvent]) -> String {
        let mut out = Vec::new();
        for e in events {
            watcher.show(e, &mut out, false).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_line_is_printed_once_under_its_headings() {
        let mut watcher = Watcher::default();
        text(&mut watcher, &tree());
        assert_eq!(
            text(
                &mut watcher,
                &[
                    log(1, "ServerTasks-5", "Info", 0, "Starting"),
                    log(2, "A-a", "Info", 1, "hello"),
                    log(3, "A-a", "Verbose", 1, "detail"),
                ]
            ),
            "Deploy Hello release 0.0.1 to Dev\n\
             \x20 10:42:00  Info     Starting\n\
             \x20 Step 1: Say hello\n\
             \x20   web-1\n\
             \x20     10:42:01  Info     hello\n\
             \x20     10:42:01  Verbose  detail\n"
        );
        let next = [
            log(4, "A-a", "Warning", 2, "careful"),
            log(5, "A-b", "Highlight", 3, "hi from b"),
        ];
        assert_eq!(
            text(&mut watcher, &next),
            "      10:42:02  Warning  careful\n\
             \x20   web-2\n\
             \x20     10:42:03  Highlight hi from b\n"
        );
        assert_eq!(
            text(&mut watcher, &next),
            "",
            "a line already printed is not printed again"
        );
    }

    #[test]
    fn returning_to_an_earlier_branch_restates_its_heading() {
        let mut watcher = Watcher::default();
        text(&mut watcher, &tree());
        text(
            &mut watcher,
            &[
                log(1, "A-a", "Info", 1, "a1"),
                log(2, "A-b", "Info", 2, "b1"),
            ],
        );
        assert_eq!(
            text(
                &mut watcher,
                &[
                    log(3, "ServerTasks-5", "Info", 3, "root"),
                    log(4, "A-a", "Info", 4, "a2")
                ]
            ),
            "  10:42:03  Info     root\n\
             \x20 Step 1: Say hello\n\
             \x20   web-1\n\
             \x20     10:42:04  Info     a2\n"
        );
    }

    #[test]
    fn multi_line_messages_stay_in_their_column() {
        let mut watcher = Watcher::default();
        text(&mut watcher, &tree());
        assert_eq!(
            text(
                &mut watcher,
                &[log(1, "ServerTasks-5", "Error", 5, "first\nsecond")]
            ),
            "Deploy Hello release 0.0.1 to Dev\n\
             \x20 10:42:05  Error    first\n\
             \x20                    second\n"
        );
    }

    #[test]
    fn a_line_of_an_unknown_activity_is_printed_without_heading() {
        let mut watcher = Watcher::default();
        assert_eq!(
            text(&mut watcher, &[log(1, "A-9", "Info", 1, "stray")]),
            "10:42:01  Info     stray\n"
        );
        // A malformed cycle ends the path rather than the program.
        let looped = [activity("X", Some("Y"), "x"), activity("Y", Some("X"), "y")];
        text(&mut watcher, &looped);
        assert!(text(&mut watcher, &[log(2, "X", "Info", 2, "still")]).contains("still"));
    }

    #[test]
    fn color_wraps_whole_lines_when_asked() {
        let element = LogElement {
            category: "Warning".into(),
            occurred_at: "2024-05-01T10:42:01Z".into(),
            message_text: "careful".into(),
        };
        let mut out = Vec::new();
        render(
            &mut out,
            &[Output::Line {
                depth: 0,
                log: &element,
            }],
            true,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\x1b[33m10:42:01  Warning  careful\x1b[0m\n"
        );
    }

    #[test]
    fn the_parser_reads_events_across_chunks_and_skips_comments() {
        let stream = "event: task\ndata: {\"Id\":1}\n\n: keep-alive\n\n\
                      event: log\r\nid: 7\r\ndata:{\"Position\":7}\r\n\r\n\
                      data: first\ndata: second\n\nevent: lonely\n\n";
        // Every way of cutting the stream into two chunks gives the same events.
        for cut in 0..stream.len() {
            let mut parser = SseParser::default();
            let mut out = VecDeque::new();
            parser.feed(&stream.as_bytes()[..cut], &mut out).unwrap();
            parser.feed(&stream.as_bytes()[cut..], &mut out).unwrap();
            let got: Vec<(String, String)> = out.into_iter().map(|e| (e.event, e.data)).collect();
            assert_eq!(
                got,
                [
                    ("task".into(), "{\"Id\":1}".into()),
                    ("log".into(), "{\"Position\":7}".into()),
                    ("message".into(), "first\nsecond".into()),
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn the_parser_refuses_an_endless_line() {
        let mut parser = SseParser::default();
        let mut out = VecDeque::new();
        let chunk = vec![b'x'; 1 << 20];
        let mut result = Ok(());
        for _ in 0..=(MAX_LINE >> 20) {
            result = parser.feed(&chunk, &mut out);
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err());
    }

    /// Connections, each either refused or a list of events (or errors)
    /// after which it closes; records where each asked to resume.
    #[derive(Default)]
    struct Canned {
        connections: VecDeque<anyhow::Result<VecDeque<anyhow::Result<SseEvent>>>>,
        current: VecDeque<anyhow::Result<SseEvent>>,
        resumed_after: Vec<Option<i64>>,
    }

    impl EventSource for Canned {
        async fn open(&mut self, after: Option<i64>) -> anyhow::Result<()> {
            self.resumed_after.push(after);
            let next = self
                .connections
                .pop_front()
                .expect("connected past the end");
            self.current = next?;
            Ok(())
        }

        async fn next(&mut self) -> anyhow::Result<Option<SseEvent>> {
            self.current.pop_front().transpose()
        }
    }

    /// Runs `follow` over canned connections, as fast as it will go.
    async fn follow_canned(
        connections: Vec<anyhow::Result<Vec<anyhow::Result<SseEvent>>>>,
    ) -> (anyhow::Result<i32>, String, Vec<Option<i64>>) {
        let mut source = Canned {
            connections: connections
                .into_iter()
                .map(|c| c.map(VecDeque::from))
                .collect(),
            ..Default::default()
        };
        let mut out = Vec::new();
        let pace = Pace {
            interval: Duration::from_millis(1),
            retries: 2,
        };
        let code = follow(&mut source, &mut out, false, pace).await;
        (code, String::from_utf8(out).unwrap(), source.resumed_after)
    }

    fn unavailable() -> anyhow::Error {
        ApiError::from_body(StatusCode::SERVICE_UNAVAILABLE, "").into()
    }

    fn ok(events: Vec<SseEvent>) -> anyhow::Result<Vec<anyhow::Result<SseEvent>>> {
        Ok(events.into_iter().map(Ok).collect())
    }

    #[tokio::test]
    async fn follows_until_completion_through_dropped_connections() {
        let root = || activity("ServerTasks-5", None, "Deploy Hello release 0.0.1 to Dev");
        let (code, out, resumed) = follow_canned(vec![
            // Queued, then the connection closes.
            ok(vec![task("task", "Queued")]),
            Err(unavailable()),
            Ok(vec![
                Ok(task("task", "Executing")),
                Ok(root()),
                Ok(log(1, "ServerTasks-5", "Info", 0, "Starting")),
                Err(unavailable()),
            ]),
            // The server resumes after line 1, but a repeat is ignored anyway.
            ok(vec![
                task("task", "Executing"),
                root(),
                log(1, "ServerTasks-5", "Info", 0, "Starting"),
                log(2, "ServerTasks-5", "Info", 9, "Done"),
                task("task", "Success"),
                task("end", "Success"),
            ]),
        ])
        .await;
        assert_eq!(code.unwrap(), 0);
        assert_eq!(
            out,
            "Deploy Hello release 0.0.1 to Dev\n\
             \x20 10:42:00  Info     Starting\n\
             \x20 10:42:09  Info     Done\n\
             Task ServerTasks-5 finished: Success\n"
        );
        assert_eq!(resumed, [None, None, None, Some(1)]);
    }

    #[tokio::test]
    async fn a_failed_task_exits_1_with_its_error() {
        let (code, out, _) = follow_canned(vec![ok(vec![
            task("task", "Failed"),
            task("end", "Failed"),
        ])])
        .await;
        assert_eq!(code.unwrap(), 1);
        assert_eq!(
            out,
            "Task ServerTasks-5 finished: Failed: The step failed\n"
        );
    }

    #[tokio::test]
    async fn a_pending_interruption_is_announced_once() {
        let mut waiting = task("task", "Executing");
        waiting.data = waiting
            .data
            .replace("\"State\"", "\"HasPendingInterruptions\":true,\"State\"");
        let (code, out, _) = follow_canned(vec![ok(vec![
            waiting.clone(),
            waiting,
            task("task", "Executing"),
            task("end", "Success"),
        ])])
        .await;
        assert_eq!(code.unwrap(), 0);
        assert_eq!(out.matches("waiting for someone").count(), 1, "{out}");
    }

    #[tokio::test]
    async fn gives_up_after_too_many_failures_or_a_real_refusal() {
        let queued = || ok(vec![task("task", "Queued")]);
        let (code, _, _) =
            follow_canned(vec![queued(), Err(unavailable()), Err(unavailable())]).await;
        assert_eq!(
            code.unwrap_err().downcast::<ApiError>().unwrap().status,
            StatusCode::SERVICE_UNAVAILABLE
        );

        // A server that keeps closing the stream before anything new.
        let (code, _, resumed) = follow_canned(vec![queued(), queued(), queued()]).await;
        assert!(code.unwrap_err().to_string().contains("lost contact"));
        assert_eq!(resumed.len(), 3);

        // Never having reached the server, there is no contact to wait for.
        let (code, _, _) = follow_canned(vec![Err(unavailable())]).await;
        assert!(code.is_err());

        let not_found = ApiError::from_body(
            StatusCode::NOT_FOUND,
            r#"{"ErrorMessage": "No task ServerTasks-9"}"#,
        );
        let (code, _, _) = follow_canned(vec![Err(not_found.into())]).await;
        assert_eq!(
            code.unwrap_err().downcast::<ApiError>().unwrap().status,
            StatusCode::NOT_FOUND
        );

        let (code, _, _) = follow_canned(vec![ok(vec![sse("log", json!("nonsense"))])]).await;
        assert!(code
            .unwrap_err()
            .to_string()
            .contains("malformed 'log' event"));
    }
}
