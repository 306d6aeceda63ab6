//! One installation: its store, its task runner, its data directory and
//! settings, passed explicitly to every command (never global), so that one
//! process can later host several isolated installations.

use crate::Result;
use cuttle_engine::{Runner, RunnerConfig};
use cuttle_model::TaskState;
use cuttle_store::secrets::KEY_CHECK_SETTING;
use cuttle_store::{MasterKey, Store};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The Octopus API level Cuttle reports in `GET /api`; clients gate features
/// (creating releases through the executions API) on it.
pub const OCTOPUS_COMPATIBLE_VERSION: &str = "2024.1.0";
pub const CUTTLE_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Debug)]
pub struct InstanceConfig {
    pub data_dir: PathBuf,
    /// `None` means SQLite in the data directory.
    pub database_url: Option<String>,
    pub node_name: String,
    pub max_concurrent_tasks: usize,
    /// How long a running task stays this node's without a renewal (on
    /// the database's clock); another node takes it over after that.
    pub task_lease: Duration,
    pub default_script_timeout: Duration,
    /// The master key as base64 text; `None` means `<data dir>/master.key`,
    /// created at first start.
    pub master_key: Option<String>,
    /// How long the built-in feed keeps package versions no release uses;
    /// `None` keeps them for ever.
    pub package_retention: Option<Duration>,
    /// Most password hashes computed at once (each takes a core and 19 MiB).
    pub max_concurrent_password_hashes: usize,
    /// When failed sign-ins are refused for a while.
    pub sign_in_throttle: crate::sign_in_throttle::ThrottleConfig,
    /// The isolation of scripts on the built-in worker (its
    /// `allow_unisolated` is the operator's explicit choice to run them where
    /// steps can be neither contained nor kept apart). Its hidden paths are
    /// replaced by the data directory.
    pub builtin_worker: cuttle_engine::sandbox::SandboxConfig,
    /// Whether tasks, deployments, HTTP requests and agent commands are
    /// counted (`/metrics` still answers, with the gauges read at scrape
    /// time); off only to measure what counting costs.
    pub count_metrics: bool,
    /// Whether changes are written to the audit log; off only to measure
    /// what the log costs (for this installation's store alone, see
    /// [`cuttle_store::Store::set_recording_events`]).
    pub record_audit_events: bool,
    /// How subscriptions' deliveries are retried and where they may go.
    pub subscriptions: crate::subscriptions::SubscriptionConfig,
    /// Heartbeats, the leader lease, and when a node counts as offline.
    pub cluster: crate::nodes::ClusterConfig,
    /// Where package files are kept: the data directory by default.
    pub blob_store: cuttle_store::blobs::BlobLocation,
    /// Labels (name, value) on every metric series, beside the `node` that
    /// a server on PostgreSQL adds (see [`metric_labels`]).
    pub metric_labels: Vec<(String, String)>,
    /// The most tasks this installation may run at once, set by the host
    /// it runs on (`cuttle host`): its administrators cannot raise their
    /// node's cap above it. `None` for a server of one's own.
    pub hosted_task_cap: Option<usize>,
    /// The most bytes this installation's data directory may hold, set by
    /// its host: a package push that would pass it is refused. `None` for
    /// a server of one's own.
    pub hosted_storage_quota: Option<u64>,
    /// The connections its store may hold on PostgreSQL.
    pub postgres_pool: cuttle_store::PostgresPool,
    /// Workers its host lends it, for steps that would run on the built-in
    /// worker when it has none (`builtin_worker.enabled` off).
    pub hosted_workers: Option<Arc<dyn cuttle_engine::hosted_workers::WorkerLender>>,
    /// When its periodic jobs last ran: a host hands the same times to an
    /// instance it opens again, so the schedule carries on.
    pub job_times: crate::job_times::JobTimes,
    /// Its metrics registry, made at its first opening: a host hands the
    /// same one to an instance it opens again, so its counters carry on.
    pub kept_metrics: KeptMetrics,
    /// No other node ever opens its database (a host's instance on
    /// PostgreSQL, whose database is the host's alone; on SQLite there is
    /// one node anyway): its loops then wait for what this process tells
    /// them instead of polling for other nodes' work. See
    /// [`Instance::is_sole_node`].
    pub sole_node: bool,
}

/// An installation's metrics registry, kept while a host closes it and
/// opens it again: a counter that went back to zero at each wake would
/// read, to Prometheus, as a restart. Cloning shares the registry.
#[derive(Clone, Default)]
pub struct KeptMetrics(Arc<std::sync::OnceLock<Arc<cuttle_metrics::Metrics>>>);

impl KeptMetrics {
    /// The registry, if an opening has made it.
    pub fn get(&self) -> Option<Arc<cuttle_metrics::Metrics>> {
        self.0.get().cloned()
    }
}

impl std::fmt::Debug for KeptMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KeptMetrics")
            .field(&self.0.get().map(|_| "made"))
            .finish()
    }
}

impl InstanceConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        InstanceConfig {
            data_dir,
            database_url: None,
            node_name: default_node_name(),
            max_concurrent_tasks: 8,
            task_lease: cuttle_engine::runner::DEFAULT_TASK_LEASE,
            default_script_timeout: Duration::from_secs(3600),
            master_key: None,
            package_retention: None,
            max_concurrent_password_hashes: crate::passwords::Passwords::default_concurrency(),
            sign_in_throttle: Default::default(),
            builtin_worker: Default::default(),
            count_metrics: true,
            record_audit_events: true,
            subscriptions: Default::default(),
            cluster: Default::default(),
            blob_store: cuttle_store::blobs::BlobLocation::Directory(None),
            metric_labels: vec![],
            hosted_task_cap: None,
            hosted_storage_quota: None,
            postgres_pool: Default::default(),
            hosted_workers: None,
            job_times: Default::default(),
            kept_metrics: Default::default(),
            sole_node: false,
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| Store::sqlite_url(&self.data_dir.join("cuttle.db")))
    }
}

/// The labels on every metric series: the configuration's, and on
/// PostgreSQL, where several nodes may serve one installation, `node` with
/// this node's name (each node counts what it did itself). A SQLite
/// installation is one node, and its series carry no `node`.
pub fn metric_labels(
    config: &InstanceConfig,
    backend: cuttle_store::Backend,
) -> Vec<(String, String)> {
    let mut labels = config.metric_labels.clone();
    if backend == cuttle_store::Backend::Postgres && !labels.iter().any(|(k, _)| k == "node") {
        labels.push(("node".into(), config.node_name.clone()));
    }
    labels
}

fn default_node_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "cuttle".into())
}

pub struct Instance {
    pub store: Store,
    pub master_key: MasterKey,
    pub runner: Runner,
    pub config: InstanceConfig,
    pub installation_id: String,
    /// The certificate this server presents to agents, which they pin.
    pub identity: Arc<cuttle_protocol::Identity>,
    /// The certificate this server will present after the next rotation
    /// (`cuttle server certificate new`), published so that agents can trust
    /// it before it is presented. Read at start only, and never presented.
    pub next_thumbprint: Option<cuttle_protocol::Thumbprint>,
    /// The server's connections to agents, polling ones included.
    pub agents: Arc<cuttle_protocol::Agents>,
    /// Where package files are kept (shared by every node of the installation).
    pub blobs: cuttle_store::blobs::Blobs,
    /// Held while a package file and its rows are paired or parted.
    pub package_files: crate::packages::PackageFiles,
    /// Where polling agents connect (0 until the endpoint is listening).
    pub polling_port: std::sync::atomic::AtomicU16,
    /// Password hashing, off the async workers and bounded.
    pub passwords: crate::passwords::Passwords,
    /// Failed sign-ins, per username and per client address.
    pub sign_ins: crate::sign_in_throttle::SignInThrottle,
    /// This installation's metrics, served at `/metrics`.
    pub metrics: Arc<cuttle_metrics::Metrics>,
    /// Held by a scrape while it refreshes the gauges it reads.
    pub scrapes: tokio::sync::Mutex<()>,
    /// Set when the server begins shutting down, so `/readyz` turns traffic away.
    draining: std::sync::atomic::AtomicBool,
    /// Wakes the subscriptions' dispatcher.
    pub dispatcher: crate::subscriptions::Dispatcher,
    /// This server as a node of the cluster: whether it leads, its clock.
    pub node: crate::nodes::NodeState,
    /// The host's cap on concurrent tasks (0: none); see
    /// [`InstanceConfig::hosted_task_cap`]. The host may change it while
    /// the instance runs.
    pub hosted_task_cap: std::sync::atomic::AtomicUsize,
    /// The host's storage quota in bytes (0: none); see
    /// [`InstanceConfig::hosted_storage_quota`]. The host may change it.
    pub hosted_storage_quota: std::sync::atomic::AtomicU64,
    /// Cancelled when the instance is closed: its background loops end.
    pub stopping: tokio_util::sync::CancellationToken,
}

impl Instance {
    /// Whether a certificate is one of this installation's polling agents,
    /// asked of its database after each polling agent's handshake.
    pub fn registered_polling_agents(&self) -> cuttle_protocol::polling::Registered {
        let store = self.store.clone();
        Arc::new(move |thumbprint| {
            let store = store.clone();
            Box::pin(async move {
                match store.polling_agent_registered(thumbprint.as_str()).await {
                    Ok(known) => known,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not look up a polling agent");
                        false
                    }
                }
            })
        })
    }

    /// Opens the database (running migrations), makes sure the default space
    /// exists, starts the task runner, and follows the tasks it finishes to
    /// queue automatic lifecycle deployments.
    pub async fn open(mut config: InstanceConfig) -> Result<Arc<Instance>> {
        let unusable = |e: std::io::Error| {
            crate::ServiceError::Internal(format!(
                "The data directory {} could not be created: {e}",
                config.data_dir.display()
            ))
        };
        crate::nodes::check_node_name(&config.node_name)?;
        std::fs::create_dir_all(&config.data_dir).map_err(unusable)?;
        // Absolute from here on: scripts run in directories of their own,
        // where a path relative to the server's would mean nothing.
        config.data_dir = std::fs::canonicalize(&config.data_dir).map_err(unusable)?;
        let mut store = Store::open_with(&config.database_url(), config.postgres_pool).await?;
        if !config.record_audit_events {
            tracing::warn!("the audit log is off: changes go unrecorded");
            store.set_recording_events(false);
        }
        let metrics = match config.kept_metrics.get() {
            Some(kept) => kept,
            None => {
                let made = Arc::new(
                    cuttle_metrics::Metrics::with_labels(
                        CUTTLE_VERSION,
                        store.backend().name(),
                        &metric_labels(&config, store.backend()),
                    )
                    .map_err(|e| {
                        crate::ServiceError::Internal(format!("The metrics' labels: {e}"))
                    })?,
                );
                // Two openings at once cannot happen; were one to, the
                // registry kept is the first's.
                let _ = config.kept_metrics.0.set(made.clone());
                config.kept_metrics.get().unwrap_or(made)
            }
        };
        let outcomes: Vec<&str> = TaskState::ALL
            .iter()
            .filter(|s| s.is_completed())
            .map(|s| s.as_str())
            .collect();
        metrics.expect(
            &crate::metrics::TASK_TYPES,
            &outcomes,
            &cuttle_protocol::client::COMMANDS,
            &crate::metrics::ERROR_SOURCES,
        );
        metrics
            .task_default_timeout_seconds
            .set(i64::try_from(config.default_script_timeout.as_secs()).unwrap_or(i64::MAX));
        // Before anything starts: a store that cannot be reached stops the
        // server here, with what was wrong.
        let blobs = cuttle_store::blobs::Blobs::open(&config.blob_store, &config.data_dir)
            .await
            .map_err(|e| {
                crate::ServiceError::Unavailable(format!("The blob store cannot be used: {e}"))
            })?;
        let master_key = open_master_key(&store, &config).await?;
        restrict_data_dir(&config.data_dir)?;
        crate::bootstrap::ensure_default_space(&store).await?;
        crate::bootstrap::ensure_space_defaults(&store).await?;
        crate::permissions::ensure_builtins(&store).await?;
        let installation_id = store
            .setting_or_insert("installation_id", &uuid::Uuid::new_v4().to_string())
            .await?;
        // One for the installation, whichever node presents it: agents pin it.
        let identity =
            Arc::new(crate::server_identity::resolve(&store, &master_key, &config.data_dir).await?);
        if let Some(expires) = identity.expires_at() {
            metrics.certificate_expires("server", expires);
        }
        let next_thumbprint = load_next_thumbprint(&config.data_dir);
        let mut runner_config =
            RunnerConfig::new(config.node_name.clone(), config.data_dir.join("work"));
        runner_config.max_concurrent_tasks = config.max_concurrent_tasks;
        runner_config.lease = config.task_lease;
        runner_config.packages = blobs.clone();
        runner_config.default_script_timeout = config.default_script_timeout;
        runner_config.hosted_workers = config.hosted_workers.clone();
        // Scripts on the built-in worker must not see the database or keys.
        let mut hidden_paths = vec![config.data_dir.clone()];
        // Nor other projects' package files, in a blob directory elsewhere.
        if let Some(root) = blobs.directory_root() {
            if !root.starts_with(&config.data_dir) {
                let packages = root.join("packages");
                std::fs::create_dir_all(&packages).map_err(|e| {
                    crate::ServiceError::Internal(format!(
                        "The blob directory {} could not be created: {e}",
                        packages.display()
                    ))
                })?;
                hidden_paths.push(root.to_path_buf());
            }
        }
        runner_config.sandbox = cuttle_engine::sandbox::SandboxConfig {
            hidden_paths,
            ..config.builtin_worker.clone()
        };
        let mut agents = cuttle_protocol::Agents::new(
            identity.clone(),
            cuttle_protocol::polling::PollingHub::new(),
        );
        if config.count_metrics {
            let counted = metrics.clone();
            agents = agents.with_round_trips(Arc::new(move |command, took, failed| {
                counted.agent_command(command, took, failed)
            }));
            runner_config.metrics = Some(metrics.clone());
        }
        let sole_node = config.sole_node || store.backend() == cuttle_store::Backend::Sqlite;
        runner_config.sole_node = sole_node;
        // Several nodes: a step reaches a polling agent connected to
        // another node through the database.
        let several_nodes = !sole_node;
        let holder_lapse = config.cluster.heartbeat * 3;
        if several_nodes {
            let relay = cuttle_engine::agent_relay::DatabaseRelay::start(
                store.clone(),
                config.node_name.clone(),
                holder_lapse,
            )
            .await?;
            agents = agents.with_relay(relay);
        }
        let agents = Arc::new(agents);
        if several_nodes {
            let hub = agents.polling();
            cuttle_engine::agent_relay::carry_requests(
                store.clone(),
                hub.clone(),
                config.node_name.clone(),
            )
            .await?;
            cuttle_engine::agent_relay::record_held_agents(
                store.clone(),
                hub,
                config.node_name.clone(),
                holder_lapse,
            );
        }
        runner_config.agents = Some(agents.clone());
        let runner = Runner::start(store.clone(), master_key.clone(), runner_config).await?;
        let finished = runner.subscribe_finished();
        let inst = Arc::new(Instance {
            store,
            master_key,
            runner,
            installation_id,
            identity,
            next_thumbprint,
            agents,
            polling_port: Default::default(),
            blobs,
            package_files: Default::default(),
            passwords: crate::passwords::Passwords::new(config.max_concurrent_password_hashes),
            sign_ins: crate::sign_in_throttle::SignInThrottle::new(config.sign_in_throttle),
            metrics,
            scrapes: Default::default(),
            draining: Default::default(),
            dispatcher: Default::default(),
            node: Default::default(),
            hosted_task_cap: config.hosted_task_cap.unwrap_or(0).into(),
            hosted_storage_quota: config.hosted_storage_quota.unwrap_or(0).into(),
            stopping: Default::default(),
            config,
        });
        // Before the leader's jobs start, so a single node leads from its
        // first moment.
        crate::nodes::join(&inst).await?;
        // Weak: the follower must not keep the instance alive.
        let (weak, stopping) = (Arc::downgrade(&inst), inst.stopping.clone());
        let jobs = inst.config.job_times.clone();
        crate::progression::follow_finished_tasks(weak.clone(), finished, stopping.clone());
        crate::health_schedule::follow(weak.clone(), jobs.clone(), stopping.clone());
        crate::subscriptions::dispatch::follow(
            weak.clone(),
            inst.dispatcher.clone(),
            stopping.clone(),
        );
        if let Some(keep_for) = inst.config.package_retention {
            crate::package_retention::follow(weak, keep_for, jobs, stopping);
        }
        Ok(inst)
    }

    /// Closes the instance for good: it claims no more tasks, its running
    /// steps get `grace` to finish, its background loops end, its node
    /// records that it stopped, its polling agents are let go and its
    /// database connections are closed. What remains is freed once the
    /// last handle on it is dropped.
    pub async fn close(&self, grace: Duration) {
        self.begin_draining();
        self.runner.shutdown(grace).await;
        self.stopping.cancel();
        crate::nodes::leave(self).await;
        self.agents.polling().disconnect_all();
        self.store.close().await;
    }

    /// Whether no other node can share this installation's database: on
    /// SQLite, or where its host says so ([`InstanceConfig::sole_node`]).
    pub fn is_sole_node(&self) -> bool {
        self.config.sole_node || self.store.backend() == cuttle_store::Backend::Sqlite
    }

    /// Whether anything is under way that closing would cut short: a task
    /// running here, or a polling agent connected.
    pub fn is_busy(&self) -> bool {
        self.runner.running_count() > 0 || self.agents.polling().any_connected()
    }

    /// When this instance next has work to do by itself, in milliseconds
    /// since the epoch: a queued or scheduled task, a scheduled health
    /// check, feed retention. `None`: nothing until someone asks.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        next_due(&self.store, &self.config).await
    }
}

/// What a host keeps of an instance it does not run (see [`peek`]).
pub struct Dormant {
    /// The certificate it presents to agents.
    pub identity: Arc<cuttle_protocol::Identity>,
    /// The certificates of its polling machines and workers.
    pub polling_thumbprints: Vec<String>,
    /// When it has work to do by itself (see [`Instance::next_due`]).
    pub next_due: Option<i64>,
}

/// Reads what a host needs of an instance without opening it: no runner,
/// no loops, and its database closed again before returning. Tasks that a
/// previous run left running make it due at once (opening closes them).
pub async fn peek(config: &InstanceConfig) -> Result<Dormant> {
    let store = Store::open_with(&config.database_url(), config.postgres_pool).await?;
    let read = async {
        let master_key = open_master_key(&store, config).await?;
        let identity =
            crate::server_identity::resolve(&store, &master_key, &config.data_dir).await?;
        let polling_thumbprints = store.polling_agent_thumbprints().await?;
        let mut due = next_due(&store, config).await?;
        if !store
            .orphaned_tasks(Some(&config.node_name))
            .await?
            .is_empty()
        {
            due = Some(cuttle_model::Timestamp::now().millis());
        }
        Ok(Dormant {
            identity: Arc::new(identity),
            polling_thumbprints,
            next_due: due,
        })
    };
    let dormant = read.await;
    store.close().await;
    dormant
}

async fn next_due(store: &Store, config: &InstanceConfig) -> Result<Option<i64>> {
    let now = tokio::time::Instant::now();
    let now_ms = cuttle_model::Timestamp::now().millis();
    let at = |due: tokio::time::Instant| {
        now_ms + i64::try_from(due.saturating_duration_since(now).as_millis()).unwrap_or(i64::MAX)
    };
    let mut due = store.next_scheduled_time().await?.map(|t| t.millis());
    let health = crate::health_schedule::next_due(store, &config.job_times).await?;
    due = due.into_iter().chain(health.map(at)).min();
    if config.package_retention.is_some() {
        let retention = at(crate::package_retention::next_due(&config.job_times));
        due = Some(due.map_or(retention, |d| d.min(retention)));
    }
    Ok(due)
}

impl Instance {
    /// From now on `/readyz` answers 503: the server is shutting down.
    pub fn begin_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether this node runs the cluster-wide jobs now.
    pub fn is_leader(&self) -> bool {
        self.node.is_leader()
    }

    /// Accepts polling agents on `listener` until `shutdown` completes,
    /// letting in only certificates registered as polling machines or
    /// workers at the moment they connect.
    pub async fn serve_polling_agents(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        if let Ok(addr) = listener.local_addr() {
            self.polling_port
                .store(addr.port(), std::sync::atomic::Ordering::Relaxed);
        }
        let tls = cuttle_protocol::trust::polling_server_config(&self.identity)
            .map_err(|e| crate::ServiceError::Internal(e.to_string()))?;
        let registered = self.registered_polling_agents();
        self.agents
            .polling()
            .clone()
            .serve(listener, tls, registered, shutdown)
            .await;
        Ok(())
    }
}

/// The next identity's thumbprint, if there is a usable one. One that cannot
/// be loaded (half written, a key others can read) is not published, so no
/// agent is told to trust it, but it does not stop the server either: the
/// server never presents it.
fn load_next_thumbprint(data_dir: &std::path::Path) -> Option<cuttle_protocol::Thumbprint> {
    use cuttle_protocol::identity::Slot;
    if !cuttle_protocol::Identity::exists_slot(data_dir, Slot::Next) {
        return None;
    }
    match cuttle_protocol::Identity::load_slot(data_dir, Slot::Next) {
        Ok(next) => Some(next.thumbprint().clone()),
        Err(e) => {
            tracing::warn!(error = %e, "the next server certificate is not published");
            None
        }
    }
}

/// The data directory is searchable but not listable by others (the built-in
/// worker's unprivileged user passes through it to its own work directory),
/// and its secrets are the owner's alone: SQLite creates its files 0644, and
/// files from older versions may be too.
fn restrict_data_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: &std::path::Path, mode: u32| match std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(mode),
    ) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(crate::ServiceError::Internal(format!(
                "The permissions of {} could not be restricted: {e}",
                path.display()
            )))
        }
        _ => Ok(()),
    };
    // A shared directory such as /tmp (sticky) is never the server's to restrict.
    let shared = std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o1000 != 0);
    if !shared {
        set(dir, 0o711)?;
    }
    for name in [
        "master.key",
        "initial-admin.txt",
        "cuttle.db",
        "cuttle.db-wal",
        "cuttle.db-shm",
    ] {
        set(&dir.join(name), 0o600)?;
    }
    Ok(())
}

/// Loads the master key and makes sure it is the one this database's sensitive
/// values were sealed with: starting with another key would leave them
/// unreadable and mix two keys in one database, so the server refuses.
async fn open_master_key(store: &Store, config: &InstanceConfig) -> Result<MasterKey> {
    let refuse = |e: cuttle_store::SecretError| crate::ServiceError::Internal(e.to_string());
    let key = match &config.master_key {
        Some(text) => MasterKey::from_base64(text)
            .map_err(|e| crate::ServiceError::Internal(format!("CUTTLE_MASTER_KEY: {e}")))?,
        None => {
            let path = config.data_dir.join("master.key");
            // A database set up with a key whose file is gone (a volume
            // mounted without it, a Secret not passed in): making a new key
            // would fail the check below anyway, and leave a stray file.
            if !path.exists() && store.setting(KEY_CHECK_SETTING).await?.is_some() {
                return Err(crate::ServiceError::Internal(format!(
                    "This database was set up with a master key (it holds that key's check,                      the '{KEY_CHECK_SETTING}' setting), but no master key was given: neither                      CUTTLE_MASTER_KEY (master_key in cuttle.toml) nor {}. Start with the                      original key; a new one could not read the sensitive values.",
                    path.display()
                )));
            }
            MasterKey::load_or_create(&path).map_err(refuse)?
        }
    };
    let check = store
        .setting_or_insert(KEY_CHECK_SETTING, &key.key_check())
        .await?;
    if !key.matches(&check) {
        return Err(crate::ServiceError::Internal(
            "The master key does not match the one this database was set up with, so its \
             sensitive values could not be read. Start with the original key (the data \
             directory's master.key, or CUTTLE_MASTER_KEY)."
                .into(),
        ));
    }
    Ok(key)
}
