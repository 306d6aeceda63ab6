//! The task runner: claims queued tasks from the database and runs them, at
//! most `max_concurrent_tasks` at a time.
//!
//! Wake-ups: creating a task calls [`Runner::wake`], so a queued task starts
//! as soon as its transaction commits and a slot is free; on PostgreSQL a
//! task queued through another node wakes this one through the database's
//! notification (see [`Store::watch_task_queue`]); the loop also wakes
//! when a task finishes, when a scheduled task falls due or a queued one
//! expires, and, while tasks run here, on a heartbeat that renews their
//! leases and picks up cancellations made through other nodes. With
//! nothing running it has nothing to renew, and looks for work no wake-up
//! told it of only now and then (see [`RunnerConfig::sole_node`]): often where other
//! nodes share the database (a task whose node died, one held back behind
//! another node's), seldom where none can (SQLite, a host's instance), so
//! that an idle server does next to nothing.
//!
//! Leases: a running task is this node's until its lease runs out on the
//! database's clock; the heartbeat renews it every quarter of the lease.
//! Every write for the task carries the lease's generation (see
//! [`cuttle_store::task_lease`]), so a node that lost a task (paused past
//! its lease while another took it over) stops it at its next write and
//! writes nothing more for it. On PostgreSQL a node with room takes over a
//! running task whose lease lapsed and carries it on (see
//! [`crate::deploy::Resume`]); SQLite has one node, which closes its own
//! leftovers as failed when it restarts.

use crate::deploy::{self, DeployContext};
use crate::intervention::Interventions;
use crate::log::TaskLog;
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::signal::TaskSignals;
use cuttle_model::{Environment, Project, ServerTask, TaskState, Timestamp};
use cuttle_store::tasks::CancelOutcome;
use cuttle_store::{Backend, MasterKey, Store, StoreError, TaskLease};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Past the moment another node's lease runs out (on the database's clock)
/// that this node looks for it: the lease must be over when it looks.
const LAPSE_MARGIN_MS: u64 = 20;

/// How long a running task stays a node's without a renewal, by default:
/// a node that dies has its tasks taken over within about this long.
pub const DEFAULT_TASK_LEASE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Names this server process in task records and leases.
    pub node_name: String,
    pub max_concurrent_tasks: usize,
    /// Scripts get working directories under here.
    pub work_dir: PathBuf,
    /// Used when an action sets no timeout of its own.
    pub default_script_timeout: Duration,
    /// How long a claimed task stays ours without a renewal.
    pub lease: Duration,
    /// The isolation of scripts on the built-in worker.
    pub sandbox: SandboxConfig,
    /// The server's connections to agents (and the certificate it presents
    /// to them); without them, tasks that talk to agents fail.
    pub agents: Option<Arc<cuttle_protocol::Agents>>,
    /// Where the built-in feed keeps package files (by default
    /// `<data dir>/packages`), and where local copies come from.
    pub packages: cuttle_store::blobs::Blobs,
    /// The installation's metrics; `None` counts nothing.
    pub metrics: Option<Arc<cuttle_metrics::Metrics>>,
    /// Where steps go that would run on the built-in worker when there is
    /// none (`sandbox.enabled` off): workers its host lends.
    pub hosted_workers: Option<Arc<dyn crate::hosted_workers::WorkerLender>>,
    /// No other node ever shares its database (SQLite; a host's instance
    /// on PostgreSQL): with nothing running, the loop then looks for work
    /// no wake-up told it of only every [`SOLE_NODE_IDLE_POLL`], not every
    /// quarter of the lease, and it does not listen for tasks queued by
    /// other nodes. Only other nodes make such work: a node whose lease
    /// lapsed, a task held back behind one running on another node.
    pub sole_node: bool,
}

/// The idle look for work where no other node shares the database: only a
/// safety net, since every change that makes work here wakes the loop.
pub const SOLE_NODE_IDLE_POLL: Duration = Duration::from_secs(60);

impl RunnerConfig {
    pub fn new(node_name: impl Into<String>, work_dir: PathBuf) -> Self {
        RunnerConfig {
            node_name: node_name.into(),
            max_concurrent_tasks: 8,
            default_script_timeout: Duration::from_secs(3600),
            lease: DEFAULT_TASK_LEASE,
            // Other tasks' directories at least; the instance adds the
            // whole data directory.
            sandbox: SandboxConfig {
                hidden_paths: vec![work_dir.clone()],
                ..SandboxConfig::default()
            },
            agents: None,
            packages: cuttle_store::blobs::Blobs::directory(work_dir.parent().unwrap_or(&work_dir)),
            metrics: None,
            hosted_workers: None,
            sole_node: false,
            work_dir,
        }
    }
}

struct Inner {
    store: Store,
    master_key: MasterKey,
    config: RunnerConfig,
    /// What the built-in worker could apply, probed once at start.
    sandbox: Arc<Sandbox>,
    wake: Notify,
    /// The tasks running on this node.
    running: Mutex<HashMap<String, Running>>,
    /// Most tasks this node runs at once; an operator may change it while
    /// the node runs (through any node), so it is read at each claim.
    capacity: AtomicUsize,
    /// In maintenance mode: finish what runs, claim nothing new.
    draining: AtomicBool,
    /// Set when shutdown begins: stop claiming new work.
    stop_claiming: CancellationToken,
    /// Set when the shutdown grace period is over and running tasks are stopped.
    shutting_down: AtomicBool,
    /// Signalled whenever a task finishes, for shutdown to wait on.
    finished: Notify,
    /// Until when the heartbeat goes on with nothing running: a task whose
    /// end could not be recorded stays running in the database until its
    /// lease lapses, and the heartbeat then closes it (SQLite).
    orphan_watch_until: Mutex<Option<tokio::time::Instant>>,
    /// Wakes tasks waiting on an interruption when one is answered here.
    interventions: Arc<Interventions>,
    /// Tells subscribers (the service's lifecycle promotions) which task
    /// ended and how, after its end is recorded.
    finished_tasks: broadcast::Sender<TaskFinished>,
    /// Wakes live followers of a task (log streams) when it changes here.
    signals: TaskSignals,
}

/// One task running here.
struct Running {
    /// Cancels the task's scripts (a person cancelled, or the lease was lost).
    cancel: CancellationToken,
    /// Cancelled when another node took the task over.
    lost: CancellationToken,
    lease: TaskLease,
}

/// A task this node takes over, and from which node.
pub struct Resumed {
    pub previous_node: Option<String>,
}

/// A task that this node ran has ended and its state is recorded.
#[derive(Clone, Debug)]
pub struct TaskFinished {
    pub task_id: String,
    pub name: String,
    pub state: TaskState,
}

/// A handle on the runner; cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

const RESTART_MESSAGE: &str =
    "The server stopped while this task was running, so it was not finished";

impl Runner {
    /// Closes what a previous run of this node left behind, then starts the
    /// loop that claims and runs tasks.
    pub async fn start(
        store: Store,
        master_key: MasterKey,
        config: RunnerConfig,
    ) -> Result<Runner, StoreError> {
        let capacity = AtomicUsize::new(config.max_concurrent_tasks.max(1));
        // Searchable but not listable: a worker user reaches its own
        // directory without seeing the other tasks'.
        if let Err(e) = crate::sandbox::restrict_dir(&config.work_dir) {
            tracing::warn!(work_dir = %config.work_dir.display(), "the work directory could not be restricted: {e}");
        }
        let sandbox = Arc::new(Sandbox::probe(&config.sandbox).await);
        if sandbox.is_off() {
            tracing::info!("built-in worker: {sandbox}");
        } else if sandbox.refuses() {
            tracing::warn!("built-in worker isolation: {sandbox}");
        } else {
            tracing::info!("built-in worker isolation: {sandbox}");
        }
        let runner = Runner {
            inner: Arc::new(Inner {
                store,
                master_key,
                config,
                sandbox,
                wake: Notify::new(),
                running: Mutex::new(HashMap::new()),
                capacity,
                draining: AtomicBool::new(false),
                stop_claiming: CancellationToken::new(),
                shutting_down: AtomicBool::new(false),
                finished: Notify::new(),
                orphan_watch_until: Mutex::new(None),
                interventions: Arc::new(Interventions::default()),
                finished_tasks: broadcast::channel(256).0,
                signals: TaskSignals::default(),
            }),
        };
        if runner.inner.store.backend() == Backend::Sqlite {
            runner.close_orphans(true).await?;
        } else {
            // What this node ran before it restarted is taken over at once
            // (by whichever node has room first), not when the leases run out.
            let n = runner
                .inner
                .store
                .lapse_leases_of(&runner.inner.config.node_name)
                .await?;
            if n > 0 {
                tracing::warn!(
                    tasks = n,
                    "this node restarted while running tasks; they are taken over"
                );
            }
        }
        // Weak: the listener must not keep a stopped runner alive. A sole
        // node queues every task itself, and wakes itself.
        let woken = Arc::downgrade(&runner.inner);
        if !runner.inner.config.sole_node {
            runner
                .inner
                .store
                .watch_task_queue(move || match woken.upgrade() {
                    Some(inner) => {
                        inner.wake.notify_one();
                        !inner.stop_claiming.is_cancelled()
                    }
                    None => false,
                })
                .await?;
        }
        let looping = runner.clone();
        tokio::spawn(async move { looping.run_loop().await });
        Ok(runner)
    }

    /// Tells the loop that there may be new work.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Sets how many tasks this node runs at once (at least one); more
    /// are claimed at once if there is room, and running ones are never
    /// stopped for a lower cap.
    pub fn set_capacity(&self, n: usize) {
        let before = self.inner.capacity.swap(n.max(1), Ordering::SeqCst);
        if before != n.max(1) {
            tracing::info!(from = before, to = n.max(1), "task cap changed");
            self.wake();
        }
    }

    pub fn capacity(&self) -> usize {
        self.inner.capacity.load(Ordering::SeqCst)
    }

    /// Drains this node (it finishes what it runs and claims nothing new),
    /// or lets it take work again.
    pub fn set_draining(&self, draining: bool) {
        if self.inner.draining.swap(draining, Ordering::SeqCst) != draining {
            tracing::info!(draining, "maintenance mode changed");
            self.wake();
        }
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Every task this node finishes from now on. A subscriber that falls
    /// more than 256 behind misses the oldest (and is told it lagged).
    pub fn subscribe_finished(&self) -> broadcast::Receiver<TaskFinished> {
        self.inner.finished_tasks.subscribe()
    }

    /// An interruption was answered: tasks waiting on one re-read theirs now
    /// rather than at their next poll.
    pub fn interruption_submitted(&self) {
        self.inner.interventions.submitted();
    }

    /// The isolation scripts on the built-in worker run under.
    pub fn sandbox(&self) -> &Sandbox {
        &self.inner.sandbox
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The signals this node sends when a task's log or state changes.
    pub fn signals(&self) -> &TaskSignals {
        &self.inner.signals
    }

    pub fn running_count(&self) -> usize {
        self.lock_running().len()
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        // A panic while holding this lock leaves the map intact, so go on.
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cancels a task: a queued one at once, a running one by stopping its
    /// scripts (here, or on the node that runs it, at its next heartbeat).
    pub async fn cancel(&self, task_id: &str) -> Result<CancelOutcome, StoreError> {
        self.cancel_recorded(task_id, None).await
    }

    /// As [`Runner::cancel`], with the audit event of who asked, written
    /// with the task's change of state.
    pub async fn cancel_recorded(
        &self,
        task_id: &str,
        event: Option<cuttle_store::AuditEvent>,
    ) -> Result<CancelOutcome, StoreError> {
        let outcome = self
            .inner
            .store
            .request_cancel_recorded(task_id, event)
            .await?;
        if outcome == CancelOutcome::Cancelling {
            if let Some(running) = self.lock_running().get(task_id) {
                running.cancel.cancel();
            }
        }
        self.inner.signals.notify(task_id);
        Ok(outcome)
    }

    /// Stops claiming work, lets running tasks finish for up to `grace`, then
    /// stops the rest and records them as failed.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stop_claiming.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        while self.running_count() > 0 {
            let finished = self.inner.finished.notified();
            if self.running_count() == 0
                || tokio::time::timeout_at(deadline, finished).await.is_err()
            {
                break;
            }
        }
        if self.running_count() > 0 {
            tracing::warn!(
                count = self.running_count(),
                "stopping tasks still running at shutdown"
            );
            self.inner.shutting_down.store(true, Ordering::SeqCst);
            for running in self.lock_running().values() {
                running.cancel.cancel();
            }
            while self.running_count() > 0 {
                let finished = self.inner.finished.notified();
                if self.running_count() == 0 {
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), finished).await;
            }
        }
    }

    async fn run_loop(self) {
        let heartbeat = self.inner.config.lease / 4;
        let idle_poll = match self.inner.config.sole_node {
            true => SOLE_NODE_IDLE_POLL,
            false => heartbeat,
        };
        let mut next_heartbeat = tokio::time::Instant::now() + heartbeat;
        loop {
            if self.inner.stop_claiming.is_cancelled() {
                return;
            }
            self.claim_while_capacity().await;

            let now = tokio::time::Instant::now();
            let mut wait_until = if self.has_leases_to_keep(now) {
                if now >= next_heartbeat {
                    self.heartbeat().await;
                    next_heartbeat = now + heartbeat;
                }
                next_heartbeat
            } else {
                // Nothing to renew: the first heartbeat comes a period
                // after the next claim.
                next_heartbeat = now + heartbeat;
                now + idle_poll
            };
            // A time already past is a task the claim left: due since it
            // looked, or held back (its project and environment busy, its
            // space's queue stopped). It is looked at again within a
            // heartbeat, as when the loop polled.
            let due_in = |at: Timestamp| {
                let in_ms = at.millis() - Timestamp::now().millis();
                match u64::try_from(in_ms) {
                    Ok(ms) if ms > 0 => Duration::from_millis(ms),
                    _ => heartbeat,
                }
            };
            // A task scheduled for later can start only in a free slot, and
            // a slot freed (or the end of draining) wakes this loop: while
            // no slot is free (a long queue), the queue is not scanned for
            // the earliest one after every task.
            let room = !self.is_draining() && self.running_count() < self.capacity();
            if room {
                if let Ok(Some(due)) = self.inner.store.next_scheduled_time().await {
                    wait_until = wait_until.min(now + due_in(due));
                }
            }
            // An expired queued task is timed out by the claim: look just
            // after its expiry.
            if let Ok(Some(expiry)) = self.inner.store.next_queue_expiry().await {
                wait_until = wait_until.min(now + due_in(expiry) + Duration::from_millis(1));
            }
            // Wake as another node's lease runs out, to take its task over
            // then rather than at the next heartbeat. One lapsed already
            // was left by the claim above (no room here): the heartbeat
            // looks again.
            if self.inner.store.backend() == Backend::Postgres {
                let node = &self.inner.config.node_name;
                if let Ok(Some(in_ms)) = self.inner.store.next_lease_lapse_in_ms(node).await {
                    if in_ms > 0 {
                        let in_ms = in_ms as u64 + LAPSE_MARGIN_MS;
                        wait_until = wait_until.min(now + Duration::from_millis(in_ms));
                    }
                }
            }
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep_until(wait_until) => {}
                _ = self.inner.stop_claiming.cancelled() => return,
            }
        }
    }

    /// Whether the heartbeat has work: leases of tasks running here, or a
    /// task whose end could not be recorded, until its lease has lapsed.
    fn has_leases_to_keep(&self, now: tokio::time::Instant) -> bool {
        if self.running_count() > 0 {
            return true;
        }
        let mut watch = self
            .inner
            .orphan_watch_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match *watch {
            Some(until) if now < until => true,
            Some(_) => {
                *watch = None;
                false
            }
            None => false,
        }
    }

    async fn claim_while_capacity(&self) {
        loop {
            // The running map gains a task before the next pass, so this
            // count includes every claim so far.
            if self.is_draining() || self.running_count() >= self.capacity() {
                return;
            }
            let node = &self.inner.config.node_name;
            let store = &self.inner.store;
            // A task whose node died goes first: it was started before
            // anything queued.
            let taken = if store.backend() == Backend::Postgres {
                let running: Vec<String> = self.lock_running().keys().cloned().collect();
                store
                    .take_over_lapsed_task(node, self.lease_ms(), &running)
                    .await
                    .map(|t| {
                        t.map(|t| {
                            let resumed = Resumed {
                                previous_node: t.previous_node,
                            };
                            (t.task, t.lease, Some(resumed))
                        })
                    })
            } else {
                Ok(None)
            };
            let claimed = match taken {
                Ok(Some(t)) => Ok(Some(t)),
                Ok(None) => store
                    .claim_next_task_held(node, self.lease_ms())
                    .await
                    .map(|c| c.map(|(task, lease)| (task, lease, None))),
                Err(e) => Err(e),
            };
            match claimed {
                Ok(Some((task, lease, resumed))) => {
                    if let Some(r) = &resumed {
                        tracing::warn!(task = %task.id, from = r.previous_node.as_deref().unwrap_or("?"), generation = lease.generation, "taking over a task whose node stopped renewing its lease");
                    }
                    let lost = CancellationToken::new();
                    let token = lost.child_token();
                    self.lock_running().insert(
                        task.id.clone(),
                        Running {
                            cancel: token.clone(),
                            lost: lost.clone(),
                            lease: lease.clone(),
                        },
                    );
                    let runner = self.clone();
                    // Every event of the task's run names it (in JSON logs, as a span field).
                    let span = tracing::info_span!("task", task_id = %task.id);
                    tokio::spawn(
                        async move { runner.execute(task, lease, token, lost, resumed).await }
                            .instrument(span),
                    );
                }
                Ok(None) => return,
                Err(e) => {
                    self.count_database_error("task_queue");
                    tracing::error!(error = %e, "could not claim a task");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return;
                }
            }
        }
    }

    fn lease_ms(&self) -> i64 {
        self.inner.config.lease.as_millis() as i64
    }

    async fn heartbeat(&self) {
        let held: Vec<(TaskLease, CancellationToken)> = self
            .lock_running()
            .values()
            .map(|r| (r.lease.clone(), r.lost.clone()))
            .collect();
        for (lease, lost) in &held {
            match self
                .inner
                .store
                .renew_task_lease(lease, self.lease_ms())
                .await
            {
                Ok(()) => {}
                Err(e @ StoreError::LeaseLost { .. }) => {
                    tracing::warn!(task = %lease.task_id, error = %e, "another node took this task over; stopping it here");
                    lost.cancel();
                }
                Err(e) => {
                    self.count_database_error("task_queue");
                    tracing::error!(task = %lease.task_id, error = %e, "could not renew a task lease");
                }
            }
        }
        let ids: Vec<String> = held.into_iter().map(|(l, _)| l.task_id).collect();
        if let Ok(cancelling) = self.inner.store.cancelling_among(&ids).await {
            let running = self.lock_running();
            for id in cancelling {
                if let Some(t) = running.get(&id) {
                    t.cancel.cancel();
                }
            }
        }
        // On PostgreSQL, lapsed tasks are taken over by the claim loop.
        if self.inner.store.backend() == Backend::Sqlite {
            if let Err(e) = self.close_orphans(false).await {
                tracing::error!(error = %e, "could not close orphaned tasks");
            }
        }
    }

    /// Fails tasks whose node is gone: at start-up, this node's own leftovers
    /// (it restarted) and any whose lease lapsed.
    async fn close_orphans(&self, at_start: bool) -> Result<(), StoreError> {
        let own = at_start.then_some(self.inner.config.node_name.as_str());
        for id in self.inner.store.orphaned_tasks(own).await? {
            if self.lock_running().contains_key(&id) {
                continue;
            }
            tracing::warn!(task = %id, "closing a task whose server stopped while running it");
            let signals = self.inner.signals.clone();
            let log = TaskLog::open_signalling(self.inner.store.clone(), &id, signals).await?;
            let note = log.activity(None, "Server restart").await;
            note.error(RESTART_MESSAGE);
            note.finish(cuttle_model::ActivityStatus::Failed).await;
            log.flush().await;
            self.inner
                .store
                .complete_task(&id, TaskState::Failed, Some(RESTART_MESSAGE))
                .await?;
            // Nobody waits on them any more; left pending they would ask forever.
            self.inner
                .store
                .close_task_interruptions(&id, RESTART_MESSAGE)
                .await?;
            self.inner.signals.notify(&id);
        }
        Ok(())
    }

    async fn execute(
        self,
        task: ServerTask,
        lease: TaskLease,
        token: CancellationToken,
        lost: CancellationToken,
        resumed: Option<Resumed>,
    ) {
        let started = std::time::Instant::now();
        if let Some(metrics) = &self.inner.config.metrics {
            let waited = task
                .start_time
                .unwrap_or_else(Timestamp::now)
                .millis()
                .saturating_sub(task.queue_time.millis());
            metrics.task_started(&task.name, Duration::from_millis(waited.max(0) as u64));
        }
        let signals = self.inner.signals.clone();
        let opened = TaskLog::open_held(
            self.inner.store.clone(),
            lease.clone(),
            signals,
            lost.clone(),
        )
        .await;
        let (state, error, log) = match opened {
            Ok(log) => {
                let ctx = DeployContext {
                    store: self.inner.store.clone(),
                    master_key: self.inner.master_key.clone(),
                    work_root: self.inner.config.work_dir.clone(),
                    default_timeout: self.inner.config.default_script_timeout,
                    interventions: self.inner.interventions.clone(),
                    sandbox: self.inner.sandbox.clone(),
                    hosted_workers: self.inner.config.hosted_workers.clone(),
                    agents: self.inner.config.agents.clone(),
                    packages: self.inner.config.packages.clone(),
                    node_name: self.inner.config.node_name.clone(),
                    resume: resumed.map(|r| deploy::Resume {
                        previous_node: r.previous_node,
                    }),
                };
                let outcome = match task.name.as_str() {
                    "Deploy" => deploy::run(&ctx, &task, &log, token.clone()).await,
                    "Health" => {
                        let agents = self.inner.config.agents.as_deref();
                        crate::health::run(&ctx.store, agents, &task, &log, token.clone()).await
                    }
                    other => {
                        deploy::Outcome::failed(format!("This server cannot run '{other}' tasks"))
                    }
                };
                // The task's error is shown with its log: masked alike.
                let error = outcome.error.map(|e| log.mask(&e));
                (outcome.state, error, Some(log))
            }
            Err(e) => (
                TaskState::Failed,
                Some(format!("The task log could not be opened: {e}")),
                None,
            ),
        };
        let (state, error) = if state == TaskState::Canceled
            && self.inner.shutting_down.load(Ordering::SeqCst)
        {
            let user_cancelled = matches!(self.inner.store.task(&task.id).await, Ok(Some(t)) if t.state == TaskState::Cancelling);
            if user_cancelled {
                (state, error)
            } else {
                (
                    TaskState::Failed,
                    Some("The server shut down before the task finished".to_owned()),
                )
            }
        } else {
            (state, error)
        };
        // A task lost to another node is not ours to end: the refusal
        // comes from the database either way, this only spares the write.
        // The end is written with the last of the log, in one commit.
        let completed = if lost.is_cancelled() {
            None
        } else {
            Some(match &log {
                Some(log) => log.complete(state, error.as_deref()).await,
                None => {
                    self.inner
                        .store
                        .complete_task_held(&lease, state, error.as_deref())
                        .await
                }
            })
        };
        match completed {
            None | Some(Err(StoreError::LeaseLost { .. })) => {
                lost.cancel();
                tracing::warn!(task = %task.id, "this node lost the task to another node; its end here is not recorded");
            }
            Some(Ok(_)) => {
                // No subscriber is fine.
                let _ = self.inner.finished_tasks.send(TaskFinished {
                    task_id: task.id.clone(),
                    name: task.name.clone(),
                    state,
                });
            }
            Some(Err(e)) => {
                self.count_database_error("task_queue");
                tracing::error!(task = %task.id, error = %e, "could not record the end of a task");
                // Closed as orphaned once its lease lapses: the heartbeat
                // goes on until then, though nothing runs.
                let until = tokio::time::Instant::now() + self.inner.config.lease * 2;
                *self
                    .inner
                    .orphan_watch_until
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(until);
            }
        }
        // A task lost to another node finishes there, and is counted there.
        if !lost.is_cancelled() {
            self.count_finished(&task, state, started.elapsed()).await;
            tracing::info!(task = %task.id, state = %state, elapsed_ms = started.elapsed().as_millis() as u64, "task finished");
        }
        self.inner.signals.notify(&task.id);
        self.lock_running().remove(&task.id);
        self.inner.finished.notify_waiters();
        self.wake();
    }

    fn count_database_error(&self, source: &str) {
        if let Some(metrics) = &self.inner.config.metrics {
            metrics.database_error(source);
        }
    }

    /// Counts a finished task, and a deployment by its project's and
    /// environment's names (bounded, unlike ids of deployments).
    async fn count_finished(&self, task: &ServerTask, state: TaskState, ran: Duration) {
        let Some(metrics) = &self.inner.config.metrics else {
            return;
        };
        metrics.task_finished(&task.name, state.as_str(), ran);
        if task.name != "Deploy" {
            return;
        }
        let store = &self.inner.store;
        let project = match &task.project_id {
            Some(id) => store
                .get::<Project>(id)
                .await
                .ok()
                .flatten()
                .map(|p| p.name),
            None => None,
        };
        let environment = match &task.environment_id {
            Some(id) => store
                .get::<Environment>(id)
                .await
                .ok()
                .flatten()
                .map(|e| e.name),
            None => None,
        };
        metrics.deployment_finished(
            project.as_deref().unwrap_or("(deleted)"),
            environment.as_deref().unwrap_or("(deleted)"),
            state.as_str(),
        );
    }
}
