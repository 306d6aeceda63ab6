//! The instances of a host and their lifecycle: created, opened at start,
//! suspended, resumed, changed and deleted. Each is a whole [`Instance`],
//! opened by the same code as `cuttle server`'s, in a data directory (and,
//! on PostgreSQL, a database) of its own.

use super::archive;
use cuttle_service::{Instance, InstanceConfig};
use cuttle_store::host::{HostRegistry, InstanceRecord, InstanceState};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Makes creation pause after its `Creating` record is written, for this
/// many milliseconds, so a test can kill the host at that point.
pub const PAUSE_AFTER_RECORD_ENV: &str = "CUTTLE_HOST_TEST_PAUSE_AFTER_RECORD_MS";

/// What a lifecycle operation failed with; the control plane answers each
/// kind with its status.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl HostError {
    fn internal(what: &str, e: impl std::fmt::Display) -> HostError {
        HostError::Internal(format!("{what}: {e}"))
    }
}

impl From<cuttle_store::StoreError> for HostError {
    fn from(e: cuttle_store::StoreError) -> Self {
        match e {
            cuttle_store::StoreError::Conflict(m) => HostError::Conflict(m),
            cuttle_store::StoreError::NotFound(m) => {
                HostError::NotFound(format!("{m} was not found"))
            }
            other => HostError::Internal(format!("the host's registry: {other}")),
        }
    }
}

/// How the host is set up.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// The host's own directory: `host.db`, `instances/NAME/`, `archive/`.
    pub data_dir: PathBuf,
    /// Instances answer at `NAME.DOMAIN` (lower case).
    pub domain: String,
    /// The PostgreSQL server instances' databases are made on, and whose
    /// database holds the registry; `None` for SQLite throughout.
    pub database_url: Option<String>,
    /// The scheme and port of instances' URLs as the control plane tells them.
    pub public_scheme: String,
    pub public_port: Option<u16>,
    /// Passed to each instance's built-in worker.
    pub builtin_worker_unisolated: bool,
    /// The workers instances' steps run on; instances have no built-in one.
    pub hosted_workers: Option<Arc<super::workers::HostedWorkers>>,
    /// How long an instance's running steps may take to finish when it stops.
    pub shutdown_timeout: Duration,
    /// An instance idle this long is put to sleep (see [`super::hibernation`]).
    pub idle_after: Duration,
    /// The host's polling port, which every instance reports to agents.
    pub polling_port: Option<u16>,
    /// Applied last to every instance's configuration, by a program that
    /// runs a host in-process (a test suite's shorter retries, say); the
    /// command sets none.
    pub adjust_instances: Option<AdjustInstances>,
}

/// See [`HostConfig::adjust_instances`].
#[derive(Clone)]
pub struct AdjustInstances(pub Arc<dyn Fn(&mut InstanceConfig) + Send + Sync>);

impl std::fmt::Debug for AdjustInstances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdjustInstances")
    }
}

/// An instance as the host serves it.
pub struct Served {
    pub instance: Arc<Instance>,
    pub router: axum::Router,
    closing: cuttle_api::Closing,
    /// Milliseconds since the epoch of its last request.
    last_active: AtomicI64,
    /// Requests being answered now (a streamed answer until its end).
    in_flight: AtomicUsize,
    /// When it was opened (created, resumed or woken), in milliseconds
    /// since the epoch: its idle time counts from then at the earliest.
    opened_at: i64,
}

impl Served {
    pub fn touch(&self) {
        self.last_active.store(now_millis(), Ordering::SeqCst);
    }

    pub fn last_active(&self) -> i64 {
        self.last_active.load(Ordering::SeqCst)
    }

    /// Since when it has had nothing to do, as far as requests go.
    pub fn idle_since(&self) -> i64 {
        self.last_active().max(self.opened_at)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts a request as under way until the guard is dropped.
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        InFlight(self.clone())
    }
}

/// A request under way on a served instance: it keeps the instance awake.
pub struct InFlight(Arc<Served>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running instance that sleeps: closed, with only this left of it.
pub struct Asleep {
    /// Its last request, in milliseconds since the epoch.
    pub last_active: i64,
    /// When it has work to do by itself (a scheduled task or health
    /// check): it is woken then.
    pub wake_at: Option<i64>,
    /// Its periodic jobs' last runs, handed to it when it wakes.
    pub jobs: cuttle_service::job_times::JobTimes,
    /// Its metrics registry (once it has been awake in this run of the
    /// host), handed to it when it wakes: its counters never go back.
    pub metrics: cuttle_service::instance::KeptMetrics,
    /// Held by whoever puts it to sleep, wakes it or replaces it; `true`
    /// once this record is no longer the instance's slot.
    pub(super) gate: Arc<tokio::sync::Mutex<bool>>,
}

/// What a name currently routes to.
#[derive(Clone)]
pub enum Slot {
    Serving(Arc<Served>),
    Asleep(Arc<Asleep>),
    Suspended,
    /// Being created, resumed or deleted.
    Busy,
    /// Recorded as running, but it could not be opened: why.
    Failed(String),
}

/// What the control plane tells about an instance.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceView {
    pub name: String,
    pub url: String,
    pub state: String,
    pub task_cap: i64,
    #[serde(rename = "StorageQuotaMiB")]
    pub storage_quota_mib: i64,
    pub storage_used_bytes: u64,
    pub created: String,
    pub last_active: Option<String>,
    /// Why an instance recorded as running is not served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A new instance's first administrator, told once.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Created {
    #[serde(flatten)]
    pub instance: InstanceView,
    pub admin_username: String,
    pub admin_password: String,
    pub api_key: String,
}

/// The limits an instance is created with or changed to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub task_cap: i64,
    pub storage_quota_mib: i64,
}

pub const DEFAULT_TASK_CAP: i64 = 5;
/// Instances opened at once when the host starts.
const OPEN_AT_ONCE: usize = 4;
pub const DEFAULT_STORAGE_QUOTA_MIB: i64 = 1024;
/// Above this a cap is surely a typing mistake (the server's own limit).
const MOST_TASK_CAP: i64 = 1000;

impl Limits {
    fn check(&self) -> Result<(), HostError> {
        if !(1..=MOST_TASK_CAP).contains(&self.task_cap) {
            return Err(HostError::BadRequest(format!(
                "TaskCap must be between 1 and {MOST_TASK_CAP}; {} is not",
                self.task_cap
            )));
        }
        if self.storage_quota_mib < 0 {
            return Err(HostError::BadRequest(format!(
                "StorageQuotaMiB must be 0 (no quota) or more; {} is not",
                self.storage_quota_mib
            )));
        }
        Ok(())
    }
}

/// Every instance of one host.
pub struct Host {
    pub config: HostConfig,
    /// Which instance registered each polling agent, and each instance's
    /// server certificate.
    pub agents: super::polling::AgentIndex,
    registry: HostRegistry,
    slots: RwLock<HashMap<String, Slot>>,
    /// Names with a lifecycle operation under way; a second one is refused.
    changing: std::sync::Mutex<HashSet<String>>,
    /// Each instance's last activity as last written to the registry: an
    /// idle instance's is not written again.
    persisted_activity: std::sync::Mutex<HashMap<String, i64>>,
}

/// Held while a lifecycle operation changes one instance.
pub(super) struct Changing<'a> {
    host: &'a Host,
    name: String,
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.host.changing.lock() {
            set.remove(&self.name);
        }
    }
}

impl Host {
    /// Opens the registry and every instance it records: one half made by
    /// a creation that never finished is removed; one that cannot be opened
    /// is reported as failed and the others are served.
    pub async fn open(config: HostConfig) -> anyhow::Result<Arc<Host>> {
        let url = match &config.database_url {
            Some(url) => url.clone(),
            None => cuttle_store::Store::sqlite_url(&config.data_dir.join("host.db")),
        };
        let registry = HostRegistry::open(&url)
            .await
            .map_err(|e| anyhow::anyhow!("the host's registry: {e}"))?;
        let host = Arc::new(Host {
            config,
            agents: Default::default(),
            registry,
            slots: Default::default(),
            changing: Default::default(),
            persisted_activity: Default::default(),
        });
        let mut opening = vec![];
        for record in host.registry.list().await? {
            match record.state {
                InstanceState::Creating => {
                    tracing::warn!(instance = %record.name, "removing an instance whose creation did not finish");
                    host.remove_leftovers(&record.name).await?;
                    host.registry.remove(&record.name).await?;
                }
                InstanceState::Suspended => host.set_slot(&record.name, Slot::Suspended),
                InstanceState::Running => opening.push(record),
            }
        }
        // Each starts asleep: only what routing its agents and waking it
        // needs is read (a few at a time, each running its migrations);
        // one with work to do is woken by the host's first round.
        use futures_util::StreamExt as _;
        let opened: Vec<(String, Slot)> = futures_util::stream::iter(opening)
            .map(|record| {
                let host = host.clone();
                async move {
                    let config = host.instance_config(&record);
                    let slot = match cuttle_service::instance::peek(&config).await {
                        Ok(dormant) => {
                            host.agents.set(&record.name, dormant.identity, &dormant.polling_thumbprints);
                            Slot::Asleep(Arc::new(Asleep {
                                last_active: record.last_active.unwrap_or(0),
                                wake_at: dormant.next_due,
                                jobs: config.job_times,
                                metrics: config.kept_metrics,
                                gate: Default::default(),
                            }))
                        }
                        Err(e) => {
                            tracing::error!(instance = %record.name, error = %e, "could not open an instance");
                            Slot::Failed(e.to_string())
                        }
                    };
                    (record.name, slot)
                }
            })
            .buffer_unordered(OPEN_AT_ONCE)
            .collect()
            .await;
        for (name, slot) in opened {
            host.set_slot(&name, slot);
        }
        Ok(host)
    }

    /// What `name` routes to, if anything.
    pub fn slot(&self, name: &str) -> Option<Slot> {
        self.slots.read().ok()?.get(name).cloned()
    }

    /// Every name and what it routes to now.
    pub fn slots(&self) -> Vec<(String, Slot)> {
        match self.slots.read() {
            Ok(slots) => slots.iter().map(|(n, s)| (n.clone(), s.clone())).collect(),
            Err(_) => vec![],
        }
    }

    pub(super) fn set_slot(&self, name: &str, slot: Slot) {
        if let Ok(mut slots) = self.slots.write() {
            slots.insert(name.to_owned(), slot);
        }
    }

    pub(super) fn take_slot(&self, name: &str) -> Option<Slot> {
        self.slots.write().ok()?.remove(name)
    }

    /// Sets `name`'s slot to `slot` and returns the instance it served, if
    /// any, to be closed. An asleep one is replaced under its gate, so no
    /// wake is under way or starts on the record replaced.
    async fn replace_slot(&self, name: &str, slot: Slot) -> Option<Arc<Served>> {
        loop {
            match self.slot(name) {
                Some(Slot::Asleep(asleep)) => {
                    let mut gone = asleep.gate.lock().await;
                    if *gone {
                        // Woken or replaced meanwhile: look again.
                        continue;
                    }
                    *gone = true;
                    self.set_slot(name, slot);
                    return None;
                }
                Some(Slot::Serving(served)) => {
                    self.set_slot(name, slot);
                    return Some(served);
                }
                _ => {
                    self.set_slot(name, slot);
                    return None;
                }
            }
        }
    }

    pub(super) fn begin_change(&self, name: &str) -> Result<Changing<'_>, HostError> {
        let mut set = self
            .changing
            .lock()
            .map_err(|_| HostError::Internal("the host's state is poisoned".into()))?;
        if !set.insert(name.to_owned()) {
            return Err(HostError::Conflict(format!(
                "The instance '{name}' is being changed; try again when that is done"
            )));
        }
        Ok(Changing {
            host: self,
            name: name.to_owned(),
        })
    }

    pub fn instance_dir(&self, name: &str) -> PathBuf {
        self.config.data_dir.join("instances").join(name)
    }

    pub fn url_of(&self, name: &str) -> String {
        let port = self
            .config
            .public_port
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!(
            "{}://{name}.{}{port}",
            self.config.public_scheme, self.config.domain
        )
    }

    /// The PostgreSQL database of instance `name`: `cuttle_NAME_` and a
    /// digest of the registry's database, so that hosts sharing one server
    /// (each with a database of its own) never meet.
    pub fn database_name(&self, name: &str) -> Option<String> {
        let url = self.config.database_url.as_deref()?;
        use sha2::Digest as _;
        let digest = hex::encode(sha2::Sha256::digest(registry_database(url).as_bytes()));
        Some(format!(
            "cuttle_{}_{}",
            name.replace('-', "_"),
            &digest[..8]
        ))
    }

    pub(super) fn instance_config(&self, record: &InstanceRecord) -> InstanceConfig {
        let mut config = InstanceConfig::new(self.instance_dir(&record.name));
        if let (Some(url), Some(db)) = (&self.config.database_url, self.database_name(&record.name))
        {
            config.database_url = Some(cuttle_store::host::postgres_database_url(url, &db));
        }
        let cap = usize::try_from(record.task_cap).unwrap_or(1).max(1);
        config.max_concurrent_tasks = cap;
        config.hosted_task_cap = Some(cap);
        config.hosted_storage_quota = quota_bytes(record.storage_quota_mib);
        config.builtin_worker.allow_unisolated = self.config.builtin_worker_unisolated;
        // No customer script runs on the host: steps go to hosted workers.
        config.builtin_worker.enabled = false;
        config.hosted_workers = self
            .config
            .hosted_workers
            .as_ref()
            .map(|w| w.lender_for(&record.name));
        config.subscriptions.server_url = Some(self.url_of(&record.name));
        // An instance's database is the host's alone: no other node
        // queues its tasks or takes them over, so its loops wait to be
        // told rather than poll, and it keeps no listening connection.
        config.sole_node = true;
        // Instances share one PostgreSQL server: a few connections each,
        // closed when idle.
        config.postgres_pool = cuttle_store::PostgresPool {
            max_connections: 4,
            idle_timeout: Duration::from_secs(30),
        };
        // Which instance a series is of, once several are scraped into one
        // Prometheus (`instance` is Prometheus's own label for the target).
        config.metric_labels = vec![("cuttle_instance".to_owned(), record.name.clone())];
        // Instances share the host's cores: one hash at a time each.
        config.max_concurrent_password_hashes = 1;
        if let Some(adjust) = &self.config.adjust_instances {
            (adjust.0)(&mut config);
        }
        config
    }

    /// Opens an instance; `asleep`, its record while it slept, carries its
    /// schedule and its metrics on.
    pub(super) async fn open_instance(
        &self,
        record: &InstanceRecord,
        asleep: Option<&Asleep>,
    ) -> Result<Arc<Served>, HostError> {
        let mut config = self.instance_config(record);
        if let Some(asleep) = asleep {
            config.job_times = asleep.jobs.clone();
            config.kept_metrics = asleep.metrics.clone();
        }
        let instance = Instance::open(config)
            .await
            .map_err(|e| HostError::internal("the instance could not be opened", e))?;
        if let Some(port) = self.config.polling_port {
            instance.polling_port.store(port, Ordering::Relaxed);
        }
        self.agents
            .set(&record.name, instance.identity.clone(), &[]);
        super::polling::refresh(self, &record.name, &instance).await;
        let closing = cuttle_api::Closing::default();
        let router = cuttle_api::router_closing(instance.clone(), closing.clone());
        Ok(Arc::new(Served {
            instance,
            router,
            closing,
            last_active: AtomicI64::new(record.last_active.unwrap_or(0)),
            in_flight: AtomicUsize::new(0),
            opened_at: now_millis(),
        }))
    }

    /// Stops serving an instance: its long responses end, its running
    /// steps get the shutdown timeout to finish, its loops stop, its
    /// database is closed.
    pub(super) async fn close_instance(&self, name: &str, served: Arc<Served>) {
        served.closing.0.cancel();
        served.instance.close(self.config.shutdown_timeout).await;
        let last = served.last_active();
        if last > 0 {
            let _ = self.registry.set_last_active(name, last).await;
        }
    }

    /// Wipes the hosted worker leased to `name`, if any.
    pub(super) async fn end_hosted_worker_lease(&self, name: &str) {
        if let Some(workers) = &self.config.hosted_workers {
            workers.end_lease(name).await;
        }
    }

    /// The record of `name` (a lifecycle operation's view of it).
    pub(super) async fn registry_record(&self, name: &str) -> Result<InstanceRecord, HostError> {
        self.record(name).await
    }

    /// Removes what a creation or deletion left of `name`: its directory
    /// and its PostgreSQL database.
    async fn remove_leftovers(&self, name: &str) -> Result<(), HostError> {
        let dir = self.instance_dir(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| {
                HostError::internal(&format!("could not remove {}", dir.display()), e)
            })?;
        }
        if let (Some(url), Some(db)) = (&self.config.database_url, self.database_name(name)) {
            cuttle_store::host::drop_postgres_database(url, &db).await?;
        }
        Ok(())
    }

    /// Creates and opens an instance, with its first administrator; it is
    /// served only once whole. Recorded as `Creating` first, so a host
    /// killed meanwhile removes it at its next start.
    pub async fn create(&self, name: &str, limits: Limits) -> Result<Created, HostError> {
        if let Some(why) = super::names::invalid(name) {
            return Err(HostError::BadRequest(why));
        }
        limits.check()?;
        // The registry's key decides between two creations of one name.
        self.registry
            .insert_creating(name, limits.task_cap, limits.storage_quota_mib)
            .await?;
        let _changing = match self.begin_change(name) {
            Ok(changing) => changing,
            Err(e) => {
                // A deletion of the same name has not finished clearing it.
                let _ = self.registry.remove(name).await;
                return Err(e);
            }
        };
        if let Some(ms) = std::env::var(PAUSE_AFTER_RECORD_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            tracing::info!(instance = %name, "creation recorded; pausing as asked");
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        self.set_slot(name, Slot::Busy);
        match self.build(name).await {
            Ok(created) => Ok(created),
            Err(e) => {
                tracing::error!(instance = %name, error = %e, "could not create an instance");
                self.take_slot(name);
                self.agents.remove(name);
                if let Err(cleanup) = self.remove_leftovers(name).await {
                    tracing::error!(instance = %name, error = %cleanup, "could not clear a failed creation");
                } else {
                    let _ = self.registry.remove(name).await;
                }
                Err(e)
            }
        }
    }

    async fn build(&self, name: &str) -> Result<Created, HostError> {
        // A directory or database left by an earlier instance of this name.
        self.remove_leftovers(name).await?;
        if let (Some(url), Some(db)) = (&self.config.database_url, self.database_name(name)) {
            cuttle_store::host::create_postgres_database(url, &db).await?;
        }
        let record = self
            .registry
            .get(name)
            .await?
            .ok_or_else(|| HostError::Internal(format!("the record of '{name}' vanished")))?;
        let served = self.open_instance(&record, None).await?;
        let api_key = cuttle_service::auth::generate_api_key();
        let dir = self.instance_dir(name);
        let report = cuttle_service::auth::bootstrap_admin(
            &served.instance.store,
            &dir,
            None,
            Some(&api_key),
        )
        .await
        .map_err(|e| HostError::internal("the first administrator could not be made", e));
        let password = match report.map(|r| r.generated_password) {
            Ok(Some(password)) => password,
            Ok(None) => {
                self.close_instance(name, served).await;
                return Err(HostError::Internal(
                    "the new instance already had an administrator".into(),
                ));
            }
            Err(e) => {
                self.close_instance(name, served).await;
                return Err(e);
            }
        };
        // The password was told to the caller; no copy stays on disk.
        let _ = std::fs::remove_file(dir.join("initial-admin.txt"));
        if let Err(e) = self.registry.set_state(name, InstanceState::Running).await {
            self.close_instance(name, served).await;
            return Err(e.into());
        }
        self.set_slot(name, Slot::Serving(served));
        tracing::info!(instance = %name, "instance created");
        let record = InstanceRecord {
            state: InstanceState::Running,
            ..record
        };
        Ok(Created {
            instance: self.view(&record).await,
            admin_username: cuttle_model::user::ADMIN_USERNAME.into(),
            admin_password: password,
            api_key,
        })
    }

    async fn record(&self, name: &str) -> Result<InstanceRecord, HostError> {
        self.registry
            .get(name)
            .await?
            .ok_or_else(|| HostError::NotFound(format!("There is no instance '{name}'")))
    }

    pub async fn get(&self, name: &str) -> Result<InstanceView, HostError> {
        let record = self.record(name).await?;
        Ok(self.view(&record).await)
    }

    pub async fn list(&self) -> Result<Vec<InstanceView>, HostError> {
        let mut views = vec![];
        for record in self.registry.list().await? {
            views.push(self.view(&record).await);
        }
        Ok(views)
    }

    async fn view(&self, record: &InstanceRecord) -> InstanceView {
        let slot = self.slot(&record.name);
        let last_active = match &slot {
            Some(Slot::Serving(s)) => Some(s.last_active()),
            Some(Slot::Asleep(a)) => Some(a.last_active),
            _ => record.last_active,
        }
        .filter(|ms| *ms > 0);
        let mut used = directory_size(&self.instance_dir(&record.name));
        if let (Some(url), Some(db)) = (&self.config.database_url, self.database_name(&record.name))
        {
            if record.state != InstanceState::Creating {
                match cuttle_store::host::postgres_database_size(url, &db).await {
                    Ok(bytes) => used += u64::try_from(bytes).unwrap_or(0),
                    Err(e) => {
                        tracing::warn!(instance = %record.name, error = %e, "could not measure a database")
                    }
                }
            }
        }
        InstanceView {
            name: record.name.clone(),
            url: self.url_of(&record.name),
            state: match (&slot, record.state) {
                (Some(Slot::Failed(_)), _) => "Failed".into(),
                (Some(Slot::Serving(_)), InstanceState::Running) => "Awake".into(),
                (Some(Slot::Asleep(_)), InstanceState::Running) => "Asleep".into(),
                _ => record.state.as_str().into(),
            },
            task_cap: record.task_cap,
            storage_quota_mib: record.storage_quota_mib,
            storage_used_bytes: used,
            created: iso(record.created_at),
            last_active: last_active.map(iso),
            error: match slot {
                Some(Slot::Failed(why)) => Some(why),
                _ => None,
            },
        }
    }

    /// Stops serving `name` (503 from now on) and releases what it holds.
    pub async fn suspend(&self, name: &str) -> Result<InstanceView, HostError> {
        let _changing = self.begin_change(name)?;
        let record = self.record(name).await?;
        if record.state == InstanceState::Creating {
            return Err(HostError::Conflict(format!(
                "The instance '{name}' is still being created"
            )));
        }
        self.registry
            .set_state(name, InstanceState::Suspended)
            .await?;
        self.end_hosted_worker_lease(name).await;
        if let Some(served) = self.replace_slot(name, Slot::Suspended).await {
            self.close_instance(name, served).await;
        }
        tracing::info!(instance = %name, "instance suspended");
        self.get(name).await
    }

    /// Opens a suspended instance (or one that failed to open) again.
    pub async fn resume(&self, name: &str) -> Result<InstanceView, HostError> {
        let _changing = self.begin_change(name)?;
        let record = self.record(name).await?;
        match (record.state, self.slot(name)) {
            (InstanceState::Creating, _) => {
                return Err(HostError::Conflict(format!(
                    "The instance '{name}' is still being created"
                )))
            }
            (InstanceState::Running, Some(Slot::Serving(_) | Slot::Asleep(_))) => {
                return self.get(name).await
            }
            _ => {}
        }
        let served = self.open_instance(&record, None).await?;
        self.registry
            .set_state(name, InstanceState::Running)
            .await?;
        self.set_slot(name, Slot::Serving(served));
        tracing::info!(instance = %name, "instance resumed");
        self.get(name).await
    }

    /// Changes an instance's limits; a new task cap applies at once.
    pub async fn change_limits(
        &self,
        name: &str,
        task_cap: Option<i64>,
        storage_quota_mib: Option<i64>,
    ) -> Result<InstanceView, HostError> {
        let _changing = self.begin_change(name)?;
        let record = self.record(name).await?;
        let limits = Limits {
            task_cap: task_cap.unwrap_or(record.task_cap),
            storage_quota_mib: storage_quota_mib.unwrap_or(record.storage_quota_mib),
        };
        limits.check()?;
        // Recorded first: an instance woken meanwhile opens with them.
        self.registry
            .set_limits(name, limits.task_cap, limits.storage_quota_mib)
            .await?;
        if let Some(Slot::Serving(served)) = self.slot(name) {
            let cap = usize::try_from(limits.task_cap).unwrap_or(1);
            cuttle_service::nodes::set_hosted_task_cap(&served.instance, cap)
                .await
                .map_err(|e| HostError::internal("the task cap could not be applied", e))?;
            served.instance.hosted_storage_quota.store(
                quota_bytes(limits.storage_quota_mib).unwrap_or(0),
                Ordering::SeqCst,
            );
        }
        self.get(name).await
    }

    /// Stops `name`, packs its data into `archive/`, then removes it; the
    /// name is free again. Returns the archive's path.
    pub async fn delete(&self, name: &str) -> Result<PathBuf, HostError> {
        let _changing = self.begin_change(name)?;
        self.record(name).await?;
        self.end_hosted_worker_lease(name).await;
        if let Some(served) = self.replace_slot(name, Slot::Busy).await {
            self.close_instance(name, served).await;
        }
        let archived = match self.archive(name).await {
            Ok(path) => path,
            Err(e) => {
                tracing::error!(instance = %name, error = %e, "could not archive an instance");
                // Still recorded and whole: shown as failed until resumed.
                self.set_slot(name, Slot::Failed(format!("Its deletion failed: {e}")));
                return Err(e);
            }
        };
        // From here the instance is gone; what remains is only cleared.
        self.registry.remove(name).await?;
        self.take_slot(name);
        self.agents.remove(name);
        if let Ok(mut persisted) = self.persisted_activity.lock() {
            persisted.remove(name);
        }
        if let Err(e) = self.remove_leftovers(name).await {
            tracing::warn!(instance = %name, error = %e, "a deleted instance's files remain");
        }
        tracing::info!(instance = %name, archive = %archived.display(), "instance deleted");
        Ok(archived)
    }

    /// Packs instance `name`'s data (closed) into the host's `archive/`.
    async fn archive(&self, name: &str) -> Result<PathBuf, HostError> {
        let dir = self.instance_dir(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| HostError::internal(&format!("could not open {}", dir.display()), e))?;
        // On PostgreSQL the rows are in the instance's database: a backup
        // of it goes into the archive beside the keys and package files.
        if let (Some(url), Some(db)) = (&self.config.database_url, self.database_name(name)) {
            use std::os::unix::fs::OpenOptionsExt as _;
            let url = cuttle_store::host::postgres_database_url(url, &db);
            let prepared = cuttle_service::backup::of_data_dir(&dir, Some(&url), None, None)
                .await
                .map_err(|e| {
                    HostError::internal("the instance's database could not be backed up", e)
                })?;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(dir.join("database.cuttle-backup"))
                .map_err(|e| HostError::internal("the backup could not be written", e))?;
            prepared
                .write(std::io::BufWriter::new(file))
                .map_err(|e| HostError::internal("the backup could not be written", e))?;
        }
        let archive_dir = self.config.data_dir.join("archive");
        // A closed database's side files (SQLite's -wal and -shm) may still
        // be going away as the directory is read; a second pass finds it
        // settled.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (dir, archive_dir, packed_as) = (dir.clone(), archive_dir.clone(), name.to_owned());
            let packed =
                tokio::task::spawn_blocking(move || archive::pack(&dir, &archive_dir, &packed_as))
                    .await
                    .map_err(|e| HostError::internal("archiving stopped", e))?;
            match packed {
                Ok(path) => return Ok(path),
                Err(e) if attempt < 3 => {
                    tracing::warn!(instance = %name, error = %format!("{e:#}"), "archiving again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(HostError::Internal(format!("{e:#}"))),
            }
        }
    }

    /// Writes each served instance's last activity to the registry, so a
    /// restart still knows it.
    pub async fn persist_activity(&self) {
        let served: Vec<(String, i64)> = match self.slots.read() {
            Ok(slots) => slots
                .iter()
                .filter_map(|(name, slot)| match slot {
                    Slot::Serving(s) => Some((name.clone(), s.last_active())),
                    _ => None,
                })
                .filter(|(_, at)| *at > 0)
                .collect(),
            Err(_) => return,
        };
        for (name, at) in served {
            let written = |persisted: &HashMap<String, i64>| persisted.get(&name) == Some(&at);
            if self.persisted_activity.lock().is_ok_and(|p| written(&p)) {
                continue;
            }
            match self.registry.set_last_active(&name, at).await {
                Ok(()) => {
                    if let Ok(mut persisted) = self.persisted_activity.lock() {
                        persisted.insert(name, at);
                    }
                }
                Err(e) => tracing::warn!(instance = %name, error = %e, "could not record activity"),
            }
        }
    }

    /// Stops every instance, for the host's own shutdown.
    pub async fn shutdown(&self) {
        self.persist_activity().await;
        let served: Vec<(String, Arc<Served>)> = match self.slots.write() {
            Ok(mut slots) => slots
                .drain()
                .filter_map(|(name, slot)| match slot {
                    Slot::Serving(s) => Some((name, s)),
                    _ => None,
                })
                .collect(),
            Err(_) => vec![],
        };
        futures_util::future::join_all(
            served
                .into_iter()
                .map(|(name, s)| async move { self.close_instance(&name, s).await }),
        )
        .await;
        self.registry.close().await;
    }
}

/// The database named in a PostgreSQL URL (the registry's).
fn registry_database(url: &str) -> String {
    let path = url.split('?').next().unwrap_or(url);
    let after_scheme = path.find("://").map_or(path, |i| &path[i + 3..]);
    after_scheme
        .split_once('/')
        .map(|(_, db)| db.to_owned())
        .unwrap_or_default()
}

/// A quota in MiB as bytes; `None` for 0 (no quota).
fn quota_bytes(mib: i64) -> Option<u64> {
    u64::try_from(mib)
        .ok()
        .filter(|m| *m > 0)
        .map(|m| m.saturating_mul(1024 * 1024))
}

fn now_millis() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
    )
    .unwrap_or(i64::MAX)
}

fn iso(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Bytes of the files under `dir` (not following links).
fn directory_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => directory_size(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
