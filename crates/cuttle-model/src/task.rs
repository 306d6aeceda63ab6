//! Server tasks (deployments, later health checks and more) and the activity
//! log tree they write: task → step → target → lines.

use crate::time::{human_duration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum TaskState {
    Queued,
    Executing,
    Cancelling,
    Success,
    Failed,
    Canceled,
    TimedOut,
}

impl TaskState {
    pub const ALL: [TaskState; 7] = [
        TaskState::Queued,
        TaskState::Executing,
        TaskState::Cancelling,
        TaskState::Success,
        TaskState::Failed,
        TaskState::Canceled,
        TaskState::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "Queued",
            TaskState::Executing => "Executing",
            TaskState::Cancelling => "Cancelling",
            TaskState::Success => "Success",
            TaskState::Failed => "Failed",
            TaskState::Canceled => "Canceled",
            TaskState::TimedOut => "TimedOut",
        }
    }

    pub fn is_completed(self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failed | TaskState::Canceled | TaskState::TimedOut
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("'{s}' is not a task state"))
    }
}

/// A server task as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ServerTask {
    pub id: String,
    pub space_id: Option<String>,
    pub name: String,
    pub description: String,
    pub arguments: Value,
    pub state: TaskState,
    pub is_completed: bool,
    pub finished_successfully: bool,
    pub has_pending_interruptions: bool,
    pub has_warnings_or_errors: bool,
    pub error_message: Option<String>,
    pub queue_time: Timestamp,
    pub queue_time_expiry: Option<Timestamp>,
    pub start_time: Option<Timestamp>,
    pub completed_time: Option<Timestamp>,
    pub last_updated_time: Timestamp,
    pub duration: String,
    pub server_node: Option<String>,
    pub can_rerun: bool,
    pub has_been_picked_up_by_processor: bool,
    pub project_id: Option<String>,
    pub environment_id: Option<String>,
    pub deployment_id: Option<String>,
}

impl ServerTask {
    /// Fills the fields that follow from state and times.
    pub fn derive_fields(&mut self, now: Timestamp) {
        self.is_completed = self.state.is_completed();
        self.finished_successfully = self.state == TaskState::Success;
        self.has_been_picked_up_by_processor = self.start_time.is_some();
        let end = self.completed_time.unwrap_or(now);
        self.duration = match self.start_time {
            Some(start) => human_duration(end.millis() - start.millis()),
            None => human_duration(0),
        };
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ActivityStatus {
    Pending,
    Running,
    Success,
    Failed,
    Skipped,
    SuccessWithWarning,
    Canceled,
}

impl ActivityStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityStatus::Pending => "Pending",
            ActivityStatus::Running => "Running",
            ActivityStatus::Success => "Success",
            ActivityStatus::Failed => "Failed",
            ActivityStatus::Skipped => "Skipped",
            ActivityStatus::SuccessWithWarning => "SuccessWithWarning",
            ActivityStatus::Canceled => "Canceled",
        }
    }

    pub fn parse(s: &str) -> ActivityStatus {
        match s {
            "Running" => ActivityStatus::Running,
            "Success" => ActivityStatus::Success,
            "Failed" => ActivityStatus::Failed,
            "Skipped" => ActivityStatus::Skipped,
            "SuccessWithWarning" => ActivityStatus::SuccessWithWarning,
            "Canceled" => ActivityStatus::Canceled,
            _ => ActivityStatus::Pending,
        }
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
pub enum LogCategory {
    Verbose,
    Info,
    Highlight,
    Warning,
    Error,
    Fatal,
}

impl LogCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            LogCategory::Verbose => "Verbose",
            LogCategory::Info => "Info",
            LogCategory::Highlight => "Highlight",
            LogCategory::Warning => "Warning",
            LogCategory::Error => "Error",
            LogCategory::Fatal => "Fatal",
        }
    }

    pub fn parse(s: &str) -> LogCategory {
        match s {
            "Verbose" => LogCategory::Verbose,
            "Highlight" => LogCategory::Highlight,
            "Warning" => LogCategory::Warning,
            "Error" => LogCategory::Error,
            "Fatal" => LogCategory::Fatal,
            _ => LogCategory::Info,
        }
    }
}

/// One node of a task's activity log as the store keeps it (flat, with a parent).
#[derive(Clone, Debug, PartialEq)]
pub struct Activity {
    pub id: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub status: ActivityStatus,
    pub started: Option<Timestamp>,
    pub ended: Option<Timestamp>,
    pub show_at_summary_level: bool,
    /// What the activity last said of its progress, 0 to 100.
    pub progress_percentage: Option<i64>,
    pub progress_message: Option<String>,
}

/// One log line as the store keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub seq: i64,
    pub activity_id: String,
    pub category: LogCategory,
    pub occurred_at: Timestamp,
    pub message: String,
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct LogElement {
    pub category: LogCategory,
    pub occurred_at: Timestamp,
    pub message_text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ActivityElement {
    pub id: String,
    pub name: String,
    pub status: ActivityStatus,
    pub started: Option<Timestamp>,
    pub ended: Option<Timestamp>,
    #[schema(no_recursion)]
    pub children: Vec<ActivityElement>,
    pub show_at_summary_level: bool,
    pub log_elements: Vec<LogElement>,
    pub progress_percentage: i64,
    pub progress_message: Option<String>,
}

/// Assembles the flat activities and lines (each in creation order) into the
/// tree the API returns. Lines whose activity is unknown are dropped rather
/// than misattributed. `with_verbose` false leaves out Verbose lines.
pub fn build_activity_tree(
    activities: &[Activity],
    lines: &[LogLine],
    with_verbose: bool,
) -> Vec<ActivityElement> {
    let mut by_parent: HashMap<Option<&str>, Vec<&Activity>> = HashMap::new();
    for a in activities {
        by_parent.entry(a.parent_id.as_deref()).or_default().push(a);
    }
    let mut lines_by_activity: HashMap<&str, Vec<LogElement>> = HashMap::new();
    for l in lines {
        if !with_verbose && l.category == LogCategory::Verbose {
            continue;
        }
        lines_by_activity
            .entry(l.activity_id.as_str())
            .or_default()
            .push(LogElement {
                category: l.category,
                occurred_at: l.occurred_at,
                message_text: l.message.clone(),
                detail: l.detail.clone(),
            });
    }

    fn build(
        parent: Option<&str>,
        by_parent: &HashMap<Option<&str>, Vec<&Activity>>,
        lines: &mut HashMap<&str, Vec<LogElement>>,
    ) -> Vec<ActivityElement> {
        let Some(children) = by_parent.get(&parent) else {
            return vec![];
        };
        children
            .iter()
            .map(|a| {
                let done = !matches!(a.status, ActivityStatus::Pending | ActivityStatus::Running);
                ActivityElement {
                    id: a.id.clone(),
                    name: a.name.clone(),
                    status: a.status,
                    started: a.started,
                    ended: a.ended,
                    children: build(Some(a.id.as_str()), by_parent, lines),
                    show_at_summary_level: a.show_at_summary_level,
                    log_elements: lines.remove(a.id.as_str()).unwrap_or_default(),
                    progress_percentage: if done {
                        100
                    } else {
                        a.progress_percentage.unwrap_or(0)
                    },
                    progress_message: a.progress_message.clone(),
                }
            })
            .collect()
    }
    build(None, &by_parent, &mut lines_by_activity)
}

/// How far a task is, 0 to 100: the average over its steps (the root's
/// children), a finished step counting 100 and a running one what it or its
/// targets report.
pub fn task_progress(tree: &[ActivityElement], completed: bool) -> i64 {
    if completed {
        return 100;
    }
    let Some(steps) = tree.first().map(|root| &root.children) else {
        return 0;
    };
    if steps.is_empty() {
        return 0;
    }
    let of_step = |s: &ActivityElement| -> i64 {
        let targets = if s.children.is_empty() {
            0
        } else {
            s.children
                .iter()
                .map(|c| c.progress_percentage)
                .sum::<i64>()
                / s.children.len() as i64
        };
        s.progress_percentage.max(targets)
    };
    let total: i64 = steps.iter().map(of_step).sum();
    // Never 100 while running: the last step's ending is still to come.
    (total / steps.len() as i64).min(99)
}

/// The whole log as plain text, indented by depth. Within a node, its own
/// lines and its children are interleaved in time order, as they happened.
/// A reader of a long log writes the same text a piece at a time with
/// [`raw_heading`] and [`raw_line`].
pub fn render_raw_log(tree: &[ActivityElement]) -> String {
    enum Entry<'a> {
        Line(&'a LogElement),
        Child(&'a ActivityElement),
    }
    fn walk(out: &mut String, n: &ActivityElement, depth: usize) {
        raw_heading(out, &n.name, n.status, depth);
        let mut entries: Vec<(Option<Timestamp>, Entry)> = n
            .log_elements
            .iter()
            .map(|l| (Some(l.occurred_at), Entry::Line(l)))
            .collect();
        entries.extend(n.children.iter().map(|c| (c.started, Entry::Child(c))));
        // Stable sort keeps creation order among equal times; unstarted children go last.
        entries.sort_by_key(|(t, _)| (t.is_none(), *t));
        for (_, e) in entries {
            match e {
                Entry::Line(l) => {
                    raw_line(out, l.occurred_at, l.category, &l.message_text, depth + 1)
                }
                Entry::Child(c) => walk(out, c, depth + 1),
            }
        }
    }
    let mut out = String::new();
    for n in tree {
        walk(&mut out, n, 0);
    }
    out
}

/// The raw log's line naming an activity `depth` levels down.
pub fn raw_heading(out: &mut String, name: &str, status: ActivityStatus, depth: usize) {
    indent(out, depth);
    out.push_str(name);
    out.push_str(" [");
    out.push_str(status.as_str());
    out.push_str("]\n");
}

/// The raw log's text of one log line, under an activity `depth - 1`
/// levels down.
pub fn raw_line(
    out: &mut String,
    occurred_at: Timestamp,
    category: LogCategory,
    message: &str,
    depth: usize,
) {
    use std::fmt::Write;
    indent(out, depth);
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{} {:<8} {}", occurred_at, category.as_str(), message);
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Whether the raw log shows a line at `line_time` before a child activity
/// that started at `child_started`: lines come first at equal times, and
/// children that never started come after every line.
pub fn raw_line_precedes(line_time: Timestamp, child_started: Option<Timestamp>) -> bool {
    child_started.is_none_or(|started| line_time <= started)
}

/// The first element of an activity whose older lines were left out of an
/// answer, saying how many and where all of them are.
pub fn omitted_lines_note(omitted: i64, task_id: &str, occurred_at: Timestamp) -> LogElement {
    LogElement {
        category: LogCategory::Info,
        occurred_at,
        message_text: format!(
            "{omitted} earlier line{} of this activity are not shown here; \
             the raw log (/api/tasks/{task_id}/raw) has every line",
            if omitted == 1 { "" } else { "s" }
        ),
        detail: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(id: &str, parent: Option<&str>) -> Activity {
        Activity {
            id: id.into(),
            parent_id: parent.map(Into::into),
            name: format!("name {id}"),
            status: ActivityStatus::Success,
            started: None,
            ended: None,
            show_at_summary_level: true,
            progress_percentage: None,
            progress_message: None,
        }
    }

    fn line(seq: i64, activity: &str, category: LogCategory) -> LogLine {
        LogLine {
            seq,
            activity_id: activity.into(),
            category,
            occurred_at: Timestamp::from_millis(seq),
            message: format!("line {seq}"),
            detail: None,
        }
    }

    #[test]
    fn builds_tree_in_order() {
        let acts = vec![
            act("t", None),
            act("s1", Some("t")),
            act("w", Some("s1")),
            act("s2", Some("t")),
        ];
        let lines = vec![
            line(1, "w", LogCategory::Info),
            line(2, "w", LogCategory::Verbose),
            line(3, "s2", LogCategory::Error),
            line(4, "ghost", LogCategory::Info),
        ];
        let tree = build_activity_tree(&acts, &lines, true);
        assert_eq!(tree.len(), 1);
        let root = &tree[0];
        assert_eq!(
            root.children
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>(),
            ["s1", "s2"]
        );
        assert_eq!(root.children[0].children[0].log_elements.len(), 2);
        assert_eq!(root.children[1].log_elements[0].message_text, "line 3");

        let quiet = build_activity_tree(&acts, &lines, false);
        assert_eq!(quiet[0].children[0].children[0].log_elements.len(), 1);
        let raw = render_raw_log(&tree);
        assert!(raw.contains("line 3"), "{raw}");
        assert!(!raw.contains("line 4"));
    }

    #[test]
    fn states() {
        assert_eq!("success".parse::<TaskState>(), Ok(TaskState::Success));
        assert!("bogus".parse::<TaskState>().is_err());
        assert!(TaskState::Canceled.is_completed());
        assert!(!TaskState::Cancelling.is_completed());
    }
}
