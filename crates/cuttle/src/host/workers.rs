//! Hosted workers: `cuttle agent` processes the host starts, each leased to
//! one instance at a time, so that an instance's scripts never run in the
//! host process (instances on a host have no built-in worker).
//!
//! Each worker is a listening agent on 127.0.0.1, in a sandbox of its own
//! (the built-in worker's, from [`cuttle_engine::sandbox`], with the whole
//! file system read-only): bubblewrap namespaces in which the host's data
//! directory and every other worker's directory are empty, a fresh scratch
//! directory that is its only writable place besides its own /tmp, a uid of
//! its own when the host runs as root, a cgroup and rlimits. The instance
//! it is leased to has it registered in its "Hosted Workers" pool and the
//! worker trusts that instance's certificate alone. When the lease ends
//! (idle too long, the instance suspended or deleted, or the operator ends
//! it) the worker is wiped: its processes killed, its registration removed,
//! its directory deleted. The next lease starts a new one from nothing.

use super::instances::{Host, HostError, Slot};
use cuttle_engine::hosted_workers::{Lent, Waiting, WorkerLender};
use cuttle_engine::sandbox::{Limits, Sandbox, SandboxConfig, Step};
use cuttle_engine::step_network::StepNetwork;
use cuttle_model::machine::{CommunicationStyle, Endpoint};
use cuttle_model::{User, Worker, WorkerPool};
use cuttle_service::actor::Actor;
use cuttle_store::{DocumentQuery, Store};
use futures_util::future::BoxFuture;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The pool hosted workers are registered in, in each space that uses one.
pub const HOSTED_POOL: &str = "Hosted Workers";

/// How long a new worker may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The name of the binary in the scratch root and in each lease's directory.
const WORKER_BINARY: &str = "cuttle";

/// Makes each worker's start pause this many milliseconds before its
/// process is started, so a test can see several starts under way at once.
pub const PAUSE_BEFORE_START_ENV: &str = "CUTTLE_HOST_TEST_PAUSE_WORKER_START_MS";

/// What an operator sets about hosted workers.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// How many may run at once (each leased to one instance).
    pub count: usize,
    /// How long a lease lasts with no step running on its worker.
    pub idle: Duration,
    /// The host's data directory, hidden from every worker.
    pub host_data_dir: PathBuf,
    /// Where workers' scratch directories go (cleared at start).
    pub scratch_root: PathBuf,
    /// Start workers even where they cannot be isolated.
    pub allow_unisolated: bool,
    /// How long a step may wait for a worker when every one is leased to
    /// other instances (zero: it fails at once).
    pub wait: Duration,
    /// The `cuttle` binary workers run; `None`: the one running.
    pub binary: Option<PathBuf>,
}

/// The host's hosted workers.
pub struct HostedWorkers {
    settings: WorkerSettings,
    /// The read-only copy of the `cuttle` binary that each worker runs.
    binary: PathBuf,
    sandbox: Arc<Sandbox>,
    /// Never held across an await: workers start, register and are wiped
    /// outside it, so instances lease in parallel.
    leases: Mutex<Leases>,
    /// Told whenever a lease ends or a start ends: waiters look again.
    changed: tokio::sync::Notify,
    serial: AtomicU64,
}

/// The leases, and the loans waiting for a worker to be freed.
#[derive(Default)]
struct Leases {
    by_instance: HashMap<String, Entry>,
    /// Tickets of the waiting loans, oldest first: a freed worker goes to
    /// the first.
    queue: VecDeque<u64>,
    next_ticket: u64,
    /// Per instance, held while its worker is registered in a space: two
    /// steps of one space do not register it twice.
    registering: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

/// What an instance holds: a worker being started for it, or one leased.
/// Both count against the host's number of workers.
enum Entry {
    Starting {
        /// Which start: one ended by the operator meanwhile is not installed.
        serial: u64,
        since: chrono::DateTime<chrono::Utc>,
    },
    Leased(Box<Lease>),
}

/// What a loan does next, decided under the lock.
enum Next {
    /// Done: the worker, registered in the space, held for the step.
    Lent(Worker, Hold),
    /// Start a worker (its entry is `Starting` with this serial), after
    /// wiping the one it replaces, if any.
    Start(u64, Option<Lease>),
    /// Register the leased worker in the space.
    Register(Registering),
    /// The instance's own worker is starting: wait for it.
    AwaitStart,
    /// Every worker is leased to other instances (or promised to loans
    /// waiting before this one): wait for one to be freed.
    AwaitFree { count: usize },
}

/// What registering a leased worker in another space needs of it.
struct Registering {
    id: String,
    uri: String,
    thumbprint: String,
    /// See [`Leases::registering`].
    gate: Arc<tokio::sync::Mutex<()>>,
}

/// A loan's place in the queue, left when the loan is dropped (a canceled
/// step) or served.
struct Ticket<'a> {
    workers: &'a HostedWorkers,
    id: u64,
    /// Still in the queue; the lock is free whenever this is dropped
    /// while queued.
    queued: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.queued {
            return;
        }
        if let Ok(mut leases) = self.workers.leases.lock() {
            leases.queue.retain(|t| *t != self.id);
        }
        // Those behind it may be first now.
        self.workers.changed.notify_waiters();
    }
}

impl std::fmt::Debug for HostedWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedWorkers")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// One worker leased to one instance.
struct Lease {
    id: String,
    dir: PathBuf,
    uri: String,
    /// The certificate of the instance it serves.
    server_thumbprint: String,
    thumbprint: String,
    child: tokio::process::Child,
    /// Its way out of its network namespace, when it has one.
    network: Option<Box<StepNetwork>>,
    /// Its uid and cgroup: dropping it kills whatever of the worker is left.
    step: Option<Step>,
    /// Its registration in each space of the instance that used it.
    registered: HashMap<String, (Store, Worker)>,
    usage: Arc<Usage>,
    leased_at: chrono::DateTime<chrono::Utc>,
}

/// How many steps run on a worker, and since when none has.
#[derive(Debug)]
struct Usage(Mutex<(usize, Instant)>);

impl Usage {
    fn begin(self: &Arc<Self>) -> Hold {
        if let Ok(mut u) = self.0.lock() {
            u.0 += 1;
        }
        Hold(self.clone())
    }

    fn touch(&self) {
        if let Ok(mut u) = self.0.lock() {
            u.1 = Instant::now();
        }
    }

    /// Whether no step has run on it for `idle`.
    fn idle_for(&self, idle: Duration) -> bool {
        self.0
            .lock()
            .map(|u| u.0 == 0 && u.1.elapsed() >= idle)
            .unwrap_or(false)
    }

    fn busy(&self) -> usize {
        self.0.lock().map(|u| u.0).unwrap_or(0)
    }
}

/// A step's hold on its worker: the idle time counts from its drop.
#[derive(Debug)]
struct Hold(Arc<Usage>);

impl Drop for Hold {
    fn drop(&mut self) {
        if let Ok(mut u) = self.0 .0.lock() {
            u.0 = u.0.saturating_sub(1);
            u.1 = Instant::now();
        }
    }
}

/// A lease as the control plane shows it.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LeaseView {
    pub id: String,
    pub instance: String,
    /// `Starting` while its worker starts, then `Leased`.
    pub state: &'static str,
    pub uri: String,
    pub thumbprint: String,
    /// Its process (bubblewrap's, whose end ends the worker).
    pub pid: Option<u32>,
    /// Steps running on it now.
    pub busy: usize,
    pub leased_at: String,
    /// Its registration in the instance's default space, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
}

impl Lease {
    /// Whether its process, or its way out, has ended.
    fn exited(&mut self) -> bool {
        // Its way out gone, its instance can no longer reach it either.
        matches!(self.child.try_wait(), Ok(Some(_)))
            || self.network.as_mut().is_some_and(|n| n.ended())
    }

    fn view(&self, instance: &str) -> LeaseView {
        LeaseView {
            id: self.id.clone(),
            instance: instance.to_owned(),
            state: "Leased",
            uri: self.uri.clone(),
            thumbprint: self.thumbprint.clone(),
            pid: self.child.id(),
            busy: self.usage.busy(),
            leased_at: self
                .leased_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            worker_id: self
                .registered
                .get(cuttle_model::space::DEFAULT_SPACE_ID)
                .map(|(_, w)| w.id.clone()),
        }
    }

    fn registering(&self, gate: Arc<tokio::sync::Mutex<()>>) -> Registering {
        Registering {
            id: self.id.clone(),
            uri: self.uri.clone(),
            thumbprint: self.thumbprint.clone(),
            gate,
        }
    }
}

impl Entry {
    fn view(&self, instance: &str) -> LeaseView {
        match self {
            Entry::Leased(lease) => lease.view(instance),
            Entry::Starting { serial, since } => LeaseView {
                id: format!("hosted-worker-{serial}"),
                instance: instance.to_owned(),
                state: "Starting",
                uri: String::new(),
                thumbprint: String::new(),
                pid: None,
                busy: 0,
                leased_at: since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                worker_id: None,
            },
        }
    }
}

fn system() -> Actor {
    Actor::from(User {
        id: "system".into(),
        username: "system".into(),
        is_service: true,
        ..Default::default()
    })
}

impl HostedWorkers {
    /// Probes the sandbox workers will run in and clears what a previous
    /// run of the host left in the scratch directory. Fails when workers
    /// could not be isolated and that was not allowed.
    pub async fn start(settings: WorkerSettings) -> anyhow::Result<Arc<HostedWorkers>> {
        use anyhow::Context as _;
        use std::os::unix::fs::PermissionsExt as _;
        let exe = match &settings.binary {
            Some(binary) => binary.clone(),
            None => std::env::current_exe().context("could not find the cuttle binary")?,
        };
        let root = &settings.scratch_root;
        if root.exists() {
            std::fs::remove_dir_all(root)
                .with_context(|| format!("could not clear {}", root.display()))?;
        }
        std::fs::create_dir_all(root)
            .with_context(|| format!("could not create {}", root.display()))?;
        // Searchable, not listable: a worker reaches its own directory only.
        cuttle_engine::sandbox::restrict_dir(root)
            .with_context(|| format!("could not restrict {}", root.display()))?;
        // The host's own binary may lie where a worker cannot see it (below
        // /tmp, which a worker's sandbox replaces, or in a directory its uid
        // cannot enter): each lease runs a read-only copy from its own
        // directory instead.
        let binary = root.join(WORKER_BINARY);
        std::fs::copy(&exe, &binary)
            .with_context(|| format!("could not copy {} to {}", exe.display(), binary.display()))?;
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o555))
            .with_context(|| format!("could not make {} read-only", binary.display()))?;
        let config = SandboxConfig {
            limits: Limits {
                // A worker lives for many steps: its CPU time is not one step's.
                cpu_seconds: None,
                memory_bytes: Some(2 << 30),
                open_files: Some(4096),
                processes: Some(512),
            },
            hidden_paths: vec![settings.host_data_dir.clone(), root.clone()],
            allow_unisolated: settings.allow_unisolated,
            read_only_root: true,
            // Else a script could reach whatever listens on the host's
            // loopback: the control plane, other workers, the database.
            private_network: true,
            ..SandboxConfig::default()
        };
        let sandbox = Sandbox::probe(&config).await;
        if sandbox.refuses() && settings.count > 0 {
            anyhow::bail!("hosted workers cannot be isolated here: {sandbox}");
        }
        if let Some(why) = sandbox.no_private_network() {
            if settings.count > 0 && !settings.allow_unisolated {
                anyhow::bail!(
                    "hosted workers cannot have a network of their own here ({why}), so a script \
                     could reach everything on the host's loopback; install slirp4netns, or \
                     start the host with {} to run them regardless",
                    cuttle_engine::sandbox::UNISOLATED_OPT_IN
                );
            }
            tracing::warn!(
                "hosted workers share the host's network ({why}): scripts can reach what \
                 listens on its loopback"
            );
        }
        if !sandbox.step_uids() {
            tracing::warn!(
                "the host does not run as root: hosted workers run as its own user (kept apart by \
                 namespaces only)"
            );
        }
        tracing::info!(count = settings.count, idle = ?settings.idle, "hosted workers: {sandbox}");
        let workers = Arc::new(HostedWorkers {
            settings,
            binary,
            sandbox: Arc::new(sandbox),
            leases: Default::default(),
            changed: tokio::sync::Notify::new(),
            serial: AtomicU64::new(1),
        });
        let weak = Arc::downgrade(&workers);
        tokio::spawn(reap(weak));
        Ok(workers)
    }

    /// The lender instance `name` borrows workers from.
    pub fn lender_for(self: &Arc<Self>, name: &str) -> Arc<dyn WorkerLender> {
        Arc::new(InstanceLender {
            instance: name.to_owned(),
            workers: Arc::downgrade(self),
        })
    }

    /// The worker leased to `instance`, leasing one if it has none, and
    /// registered in `space_id`. A step holds it with the [`Hold`]. When
    /// every worker is leased to other instances, it waits up to `wait` for
    /// one to be freed (first come, first served), saying so once through
    /// `waiting`; dropping the future leaves the queue.
    async fn lease(
        &self,
        instance: &str,
        store: &Store,
        space_id: &str,
        server_thumbprint: &str,
        wait: Duration,
        waiting: Waiting<'_>,
    ) -> Result<(Worker, Hold), String> {
        let until = Instant::now() + wait;
        let mut ticket: Option<Ticket<'_>> = None;
        let mut told = false;
        loop {
            // Enabled before the look below: a change made after it wakes
            // this wait.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.next(
                instance,
                space_id,
                server_thumbprint,
                &mut ticket,
                !wait.is_zero(),
            )? {
                Next::Lent(worker, hold) => return Ok((worker, hold)),
                Next::Start(serial, replaced) => {
                    if let Some(old) = replaced {
                        wipe(instance, old).await;
                    }
                    self.start_lease(instance, serial, server_thumbprint)
                        .await?;
                }
                Next::Register(lease) => {
                    self.register_lease(instance, store, space_id, lease)
                        .await?;
                }
                Next::AwaitStart => changed.await,
                Next::AwaitFree { count } => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(format!(
                            "no hosted worker was freed within {}: all {count} of the host's \
                             stayed leased to other instances; try again later",
                            humane(wait)
                        ));
                    }
                    if !told {
                        told = true;
                        tracing::info!(instance, "waiting for a hosted worker to be freed");
                        waiting(format!(
                            "Waiting for a hosted worker: all {count} of the host's are leased \
                             to other instances; this step takes the next one freed (waiting up \
                             to {})",
                            humane(wait)
                        ));
                    }
                    let _ = tokio::time::timeout(left, changed).await;
                }
            }
        }
    }

    /// Decides a loan's next move, under the lock; `ticket` is its place in
    /// the queue, taken when it has to wait.
    fn next<'w>(
        &'w self,
        instance: &str,
        space_id: &str,
        server_thumbprint: &str,
        ticket: &mut Option<Ticket<'w>>,
        may_wait: bool,
    ) -> Result<Next, String> {
        let mut guard = self.lock()?;
        let leases = &mut *guard;
        if leases.by_instance.contains_key(instance) {
            // Another step of the instance got it a worker: no place in
            // the queue is needed, and those behind move up.
            if let Some(mut t) = ticket.take() {
                leases.queue.retain(|id| *id != t.id);
                t.queued = false;
                self.changed.notify_waiters();
            }
        }
        match leases.by_instance.get_mut(instance) {
            Some(Entry::Starting { .. }) => return Ok(Next::AwaitStart),
            Some(Entry::Leased(lease)) => {
                // A worker that trusts an older certificate of the instance
                // is replaced (the instance's certificate was switched).
                let stale = lease.server_thumbprint != server_thumbprint;
                // One whose process died (killed, crashed) is replaced too.
                let dead = lease.exited();
                if !stale && !dead {
                    if let Some((_, worker)) = lease.registered.get(space_id) {
                        let worker = worker.clone();
                        lease.usage.touch();
                        return Ok(Next::Lent(worker, lease.usage.begin()));
                    }
                    let gate = leases
                        .registering
                        .entry(instance.to_owned())
                        .or_default()
                        .clone();
                    return Ok(Next::Register(lease.registering(gate)));
                }
                if dead {
                    tracing::warn!(
                        instance,
                        "the hosted worker's process has ended; starting another"
                    );
                }
                let serial = self.serial.fetch_add(1, Ordering::Relaxed);
                let starting = Entry::Starting {
                    serial,
                    since: chrono::Utc::now(),
                };
                let old = match leases.by_instance.insert(instance.to_owned(), starting) {
                    Some(Entry::Leased(old)) => Some(*old),
                    _ => None,
                };
                return Ok(Next::Start(serial, old));
            }
            None => {}
        }
        let count = self.settings.count;
        if count == 0 {
            return Err("the host offers no hosted workers".into());
        }
        let leased = leases.by_instance.len();
        let ahead = match ticket {
            Some(t) => leases.queue.iter().position(|id| *id == t.id).unwrap_or(0),
            None => leases.queue.len(),
        };
        if leased + ahead < count {
            if let Some(mut t) = ticket.take() {
                leases.queue.retain(|id| *id != t.id);
                t.queued = false;
            }
            let serial = self.serial.fetch_add(1, Ordering::Relaxed);
            leases.by_instance.insert(
                instance.to_owned(),
                Entry::Starting {
                    serial,
                    since: chrono::Utc::now(),
                },
            );
            return Ok(Next::Start(serial, None));
        }
        if !may_wait {
            return Err(format!(
                "no hosted worker is free: all {count} of the host's are leased to other \
                 instances; try again later"
            ));
        }
        if ticket.is_none() {
            let id = leases.next_ticket;
            leases.next_ticket += 1;
            leases.queue.push_back(id);
            *ticket = Some(Ticket {
                workers: self,
                id,
                queued: true,
            });
        }
        Ok(Next::AwaitFree { count })
    }

    /// Starts the worker of `instance`'s `Starting` entry `serial`, outside
    /// the lock, and installs it as the instance's lease unless the lease
    /// was ended meanwhile.
    async fn start_lease(
        &self,
        instance: &str,
        serial: u64,
        server_thumbprint: &str,
    ) -> Result<(), String> {
        let started = self.start_worker(instance, serial, server_thumbprint).await;
        let unstarted = {
            let mut leases = self.lock()?;
            let ours = matches!(
                leases.by_instance.get(instance),
                Some(Entry::Starting { serial: s, .. }) if *s == serial
            );
            match started {
                Ok(lease) if ours => {
                    leases
                        .by_instance
                        .insert(instance.to_owned(), Entry::Leased(Box::new(lease)));
                    Ok(())
                }
                Ok(lease) => Err(Some(lease)),
                Err(e) => {
                    if ours {
                        leases.by_instance.remove(instance);
                    }
                    self.changed.notify_waiters();
                    return Err(e);
                }
            }
        };
        self.changed.notify_waiters();
        match unstarted {
            Ok(()) => Ok(()),
            Err(lease) => {
                if let Some(lease) = lease {
                    wipe(instance, lease).await;
                }
                Err("the lease ended while its worker started".into())
            }
        }
    }

    /// Registers `instance`'s leased worker in `space_id`, outside the
    /// lock; a worker that could be registered nowhere is wiped.
    async fn register_lease(
        &self,
        instance: &str,
        store: &Store,
        space_id: &str,
        lease: Registering,
    ) -> Result<(), String> {
        let gate = lease.gate.clone();
        let _registering = gate.lock().await;
        let ours = |leases: &Leases| {
            matches!(
                leases.by_instance.get(instance),
                Some(Entry::Leased(l)) if l.id == lease.id
            )
        };
        {
            let leases = self.lock()?;
            let registered = matches!(
                leases.by_instance.get(instance),
                Some(Entry::Leased(l)) if l.registered.contains_key(space_id)
            );
            // Registered by another step meanwhile, or replaced or ended:
            // the next look decides.
            if registered || !ours(&leases) {
                return Ok(());
            }
        }
        let registered = register(store, space_id, &lease).await;
        // Decided under the lock; what must be awaited is done after it.
        enum After {
            Registered,
            /// Wiped meanwhile: its registration goes too.
            Unregister(Worker),
            /// Registered nowhere: wiped, when it is still the lease.
            Failed(String, Option<Lease>),
        }
        let after = {
            let mut leases = self.lock()?;
            match registered {
                Ok(worker) => match leases.by_instance.get_mut(instance) {
                    Some(Entry::Leased(l)) if l.id == lease.id => {
                        l.registered
                            .insert(space_id.to_owned(), (store.clone(), worker));
                        After::Registered
                    }
                    _ => After::Unregister(worker),
                },
                Err(e) => {
                    let unused = matches!(
                        leases.by_instance.get(instance),
                        Some(Entry::Leased(l)) if l.id == lease.id && l.registered.is_empty()
                    );
                    let orphan = match unused.then(|| leases.by_instance.remove(instance)) {
                        Some(Some(Entry::Leased(orphan))) => Some(*orphan),
                        _ => None,
                    };
                    After::Failed(e, orphan)
                }
            }
        };
        match after {
            After::Registered => Ok(()),
            After::Unregister(worker) => {
                if let Err(e) =
                    cuttle_service::workers::delete_worker(store, &system(), space_id, &worker.id)
                        .await
                {
                    tracing::warn!(instance, worker = %worker.id, error = %e, "a hosted worker's registration remains");
                }
                Err("the hosted worker went away".into())
            }
            After::Failed(e, orphan) => {
                if let Some(orphan) = orphan {
                    wipe(instance, orphan).await;
                    self.changed.notify_waiters();
                }
                Err(format!("the hosted worker could not be registered: {e}"))
            }
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Leases>, String> {
        self.leases
            .lock()
            .map_err(|_| "the hosted workers' state is poisoned".to_owned())
    }

    /// Starts a worker for `instance` in a new scratch directory.
    async fn start_worker(
        &self,
        instance: &str,
        serial: u64,
        server_thumbprint: &str,
    ) -> Result<Lease, String> {
        let id = format!("hosted-worker-{serial}");
        if let Some(ms) = std::env::var(PAUSE_BEFORE_START_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            tracing::info!(instance, worker = %id, "starting a hosted worker; pausing as asked");
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let dir = self.settings.scratch_root.join(uuid_like(&id, instance));
        let started = self.spawn(&id, &dir, server_thumbprint).await;
        match started {
            Ok(lease) => {
                tracing::info!(instance, worker = %lease.id, uri = %lease.uri, "hosted worker leased");
                Ok(lease)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                tracing::warn!(instance, worker = %id, error = %e, "a hosted worker could not start");
                Err(format!("a hosted worker could not start: {e}"))
            }
        }
    }

    async fn spawn(&self, id: &str, dir: &Path, server_thumbprint: &str) -> Result<Lease, String> {
        let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
        std::fs::create_dir(dir).map_err(|e| io("its directory", e))?;
        std::fs::create_dir(dir.join("tmp")).map_err(|e| io("its /tmp", e))?;
        let identity = cuttle_protocol::Identity::generate("Cuttle Hosted Worker")
            .map_err(|e| format!("its certificate: {e}"))?;
        identity
            .replace(dir)
            .map_err(|e| format!("its certificate: {e}"))?;
        let thumbprint = identity.thumbprint().to_string();
        let port = free_port().map_err(|e| io("a port", e))?;
        // In a network namespace of its own, its instance reaches it through
        // a forward of the same port on the host's loopback.
        let listen = if self.sandbox.private_network() {
            format!("0.0.0.0:{port}")
        } else {
            format!("127.0.0.1:{port}")
        };
        let uri = format!("https://127.0.0.1:{port}/");
        // What `cuttle agent register` would leave: it trusts the instance's
        // certificate alone.
        let config = serde_json::json!({
            "Name": id,
            "Listen": listen,
            "ServerUrl": "",
            "TrustedServerThumbprints": [server_thumbprint],
            "MachineId": "",
            "SpaceId": "",
        });
        std::fs::write(
            dir.join("agent.json"),
            serde_json::to_vec_pretty(&config).unwrap_or_default(),
        )
        .map_err(|e| io("agent.json", e))?;
        let mut step = self.sandbox.step().map_err(|e| e.to_string())?;
        step.prepare(dir).await.map_err(|e| e.to_string())?;
        // Placed after the directory was handed to the worker's uid, so the
        // binary stays the host's: a link to the one read-only copy where
        // each lease has a uid of its own, else a copy of the lease's own
        // (the worker runs as the host's user and could write to a link).
        let program = dir.join(WORKER_BINARY);
        if self.sandbox.step_uids() {
            std::fs::hard_link(&self.binary, &program)
        } else {
            std::fs::copy(&self.binary, &program).map(drop)
        }
        .map_err(|e| io("its binary", e))?;
        let host_path =
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        let mut command = step.command(&program, dir);
        command
            .arg("agent")
            .arg("run")
            .arg("--data-dir")
            .arg(dir)
            .env_clear()
            .env("PATH", self.sandbox.search_path(&host_path))
            .env("HOME", dir)
            .env("TMPDIR", "/tmp")
            .env("CUTTLE_AGENT_DATA_DIR", dir)
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| io("starting it", e))?;
        if let Some(stderr) = child.stderr.take() {
            let id = id.to_owned();
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt as _;
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(worker = %id, "{line}");
                }
            });
        }
        let network = match child.id() {
            // Beside the workers' directories, hidden from every worker.
            Some(pid) => match self
                .sandbox
                .attach_network(pid, dir.with_extension("net"))
                .await
            {
                Some(Ok(network)) => Some(Box::new(network)),
                Some(Err(e)) => {
                    let _ = child.start_kill();
                    return Err(format!("its network: {e}"));
                }
                None => None,
            },
            None => None,
        };
        if let Some(network) = &network {
            if let Err(e) = network.forward(port).await {
                let _ = child.start_kill();
                return Err(format!("its network: {e}"));
            }
        }
        let until = Instant::now() + START_TIMEOUT;
        loop {
            // A forward accepts before the worker listens behind it.
            let listening = match &network {
                Some(network) => network.listens_on(port),
                None => tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok(),
            };
            if listening {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("it exited with {status} before listening"));
            }
            if Instant::now() > until {
                let _ = child.start_kill();
                return Err(format!("it did not listen within {START_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(Lease {
            id: id.to_owned(),
            dir: dir.to_owned(),
            uri,
            server_thumbprint: server_thumbprint.to_owned(),
            thumbprint,
            child,
            network,
            step: Some(step),
            registered: HashMap::new(),
            usage: Arc::new(Usage(Mutex::new((0, Instant::now())))),
            leased_at: chrono::Utc::now(),
        })
    }

    /// The worker leased to `instance`, leasing one for it (registered in
    /// its default space) if it has none: the operator's way to give an
    /// instance a worker before its first step needs one. It does not wait
    /// for a worker to be freed.
    pub async fn lease_for(
        &self,
        instance: &str,
        store: &Store,
        server_thumbprint: &str,
    ) -> Result<LeaseView, String> {
        let (_, hold) = self
            .lease(
                instance,
                store,
                cuttle_model::space::DEFAULT_SPACE_ID,
                server_thumbprint,
                Duration::ZERO,
                &|_| {},
            )
            .await?;
        // Idle from now: no step holds it yet.
        drop(hold);
        let leases = self.lock()?;
        leases
            .by_instance
            .get(instance)
            .map(|l| l.view(instance))
            .ok_or_else(|| "the hosted worker went away".to_owned())
    }

    /// Ends `instance`'s lease, wiping its worker (one still starting is
    /// wiped by its start); whether it had one.
    pub async fn end_lease(&self, instance: &str) -> bool {
        let entry = match self.lock() {
            Ok(mut leases) => leases.by_instance.remove(instance),
            Err(_) => None,
        };
        let had = entry.is_some();
        if let Some(Entry::Leased(lease)) = entry {
            wipe(instance, *lease).await;
        }
        if had {
            self.changed.notify_waiters();
        }
        had
    }

    /// The leases, and how many loans wait for a worker to be freed.
    pub fn leases(&self) -> (Vec<LeaseView>, usize) {
        let Ok(leases) = self.lock() else {
            return (vec![], 0);
        };
        let mut views: Vec<LeaseView> = leases
            .by_instance
            .iter()
            .map(|(name, l)| l.view(name))
            .collect();
        views.sort_by(|a, b| a.instance.cmp(&b.instance));
        (views, leases.queue.len())
    }

    pub fn settings(&self) -> &WorkerSettings {
        &self.settings
    }

    /// Wipes every worker, for the host's shutdown.
    pub async fn shutdown(&self) {
        let all: Vec<(String, Entry)> = match self.lock() {
            Ok(mut leases) => leases.by_instance.drain().collect(),
            Err(_) => vec![],
        };
        self.changed.notify_waiters();
        for (instance, entry) in all {
            if let Entry::Leased(lease) = entry {
                wipe(&instance, *lease).await;
            }
        }
        let _ = std::fs::remove_dir_all(&self.settings.scratch_root);
    }
}

/// Ends the leases idle for longer than the settings allow, until the
/// host's workers are gone.
async fn reap(workers: Weak<HostedWorkers>) {
    loop {
        let tick = match workers.upgrade() {
            Some(w) => {
                (w.settings.idle / 4).clamp(Duration::from_millis(200), Duration::from_secs(5))
            }
            None => return,
        };
        tokio::time::sleep(tick).await;
        let Some(w) = workers.upgrade() else { return };
        let idle: Vec<(String, Lease)> = match w.lock() {
            Ok(mut leases) => {
                let names: Vec<String> = leases
                    .by_instance
                    .iter_mut()
                    .filter_map(|(n, entry)| match entry {
                        Entry::Leased(l) if l.usage.busy() == 0 => {
                            (l.usage.idle_for(w.settings.idle) || l.exited()).then(|| n.clone())
                        }
                        _ => None,
                    })
                    .collect();
                let ended: Vec<(String, Lease)> = names
                    .into_iter()
                    .filter_map(|n| match leases.by_instance.remove(&n) {
                        Some(Entry::Leased(l)) => Some((n, *l)),
                        _ => None,
                    })
                    .collect();
                // The gates of instances without a lease, unless in use.
                let Leases {
                    by_instance,
                    registering,
                    ..
                } = &mut *leases;
                registering
                    .retain(|n, gate| by_instance.contains_key(n) || Arc::strong_count(gate) > 1);
                ended
            }
            Err(_) => return,
        };
        let ended = !idle.is_empty();
        for (instance, lease) in idle {
            tracing::info!(instance = %instance, worker = %lease.id, "hosted worker idle or ended; its lease ends");
            wipe(&instance, lease).await;
        }
        if ended {
            w.changed.notify_waiters();
        }
    }
}

/// Kills a worker, removes its registrations and deletes its directory.
async fn wipe(instance: &str, mut lease: Lease) {
    let _ = lease.child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), lease.child.wait()).await;
    // Its way out goes with it, not with the last handle on the lease.
    drop(lease.network.take());
    if let Some(step) = lease.step.take() {
        // Whatever the worker started, wherever it went.
        step.kill();
        drop(step);
    }
    for (space, (store, worker)) in lease.registered.drain() {
        if let Err(e) =
            cuttle_service::workers::delete_worker(&store, &system(), &space, &worker.id).await
        {
            tracing::warn!(instance, worker = %worker.id, error = %e, "a hosted worker's registration remains");
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&lease.dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(instance, dir = %lease.dir.display(), error = %e, "a hosted worker's directory remains");
        }
    }
    tracing::info!(instance, worker = %lease.id, "hosted worker wiped");
}

/// Registers the lease's worker in `space_id`'s hosted pool (made if
/// missing), removing the registrations of workers a host killed outright
/// left there.
async fn register(store: &Store, space_id: &str, lease: &Registering) -> Result<Worker, String> {
    let err = |e: cuttle_service::ServiceError| e.to_string();
    let q = DocumentQuery::in_space(space_id);
    let pools = store
        .list::<WorkerPool>(&q)
        .await
        .map_err(|e| e.to_string())?
        .items;
    let pool = match pools.into_iter().find(|p| p.name == HOSTED_POOL) {
        Some(pool) => pool,
        None => cuttle_service::workers::create_worker_pool(
            store,
            &system(),
            space_id,
            WorkerPool {
                name: HOSTED_POOL.into(),
                description: "Workers the host lends this instance, one at a time".into(),
                ..Default::default()
            },
        )
        .await
        .map_err(err)?,
    };
    let leftovers = cuttle_service::workers::pool_workers(store, space_id, &pool.id)
        .await
        .map_err(err)?;
    // Only the host's own: a worker an administrator put in the pool stays.
    let ours = |w: &Worker| {
        w.name.starts_with("hosted-worker-") && w.endpoint.uri.starts_with("https://127.0.0.1:")
    };
    for old in leftovers.into_iter().filter(ours) {
        cuttle_service::workers::delete_worker(store, &system(), space_id, &old.id)
            .await
            .map_err(err)?;
    }
    let worker = Worker {
        name: lease.id.clone(),
        worker_pool_ids: vec![pool.id],
        endpoint: Endpoint {
            id: None,
            communication_style: Some(CommunicationStyle::TentaclePassive),
            uri: lease.uri.clone(),
            thumbprint: lease.thumbprint.clone(),
        },
        ..Default::default()
    };
    cuttle_service::workers::create_worker(store, &system(), space_id, worker)
        .await
        .map_err(err)
}

/// A duration as an operator writes one: `5m`, `90s`, `500ms`.
fn humane(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// A port free on loopback now (the worker binds it a moment later).
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A scratch directory's name: the worker and a random part, so that no
/// name is reused across leases.
fn uuid_like(id: &str, instance: &str) -> String {
    use sha2::Digest as _;
    let mut random = [0u8; 16];
    let _ = getrandom_bytes(&mut random);
    let digest = sha2::Sha256::digest([id.as_bytes(), instance.as_bytes(), &random].concat());
    format!("{id}-{}", &hex::encode(digest)[..16])
}

fn getrandom_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// What one instance borrows through.
#[derive(Debug)]
struct InstanceLender {
    instance: String,
    workers: Weak<HostedWorkers>,
}

impl WorkerLender for InstanceLender {
    fn lend<'a>(
        &'a self,
        store: &'a Store,
        space_id: &'a str,
        server_thumbprint: &'a str,
        waiting: Waiting<'a>,
    ) -> BoxFuture<'a, Result<Lent, String>> {
        Box::pin(async move {
            let Some(workers) = self.workers.upgrade() else {
                return Err("the host is stopping".to_owned());
            };
            let wait = workers.settings.wait;
            let (worker, hold) = workers
                .lease(
                    &self.instance,
                    store,
                    space_id,
                    server_thumbprint,
                    wait,
                    waiting,
                )
                .await?;
            Ok(Lent {
                worker,
                hold: Box::new(hold),
            })
        })
    }
}

/// The control plane's side: lease a worker to instance `name` now.
pub async fn lease_to(host: &Host, name: &str) -> Result<LeaseView, HostError> {
    let workers = offered(host)?;
    let served = match host.slot(name) {
        Some(Slot::Serving(served)) => served,
        Some(_) => {
            return Err(HostError::Conflict(format!(
                "The instance '{name}' is not running, so it cannot be lent a worker"
            )))
        }
        None => {
            return Err(HostError::NotFound(format!(
                "There is no instance '{name}'"
            )))
        }
    };
    let thumbprint = served.instance.agents.identity().thumbprint().to_string();
    workers
        .lease_for(name, &served.instance.store, &thumbprint)
        .await
        .map_err(|why| {
            if why.starts_with("no hosted worker is free") {
                HostError::Conflict(capitalised(&why))
            } else {
                HostError::Internal(why)
            }
        })
}

/// The control plane's side: end instance `name`'s lease.
pub async fn end_lease_of(host: &Host, name: &str) -> Result<(), HostError> {
    if offered(host)?.end_lease(name).await {
        Ok(())
    } else {
        Err(HostError::NotFound(format!(
            "The instance '{name}' has no hosted worker"
        )))
    }
}

fn offered(host: &Host) -> Result<&Arc<HostedWorkers>, HostError> {
    host.config.hosted_workers.as_ref().ok_or_else(|| {
        HostError::BadRequest(
            "This host offers no hosted workers (start it with --hosted-workers N)".into(),
        )
    })
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `--hosted-worker-dir`'s default: in the system's temporary directory,
/// named for the host's data directory, so two hosts never share one.
pub fn default_scratch_root(host_data_dir: &Path) -> PathBuf {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(host_data_dir.as_os_str().as_encoded_bytes());
    std::env::temp_dir().join(format!(
        "cuttle-hosted-workers-{}",
        &hex::encode(digest)[..12]
    ))
}

/// A duration as `90s`, `10m`, `1h` or `500ms` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 90s, 10m or 1h"))?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => {
            return Err(format!(
                "'{other}' is not a unit of duration; use ms, s, m or h"
            ))
        }
    };
    if d.is_zero() {
        return Err("the idle time must be more than zero".into());
    }
    Ok(d)
}

/// How long a step may wait for a worker: a duration as for
/// [`parse_duration`], or 0 for not at all.
pub fn parse_wait(text: &str) -> Result<Duration, String> {
    if text.trim().trim_end_matches(['m', 's', 'h']) == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_may_be_zero_but_not_nonsense() {
        assert_eq!(parse_wait("0"), Ok(Duration::ZERO));
        assert_eq!(parse_wait("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_wait("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_wait("soon").is_err());
        assert!(parse_wait("-1s").is_err());
    }

    #[test]
    fn durations_are_said_as_an_operator_writes_them() {
        assert_eq!(humane(Duration::from_secs(300)), "5m");
        assert_eq!(humane(Duration::from_secs(90)), "90s");
        assert_eq!(humane(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn durations_are_read_with_their_units_and_nonsense_is_refused() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten minutes").is_err());
        assert!(parse_duration("5d").unwrap_err().contains("'d'"));
        assert!(parse_duration("").is_err());
    }
}
