//! Following a task live: its state, its activity tree and its log lines as
//! they are written, ending once the task is complete and every line is out.
//! The API serves this as Server-Sent Events; nothing here knows about HTTP.
//!
//! The store is the only source: a follower reads lines after its position,
//! a page at a time, so memory stays bounded however long the log, and a
//! slow reader only slows its own reads. It reads again when the engine
//! signals the task changed (lines or activities stored, task ended) and, as
//! a fallback, every [`FALLBACK`], so a task run by another server node
//! sharing the PostgreSQL database streams too, a little later.

use crate::{Instance, Result, ServiceError};
use cuttle_engine::signal::TaskWatch;
use cuttle_model::task::{Activity, ActivityStatus, LogCategory, LogLine};
use cuttle_model::{ServerTask, TaskState, Timestamp};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Lines read per query.
pub const PAGE: i64 = 500;
/// How often to read without a signal (a task running on another node).
pub const FALLBACK: Duration = Duration::from_secs(1);
/// Rounds of reading are at least this far apart: a chatty script signals
/// on every batch it stores, and each round costs three queries.
const MIN_GAP: Duration = Duration::from_millis(100);

/// One log line; `Position` orders a task's lines and is what a reader
/// resumes after.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct LogEvent {
    pub position: i64,
    pub activity_id: String,
    pub category: LogCategory,
    pub message_text: String,
    pub occurred_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One node of the activity tree (without its lines or children).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ActivityEvent {
    pub id: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub status: ActivityStatus,
    pub started: Option<Timestamp>,
    pub ended: Option<Timestamp>,
    pub show_at_summary_level: bool,
    pub progress_percentage: Option<i64>,
    pub progress_message: Option<String>,
}

impl From<Activity> for ActivityEvent {
    fn from(a: Activity) -> Self {
        ActivityEvent {
            id: a.id,
            parent_id: a.parent_id,
            name: a.name,
            status: a.status,
            started: a.started,
            ended: a.ended,
            show_at_summary_level: a.show_at_summary_level,
            progress_percentage: a.progress_percentage,
            progress_message: a.progress_message,
        }
    }
}

impl From<LogLine> for LogEvent {
    fn from(l: LogLine) -> Self {
        LogEvent {
            position: l.seq,
            activity_id: l.activity_id,
            category: l.category,
            message_text: l.message,
            occurred_at: l.occurred_at,
            detail: l.detail,
        }
    }
}

#[derive(Clone, Debug)]
pub enum StreamEvent {
    /// The task, when first read and whenever its state changes.
    Task(ServerTask),
    /// An activity, when first read and whenever it changes. An activity
    /// always comes before the lines written under it.
    Activity(ActivityEvent),
    Log(LogEvent),
    /// The task is complete and every line has been sent; nothing follows.
    End(ServerTask),
}

/// What of a task, when it changes, is worth telling the follower.
#[derive(PartialEq)]
struct TaskShape {
    state: TaskState,
    error_message: Option<String>,
    has_warnings_or_errors: bool,
    has_pending_interruptions: bool,
}

impl TaskShape {
    fn of(t: &ServerTask) -> Self {
        TaskShape {
            state: t.state,
            error_message: t.error_message.clone(),
            has_warnings_or_errors: t.has_warnings_or_errors,
            has_pending_interruptions: t.has_pending_interruptions,
        }
    }
}

/// A follower of one task. Read it with [`LogStream::next`] until `None`.
pub struct LogStream {
    inst: Arc<Instance>,
    task_id: String,
    /// The position of the last line handed out.
    position: i64,
    /// Taken before the first read, so no change after it goes unnoticed.
    watch: TaskWatch,
    sent_activities: HashMap<String, ActivityEvent>,
    sent_task: Option<TaskShape>,
    /// Events of the last round not yet handed out: at most one page of
    /// lines plus the activities.
    pending: VecDeque<StreamEvent>,
    /// The last page was full: read on without waiting.
    more: bool,
    last_round: Option<Instant>,
    ended: bool,
}

impl LogStream {
    /// Starts following `task_id`, sending only lines after `after` (the
    /// position of the last line a reader already has). An unknown task is
    /// `NotFound`.
    pub async fn open(
        inst: Arc<Instance>,
        space: Option<&str>,
        task_id: &str,
        after: Option<i64>,
    ) -> Result<Self> {
        let watch = inst.runner.signals().follow(task_id);
        crate::tasks::task(&inst, space, task_id).await?;
        Ok(LogStream {
            inst,
            task_id: task_id.to_owned(),
            position: after.unwrap_or(0).max(0),
            watch,
            sent_activities: HashMap::new(),
            sent_task: None,
            pending: VecDeque::new(),
            more: false,
            last_round: None,
            ended: false,
        })
    }

    /// The next event, waiting for one as long as the task runs; `None` after
    /// [`StreamEvent::End`].
    pub async fn next(&mut self) -> Result<Option<StreamEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            if self.ended {
                return Ok(None);
            }
            if self.last_round.is_some() && !self.more {
                self.wait().await;
            }
            self.round().await?;
        }
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.watch.changed() => {}
            _ = tokio::time::sleep(FALLBACK) => {}
        }
        if let Some(last) = self.last_round {
            tokio::time::sleep_until(last + MIN_GAP).await;
        }
    }

    /// Reads what changed since the last round into `pending`.
    async fn round(&mut self) -> Result<()> {
        self.last_round = Some(Instant::now());
        let store = &self.inst.store;
        // The order of these reads is what makes the stream complete. The task
        // first: a task is marked complete only after its last line is stored,
        // so if it reads complete, the lines read next include the last one.
        // Lines before activities: an activity is stored before any line under
        // it, so every line read has its activity in the read that follows.
        let task = store
            .task(&self.task_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("task", &self.task_id))?;
        let lines = store
            .log_lines_after(&self.task_id, self.position, PAGE)
            .await?;
        let activities = store.task_activities(&self.task_id).await?;

        let shape = TaskShape::of(&task);
        if self.sent_task.as_ref() != Some(&shape) {
            self.sent_task = Some(shape);
            self.pending.push_back(StreamEvent::Task(task.clone()));
        }
        for a in activities {
            let a = ActivityEvent::from(a);
            if self.sent_activities.get(&a.id) != Some(&a) {
                self.sent_activities.insert(a.id.clone(), a.clone());
                self.pending.push_back(StreamEvent::Activity(a));
            }
        }
        self.more = lines.len() as i64 >= PAGE;
        if let Some(last) = lines.last() {
            self.position = last.seq;
        }
        self.pending
            .extend(lines.into_iter().map(|l| StreamEvent::Log(l.into())));
        if task.is_completed && !self.more {
            self.pending.push_back(StreamEvent::End(task));
            self.ended = true;
        }
        Ok(())
    }
}
