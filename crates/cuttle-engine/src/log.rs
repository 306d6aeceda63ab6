//! Writing a task's activity log while it runs. Lines and changes of
//! activities go through a channel to one writer per task that stores them
//! in batches (one transaction, a few statements), so a chatty script costs
//! a transaction per few thousand lines rather than one per line, and a
//! deployment's activity tree a few transactions rather than one per change.
//! Nothing waits for them to be stored but [`TaskLog::flush`]: whatever
//! reads them from the database as a record of the task (its end, a step's
//! result, an agent's script to re-attach to) is written after a flush.
//!
//! The channel is bounded for the producers that can flood it: a script's
//! output reader and an agent's log stream wait for [`TaskLog::room`] as
//! they read, so a script printing faster than the database stores waits
//! on its pipe instead of piling lines up in memory. The engine's own lines
//! (a few per step, written from synchronous code) never wait.

use crate::signal::TaskSignals;
use cuttle_model::task::{Activity, ActivityStatus, LogCategory, LogLine};
use cuttle_model::{TaskState, Timestamp};
use cuttle_store::{Store, StoreError, TaskLease, TaskProgress};
use cuttle_vars::mask::Masker;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot, Mutex, Notify};
use tokio_util::sync::CancellationToken;

/// Lines the writer stores in one transaction at most: it takes what is
/// waiting, up to this, so a quiet log is stored line by line at once and a
/// flood in large batches. Each transaction costs a flush to disk (a few
/// milliseconds); this many lines take longer than that to insert.
const BATCH: usize = 16_384;
/// Lines (and bytes of them) waiting for the writer beyond which
/// [`TaskLog::room`] holds its callers back.
pub const BACKLOG_LINES: usize = 2 * BATCH;
pub const BACKLOG_BYTES: usize = 8 * 1024 * 1024;

struct Shared {
    store: Store,
    task_id: String,
    /// The lease this node's writes for the task carry; `None` writes
    /// unfenced (closing a task no node holds).
    lease: Option<TaskLease>,
    /// Cancelled once a write is refused because another node took the
    /// task over: from then on nothing more is written for it.
    lost: CancellationToken,
    next_activity: AtomicI64,
    lines: mpsc::UnboundedSender<Message>,
    /// What is sent to the writer and not yet stored.
    backlog: Arc<Backlog>,
    /// The task's sensitive values. Every line, activity name and progress
    /// message is masked here, before it is stored: whatever shows the log
    /// later (details, raw text, the live stream, the portal) reads only
    /// masked text, and so does the database.
    masking: RwLock<Masking>,
}

#[derive(Default)]
struct Masking {
    secrets: Vec<String>,
    masker: Option<Arc<Masker>>,
}

/// Lines (and their bytes) sent to the writer and not yet stored; the
/// writer signals `stored` after each batch.
#[derive(Default)]
struct Backlog {
    lines: AtomicUsize,
    bytes: AtomicUsize,
    stored: Notify,
}

impl Backlog {
    fn has_room(&self) -> bool {
        self.lines.load(Ordering::Acquire) < BACKLOG_LINES
            && self.bytes.load(Ordering::Acquire) < BACKLOG_BYTES
    }

    fn add(&self, bytes: usize) {
        self.lines.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    fn remove(&self, lines: usize, bytes: usize) {
        self.lines.fetch_sub(lines, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.stored.notify_waiters();
    }
}

enum Message {
    Line(LogLine),
    /// An activity as it stands now, at its position.
    Activity(Activity, i64),
    /// Answered once every line sent before it is stored.
    Flush(oneshot::Sender<()>),
    /// The task's end, stored with the last of its log; answered with
    /// whether that ended the task. Nothing is sent after it.
    End(
        TaskState,
        Option<String>,
        oneshot::Sender<Result<bool, StoreError>>,
    ),
    /// An agent's answer's lines begin: nothing is stored until its
    /// [`Message::Mark`] has come, so they are stored with it.
    Hold,
    /// The agent's script with this command id has had its lines before
    /// this one logged: recorded in the transaction that stores them.
    Mark(String, i64),
}

/// The log of one task. Clone it freely; [`TaskLog::flush`] waits until what
/// was written is stored. The writer ends when the last clone is dropped.
#[derive(Clone)]
pub struct TaskLog {
    shared: Arc<Shared>,
}

/// One node of the activity tree, with its own state.
#[derive(Clone)]
pub struct ActivityLog {
    log: TaskLog,
    activity: Arc<Mutex<Activity>>,
    position: i64,
    pub id: String,
    /// Numbers progress updates, and the newest applied, so updates stored
    /// in the background never go back in time.
    progress_sent: Arc<std::sync::atomic::AtomicU64>,
    progress_applied: Arc<std::sync::atomic::AtomicU64>,
}

impl TaskLog {
    /// Opens the log of `task_id`, continuing after any lines already stored.
    pub async fn open(store: Store, task_id: &str) -> Result<TaskLog, cuttle_store::StoreError> {
        Self::open_signalling(store, task_id, TaskSignals::default()).await
    }

    /// As [`TaskLog::open`], signalling `signals` whenever lines or
    /// activities of the task are stored.
    pub async fn open_signalling(
        store: Store,
        task_id: &str,
        signals: TaskSignals,
    ) -> Result<TaskLog, cuttle_store::StoreError> {
        Self::open_fenced(store, task_id, None, signals, CancellationToken::new()).await
    }

    /// Opens the log of the task `lease` holds: every write carries the
    /// lease, and the first one refused (another node took the task over)
    /// cancels `lost` and stops all writing.
    pub async fn open_held(
        store: Store,
        lease: TaskLease,
        signals: TaskSignals,
        lost: CancellationToken,
    ) -> Result<TaskLog, cuttle_store::StoreError> {
        let task_id = lease.task_id.clone();
        Self::open_fenced(store, &task_id, Some(lease), signals, lost).await
    }

    async fn open_fenced(
        store: Store,
        task_id: &str,
        lease: Option<TaskLease>,
        signals: TaskSignals,
        lost: CancellationToken,
    ) -> Result<TaskLog, cuttle_store::StoreError> {
        // Read after the lease was taken: a former holder's last lines are
        // committed (or refused) by now, so numbering goes on from the last
        // one with neither a gap nor a duplicate.
        let last = store.last_log_seq(task_id).await?;
        // Activities go on after those already there (a task taken over).
        let next_activity = store
            .task_activities(task_id)
            .await?
            .iter()
            .filter_map(|a| position_of(task_id, &a.id))
            .max()
            .unwrap_or(0)
            + 1;
        // A task resumed (on this node or another, whose clock may differ)
        // continues after its last line's time too.
        let last_time = match last {
            0 => None,
            _ => store
                .log_lines_after(task_id, last - 1, 1)
                .await?
                .first()
                .map(|l| l.occurred_at),
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        let backlog = Arc::new(Backlog::default());
        let writer_backlog = backlog.clone();
        let writer_store = store.clone();
        let writer_task = task_id.to_owned();
        let writer_signals = signals;
        let writer_lease = lease.clone();
        let writer_lost = lost.clone();
        tokio::spawn(async move {
            let mut received = Vec::with_capacity(BATCH);
            let mut lines: Vec<LogLine> = vec![];
            // Activities changed since the last write, each as it stands
            // last, in the order they were first changed (a parent before
            // its children).
            let mut activities: Vec<(Activity, i64)> = vec![];
            let mut warned = false;
            // Lines are numbered here, in the order they are stored, not when
            // written: two writers could otherwise store 6 before 5, and a
            // follower that has read up to 6 would never see 5.
            let mut next_seq = last + 1;
            // Times never go back along the numbering either (two writers,
            // or the clock stepping back, could make them), so the order of
            // an activity's lines by position is also their order by time:
            // the raw log is read back in pages by position.
            let mut latest = last_time;
            let mut flushed = vec![];
            let mut bytes = 0;
            // Agent answers whose lines have begun and not ended, and the
            // marks of those that ended, to store with their lines.
            let mut held = 0usize;
            let mut marks: Vec<(String, i64)> = vec![];
            let mut ending = None;
            while rx.recv_many(&mut received, BATCH).await > 0 {
                for m in received.drain(..) {
                    match m {
                        Message::Line(mut l) => {
                            l.seq = next_seq;
                            next_seq += 1;
                            match latest {
                                Some(t) if l.occurred_at < t => l.occurred_at = t,
                                _ => latest = Some(l.occurred_at),
                            }
                            bytes += l.message.len();
                            lines.push(l);
                        }
                        Message::Activity(a, position) => {
                            match activities.iter_mut().find(|(b, _)| b.id == a.id) {
                                Some(b) => b.0 = a,
                                None => activities.push((a, position)),
                            }
                        }
                        Message::Flush(done) => flushed.push(done),
                        Message::End(state, error, done) => ending = Some((state, error, done)),
                        Message::Hold => held += 1,
                        Message::Mark(command, next) => {
                            held = held.saturating_sub(1);
                            match marks.iter_mut().find(|(c, _)| *c == command) {
                                Some(m) => m.1 = m.1.max(next),
                                None => marks.push((command, next)),
                            }
                        }
                    }
                }
                // An answer's lines come together, without a pause: wait
                // for its end rather than store part of it.
                if held > 0 && !writer_lost.is_cancelled() {
                    continue;
                }
                if writer_lost.is_cancelled() {
                    // Another node holds the task: its lines are not ours to write.
                    lines.clear();
                    activities.clear();
                    marks.clear();
                }
                let warns = !warned && lines.iter().any(|l| l.category >= LogCategory::Warning);
                warned |= warns;
                // Kept when the lease was lost: the database refuses it,
                // and the one waiting on it hears so.
                let (end, ended) = match ending.take() {
                    Some((state, error, done)) => (Some((state, error)), Some(done)),
                    None => (None, None),
                };
                let progress = TaskProgress {
                    activities: std::mem::take(&mut activities),
                    lines: std::mem::take(&mut lines),
                    marks: std::mem::take(&mut marks),
                    warned: warns,
                    end,
                };
                let changed = !progress.lines.is_empty() || !progress.activities.is_empty();
                let stored_lines = progress.lines.len();
                let stored = match &writer_lease {
                    Some(lease) => writer_store.write_progress_held(lease, progress).await,
                    None => writer_store.write_progress(&writer_task, progress).await,
                };
                match (stored, ended) {
                    (stored, Some(done)) => {
                        if let Err(StoreError::LeaseLost { .. }) = &stored {
                            writer_lost.cancel();
                        }
                        let _ = done.send(stored);
                    }
                    (Err(e), None) => refused(
                        &writer_task,
                        &writer_lost,
                        &e,
                        "could not store the task's log",
                    ),
                    (Ok(_), None) => {}
                }
                if changed {
                    writer_signals.notify(&writer_task);
                }
                // Stored or given up on: either way no longer waiting, so a
                // failing database cannot hold the script back forever.
                writer_backlog.remove(stored_lines, bytes);
                // Sized as the last batch: a flood goes on in batches as large.
                lines = Vec::with_capacity(stored_lines);
                bytes = 0;
                for done in flushed.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        Ok(TaskLog {
            shared: Arc::new(Shared {
                store,
                task_id: task_id.to_owned(),
                lease,
                lost,
                next_activity: AtomicI64::new(next_activity),
                lines: tx,
                backlog,
                masking: RwLock::default(),
            }),
        })
    }

    pub fn task_id(&self) -> &str {
        &self.shared.task_id
    }

    /// The lease this log's writes carry.
    pub fn lease(&self) -> Option<&TaskLease> {
        self.shared.lease.as_ref()
    }

    /// Whether a write was refused because another node took the task.
    pub fn is_lost(&self) -> bool {
        self.shared.lost.is_cancelled()
    }

    /// Says that the lease is gone (a write outside the log was refused).
    pub fn lose(&self) {
        self.shared.lost.cancel();
    }

    /// An activity stored before (by a node that held the task earlier),
    /// to write under again.
    pub fn reopen(&self, a: Activity) -> ActivityLog {
        let position = position_of(&self.shared.task_id, &a.id).unwrap_or(0);
        ActivityLog {
            log: self.clone(),
            id: a.id.clone(),
            activity: Arc::new(Mutex::new(a)),
            position,
            progress_sent: Default::default(),
            progress_applied: Default::default(),
        }
    }

    /// Masks `values` (sensitive values of the task) in everything written
    /// from now on, as well as those added before.
    pub fn add_secrets(&self, values: impl IntoIterator<Item = String>) {
        // A panic elsewhere cannot leave the list half-written.
        let mut masking = self
            .shared
            .masking
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let before = masking.secrets.len();
        masking
            .secrets
            .extend(values.into_iter().filter(|v| !v.is_empty()));
        if masking.secrets.len() != before {
            let masker = Masker::new(masking.secrets.iter().cloned());
            masking.masker = Some(Arc::new(masker));
        }
    }

    /// `text` with the task's sensitive values masked.
    pub fn mask(&self, text: &str) -> String {
        let masker = self
            .shared
            .masking
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .masker
            .clone();
        match masker {
            Some(m) => m.mask_line(text).into_owned(),
            None => text.to_owned(),
        }
    }

    /// Starts a node of the activity tree under `parent` (or at the root).
    pub async fn activity(&self, parent: Option<&ActivityLog>, name: &str) -> ActivityLog {
        let n = self.shared.next_activity.fetch_add(1, Ordering::SeqCst);
        let a = Activity {
            id: format!("{}_{n}", self.shared.task_id),
            parent_id: parent.map(|p| p.id.clone()),
            name: self.mask(name),
            status: ActivityStatus::Pending,
            started: None,
            ended: None,
            show_at_summary_level: true,
            progress_percentage: None,
            progress_message: None,
        };
        let handle = ActivityLog {
            log: self.clone(),
            id: a.id.clone(),
            activity: Arc::new(Mutex::new(a)),
            position: n,
            progress_sent: Default::default(),
            progress_applied: Default::default(),
        };
        handle.save().await;
        handle
    }

    fn write(&self, activity_id: &str, category: LogCategory, message: String) {
        let line = LogLine {
            seq: 0, // numbered by the writer
            activity_id: activity_id.to_owned(),
            category,
            occurred_at: Timestamp::now(),
            message: self.mask(&message),
            detail: None,
        };
        let bytes = line.message.len();
        self.shared.backlog.add(bytes);
        // The writer lives as long as any sender, so this send cannot fail.
        if self.shared.lines.send(Message::Line(line)).is_err() {
            self.shared.backlog.remove(1, bytes);
        }
    }

    /// Waits until the lines waiting for the writer are under the backlog's
    /// bounds ([`BACKLOG_LINES`], [`BACKLOG_BYTES`]). Readers of a script's
    /// output call it as they go: that is the back-pressure that keeps a
    /// flood of output out of memory. Unlike [`TaskLog::flush`], it returns
    /// while the writer is still busy, so reading and storing overlap.
    pub async fn room(&self) {
        let backlog = &self.shared.backlog;
        loop {
            let stored = backlog.stored.notified();
            tokio::pin!(stored);
            // Registered before the check, so a batch stored in between
            // still wakes this.
            stored.as_mut().enable();
            if backlog.has_room() {
                return;
            }
            stored.await;
        }
    }

    /// Lines written and not yet stored, for tests of the bound.
    pub fn backlog(&self) -> usize {
        self.shared.backlog.lines.load(Ordering::Acquire)
    }

    /// Says that an agent's answer's lines begin (see [`Message::Hold`]).
    pub fn hold(&self) {
        let _ = self.shared.lines.send(Message::Hold);
    }

    /// Says that the lines of the script with `command_id` before `next`
    /// have been written, to be recorded with them (see [`Message::Mark`]).
    pub fn mark(&self, command_id: &str, next: u64) {
        let next = i64::try_from(next).unwrap_or(i64::MAX);
        let _ = self
            .shared
            .lines
            .send(Message::Mark(command_id.to_owned(), next));
    }

    /// Stores everything written so far and ends the task as `state`, in
    /// one write: answers whether that ended it (false: it had ended
    /// already), or why it could not be written (the lease was lost, say).
    /// Nothing is written to the log after it.
    pub async fn complete(
        &self,
        state: TaskState,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (done, answer) = oneshot::channel();
        let end = Message::End(state, error.map(str::to_owned), done);
        if self.shared.lines.send(end).is_ok() {
            if let Ok(stored) = answer.await {
                return stored;
            }
        }
        // The writer is gone (it cannot be while this handle lives, unless
        // it panicked): the end is written on its own.
        let store = &self.shared.store;
        match &self.shared.lease {
            Some(lease) => store.complete_task_held(lease, state, error).await,
            None => {
                store
                    .complete_task(&self.shared.task_id, state, error)
                    .await
            }
        }
    }

    /// Waits until every line written so far is stored.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.shared.lines.send(Message::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

impl ActivityLog {
    /// Waits until every line of the task written so far is stored.
    pub async fn flush(&self) {
        self.log.flush().await
    }

    /// See [`TaskLog::room`].
    pub async fn room(&self) {
        self.log.room().await
    }

    /// The task's log this activity is part of.
    pub fn task_log(&self) -> &TaskLog {
        &self.log
    }

    /// Sends the activity as it stands now to the log's writer, which
    /// stores it with the lines around it; [`TaskLog::flush`] waits for it.
    async fn save(&self) {
        // Held while sending, so saves of one activity reach the writer in
        // order: a progress update saved in the background must not land
        // after the activity's end and undo it.
        let a = self.activity.lock().await;
        let shared = &self.log.shared;
        if shared.lost.is_cancelled() {
            return;
        }
        // The writer lives as long as any sender, so this send cannot fail.
        let _ = shared
            .lines
            .send(Message::Activity(a.clone(), self.position));
    }

    /// The activity's status as this node last set it.
    pub async fn status(&self) -> ActivityStatus {
        self.activity.lock().await.status
    }

    pub async fn start(&self) {
        {
            let mut a = self.activity.lock().await;
            a.status = ActivityStatus::Running;
            a.started = Some(Timestamp::now());
        }
        self.save().await;
    }

    pub async fn finish(&self, status: ActivityStatus) {
        {
            let mut a = self.activity.lock().await;
            a.status = status;
            a.started.get_or_insert_with(Timestamp::now);
            a.ended = Some(Timestamp::now());
        }
        self.save().await;
    }

    pub fn log(&self, category: LogCategory, message: impl Into<String>) {
        self.log.write(&self.id, category, message.into());
    }

    /// See [`TaskLog::mask`].
    pub fn mask(&self, text: &str) -> String {
        self.log.mask(text)
    }

    /// See [`TaskLog::add_secrets`].
    pub fn add_secrets(&self, values: impl IntoIterator<Item = String>) {
        self.log.add_secrets(values);
    }

    pub fn info(&self, message: impl Into<String>) {
        self.log(LogCategory::Info, message);
    }

    pub fn verbose(&self, message: impl Into<String>) {
        self.log(LogCategory::Verbose, message);
    }

    pub fn error(&self, message: impl Into<String>) {
        self.log(LogCategory::Error, message);
    }

    /// Records how far the activity is (clamped to 0..=100), as a script's
    /// `update_progress` says. Callable from synchronous output callbacks: the
    /// update is stored in the background, last one wins.
    pub fn progress(&self, percentage: i64, message: Option<String>) {
        let message = message.map(|m| self.mask(&m));
        let this = self.clone();
        let n = self.progress_sent.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::spawn(async move {
            {
                let mut a = this.activity.lock().await;
                // An older update that ran late changes nothing.
                if this.progress_applied.fetch_max(n, Ordering::SeqCst) > n {
                    return;
                }
                a.progress_percentage = Some(percentage.clamp(0, 100));
                a.progress_message = message;
            }
            this.save().await;
        });
    }
}

/// An activity's position, from its id (`<task id>_<position>`).
fn position_of(task_id: &str, activity_id: &str) -> Option<i64> {
    activity_id
        .strip_prefix(task_id)?
        .strip_prefix('_')?
        .parse()
        .ok()
}

/// Logs a failed write; a refusal for a lost lease also marks the log lost.
fn refused(task_id: &str, lost: &CancellationToken, e: &StoreError, what: &str) {
    if let StoreError::LeaseLost { .. } = e {
        if !lost.is_cancelled() {
            tracing::warn!(task = %task_id, error = %e, "another node took this task over; this node writes nothing more for it");
        }
        lost.cancel();
    } else {
        tracing::error!(task = %task_id, error = %e, "{what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuttle_store::testing::ScratchPostgres;
    use cuttle_store::NewTask;

    const WRITTEN: usize = 20_000;
    /// How often the producer below waits for room, as a script's reader
    /// does every so many lines.
    const PACE: usize = 64;

    async fn task(store: &Store) -> String {
        let mut tx = store.begin().await.unwrap();
        let t = tx
            .insert_task(NewTask {
                name: "Deploy".into(),
                description: "Deploy".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        tx.commit().await.unwrap();
        t.id
    }

    /// A producer far faster than the database, waiting for room as it
    /// goes: never more than the bound waits in memory, and every line is
    /// stored, in order, with times that never go back.
    async fn bounded(store: Store) {
        let id = task(&store).await;
        let log = TaskLog::open(store.clone(), &id).await.unwrap();
        let a = log.activity(None, "Run").await;
        let mut most = 0;
        for i in 0..WRITTEN {
            a.info(format!("line {i}"));
            most = most.max(log.backlog());
            if i % PACE == PACE - 1 {
                a.room().await;
            }
        }
        log.flush().await;
        assert!(
            most <= BACKLOG_LINES + PACE,
            "{most} lines waited for the writer"
        );
        assert_eq!(log.backlog(), 0);
        let lines = store
            .log_lines_after(&id, 0, WRITTEN as i64 + 1)
            .await
            .unwrap();
        assert_eq!(lines.len(), WRITTEN);
        for (i, pair) in lines.windows(2).enumerate() {
            assert_eq!(pair[0].message, format!("line {i}"));
            assert!(pair[0].seq < pair[1].seq);
            assert!(pair[0].occurred_at <= pair[1].occurred_at);
        }

        // Resumed, as after a restart: numbering and time go on from there.
        drop((a, log));
        let log = TaskLog::open(store.clone(), &id).await.unwrap();
        log.activity(None, "Again").await.info("resumed");
        log.flush().await;
        let more = store
            .log_lines_after(&id, WRITTEN as i64, 10)
            .await
            .unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].seq, WRITTEN as i64 + 1);
        assert!(more[0].occurred_at >= lines[WRITTEN - 1].occurred_at);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_lines_waits_for_room_instead_of_filling_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Store::sqlite_url(&dir.path().join("c.db")))
            .await
            .unwrap();
        bounded(store).await;
        if let Some(pg) = ScratchPostgres::create("log_backlog").await {
            bounded(Store::open(&pg.url).await.unwrap()).await;
        }
    }
}
