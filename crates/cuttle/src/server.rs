//! `cuttle server`: opens the installation, serves the API, and shuts down
//! gracefully on SIGTERM or Ctrl-C.

use anyhow::Context;
use cuttle_service::auth::bootstrap_admin;
use cuttle_service::{Instance, InstanceConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
// `cuttle server --data-dir X certificate new` would otherwise take X as the
// server's and quietly work on the subcommand's default directory.
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    /// Without one, run the server.
    #[command(subcommand)]
    command: Option<ServerCommand>,
    /// Address to serve HTTP on.
    #[arg(long, env = "CUTTLE_LISTEN", default_value = "0.0.0.0:8080")]
    listen: String,
    /// Where polling agents connect [default: the --listen host, port 10943;
    /// an ephemeral port when --listen's port is 0]; "off" disables it
    #[arg(long, env = "CUTTLE_POLLING_LISTEN")]
    polling_listen: Option<String>,
    /// Remove package versions that no release deploys once they are this
    /// many days old (checked hourly); 0 keeps them for ever
    #[arg(long, env = "CUTTLE_PACKAGE_RETENTION_DAYS", default_value_t = 0)]
    package_retention_days: u64,
    /// Where Cuttle keeps its database (SQLite by default), keys and work files.
    #[arg(long, env = "CUTTLE_DATA_DIR", default_value = "./cuttle-data")]
    pub data_dir: PathBuf,
    /// Where package files are kept, reached by every server node:
    /// s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION (credentials from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or an absolute directory
    /// path [default: the data directory]
    #[arg(long, env = "CUTTLE_BLOB_STORE")]
    blob_store: Option<String>,
    /// Also serve /metrics, /healthz and /readyz on this address, without an
    /// API key (keep it private, e.g. 127.0.0.1:9464); the main address
    /// serves /metrics only to callers with an API key
    #[arg(long, env = "CUTTLE_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Count tasks, deployments, HTTP requests and agent commands for
    /// /metrics; "false" only to measure what counting costs
    #[arg(long, env = "CUTTLE_COUNT_METRICS", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    count_metrics: bool,
    /// Write the audit log; "false" only to measure what it costs (every
    /// change then goes unrecorded, and subscriptions hear nothing)
    #[arg(long, hide = true, default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    record_audit_events: bool,
    /// The server's log lines on stderr: "text" to read, "json" for one
    /// JSON object per line (with a task_id or request_id field where one applies)
    #[arg(long, env = "CUTTLE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Use PostgreSQL instead of the embedded SQLite (postgres://user@host/db).
    #[arg(long, env = "CUTTLE_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// How many tasks run at once on this server.
    #[arg(long, env = "CUTTLE_MAX_CONCURRENT_TASKS", default_value_t = 8)]
    max_concurrent_tasks: usize,
    /// How long, in seconds of the database's clock, a running task stays
    /// this node's without a renewal (renewed every quarter of it). On
    /// PostgreSQL another node takes over a task whose node stopped
    /// renewing once this has passed.
    #[arg(long, env = "CUTTLE_TASK_LEASE", default_value_t = cuttle_engine::runner::DEFAULT_TASK_LEASE.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    task_lease: u64,
    /// Timeout for a script step that sets none, in seconds.
    #[arg(long, env = "CUTTLE_SCRIPT_TIMEOUT", default_value_t = 3600)]
    script_timeout: u64,
    /// On shutdown, how long running steps may take to finish, in seconds.
    #[arg(long, env = "CUTTLE_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    shutdown_timeout: u64,
    /// Most HTTP connections served at once; more wait in the listen queue
    /// until one closes.
    #[arg(long, env = "CUTTLE_HTTP_MAX_CONNECTIONS", default_value_t = cuttle_api::HttpLimits::default().max_connections)]
    http_max_connections: usize,
    /// Seconds an HTTP client may take to send a request's headers; also how
    /// long a connection may sit idle between requests.
    #[arg(long, env = "CUTTLE_HTTP_HEADER_TIMEOUT", default_value_t = cuttle_api::HttpLimits::default().header_timeout.as_secs())]
    http_header_timeout: u64,
    /// Seconds an HTTP request's body may pause before the request fails.
    #[arg(long, env = "CUTTLE_HTTP_BODY_TIMEOUT", default_value_t = cuttle_api::HttpLimits::default().body_timeout.as_secs())]
    http_body_timeout: u64,
    /// Failed portal sign-ins for one username within 15 minutes before
    /// more are refused until the 15 minutes are up; 0 sets no limit.
    #[arg(long, env = "CUTTLE_SIGN_IN_FAILURES_PER_USER", default_value_t = cuttle_service::sign_in_throttle::ThrottleConfig::default().per_user)]
    sign_in_failures_per_user: u32,
    /// As --sign-in-failures-per-user, from one client address; 0 sets no
    /// limit (set it so behind a reverse proxy, where every client has the
    /// proxy's address).
    #[arg(long, env = "CUTTLE_SIGN_IN_FAILURES_PER_ADDRESS", default_value_t = cuttle_service::sign_in_throttle::ThrottleConfig::default().per_address)]
    sign_in_failures_per_address: u32,
    /// Run scripts on the built-in worker even where it cannot isolate its
    /// steps (without root and bubblewrap): a script could then read other
    /// deployments' files and leave processes running after its step
    #[arg(long, env = "CUTTLE_BUILTIN_WORKER_UNISOLATED", value_parser = clap::builder::BoolishValueParser::new())]
    builtin_worker_unisolated: bool,
    /// This server's name as a node: in task records, the nodes API and
    /// leases (default: the host name). Each node on one database needs its own.
    #[arg(long, env = "CUTTLE_NODE_NAME")]
    node_name: Option<String>,
    /// The SMTP server subscriptions send email through:
    /// smtp://[user:password@]host[:port] (STARTTLS when offered;
    /// ?tls=required to insist), or smtps://… for TLS from the start
    #[arg(long, env = "CUTTLE_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// The address subscription email is sent from
    #[arg(long, env = "CUTTLE_SMTP_FROM", requires = "smtp_url")]
    smtp_from: Option<String>,
    /// The longest wait, in seconds, between two attempts at a subscription
    /// delivery; waits double from one second up to it
    #[arg(long, env = "CUTTLE_SUBSCRIPTION_RETRY_MAX", default_value_t = 300)]
    subscription_retry_max: u64,
    /// Let webhooks reach link-local addresses (169.254.0.0/16, fe80::/10),
    /// where cloud metadata services answer; refused by default
    #[arg(long, env = "CUTTLE_ALLOW_LINK_LOCAL_WEBHOOKS", value_parser = clap::builder::BoolishValueParser::new())]
    allow_link_local_webhooks: bool,
    /// The server's address as its users reach it (https://cuttle.example.com),
    /// sent in subscription payloads
    #[arg(long, env = "CUTTLE_PUBLIC_URL")]
    public_url: Option<String>,
    /// The master key that seals sensitive values (32 bytes in base64). Only as
    /// an environment variable, never a flag, so it stays out of process lists;
    /// without it the data directory's master.key is used, created at first start.
    #[arg(skip = std::env::var("CUTTLE_MASTER_KEY").ok())]
    pub master_key: Option<String>,
    /// The administrator's password at first start (CUTTLE_ADMIN_PASSWORD
    /// or the file's admin_password); generated when none is given.
    #[arg(skip = std::env::var("CUTTLE_ADMIN_PASSWORD").ok())]
    pub admin_password: Option<String>,
    /// An API key for the administrator, made at start (CUTTLE_ADMIN_API_KEY
    /// or the file's admin_api_key).
    #[arg(skip = std::env::var("CUTTLE_ADMIN_API_KEY").ok())]
    pub admin_api_key: Option<String>,
    /// The configuration file, beneath flags and environment [default:
    /// cuttle.toml in the data directory, when there is one]
    #[arg(long, env = "CUTTLE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the configuration (file, environment, flags), print each setting
    /// and where it came from, and exit without starting
    #[arg(long)]
    pub check_config: bool,
}

#[derive(clap::Subcommand, Debug)]
enum ServerCommand {
    /// Rotate the certificate the server presents to agents
    #[command(subcommand)]
    Certificate(crate::cli::certificate::CertificateCommand),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr as text, filtered by RUST_LOG; for the server and the agent.
pub fn init_tracing() {
    init_tracing_as(LogFormat::Text);
}

/// Logs to stderr in `format`, filtered by RUST_LOG.
pub fn init_tracing_as(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // One object per line; the spans a line happened in (a task's, a
        // request's) come with their fields.
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

impl ServerArgs {
    /// Takes the secrets the configuration file gives where the environment
    /// gives none; returns the names of those the environment gave.
    pub fn fill_secrets(&mut self, from_file: &[(&'static str, String)]) -> Vec<&'static str> {
        let mut from_env = Vec::new();
        for (name, slot) in [
            ("master_key", &mut self.master_key),
            ("admin_password", &mut self.admin_password),
            ("admin_api_key", &mut self.admin_api_key),
        ] {
            if slot.as_deref().is_some_and(|v| !v.trim().is_empty()) {
                from_env.push(name);
            } else if let Some((_, value)) = from_file.iter().find(|(n, _)| *n == name) {
                *slot = Some(value.clone());
            }
        }
        from_env
    }

    /// The installation's configuration from these settings, refusing any
    /// that could only fail later (a malformed key, SMTP without a sender).
    fn instance_config(&self) -> anyhow::Result<InstanceConfig> {
        if let Some(key) = self.admin_api_key.as_deref().filter(|k| !k.is_empty()) {
            cuttle_service::auth::validate_bootstrap_key(key)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let mut config = InstanceConfig::new(self.data_dir.clone());
        config.database_url = self.database_url.clone();
        if let Some(text) = &self.blob_store {
            config.blob_store = cuttle_store::blobs::BlobLocation::parse(text)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        config.max_concurrent_tasks = self.max_concurrent_tasks;
        config.task_lease = Duration::from_secs(self.task_lease);
        config.default_script_timeout = Duration::from_secs(self.script_timeout.max(1));
        config.master_key = self.master_key.clone().filter(|k| !k.trim().is_empty());
        config.builtin_worker.allow_unisolated = self.builtin_worker_unisolated;
        config.package_retention = (self.package_retention_days > 0)
            .then(|| Duration::from_secs(self.package_retention_days.saturating_mul(86_400)));
        config.sign_in_throttle.per_user = self.sign_in_failures_per_user;
        config.sign_in_throttle.per_address = self.sign_in_failures_per_address;
        config.count_metrics = self.count_metrics;
        config.record_audit_events = self.record_audit_events;
        if let Some(n) = self.node_name.clone() {
            config.node_name = n;
        }
        let subs = &mut config.subscriptions;
        subs.retry_most = Duration::from_secs(self.subscription_retry_max.max(1));
        subs.retry_first = subs.retry_first.min(subs.retry_most);
        subs.allow_link_local = self.allow_link_local_webhooks;
        subs.server_url = self.public_url.clone();
        if let Some(url) = self.smtp_url.clone().filter(|u| !u.is_empty()) {
            let smtp = cuttle_service::subscriptions::email::SmtpConfig {
                url,
                from: self
                    .smtp_from
                    .clone()
                    .context("--smtp-url needs --smtp-from, the address email is sent from")?,
            };
            smtp.check().map_err(|e| anyhow::anyhow!("{e}"))?;
            subs.smtp = Some(smtp);
        }
        Ok(config)
    }
}

/// `cuttle server --check-config`: everything `run` would refuse before
/// opening the installation, checked without opening it, then each setting
/// and where it came from.
pub fn check_config(
    args: &ServerArgs,
    settings: Vec<String>,
    layer: &crate::config_file::Layer,
) -> anyhow::Result<()> {
    let config = args.instance_config()?;
    if let Some(text) = &config.master_key {
        cuttle_store::MasterKey::from_base64(text)
            .map_err(|e| anyhow::anyhow!("master key (CUTTLE_MASTER_KEY or master_key): {e}"))?;
    }
    let url = config.database_url();
    if cuttle_store::Backend::of_url(&url).is_none() {
        anyhow::bail!("database_url: use sqlite://PATH or postgres://…");
    }
    for (name, address) in [
        ("listen", Some(args.listen.as_str())),
        ("metrics_listen", args.metrics_listen.as_deref()),
        (
            "polling_listen",
            args.polling_listen
                .as_deref()
                .filter(|a| !a.trim().eq_ignore_ascii_case("off")),
        ),
    ] {
        if let Some(address) = address {
            std::net::ToSocketAddrs::to_socket_addrs(address.trim())
                .with_context(|| format!("{name}: '{address}' is not an address to listen on"))?;
        }
    }
    match &layer.path {
        Some(path) => println!("Configuration file: {}", path.display()),
        None => println!(
            "Configuration file: none ({} not found in the data directory)",
            crate::config_file::FILE_NAME
        ),
    }
    for line in settings {
        println!("  {line}");
    }
    println!("The configuration is valid.");
    Ok(())
}

impl ServerArgs {
    /// Whether this runs the server rather than one of its subcommands.
    pub fn runs_the_server(&self) -> bool {
        self.command.is_none()
    }
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    if let Some(ServerCommand::Certificate(cmd)) = args.command {
        return crate::cli::certificate::run(cmd);
    }
    init_tracing_as(args.log_format);
    raise_open_file_limit();
    // Installed first: from here on SIGTERM means an orderly stop, which
    // both the API and the polling endpoint follow.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let signalled = shutdown_signal();
    tokio::spawn(async move {
        signalled.await;
        let _ = stop.send(true);
    });
    let stopped = move || {
        let mut stopping = stopping.clone();
        async move {
            let _ = stopping.wait_for(|s| *s).await;
        }
    };

    let config = args.instance_config()?;
    check_data_dir_writable(&args.data_dir)?;
    // Held until the process exits.
    let on_sqlite = cuttle_store::Backend::of_url(&config.database_url())
        == Some(cuttle_store::Backend::Sqlite);
    let _one_node = match on_sqlite {
        true => Some(crate::data_dir_lock::lock_sqlite_data_dir(&args.data_dir).await?),
        false => None,
    };
    let admin_password = args.admin_password.clone().filter(|p| !p.is_empty());
    let admin_key = args.admin_api_key.clone().filter(|k| !k.is_empty());
    let instance = Instance::open(config)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("could not open the installation")?;
    crate::cli::announce!(
        "Server certificate thumbprint: {}",
        instance.identity.thumbprint()
    );
    crate::cli::announce!(
        "Package files are kept in the {}",
        instance.blobs.describe()
    );
    if let Some(next) = &instance.next_thumbprint {
        crate::cli::announce!(
            "Next server certificate thumbprint (published, not presented): {next}"
        );
    }

    let report = bootstrap_admin(
        &instance.store,
        &args.data_dir,
        admin_password.as_deref(),
        admin_key.as_deref(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(password) = &report.generated_password {
        crate::cli::announce!(
            "Created the administrator 'admin' with the password: {password}\n(also written to {}; change it after signing in)",
            args.data_dir.join("initial-admin.txt").display()
        );
    }

    // Until the tasks have drained, so `/readyz` there tells the shutdown.
    let (metrics_done, metrics_stop) = tokio::sync::oneshot::channel::<()>();
    if let Some(address) = args.metrics_listen.as_deref().map(str::trim) {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("could not listen for metrics on {address}"))?;
        crate::cli::announce!(
            "Metrics are served without a key at http://{}/metrics",
            listener.local_addr()?
        );
        let instance = instance.clone();
        tokio::spawn(async move {
            let stop = async {
                let _ = metrics_stop.await;
            };
            if let Err(e) = cuttle_api::serve_metrics(listener, instance, stop).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("could not listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(database = instance.store.backend().name(), data_dir = %args.data_dir.display(), "server ready");
    crate::cli::announce!("Cuttle is listening on http://{addr}");

    let ephemeral = args.listen.trim().ends_with(":0");
    if let Some(address) = polling_address(args.polling_listen.as_deref(), addr, ephemeral) {
        let polling = tokio::net::TcpListener::bind(&address)
            .await
            .with_context(|| {
                format!("could not listen for polling agents on {address} (set --polling-listen, or \"off\")")
            })?;
        crate::cli::announce!(
            "Polling agents connect to port {}",
            polling.local_addr()?.port()
        );
        let (instance, polling_stopped) = (instance.clone(), stopped());
        tokio::spawn(async move {
            if let Err(e) = instance
                .serve_polling_agents(polling, polling_stopped)
                .await
            {
                tracing::error!(error = %e, "the polling endpoint stopped");
            }
        });
    }

    let limits = cuttle_api::HttpLimits {
        max_connections: args.http_max_connections.max(1),
        header_timeout: Duration::from_secs(args.http_header_timeout.max(1)),
        body_timeout: Duration::from_secs(args.http_body_timeout.max(1)),
    };
    // Both endpoints listen: under systemd (Type=notify) the unit is started.
    notify_systemd(sd_notify::NotifyState::Ready);
    cuttle_api::serve_with(listener, instance.clone(), limits, stopped()).await?;
    notify_systemd(sd_notify::NotifyState::Stopping);
    tracing::info!("no longer accepting requests; letting running tasks finish");
    instance
        .runner
        .shutdown(Duration::from_secs(args.shutdown_timeout))
        .await;
    cuttle_service::nodes::leave(&instance).await;
    let _ = metrics_done.send(());
    instance.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Tells systemd (a `Type=notify` unit) how the service is doing; nothing
/// when not started by systemd ($NOTIFY_SOCKET unset).
pub fn notify_systemd(state: sd_notify::NotifyState) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// Refuses a data directory this process cannot write, saying why, before
/// anything is opened: a read-only volume, or one owned by another user,
/// would otherwise fail later with a database error that names neither.
fn check_data_dir_writable(dir: &std::path::Path) -> anyhow::Result<()> {
    let why = |e: std::io::Error| -> anyhow::Error {
        match e.raw_os_error() {
            Some(libc::EROFS) => anyhow::anyhow!(
                "the data directory {} is on a read-only file system; Cuttle writes its \
                 database, keys and work files there (mount it read-write)",
                dir.display()
            ),
            Some(libc::EACCES | libc::EPERM) => {
                use std::os::unix::fs::MetadataExt as _;
                // SAFETY: geteuid and getegid cannot fail and touch no memory.
                let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
                let owner = std::fs::metadata(dir)
                    .map(|m| format!("owned by uid {} with mode {:o}", m.uid(), m.mode() & 0o7777))
                    .unwrap_or_else(|_| "not readable".to_owned());
                anyhow::anyhow!(
                    "the data directory {} is not writable by this process (uid {uid}, gid \
                     {gid}); it is {owner}: give it to uid {uid} (chown, or fsGroup on \
                     Kubernetes) or run as its owner",
                    dir.display()
                )
            }
            _ => anyhow::Error::new(e).context(format!(
                "the data directory {} cannot be used",
                dir.display()
            )),
        }
    };
    std::fs::create_dir_all(dir).map_err(why)?;
    let probe = dir.join(format!(".write-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(why)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Raises this process's soft limit on open files to its hard limit (at
/// most 65,536). The soft limit is often 1,024, which HTTP connections,
/// agents, the database and package files together can reach; the hard
/// limit is what the operator allows, and is never exceeded.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let wanted = limit.rlim_max.min(65_536);
    if limit.rlim_cur >= wanted {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        tracing::debug!(
            from = limit.rlim_cur,
            to = wanted,
            "raised the open file limit"
        );
    }
}

/// The polling endpoint's address: as given, none for "off", else the API's
/// host on port 10943 (or an ephemeral port when the API's is).
fn polling_address(
    given: Option<&str>,
    api: std::net::SocketAddr,
    ephemeral: bool,
) -> Option<String> {
    match given.map(str::trim) {
        Some(off) if off.eq_ignore_ascii_case("off") => None,
        Some(address) => Some(address.to_owned()),
        None => {
            let port = if ephemeral {
                0
            } else {
                cuttle_protocol::POLLING_PORT
            };
            Some(std::net::SocketAddr::new(api.ip(), port).to_string())
        }
    }
}

/// Resolves at SIGTERM or Ctrl-C. The handlers are installed when this is
/// called, not when it is first awaited, so a signal sent after the call
/// is never missed (nor does it kill the process the default way).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    async move {
        let term = async {
            match term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let interrupt = async {
            match interrupt.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = term => {},
            _ = interrupt => {},
        }
    }
}
