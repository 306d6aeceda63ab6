//! `cuttle agent …`: the agent on its machine. `init` gives it the TLS
//! identity a server pins, `register` tells a server about it (and it about
//! the server), `run` serves the server's requests, listening or polling,
//! and `trust` changes which server certificates it accepts (rotations).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use std::sync::Arc;

use cuttle_engine::agent_host::ScriptHost;
use cuttle_engine::sandbox::Sandbox;
use cuttle_protocol::{Hello, Identity, Thumbprint, TrustedThumbprints};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::api::Api;
use super::Connection;

/// The agent's registration, beside its identity in the data directory.
const CONFIG_FILE: &str = "agent.json";

#[derive(clap::Subcommand, Debug)]
pub enum AgentCommand {
    /// Create this agent's key and certificate, and print its thumbprint
    Init {
        /// Where the agent keeps its identity (in certs/) and work files.
        /// Not the server's data directory: each has an identity of its own.
        #[arg(long, env = "CUTTLE_AGENT_DATA_DIR", default_value = "./cuttle-agent")]
        data_dir: PathBuf,
        /// Replace an existing identity. Servers that trusted the old
        /// certificate will refuse this agent until given the new thumbprint.
        #[arg(long)]
        force: bool,
    },
    /// Register this agent with a server as a deployment target, and trust
    /// that server's certificate (uses --server, --api-key and --space)
    Register(RegisterArgs),
    /// Serve the registered server's requests until stopped (SIGTERM,
    /// Ctrl-C); SIGHUP reloads the trusted server certificates from agent.json
    Run {
        #[arg(long, env = "CUTTLE_AGENT_DATA_DIR", default_value = "./cuttle-agent")]
        data_dir: PathBuf,
    },
    /// Add or remove a server certificate this agent trusts, and print the
    /// resulting set
    ///
    /// Changes TrustedServerThumbprints in the data directory's agent.json.
    /// A running agent uses the new set from its next start, or at once when
    /// sent SIGHUP.
    Trust(TrustArgs),
}

#[derive(clap::Args, Debug)]
#[command(group(
    clap::ArgGroup::new("change")
        .required(true)
        .args(["add", "remove", "add_next"])
))]
pub struct TrustArgs {
    /// The agent's data directory, which holds agent.json
    #[arg(long, env = "CUTTLE_AGENT_DATA_DIR", default_value = "./cuttle-agent")]
    data_dir: PathBuf,
    /// Trust this server certificate too: 64 hexadecimal digits (any case;
    /// colons and spaces are ignored)
    #[arg(long, value_name = "THUMBPRINT")]
    add: Option<Thumbprint>,
    /// Stop trusting this server certificate. The last one is never removed
    #[arg(long, value_name = "THUMBPRINT")]
    remove: Option<Thumbprint>,
    /// Trust the certificate the server will switch to (its NextThumbprint).
    /// Asks the server at --server, else the one the agent registered with;
    /// needs --api-key
    #[arg(long)]
    add_next: bool,
}

#[derive(clap::Args, Debug)]
pub struct RegisterArgs {
    #[arg(long, env = "CUTTLE_AGENT_DATA_DIR", default_value = "./cuttle-agent")]
    data_dir: PathBuf,
    /// The deployment target's name, unique in the space
    #[arg(long)]
    name: String,
    /// An environment (name or id) the target is in; repeat for more
    #[arg(long = "environment", required_unless_present = "worker")]
    environments: Vec<String>,
    /// A role steps select the target by; repeat for more
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Listening mode: the address to listen on, HOST:PORT
    #[arg(long, value_name = "HOST:PORT", required_unless_present_any = ["polling", "worker"])]
    listen: Option<String>,
    /// The host the server dials, when not the --listen host (e.g. listening on 0.0.0.0)
    #[arg(long, value_name = "HOST")]
    public_host: Option<String>,
    /// Polling mode: the agent dials the server and keeps the connection open
    #[arg(long, conflicts_with = "listen")]
    polling: bool,
    /// Polling mode: where the server accepts agents, HOST:PORT [default:
    /// the --server host and the port the server reports]
    #[arg(long, value_name = "HOST:PORT", requires = "polling")]
    server_comms_address: Option<String>,
    /// Register as a worker in --pool instead of a deployment target
    #[arg(long, requires = "pool", conflicts_with_all = ["environments", "roles"])]
    worker: bool,
    /// The worker pool (name or id) of a worker
    #[arg(long, requires = "worker")]
    pool: Option<String>,
}

/// What `register` leaves for `run`: who the agent is, where it listens,
/// and which server certificates it accepts (a set, for rotations).
#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct AgentConfig {
    name: String,
    /// Listening mode: the address to listen on.
    #[serde(default)]
    listen: Option<String>,
    /// Polling mode: the server's agent endpoint to dial.
    #[serde(default)]
    polling_server: Option<String>,
    /// Polling mode: the name sent in the TLS handshake, which tells a host
    /// of many instances whose agent this is; by default the host of
    /// `polling_server` when that is a name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    polling_server_name: Option<String>,
    server_url: String,
    trusted_server_thumbprints: Vec<String>,
    machine_id: String,
    space_id: String,
}

impl AgentCommand {
    /// Whether this runs the agent rather than setting it up.
    pub fn is_run(&self) -> bool {
        matches!(self, AgentCommand::Run { .. })
    }
}

pub async fn run(conn: &Connection, cmd: AgentCommand) -> anyhow::Result<i32> {
    match cmd {
        AgentCommand::Init { data_dir, force } => init(&data_dir, force, &mut std::io::stdout()),
        AgentCommand::Register(args) => register(conn, args).await,
        AgentCommand::Run { data_dir } => serve(&data_dir).await.map(|()| 0),
        AgentCommand::Trust(args) => trust(conn, args, &mut std::io::stdout()).await,
    }
}

/// agent.json as read, checked and parsed. The text is kept so that `trust`
/// changes its one field and leaves the rest as written.
struct LoadedConfig {
    path: PathBuf,
    text: String,
    config: AgentConfig,
    /// `TrustedServerThumbprints` parsed, in order, without repeats.
    trusted: Vec<Thumbprint>,
}

fn load_config(data_dir: &Path) -> anyhow::Result<LoadedConfig> {
    let path = data_dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "could not read {}; register the agent first with `cuttle agent register`",
            path.display()
        )
    })?;
    let config: AgentConfig =
        serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))?;
    let mut trusted: Vec<Thumbprint> = Vec::new();
    for text in &config.trusted_server_thumbprints {
        let thumbprint = text
            .parse()
            .with_context(|| format!("{} is corrupt", path.display()))?;
        if !trusted.contains(&thumbprint) {
            trusted.push(thumbprint);
        }
    }
    Ok(LoadedConfig {
        path,
        text,
        config,
        trusted,
    })
}

fn load_identity(data_dir: &Path) -> anyhow::Result<Identity> {
    if !Identity::exists(data_dir) {
        bail!(
            "there is no agent identity in {}; run `cuttle agent init --data-dir {}` first",
            data_dir.display(),
            data_dir.display()
        );
    }
    Identity::load(data_dir).context("could not load the agent identity")
}

async fn register(conn: &Connection, args: RegisterArgs) -> anyhow::Result<i32> {
    let identity = load_identity(&args.data_dir)?;
    let listening = match (&args.listen, args.polling) {
        (Some(listen), false) => {
            let (host, port) = listen
                .rsplit_once(':')
                .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                .with_context(|| format!("--listen must be HOST:PORT, not {listen:?}"))?;
            let host = args.public_host.as_deref().unwrap_or(host);
            if matches!(host, "0.0.0.0" | "[::]") {
                bail!(
                    "the server cannot dial {host}; pass --public-host with a name or address it can reach"
                );
            }
            Some(format!("https://{host}:{port}/"))
        }
        (None, true) => None,
        _ => bail!("pass either --listen HOST:PORT or --polling"),
    };

    let api = Api::new(conn)?;
    let space = api.space_id(&conn.space).await?;
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct ServerThumbprint {
        thumbprint: String,
        #[serde(default)]
        polling_port: Option<u16>,
    }
    let server: ServerThumbprint = api
        .send(api.request(Method::GET, &["api", "agents", "server-thumbprint"]))
        .await
        .context("could not get the server's certificate thumbprint")?;
    let server_thumbprint: Thumbprint = server
        .thumbprint
        .parse()
        .context("the server sent a thumbprint that is not one")?;
    let polling_server = if args.polling {
        Some(match &args.server_comms_address {
            Some(address) => address.clone(),
            None => polling_address(conn, server.polling_port)?,
        })
    } else {
        None
    };

    // Polling agents are told apart by their certificate; the uri only has
    // to be unique, so it is derived from the thumbprint.
    let uri = listening.clone().unwrap_or_else(|| {
        format!(
            "poll://{}/",
            &identity.thumbprint().as_str()[..20].to_ascii_lowercase()
        )
    });
    let endpoint = serde_json::json!({
        "CommunicationStyle": if args.polling { "TentacleActive" } else { "TentaclePassive" },
        "Uri": uri,
        "Thumbprint": identity.thumbprint().to_string(),
    });
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Created {
        id: String,
    }
    let (created, what): (Created, &str) = if args.worker {
        let pool = args.pool.as_deref().unwrap_or_default();
        let pool_id = named_id(&api, &space, "workerpools", "WorkerPools-", pool).await?;
        let body = serde_json::json!({
            "Name": args.name,
            "WorkerPoolIds": [pool_id],
            "Endpoint": endpoint,
        });
        let created = api
            .post(&["api", &space, "workers"], &body)
            .await
            .with_context(|| format!("could not register the worker {:?}", args.name))?;
        (created, "worker")
    } else {
        let mut environment_ids = Vec::with_capacity(args.environments.len());
        for env in &args.environments {
            environment_ids
                .push(named_id(&api, &space, "environments", "Environments-", env).await?);
        }
        let body = serde_json::json!({
            "Name": args.name,
            "Roles": args.roles,
            "EnvironmentIds": environment_ids,
            "Endpoint": endpoint,
        });
        let created = api
            .post(&["api", &space, "machines"], &body)
            .await
            .with_context(|| format!("could not register the deployment target {:?}", args.name))?;
        (created, "deployment target")
    };

    let config = AgentConfig {
        name: args.name.clone(),
        listen: args.listen.clone(),
        polling_server: polling_server.clone(),
        polling_server_name: args.polling.then(|| server_host_name(conn)).flatten(),
        server_url: conn.server.clone().unwrap_or_default(),
        trusted_server_thumbprints: vec![server_thumbprint.to_string()],
        machine_id: created.id.clone(),
        space_id: space,
    };
    let path = args.data_dir.join(CONFIG_FILE);
    write_private(&path, &serde_json::to_vec_pretty(&config)?)
        .with_context(|| format!("could not write {}", path.display()))?;
    let how = match (&args.listen, &polling_server) {
        (Some(listen), _) => format!("listening on {listen}"),
        (_, Some(server)) => format!("polling {server}"),
        _ => String::new(),
    };
    println!(
        "Registered {} as {what} {} ({how}); it trusts the server certificate {server_thumbprint}.",
        args.name, created.id
    );
    println!(
        "Start it with: cuttle agent run --data-dir {}",
        args.data_dir.display()
    );
    Ok(0)
}

/// The --server URL's host when it is a name (not an address): on a host of
/// many instances, the instance's own name, sent by the agent when it polls.
fn server_host_name(conn: &Connection) -> Option<String> {
    let url = reqwest::Url::parse(conn.server.as_deref()?).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    (host.parse::<std::net::IpAddr>().is_err()).then(|| host.to_owned())
}

/// The server's polling endpoint: the --server host and the port it reports.
fn polling_address(conn: &Connection, port: Option<u16>) -> anyhow::Result<String> {
    let Some(port) = port else {
        bail!("the server does not accept polling agents (its polling endpoint is off)");
    };
    let url = conn.server.as_deref().unwrap_or_default();
    let parsed =
        reqwest::Url::parse(url).with_context(|| format!("--server {url:?} is not a URL"))?;
    // Brackets included for IPv6.
    let Some(host) = parsed.host_str() else {
        bail!("--server {url:?} names no host");
    };
    Ok(format!("{host}:{port}"))
}

/// A resource's id from its id or exact name (environments, worker pools).
async fn named_id(
    api: &Api,
    space: &str,
    collection: &str,
    id_prefix: &str,
    name: &str,
) -> anyhow::Result<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Named {
        id: String,
        name: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Page {
        items: Vec<Named>,
    }
    let query = [("partialName", name), ("skip", "0"), ("take", "2147483647")];
    let page: Page = api
        .send(
            api.request(Method::GET, &["api", space, collection])
                .query(&query),
        )
        .await?;
    if let Some(found) = page.items.iter().find(|e| e.id == name || e.name == name) {
        return Ok(found.id.clone());
    }
    if name.starts_with(id_prefix) {
        // partialName searches names only; the server checks the id.
        return Ok(name.to_owned());
    }
    let what = match collection {
        "environments" => "environment",
        "workerpools" => "worker pool",
        other => other,
    };
    bail!("no {what} is named {name:?} in {space} (names are case-sensitive)")
}

async fn serve(data_dir: &Path) -> anyhow::Result<()> {
    crate::server::init_tracing();
    // Before anything is announced, so an early SIGTERM is an orderly stop.
    let shutdown = crate::server::shutdown_signal();
    let LoadedConfig {
        path,
        config,
        trusted,
        ..
    } = load_config(data_dir)?;
    let identity = load_identity(data_dir)?;
    if trusted.is_empty() {
        tracing::warn!(
            "this agent trusts no server certificate, so it will refuse every connection"
        );
    }
    let (name, dir) = (config.name.clone(), data_dir.to_path_buf());
    let hello = move || Hello {
        protocol_version: cuttle_protocol::PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        operating_system: std::env::consts::OS.to_owned(),
        architecture: std::env::consts::ARCH.to_owned(),
        free_disk_bytes: free_disk_bytes(&dir).unwrap_or(0),
        name: name.clone(),
    };
    let work = data_dir.join("work");
    std::fs::create_dir_all(&work)
        .with_context(|| format!("could not create {}", work.display()))?;
    // Absolute: scripts run in their own directories, where a path relative
    // to the agent's (an installation directory, say) would mean nothing.
    let work = std::fs::canonicalize(&work)
        .with_context(|| format!("could not resolve {}", work.display()))?;
    let host = ScriptHost::new(work, Arc::new(Sandbox::for_agent()), hello);
    let trusted = TrustedThumbprints::new(trusted);
    reload_trust_on_hangup(data_dir.to_path_buf(), trusted.clone())?;

    match (&config.listen, &config.polling_server) {
        (Some(listen), _) => {
            let tls = cuttle_protocol::trust::server_config(&identity, trusted)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("could not listen on {listen}"))?;
            let addr = listener.local_addr()?;
            super::announce!(
                "Cuttle agent {} is listening on https://{addr}",
                config.name
            );
            crate::server::notify_systemd(sd_notify::NotifyState::Ready);
            cuttle_protocol::listen::serve(listener, tls, host, shutdown).await;
        }
        (None, Some(server)) => {
            let tls = cuttle_protocol::trust::client_config(&identity, trusted)?;
            super::announce!("Cuttle agent {} is polling {server}", config.name);
            // Ready to serve: the connection is (re)made by `poll` itself.
            crate::server::notify_systemd(sd_notify::NotifyState::Ready);
            let name = cuttle_protocol::trust::server_name_for(
                server,
                config.polling_server_name.as_deref(),
            );
            cuttle_protocol::polling::poll(server.clone(), name, tls, host, shutdown).await;
        }
        (None, None) => bail!(
            "{} says neither where to listen nor which server to poll; register the agent again",
            path.display()
        ),
    }
    tracing::info!("stopped");
    Ok(())
}

/// On SIGHUP, makes `trusted` the set agent.json now holds. The TLS
/// configurations share the set, so the next connection (listening: the
/// server's next dial; polling: the next redial) is checked against it with
/// nothing restarted. A file that cannot be read, or trusts nothing, is
/// logged and the set kept: a typo must not lock the server out.
///
/// The handler is installed before the agent announces itself, so a SIGHUP
/// from then on never kills it the default way.
fn reload_trust_on_hangup(data_dir: PathBuf, trusted: TrustedThumbprints) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup =
        signal(SignalKind::hangup()).context("could not install the SIGHUP handler")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match load_config(&data_dir) {
                Ok(loaded) if loaded.trusted.is_empty() => tracing::warn!(
                    "{} trusts no server certificate; keeping the ones trusted until now",
                    loaded.path.display()
                ),
                Ok(loaded) => {
                    tracing::info!(
                        trusted = %thumbprint_list(&loaded.trusted),
                        "reloaded the trusted server certificates"
                    );
                    trusted.replace_all(loaded.trusted);
                }
                Err(e) => tracing::warn!(
                    "could not reload the trusted server certificates, keeping the ones \
                     trusted until now: {e:#}"
                ),
            }
        }
    });
    Ok(())
}

fn thumbprint_list(thumbprints: &[Thumbprint]) -> String {
    thumbprints
        .iter()
        .map(Thumbprint::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

async fn trust(conn: &Connection, args: TrustArgs, out: &mut dyn Write) -> anyhow::Result<i32> {
    let LoadedConfig {
        path,
        text,
        config,
        mut trusted,
    } = load_config(&args.data_dir)?;
    // What happened, and whether agent.json has to be written.
    let (note, changed) = if let Some(remove) = &args.remove {
        if !trusted.contains(remove) {
            (format!("{remove} was not trusted; nothing changed."), false)
        } else if trusted.len() == 1 {
            bail!(
                "refusing to remove {remove}: it is the only server certificate this agent \
                 trusts, and an agent that trusts none refuses every server. Trust the new \
                 one first (`cuttle agent trust --add-next`, or --add THUMBPRINT)"
            );
        } else {
            trusted.retain(|t| t != remove);
            (format!("Removed {remove}."), true)
        }
    } else {
        let add = match args.add {
            Some(add) => add,
            None => next_server_thumbprint(conn, &config, &trusted).await?,
        };
        if trusted.contains(&add) {
            (
                format!("{add} was already trusted; nothing changed."),
                false,
            )
        } else {
            trusted.push(add.clone());
            (format!("Added {add}."), true)
        }
    };
    if changed {
        // Only the one field changes; whatever else the file holds stays.
        let mut document: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is corrupt", path.display()))?;
        let fields = document
            .as_object_mut()
            .with_context(|| format!("{} is corrupt: not a JSON object", path.display()))?;
        fields.insert(
            "TrustedServerThumbprints".to_owned(),
            trusted.iter().map(Thumbprint::to_string).collect(),
        );
        write_private(&path, &serde_json::to_vec_pretty(&document)?)
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    writeln!(out, "{note}")?;
    writeln!(
        out,
        "This agent trusts these server certificates ({}):",
        path.display()
    )?;
    for thumbprint in &trusted {
        writeln!(out, "  {thumbprint}")?;
    }
    if changed {
        writeln!(
            out,
            "A running agent uses them from its next start, or at once when sent SIGHUP."
        )?;
    }
    Ok(0)
}

/// The thumbprint the server will switch to, as it publishes it. Asked of
/// --server when given (a server may have moved), else of the server the
/// agent registered with; either way the server must present a certificate
/// the agent already trusts, so that a mistyped URL cannot slip another
/// server's certificate in.
async fn next_server_thumbprint(
    conn: &Connection,
    config: &AgentConfig,
    trusted: &[Thumbprint],
) -> anyhow::Result<Thumbprint> {
    let server = conn
        .server
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| Some(config.server_url.clone()).filter(|s| !s.trim().is_empty()));
    let Some(url) = server.clone() else {
        bail!("agent.json names no server; pass --server URL");
    };
    let conn = Connection {
        server,
        ..conn.clone()
    };
    let api = Api::new(&conn)?;
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct ServerThumbprints {
        thumbprint: String,
        /// Absent from servers older than rotations.
        #[serde(default)]
        next_thumbprint: Option<String>,
    }
    let published: ServerThumbprints = api
        .send(api.request(Method::GET, &["api", "agents", "server-thumbprint"]))
        .await
        .with_context(|| format!("could not ask {url} for its next certificate"))?;
    let current: Thumbprint = published
        .thumbprint
        .parse()
        .context("the server sent a thumbprint that is not one")?;
    if !trusted.contains(&current) {
        bail!(
            "the server at {url} presents the certificate {current}, which this agent does \
             not trust, so it may not be this agent's server. If it is, and its certificate \
             has been switched already, trust it with: cuttle agent trust --add {current}"
        );
    }
    let Some(next) = published.next_thumbprint else {
        bail!(
            "the server at {url} publishes no next certificate. Create one on the server \
             with `cuttle server certificate new`, and restart the server so that it \
             publishes it"
        );
    };
    next.parse()
        .context("the server sent a next thumbprint that is not one")
}

/// Space available to this user on the file system holding `dir`.
fn free_disk_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `stats` is written by statvfs
    // before being read, only when it reports success.
    let stats = unsafe {
        if libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) != 0 {
            return None;
        }
        stats.assume_init()
    };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Some(stats.f_bavail as u64 * stats.f_frsize as u64)
}

fn init(data_dir: &Path, force: bool, out: &mut dyn Write) -> anyhow::Result<i32> {
    let certs = data_dir.join(cuttle_protocol::identity::CERTS_DIR);
    let previous = Identity::exists(data_dir).then(|| Identity::load(data_dir));
    if let (Some(previous), false) = (&previous, force) {
        let what = match previous {
            Ok(identity) => format!("thumbprint {}", identity.thumbprint()),
            Err(e) => format!("unreadable: {e}"),
        };
        anyhow::bail!(
            "an agent identity already exists in {} ({what}); it was left as it is. \
             Pass --force to replace it; servers that trust it will then refuse this \
             agent until they are given the new thumbprint",
            certs.display()
        );
    }

    let identity = Identity::generate("Cuttle Agent")?;
    identity
        .replace(data_dir)
        .with_context(|| format!("could not save the agent identity in {}", certs.display()))?;
    match previous {
        Some(Ok(old)) => writeln!(
            out,
            "Replaced the agent identity in {} (the old thumbprint was {}).",
            certs.display(),
            old.thumbprint()
        )?,
        Some(Err(_)) => writeln!(
            out,
            "Replaced the unreadable agent identity in {}.",
            certs.display()
        )?,
        None => writeln!(out, "Created an agent identity in {}.", certs.display())?,
    }
    writeln!(out, "Thumbprint: {}", identity.thumbprint())?;
    writeln!(
        out,
        "A Cuttle server accepts this agent only once it is registered with this \
         thumbprint; keep {} private.",
        certs.join(cuttle_protocol::identity::KEY_FILE).display()
    )?;
    Ok(0)
}

/// Writes `bytes` to `path` readable by the owner only, through a temporary
/// file renamed into place, so a crash never leaves half a configuration.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
