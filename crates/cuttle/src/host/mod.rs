//! `cuttle host`: many isolated instances in one process, each reached at
//! `NAME.DOMAIN`, managed through a control plane on a listener of its own.
//!
//! # Layout
//! - this file: the command's arguments, and running the host. The other
//!   modules but [`client`] are the `cuttle` library's (`src/lib.rs`), so
//!   that other crates' tests can run a host in-process.
//! - [`instances`]: the instances and their lifecycle.
//! - [`routing`]: the public listener, by the `Host` header.
//! - [`control`]: the control plane's HTTP API.
//! - [`client`]: `cuttle host instance …`, a client of the control plane.
//! - `names`: which instance names are accepted.
//! - `archive`: a deleted instance's data packed into one file.
//! - [`workers`]: hosted workers, leased to instances, which have no
//!   built-in worker.
//! - [`hibernation`]: idle instances put to sleep, and woken.
//! - [`polling`]: one polling port for every instance's agents.
//!
//! Nothing an instance sets is process-wide: its store, metrics registry
//! (labelled `cuttle_instance`), audit switch and task runner are its own.

pub mod client;
// In the library, for other crates' tests to serve instances in-process.
pub use cuttle::host::{control, hibernation, instances, polling, routing, workers};

use anyhow::Context;
use std::path::PathBuf;
use std::time::Duration;

/// The shortest control token accepted: it guards every instance.
const MIN_TOKEN_LEN: usize = 24;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HostArgs {
    /// Without one, run the host.
    #[command(subcommand)]
    command: Option<HostCommand>,
    /// Address instances are served on (each by its Host header, NAME.DOMAIN).
    #[arg(long, env = "CUTTLE_HOST_LISTEN", default_value = "0.0.0.0:8080")]
    listen: String,
    /// The domain instances are named under: instance NAME answers at NAME.DOMAIN.
    #[arg(long, env = "CUTTLE_HOST_DOMAIN")]
    domain: Option<String>,
    /// The host's directory: its registry (host.db), instances/NAME/, archive/.
    #[arg(long, env = "CUTTLE_HOST_DATA_DIR", default_value = "./cuttle-host")]
    data_dir: PathBuf,
    /// A PostgreSQL server (postgres://user@host/DB): the host's registry goes
    /// in DB, and each instance gets a database of its own on that server;
    /// without it, SQLite files in the data directory.
    #[arg(long, env = "CUTTLE_HOST_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Address of the control plane (keep it private).
    #[arg(
        long,
        env = "CUTTLE_HOST_CONTROL_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    control_listen: String,
    /// The control plane's token, sent as `Authorization: Bearer TOKEN`
    /// (at least 24 characters).
    #[arg(long, env = "CUTTLE_HOST_CONTROL_TOKEN", hide_env_values = true)]
    control_token: Option<String>,
    /// The scheme of instances' URLs as users reach them (https behind a proxy).
    #[arg(long, env = "CUTTLE_HOST_PUBLIC_SCHEME", default_value = "http")]
    public_scheme: String,
    /// The port of instances' URLs as users reach them [default: --listen's
    /// port; none when that is 80]
    #[arg(long, env = "CUTTLE_HOST_PUBLIC_PORT")]
    public_port: Option<u16>,
    /// Start hosted workers even where they cannot be isolated (without
    /// root and bubblewrap). Instances on a host have no built-in worker.
    #[arg(long, env = "CUTTLE_BUILTIN_WORKER_UNISOLATED", value_parser = clap::builder::BoolishValueParser::new())]
    builtin_worker_unisolated: bool,
    /// How many hosted workers may run at once, each leased to one
    /// instance (0: none; instances then need workers of their own).
    #[arg(long, env = "CUTTLE_HOSTED_WORKERS", default_value_t = 0)]
    hosted_workers: usize,
    /// How long a hosted worker stays leased with no step running on it
    /// before it is wiped, e.g. 10m, 90s, 1h.
    #[arg(long, env = "CUTTLE_HOSTED_WORKER_IDLE", default_value = "10m", value_parser = workers::parse_duration)]
    hosted_worker_idle: Duration,
    /// How long a step waits for a hosted worker when every one is leased
    /// to other instances, taking the next one freed (its log says it
    /// waits); 0 fails it at once. E.g. 5m, 90s.
    #[arg(long, env = "CUTTLE_HOSTED_WORKER_WAIT", default_value = "5m", value_parser = workers::parse_wait)]
    hosted_worker_wait: Duration,
    /// Where hosted workers' scratch directories go [default: a directory
    /// in the system's temporary directory, named for the host's data
    /// directory]. Cleared when the host starts.
    #[arg(long, env = "CUTTLE_HOSTED_WORKER_DIR")]
    hosted_worker_dir: Option<PathBuf>,
    /// On shutdown, suspension or deletion, how long an instance's running
    /// steps may take to finish, in seconds.
    #[arg(long, env = "CUTTLE_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    shutdown_timeout: u64,
    /// An instance with no request, no connected agent and no task running
    /// or due for this long is put to sleep (its database connections,
    /// runner and caches released) until the next request, agent or due
    /// job: e.g. 10m, 90s, 1h.
    #[arg(long, env = "CUTTLE_HOST_IDLE_AFTER", default_value = "10m", value_parser = parse_duration)]
    idle_after: Duration,
    /// Address every instance's polling agents dial (each names its
    /// instance, NAME.DOMAIN, in the TLS handshake); none by default.
    #[arg(long, env = "CUTTLE_HOST_POLLING_LISTEN")]
    polling_listen: Option<String>,
    /// The host's log lines on stderr: "text" or "json".
    #[arg(long, env = "CUTTLE_LOG_FORMAT", value_enum, default_value_t = crate::server::LogFormat::Text)]
    log_format: crate::server::LogFormat,
}

#[derive(clap::Subcommand, Debug)]
enum HostCommand {
    /// Create, list, suspend, resume and delete a host's instances.
    Instance(client::InstanceArgs),
}

impl HostArgs {
    /// Whether this runs the host rather than a control-plane client.
    pub fn runs_the_host(&self) -> bool {
        self.command.is_none()
    }
}

pub async fn run(args: HostArgs) -> anyhow::Result<i32> {
    if let Some(HostCommand::Instance(cmd)) = args.command {
        return client::run(cmd).await;
    }
    crate::server::init_tracing_as(args.log_format);
    let domain = args
        .domain
        .as_deref()
        .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .context("--domain (CUTTLE_HOST_DOMAIN) is needed: instance NAME answers at NAME.DOMAIN")?;
    if domain.split('.').any(|label| {
        label.is_empty()
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }) {
        anyhow::bail!("--domain '{domain}' is not a domain name");
    }
    let token = args
        .control_token
        .clone()
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    if token.len() < MIN_TOKEN_LEN {
        anyhow::bail!(
            "the control plane needs a token of at least {MIN_TOKEN_LEN} characters \
             (--control-token or CUTTLE_HOST_CONTROL_TOKEN)"
        );
    }
    if let Some(url) = &args.database_url {
        if cuttle_store::Backend::of_url(url) != Some(cuttle_store::Backend::Postgres) {
            anyhow::bail!("--database-url must be a PostgreSQL URL (postgres://…)");
        }
    }
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let signalled = crate::server::shutdown_signal();
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

    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("could not create {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("could not open {}", args.data_dir.display()))?;
    // One host per directory: two would open the same instances.
    let _one_host = crate::data_dir_lock::lock_sqlite_data_dir(&data_dir).await?;

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("could not listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let control = tokio::net::TcpListener::bind(&args.control_listen)
        .await
        .with_context(|| {
            format!(
                "could not listen for the control plane on {}",
                args.control_listen
            )
        })?;
    let control_addr = control.local_addr()?;
    let polling = match &args.polling_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("could not listen for polling agents on {address}"))?,
        ),
        None => None,
    };
    let polling_port = match &polling {
        Some(listener) => Some(listener.local_addr()?.port()),
        None => None,
    };
    let public_port = args
        .public_port
        .or_else(|| (addr.port() != 80).then_some(addr.port()));
    let hosted_workers = if args.hosted_workers > 0 {
        let settings = workers::WorkerSettings {
            count: args.hosted_workers,
            idle: args.hosted_worker_idle,
            scratch_root: args
                .hosted_worker_dir
                .clone()
                .unwrap_or_else(|| workers::default_scratch_root(&data_dir)),
            host_data_dir: data_dir.clone(),
            allow_unisolated: args.builtin_worker_unisolated,
            wait: args.hosted_worker_wait,
            binary: None,
        };
        Some(workers::HostedWorkers::start(settings).await?)
    } else {
        None
    };
    let host = instances::Host::open(instances::HostConfig {
        data_dir: data_dir.clone(),
        domain: domain.clone(),
        database_url: args.database_url.clone(),
        public_scheme: args.public_scheme.clone(),
        public_port,
        builtin_worker_unisolated: args.builtin_worker_unisolated,
        hosted_workers: hosted_workers.clone(),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        idle_after: args.idle_after,
        polling_port,
        adjust_instances: None,
    })
    .await
    .context("could not open the host")?;

    // Last activity survives a restart, written at most once a minute.
    let weak = std::sync::Arc::downgrade(&host);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(host) = weak.upgrade() else { return };
            host.persist_activity().await;
        }
    });

    hibernation::follow(std::sync::Arc::downgrade(&host), args.idle_after);
    let polling_server = polling.map(|listener| {
        let (host, stop) = (host.clone(), stopped());
        if let Ok(addr) = listener.local_addr() {
            crate::cli::announce!("Polling agents of every instance connect to {addr}");
        }
        tokio::spawn(async move {
            if let Err(e) = polling::serve(host, listener, stop).await {
                tracing::error!(error = %format!("{e:#}"), "the polling endpoint stopped");
            }
        })
    });
    crate::cli::announce!("The control plane is listening on http://{control_addr}");
    crate::cli::announce!("Cuttle host for *.{domain} is listening on http://{addr}");
    tracing::info!(data_dir = %data_dir.display(), "host ready");
    let control_server = {
        let app = control::router(host.clone(), token);
        let stop = stopped();
        tokio::spawn(async move { axum::serve(control, app).with_graceful_shutdown(stop).await })
    };
    crate::server::notify_systemd(sd_notify::NotifyState::Ready);
    cuttle_api::connections::serve(
        listener,
        routing::router(host.clone()),
        cuttle_api::HttpLimits::default(),
        stopped(),
    )
    .await?;
    crate::server::notify_systemd(sd_notify::NotifyState::Stopping);
    let _ = control_server.await;
    if let Some(polling) = polling_server {
        let _ = polling.await;
    }
    tracing::info!("no longer accepting requests; stopping every instance");
    // Workers first, while their instances can still drop their registrations.
    if let Some(workers) = &hosted_workers {
        workers.shutdown().await;
    }
    host.shutdown().await;
    tracing::info!("stopped");
    Ok(0)
}

/// A duration as an operator writes one: a whole number with `ms`, `s`,
/// `m` or `h` (seconds without a unit); more than zero.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 10m, 90s or 1h"))?;
    let duration = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => return Err(format!("'{other}' is not a unit: use ms, s, m or h")),
    };
    if duration.is_zero() {
        return Err("the duration must be more than zero".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_take_a_unit_and_must_be_positive() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "0", "0s", "ten", "5d", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
