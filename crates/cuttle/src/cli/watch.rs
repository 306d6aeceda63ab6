//! Following a server task: fetch its details, print the log lines not yet
//! printed, stop when the task completes.
//!
//! The pieces are kept apart so each can change alone: [`fetch_details`] is
//! the only code that talks to the server (polling today, a streaming
//! endpoint later), [`LogFollower`] works out what is new in the log tree
//! without any I/O, and [`render`] decides how it looks.

use std::{collections::HashMap, future::Future, io::Write, time::Duration};

use reqwest::Method;
use serde::Deserialize;

use super::api::{is_transient, Api};

/// `GET /api/tasks/{id}/details`: the task and its whole log tree.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TaskDetails {
    pub task: Task,
    #[serde(default)]
    pub activity_logs: Vec<Activity>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Task {
    pub id: String,
    pub state: String,
    pub is_completed: bool,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub has_pending_interruptions: bool,
}

/// A node of the log tree: the task, a step, a target, …
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Activity {
    pub id: String,
    pub name: String,
    pub children: Vec<Activity>,
    pub log_elements: Vec<LogElement>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct LogElement {
    pub category: String,
    pub occurred_at: String,
    pub message_text: String,
}

/// The one place the watcher gets a task's progress from.
pub(crate) async fn fetch_details(api: &Api, task_id: &str) -> anyhow::Result<TaskDetails> {
    let request = api
        .request(Method::GET, &["api", "tasks", task_id, "details"])
        .query(&[("verbose", "true")])
        // A hung poll would freeze the watch silently; a timed-out one is retried.
        .timeout(Duration::from_secs(30));
    api.send(request).await
}

/// How often to poll, and how many failed polls in a row to tolerate.
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
/// returns the exit code: 0 if the task succeeded, else 1.
pub(crate) async fn follow<F, Fut>(
    mut fetch: F,
    out: &mut (dyn Write + Send),
    color: bool,
    pace: Pace,
) -> anyhow::Result<i32>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<TaskDetails>>,
{
    let mut follower = LogFollower::default();
    // Failed polls are retried only once the server has answered: failing from
    // the start means a wrong --server, not a blip worth waiting out.
    let (mut reached, mut failures) = (false, 0);
    let mut interrupted = false;
    loop {
        let details = match fetch().await {
            Ok(details) => details,
            Err(e) if reached && failures < pace.retries && is_transient(&e) => {
                failures += 1;
                let delay = pace.interval * 2u32.pow(failures);
                eprintln!(
                    "Lost contact with the server ({}); retrying in {delay:?} ({failures}/{})",
                    e.root_cause(),
                    pace.retries
                );
                tokio::time::sleep(delay).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        (reached, failures) = (true, 0);
        render(out, &follower.update(&details.activity_logs), color)?;

        let task = &details.task;
        if task.is_completed {
            write!(out, "Task {} finished: {}", task.id, task.state)?;
            match task.error_message.as_deref().filter(|m| !m.is_empty()) {
                Some(message) => writeln!(out, ": {message}")?,
                None => writeln!(out)?,
            }
            out.flush()?;
            return Ok(if task.state == "Success" { 0 } else { 1 });
        }
        // Without this a task paused for guided failure looks merely slow.
        if task.has_pending_interruptions && !interrupted {
            writeln!(
                out,
                "Task {} is waiting for someone to respond to an interruption (manual intervention or guided failure)",
                task.id
            )?;
        }
        interrupted = task.has_pending_interruptions;
        out.flush()?;
        tokio::time::sleep(pace.interval).await;
    }
}

/// What to print next: a heading naming an activity, or one of its log lines.
#[derive(Debug)]
pub(crate) enum Output<'a> {
    Header { depth: usize, name: &'a str },
    Line { depth: usize, log: &'a LogElement },
}

/// Remembers what has been printed of a task's log tree, so that each new
/// document yields only the lines not yet seen.
#[derive(Debug, Default)]
pub(crate) struct LogFollower {
    /// How many log elements of each activity (by id) have been printed; the
    /// server only ever appends to an activity's log.
    printed: HashMap<String, usize>,
    /// The ids of the activities whose headers stand above the last line
    /// printed, root first. When output moves to another branch (targets
    /// running in parallel) the headers of the new branch are printed again,
    /// so no line appears under the wrong heading.
    context: Vec<String>,
}

impl LogFollower {
    /// The headers and lines of `roots` not printed yet, in tree order.
    pub(crate) fn update<'a>(&mut self, roots: &'a [Activity]) -> Vec<Output<'a>> {
        let mut out = Vec::new();
        let mut path = Vec::new();
        for root in roots {
            self.walk(root, &mut path, &mut out);
        }
        out
    }

    fn walk<'a>(
        &mut self,
        activity: &'a Activity,
        path: &mut Vec<&'a Activity>,
        out: &mut Vec<Output<'a>>,
    ) {
        path.push(activity);
        let printed = self.printed.get(&activity.id).copied().unwrap_or(0);
        let new = activity.log_elements.get(printed..).unwrap_or_default();
        if !new.is_empty() {
            self.enter(path, out);
            let depth = path.len();
            out.extend(new.iter().map(|log| Output::Line { depth, log }));
            self.printed
                .insert(activity.id.clone(), activity.log_elements.len());
        }
        for child in &activity.children {
            self.walk(child, path, out);
        }
        path.pop();
    }

    /// Emits the headers of `path` that are not already above the last line.
    fn enter<'a>(&mut self, path: &[&'a Activity], out: &mut Vec<Output<'a>>) {
        let shared = self
            .context
            .iter()
            .zip(path)
            .take_while(|(id, activity)| **id == activity.id)
            .count();
        self.context.truncate(shared);
        for (depth, activity) in path.iter().enumerate().skip(shared) {
            out.push(Output::Header {
                depth,
                name: &activity.name,
            });
            self.context.push(activity.id.clone());
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
    use std::collections::VecDeque;

    use reqwest::StatusCode;
    use serde_json::json;

    use super::*;
    use crate::cli::api::ApiError;

    fn log(category: &str, second: u32, text: &str) -> serde_json::Value {
        json!({
            "Category": category,
            "OccurredAt": format!("2024-05-01T10:42:{second:02}.123+00:00"),
            "MessageText": text,
        })
    }

    fn details(state: &str, logs: serde_json::Value) -> TaskDetails {
        serde_json::from_value(json!({
            "Task": {
                "Id": "ServerTasks-5",
                "Name": "Deploy",
                "Description": "Deploy Hello release 0.0.1 to Dev",
                "State": state,
                "IsCompleted": matches!(state, "Success" | "Failed" | "Canceled" | "TimedOut"),
                "FinishedSuccessfully": state == "Success",
                "ErrorMessage": if state == "Failed" { "The step failed" } else { "" },
            },
            "Progress": {"ProgressPercentage": 0},
            "ActivityLogs": logs,
        }))
        .unwrap()
    }

    /// A task with one step that runs on two targets, `a` then `b`.
    fn tree(
        root: Vec<serde_json::Value>,
        a: Vec<serde_json::Value>,
        b: Option<Vec<serde_json::Value>>,
    ) -> serde_json::Value {
        let mut targets = vec![
            json!({"Id": "A-a", "Name": "web-1", "Status": "Running", "Children": [], "LogElements": a}),
        ];
        if let Some(b) = b {
            targets
                .push(json!({"Id": "A-b", "Name": "web-2", "Status": "Running", "LogElements": b}));
        }
        json!([{
            "Id": "ServerTasks-5", "Name": "Deploy Hello release 0.0.1 to Dev", "Status": "Running",
            "LogElements": root,
            "Children": [
                {"Id": "A-1", "Name": "Step 1: Say hello", "Status": "Running", "LogElements": [], "Children": targets},
                {"Id": "A-2", "Name": "Step 2: Not yet", "Status": "Pending", "LogElements": [], "Children": []},
            ],
        }])
    }

    fn text(follower: &mut LogFollower, doc: &TaskDetails) -> String {
        let mut out = Vec::new();
        render(&mut out, &follower.update(&doc.activity_logs), false).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_line_is_printed_once_in_tree_order() {
        let first = details(
            "Executing",
            tree(
                vec![log("Info", 0, "Starting")],
                vec![log("Info", 1, "hello"), log("Verbose", 1, "detail")],
                None,
            ),
        );
        let second = details(
            "Executing",
            tree(
                vec![log("Info", 0, "Starting")],
                vec![
                    log("Info", 1, "hello"),
                    log("Verbose", 1, "detail"),
                    log("Warning", 2, "careful"),
                ],
                Some(vec![log("Highlight", 3, "hi from b")]),
            ),
        );
        let mut follower = LogFollower::default();
        assert_eq!(
            text(&mut follower, &first),
            "Deploy Hello release 0.0.1 to Dev\n\
             \x20 10:42:00  Info     Starting\n\
             \x20 Step 1: Say hello\n\
             \x20   web-1\n\
             \x20     10:42:01  Info     hello\n\
             \x20     10:42:01  Verbose  detail\n"
        );
        assert_eq!(
            text(&mut follower, &second),
            "      10:42:02  Warning  careful\n\
             \x20   web-2\n\
             \x20     10:42:03  Highlight hi from b\n"
        );
        assert_eq!(
            text(&mut follower, &second),
            "",
            "nothing new, nothing printed"
        );
    }

    #[test]
    fn returning_to_an_earlier_branch_restates_its_heading() {
        let mut follower = LogFollower::default();
        text(
            &mut follower,
            &details(
                "Executing",
                tree(
                    vec![],
                    vec![log("Info", 1, "a1")],
                    Some(vec![log("Info", 2, "b1")]),
                ),
            ),
        );
        let next = details(
            "Executing",
            tree(
                vec![log("Info", 3, "root")],
                vec![log("Info", 1, "a1"), log("Info", 4, "a2")],
                Some(vec![log("Info", 2, "b1")]),
            ),
        );
        assert_eq!(
            text(&mut follower, &next),
            "  10:42:03  Info     root\n\
             \x20 Step 1: Say hello\n\
             \x20   web-1\n\
             \x20     10:42:04  Info     a2\n"
        );
    }

    #[test]
    fn multi_line_messages_stay_in_their_column() {
        let mut follower = LogFollower::default();
        let doc = details(
            "Executing",
            tree(vec![log("Error", 5, "first\nsecond")], vec![], None),
        );
        assert_eq!(
            text(&mut follower, &doc),
            "Deploy Hello release 0.0.1 to Dev\n\
             \x20 10:42:05  Error    first\n\
             \x20                    second\n"
        );
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

    /// Runs `follow` over canned answers, as fast as it will go.
    async fn follow_canned(
        answers: Vec<anyhow::Result<TaskDetails>>,
    ) -> (anyhow::Result<i32>, String) {
        let mut answers = VecDeque::from(answers);
        let mut out = Vec::new();
        let pace = Pace {
            interval: Duration::from_millis(1),
            retries: 2,
        };
        let code = follow(
            || std::future::ready(answers.pop_front().expect("polled past the end")),
            &mut out,
            false,
            pace,
        )
        .await;
        (code, String::from_utf8(out).unwrap())
    }

    fn unavailable() -> anyhow::Result<TaskDetails> {
        Err(ApiError::from_body(StatusCode::SERVICE_UNAVAILABLE, "").into())
    }

    #[tokio::test]
    async fn follows_until_completion_through_transient_errors() {
        let (code, out) = follow_canned(vec![
            Ok(details("Queued", json!([]))),
            unavailable(),
            unavailable(),
            Ok(details(
                "Executing",
                tree(vec![log("Info", 0, "Starting")], vec![], None),
            )),
            unavailable(),
            Ok(details(
                "Success",
                tree(
                    vec![log("Info", 0, "Starting"), log("Info", 9, "Done")],
                    vec![],
                    None,
                ),
            )),
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
    }

    #[tokio::test]
    async fn a_failed_task_exits_1_with_its_error() {
        let (code, out) = follow_canned(vec![Ok(details("Failed", json!([])))]).await;
        assert_eq!(code.unwrap(), 1);
        assert_eq!(
            out,
            "Task ServerTasks-5 finished: Failed: The step failed\n"
        );
    }

    #[tokio::test]
    async fn gives_up_after_too_many_failures_or_a_real_refusal() {
        let queued = || Ok(details("Queued", json!([])));
        let (code, _) =
            follow_canned(vec![queued(), unavailable(), unavailable(), unavailable()]).await;
        assert_eq!(
            code.unwrap_err().downcast::<ApiError>().unwrap().status,
            StatusCode::SERVICE_UNAVAILABLE
        );

        // Never having reached the server, there is no contact to wait for.
        let (code, _) = follow_canned(vec![unavailable()]).await;
        assert!(code.is_err());

        let not_found = ApiError::from_body(
            StatusCode::NOT_FOUND,
            r#"{"ErrorMessage": "No task ServerTasks-9"}"#,
        );
        let (code, _) = follow_canned(vec![Err(not_found.into())]).await;
        assert_eq!(
            code.unwrap_err().downcast::<ApiError>().unwrap().status,
            StatusCode::NOT_FOUND
        );
    }
}
