//! Isolation of scripts on the built-in worker (design principle 3).
//!
//! Each step is *contained*: every process it starts is killed when it ends
//! (a PID namespace under bubblewrap, a cgroup of its own, or a uid of its
//! own, whichever apply). Steps are *kept apart*: one cannot read another's
//! working directory or variables file (a uid of its own per step when the
//! server runs as root; bubblewrap's mount namespace, in which the server's
//! data directory is an empty tmpfs except for the step's own directory).
//! Memory and processes are limited per step where cgroups can be created,
//! and each step has a /tmp of its own. The network is the host's: steps
//! reach whatever the server's host can, as deployments need.
//!
//! Everything is decided once, when the runner starts ([`Sandbox::probe`]),
//! and logged in one line, so an operator can see which protections apply.
//! Where steps could be neither contained nor kept apart, scripts are refused
//! unless the operator allowed that knowingly (`allow_unisolated`).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use tokio::process::Command;

use crate::cgroup::{Cgroups, StepCgroup};
use crate::step_exec::{Exec, PrivateTmp};
use crate::step_network::{NetworkError, StepNetwork, RESOLV_CONF, SLIRP4NETNS};
use crate::step_user::StepUid;

/// How an operator allows scripts on a built-in worker that cannot isolate
/// its steps (named in the refusal).
pub const UNISOLATED_OPT_IN: &str =
    "--builtin-worker-unisolated (or CUTTLE_BUILTIN_WORKER_UNISOLATED=true)";

/// Why a step that would run on the built-in worker of an instance without
/// one (served by `cuttle host`) does not run.
pub const NO_BUILT_IN_WORKER: &str =
    "this instance has no built-in worker: no script runs on the host. Register a worker \
     of your own (cuttle agent register --worker --pool \"Default Worker Pool\"), or choose \
     a worker pool with workers for the step";

/// Resource limits of scripts (`None`: inherit the server's). Memory and
/// processes count per step where a cgroup (or, for processes, a uid) of its
/// own applies, else per process; the timeout bounds the step's wall-clock
/// time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// RLIMIT_CPU, in seconds.
    pub cpu_seconds: Option<u64>,
    /// The step's memory (cgroup), and each process's address space
    /// (RLIMIT_AS, which holds for every allocator even without cgroups).
    pub memory_bytes: Option<u64>,
    /// RLIMIT_NOFILE.
    pub open_files: Option<u64>,
    /// The step's processes (cgroup pids.max), and RLIMIT_NPROC. The latter
    /// counts every process of the *user*, so it applies only when scripts
    /// run as a uid of their own: as the server's user it would count (and
    /// could starve) the server itself.
    pub processes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_seconds: Some(3600),
            memory_bytes: Some(4 << 30),
            open_files: Some(4096),
            processes: Some(1024),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SandboxConfig {
    pub limits: Limits,
    /// Whose group the steps' uids get when the server runs as root. `None`:
    /// `cuttle-worker` if that user exists, else `nobody`.
    pub user: Option<String>,
    /// Use bubblewrap namespaces where they work.
    pub namespaces: bool,
    /// Give each step a cgroup of its own where the host allows it.
    pub cgroups: bool,
    /// Hidden from scripts inside namespaces (the data directory); the
    /// script's own working directory stays visible.
    pub hidden_paths: Vec<PathBuf>,
    /// Run scripts even where steps can be neither contained nor kept apart:
    /// the operator's explicit choice ([`UNISOLATED_OPT_IN`]).
    pub allow_unisolated: bool,
    /// Whether there is a built-in worker at all. An instance served by
    /// `cuttle host` has none: no customer script runs on the host.
    pub enabled: bool,
    /// Inside namespaces, the whole file system read-only but for the
    /// step's own directory and /tmp (a hosted worker's sandbox, where
    /// nothing may outlive it); else read-write as the user's rights allow.
    pub read_only_root: bool,
    /// Inside namespaces, a network namespace of each step's own, its way
    /// out through slirp4netns and none to the server's loopback (a hosted
    /// worker's sandbox); else the server's network, as deployments expect.
    pub private_network: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            limits: Limits::default(),
            user: None,
            namespaces: true,
            cgroups: true,
            hidden_paths: vec![],
            allow_unisolated: false,
            enabled: true,
            read_only_root: false,
            private_network: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("scripts cannot run on the built-in worker: {0}")]
    Refused(String),
    #[error("the user '{0}' whose group scripts should run with does not exist")]
    UnknownUser(String),
    #[error(
        "the script's user {user} cannot reach {work_dir}: {blocked} is not searchable by \
         others (chmod o+x it, or keep the data directory where that user can reach it)"
    )]
    Unreachable {
        user: String,
        work_dir: PathBuf,
        blocked: PathBuf,
    },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

/// The user whose group scripts run with, as a uid of their own per step,
/// when the server runs as root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The isolation the built-in worker applies, as probed at runner start.
#[derive(Clone, Debug)]
pub struct Sandbox {
    limits: Limits,
    /// Set when the server runs as root: each step then runs as a uid of its
    /// own, with this user's group.
    user: Option<WorkerUser>,
    /// bubblewrap, when it was found and worked.
    bwrap: Option<PathBuf>,
    /// Why namespaces are not used, when they are not.
    no_namespaces: Option<String>,
    hidden: Vec<PathBuf>,
    /// Where steps get cgroups of their own, when they can.
    cgroups: Option<Cgroups>,
    /// Why steps get no cgroup, when they do not.
    no_cgroups: Option<String>,
    /// Without bubblewrap, as root: whether the server can give a step a
    /// mount namespace with /tmp its own (a container may not allow it),
    /// and why not.
    tmp_namespace: Result<(), String>,
    /// Why no script may run at all.
    refused: Option<String>,
    /// Why steps are neither contained nor kept apart, when the operator
    /// allowed scripts regardless.
    unisolated: Option<String>,
    /// Set when there is no built-in worker at all (hosted instances).
    off: bool,
    read_only_root: bool,
    /// Each step's network of its own, when asked for and possible.
    network: Option<Arc<PrivateNetwork>>,
    /// Why steps share the server's network, when a network of their own
    /// was asked for.
    no_network: Option<String>,
}

/// What a network of a step's own needs: slirp4netns, and a resolv.conf
/// that names its DNS forwarder (the server's may name its own loopback).
#[derive(Debug)]
struct PrivateNetwork {
    slirp4netns: PathBuf,
    resolv_conf: tempfile::NamedTempFile,
}

const BWRAP: &str = "bwrap";
const DEFAULT_USERS: [&str; 2] = ["cuttle-worker", "nobody"];

impl Sandbox {
    /// No isolation beyond what `run_script` always does (a process group, a
    /// cleared environment) and no core dumps: for tests of the runner itself.
    pub fn none() -> Sandbox {
        Sandbox {
            limits: Limits {
                cpu_seconds: None,
                memory_bytes: None,
                open_files: None,
                processes: None,
            },
            user: None,
            bwrap: None,
            no_namespaces: Some("disabled".into()),
            hidden: vec![],
            cgroups: None,
            no_cgroups: Some("disabled".into()),
            tmp_namespace: Err("disabled".into()),
            refused: None,
            unisolated: None,
            off: false,
            read_only_root: false,
            network: None,
            no_network: None,
        }
    }

    /// No built-in worker: every script is refused with [`NO_BUILT_IN_WORKER`],
    /// and nothing is probed.
    pub fn off() -> Sandbox {
        Sandbox {
            refused: Some(NO_BUILT_IN_WORKER.into()),
            off: true,
            ..Sandbox::none()
        }
    }

    /// Whether this installation has no built-in worker.
    pub fn is_off(&self) -> bool {
        self.off
    }

    /// For scripts on an agent: they run as the agent's own user, which the
    /// machine's operator chose (deployment scripts often need its rights
    /// to restart services), in a fresh directory with a cleared
    /// environment, the resource limits, and their process group killed on
    /// cancel or timeout. No namespaces: a target's scripts are meant to
    /// change that machine.
    pub fn for_agent() -> Sandbox {
        Sandbox {
            limits: Limits {
                // Counted per user, and the user is the agent's own.
                processes: None,
                ..Limits::default()
            },
            no_namespaces: Some("scripts on an agent run as the agent's user".into()),
            no_cgroups: Some("scripts on an agent run as the agent's user".into()),
            ..Sandbox::none()
        }
    }

    /// Decides what isolation can apply here: looks up the worker user when
    /// the server is root, finds where step cgroups can go, and runs
    /// bubblewrap once, exactly as scripts will run it, to see whether this
    /// kernel (or container) permits it.
    ///
    /// Never fails: when the server is root but no unprivileged user is
    /// found, or steps can be neither contained nor kept apart (and that was
    /// not allowed), scripts are refused rather than run.
    pub async fn probe(config: &SandboxConfig) -> Sandbox {
        if !config.enabled {
            return Sandbox::off();
        }
        let (user, refused) = if runs_as_root() {
            match find_user(config.user.as_deref()) {
                Ok(user) => (Some(user), None),
                Err(e) => (None, Some(format!("the server runs as root and {e}"))),
            }
        } else {
            (None, None)
        };
        let hidden = config
            .hidden_paths
            .iter()
            // Canonical, as the work directories bound back into it are; a
            // path that does not exist has nothing to hide.
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        let mut sandbox = Sandbox {
            limits: config.limits,
            user,
            bwrap: None,
            no_namespaces: None,
            hidden,
            cgroups: None,
            no_cgroups: None,
            tmp_namespace: Err("not probed".into()),
            refused,
            unisolated: None,
            off: false,
            read_only_root: config.read_only_root,
            network: None,
            no_network: None,
        };
        let cgroups = async {
            if !config.cgroups {
                return Err("disabled in the configuration".to_owned());
            }
            let cgroups = Cgroups::probe()?;
            probe_joining(&cgroups).await.map(|()| cgroups)
        };
        // Each probe starts a process and waits for it: at once, not in turn.
        let (cgroups, bwrap) = tokio::join!(cgroups, sandbox.probe_bwrap(config));
        match cgroups {
            Ok(c) => sandbox.cgroups = Some(c),
            Err(e) => sandbox.no_cgroups = Some(e),
        }
        match bwrap {
            Ok(bwrap) => sandbox.bwrap = Some(bwrap),
            Err(e) => sandbox.no_namespaces = Some(e),
        }
        if sandbox.bwrap.is_none() && sandbox.step_uids() {
            sandbox.tmp_namespace = sandbox.probe_tmp_namespace().await;
        }
        if config.private_network {
            match sandbox.probe_network().await {
                Ok(network) => sandbox.network = Some(network),
                Err(e) => sandbox.no_network = Some(e),
            }
        }
        sandbox.settle(config.allow_unisolated);
        sandbox
    }

    /// Refuses scripts where steps would be neither contained nor kept
    /// apart, unless the operator allowed that.
    fn settle(&mut self, allow_unisolated: bool) {
        if self.refused.is_some() {
            return;
        }
        let Some((missing, why)) = self.isolation_missing() else {
            return;
        };
        if allow_unisolated {
            self.unisolated = Some(missing);
        } else {
            self.refused = Some(format!(
                "{missing} ({why}), so a script could read other deployments' files (their \
                 sensitive variables included) or leave processes running after its \
                 step. Install bubblewrap, or run the server as root; or start it \
                 with {UNISOLATED_OPT_IN} to run scripts regardless"
            ));
        }
    }

    /// Starts `true` with /tmp its own, as a step without bubblewrap would
    /// start (in a scratch directory below /tmp, the harder case).
    async fn probe_tmp_namespace(&self) -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| format!("a scratch directory: {e}"))?;
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let exec = Exec {
            limits: self.limits,
            ids: None,
            cgroup_procs: vec![],
            private_tmp: PrivateTmp::new(dir.path(), &tmp),
        };
        let mut command = Command::new("true");
        exec.apply(&mut command);
        command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match command.status().await {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("a test process exited with {status}")),
            Err(e) => Err(format!("no mount namespace: {e}")),
        }
    }

    /// Runs bubblewrap as a step would: it, or why namespaces are not used.
    async fn probe_bwrap(&self, config: &SandboxConfig) -> Result<PathBuf, String> {
        if !config.namespaces {
            return Err("disabled in the configuration".into());
        }
        let path = std::env::var_os("PATH").unwrap_or_else(|| crate::script::DEFAULT_PATH.into());
        let Some(bwrap) = crate::script::find_on_path(BWRAP, &path) else {
            return Err("bubblewrap (bwrap) is not installed".into());
        };
        let probe_dir = std::env::temp_dir();
        let ids = self.user.as_ref().map(|u| (StepUid::allocate(), u.gid));
        let exec = Exec {
            limits: self.limits,
            ids: ids.as_ref().map(|(uid, gid)| (uid.uid(), *gid)),
            cgroup_procs: vec![],
            private_tmp: None,
        };
        let mut command = self.wrap(&bwrap, &probe_dir, None, Path::new("true"));
        exec.apply(&mut command);
        command
            .current_dir(&probe_dir)
            .env_clear()
            .env("PATH", &path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match command.output().await {
            Ok(out) if out.status.success() => Ok(bwrap),
            Ok(out) => Err(format!(
                "bubblewrap is not permitted here: {}",
                first_line(&String::from_utf8_lossy(&out.stderr))
                    .unwrap_or(&format!("it exited with {}", out.status))
            )),
            Err(e) => Err(format!("bubblewrap could not be started: {e}")),
        }
    }

    /// Runs `true` in a network namespace of its own, given a way out, as a
    /// step will run.
    async fn probe_network(&self) -> Result<Arc<PrivateNetwork>, String> {
        let Some(bwrap) = &self.bwrap else {
            return Err(format!(
                "it needs namespaces, and there are none: {}",
                self.no_namespaces.as_deref().unwrap_or("not probed")
            ));
        };
        let path = std::env::var_os("PATH").unwrap_or_else(|| crate::script::DEFAULT_PATH.into());
        let Some(slirp4netns) = crate::script::find_on_path(SLIRP4NETNS, &path) else {
            return Err("slirp4netns is not installed".into());
        };
        let mut resolv_conf = tempfile::Builder::new()
            .prefix("cuttle-resolv-")
            .tempfile()
            .map_err(|e| format!("a resolv.conf for steps: {e}"))?;
        std::io::Write::write_all(&mut resolv_conf, RESOLV_CONF.as_bytes())
            .map_err(|e| format!("a resolv.conf for steps: {e}"))?;
        // World-readable: steps run as uids of their own.
        std::fs::set_permissions(resolv_conf.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| format!("a resolv.conf for steps: {e}"))?;
        let network = Arc::new(PrivateNetwork {
            slirp4netns,
            resolv_conf,
        });
        let probe = Sandbox {
            network: Some(network.clone()),
            ..self.clone()
        };
        let probe_dir = std::env::temp_dir();
        let mut command = probe.wrap(bwrap, &probe_dir, None, Path::new("sleep"));
        command
            .arg("5")
            .current_dir(&probe_dir)
            .env_clear()
            .env("PATH", &path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| format!("bubblewrap could not be started: {e}"))?;
        let socket_dir = tempfile::Builder::new()
            .prefix("cuttle-net-")
            .tempdir()
            .map_err(|e| format!("a directory for slirp4netns's API socket: {e}"))?;
        let api_socket = socket_dir.path().join("api.sock");
        let attached = match child.id() {
            Some(pid) => StepNetwork::attach(&network.slirp4netns, pid, api_socket)
                .await
                .map_err(|e| e.to_string()),
            None => Err("the probe exited at once".into()),
        };
        let _ = child.start_kill();
        let _ = child.wait().await;
        attached.map(|_| network)
    }

    /// The way out of the network namespace of the step started as
    /// `sandbox_pid`, when steps have networks of their own (see
    /// [`StepNetwork::attach`] for `api_socket`).
    pub async fn attach_network(
        &self,
        sandbox_pid: u32,
        api_socket: PathBuf,
    ) -> Option<Result<StepNetwork, NetworkError>> {
        let network = self.network.as_ref()?;
        Some(StepNetwork::attach(&network.slirp4netns, sandbox_pid, api_socket).await)
    }

    /// Whether each step has a network of its own.
    pub fn private_network(&self) -> bool {
        self.network.is_some()
    }

    /// Why steps share the server's network though a network of their own
    /// was asked for.
    pub fn no_private_network(&self) -> Option<&str> {
        self.no_network.as_deref()
    }

    /// What isolation steps would lack here, and why, if any.
    fn isolation_missing(&self) -> Option<(String, String)> {
        let mut missing = vec![];
        if !self.contains_steps() {
            missing.push("processes a step starts could outlive it");
        }
        if !self.separates_steps() {
            missing.push("steps could read each other's working directories");
        }
        if missing.is_empty() {
            return None;
        }
        let why = self.no_namespaces.as_deref().unwrap_or("not probed");
        let cgroups = match &self.no_cgroups {
            Some(no) => format!("; no cgroups: {no}"),
            None => String::new(),
        };
        Some((
            missing.join(" and "),
            format!("no namespaces: {why}; the server does not run as root{cgroups}"),
        ))
    }

    /// Whether scripts are refused (the line says why and how to allow them).
    pub fn refuses(&self) -> bool {
        self.refused.is_some()
    }

    /// Whether scripts run inside namespaces that hide the data directory.
    pub fn namespaces(&self) -> bool {
        self.bwrap.is_some()
    }

    /// The user whose group scripts run with (each step as a uid of its
    /// own), when the server is root.
    pub fn user(&self) -> Option<&WorkerUser> {
        self.user.as_ref()
    }

    /// Whether each step runs as a uid of its own.
    pub fn step_uids(&self) -> bool {
        self.user.is_some()
    }

    /// Whether every process a step starts is killed when it ends.
    pub fn contains_steps(&self) -> bool {
        self.bwrap.is_some() || self.cgroups.is_some() || self.step_uids()
    }

    /// Whether a step is kept from reading other steps' working directories.
    pub fn separates_steps(&self) -> bool {
        self.bwrap.is_some() || self.step_uids()
    }

    /// Whether memory is capped per step rather than per process.
    pub fn caps_step_memory(&self) -> bool {
        self.limits.memory_bytes.is_some() && self.cgroups.as_ref().is_some_and(Cgroups::memory)
    }

    /// Whether the process limit counts one step's processes only.
    pub fn limits_processes_per_step(&self) -> bool {
        self.limits.processes.is_some()
            && (self.step_uids() || self.cgroups.as_ref().is_some_and(Cgroups::pids))
    }

    /// Whether each step has a /tmp of its own (rather than the host's).
    pub fn private_tmp(&self) -> bool {
        // Without bubblewrap, root makes the mount namespace itself.
        self.bwrap.is_some() || (self.step_uids() && self.tmp_namespace.is_ok())
    }

    /// The server's PATH without the directories the script's user cannot
    /// search (root's own tool directories under /root, say), so that the
    /// interpreter and the commands a script runs resolve to ones it may run.
    pub fn search_path(&self, path: &OsStr) -> OsString {
        let Some(user) = &self.user else {
            return path.to_owned();
        };
        // Judged as a stranger to every directory: the step's uid owns none.
        let stranger = WorkerUser {
            uid: u32::MAX,
            ..user.clone()
        };
        let usable =
            std::env::split_paths(path).filter(|dir| unsearchable(&stranger, dir).is_none());
        std::env::join_paths(usable).unwrap_or_else(|_| path.to_owned())
    }

    /// The isolation of one step: its uid and cgroup, held until it is
    /// dropped, which kills whatever of the step still runs.
    pub fn step(self: &Arc<Self>) -> Result<Step, SandboxError> {
        if let Some(why) = &self.refused {
            return Err(SandboxError::Refused(why.clone()));
        }
        let cgroup = match &self.cgroups {
            Some(cgroups) => Some(
                cgroups
                    .create(self.limits.memory_bytes, self.limits.processes)
                    .map_err(|source| SandboxError::Io {
                        context: "creating the step's cgroup".into(),
                        source,
                    })?,
            ),
            None => None,
        };
        Ok(Step {
            sandbox: self.clone(),
            uid: self.user.as_ref().map(|_| StepUid::allocate()),
            cgroup,
            work_dir: None,
        })
    }

    /// bubblewrap's arguments for a step in `work_dir` (with `tmp` as its
    /// /tmp), then `program`.
    fn wrap(&self, bwrap: &Path, work_dir: &Path, tmp: Option<&Path>, program: &Path) -> Command {
        let mut command = Command::new(bwrap);
        // The whole file system stays as it was (read-write, subject to the
        // user's permissions), as deployment scripts expect of the host; only
        // /tmp is the step's own and the data directory is replaced by an
        // empty tmpfs, with the script's working directory bound back into
        // it. Later mounts cover earlier ones, so /tmp comes first (the data
        // directory may lie below it). The network stays shared: deployments
        // need it.
        command.args(["--die-with-parent", "--unshare-pid", "--unshare-ipc"]);
        let root = if self.read_only_root {
            "--ro-bind"
        } else {
            "--bind"
        };
        command.args(["--unshare-uts", root, "/", "/"]);
        command.args(["--dev", "/dev", "--proc", "/proc"]);
        if let Some(network) = &self.network {
            command.arg("--unshare-net");
            command
                .arg("--ro-bind")
                .arg(network.resolv_conf.path())
                .arg("/etc/resolv.conf");
        }
        if let Some(tmp) = tmp {
            command.arg("--bind").arg(tmp).arg("/tmp");
        }
        for hidden in &self.hidden {
            command.arg("--tmpfs").arg(hidden);
        }
        command.arg("--bind").arg(work_dir).arg(work_dir);
        command.arg("--chdir").arg(work_dir);
        command.arg("--").arg(program);
        command
    }
}

/// Starts `true` in a step cgroup, as a step would start: creating one is
/// not always enough to be let in (a container's cgroup namespace, cgroup v2's
/// rule against processes in inner cgroups).
async fn probe_joining(cgroups: &Cgroups) -> Result<(), String> {
    let step = cgroups
        .create(None, None)
        .map_err(|e| format!("creating a step cgroup: {e}"))?;
    let exec = Exec {
        limits: Limits {
            cpu_seconds: None,
            memory_bytes: None,
            open_files: None,
            processes: None,
        },
        ids: None,
        cgroup_procs: step.procs_files(),
        private_tmp: None,
    };
    let mut command = Command::new("true");
    exec.apply(&mut command);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match command.status().await {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!(
            "a test process in a step cgroup exited with {status}"
        )),
        Err(e) => Err(format!("a process cannot join a step cgroup: {e}")),
    }
}

/// One step's isolation. Dropping it kills every process left of the step
/// (by its cgroup and its uid) and closes its working directory to later
/// steps.
#[derive(Debug)]
pub struct Step {
    sandbox: Arc<Sandbox>,
    uid: Option<StepUid>,
    cgroup: Option<StepCgroup>,
    work_dir: Option<PathBuf>,
}

impl Step {
    /// Hands the script's freshly written working directory to the step's
    /// uid (its files, written 0600 by the server, included), after checking
    /// that the uid can reach it at all.
    pub async fn prepare(&mut self, work_dir: &Path) -> Result<(), SandboxError> {
        let (Some(user), Some(uid)) = (self.sandbox.user.clone(), &self.uid) else {
            return Ok(());
        };
        let user = WorkerUser {
            uid: uid.uid(),
            ..user
        };
        let dir = work_dir.to_owned();
        self.work_dir = Some(dir.clone());
        // Blocking file-system walks belong off the async threads.
        tokio::task::spawn_blocking(move || {
            check_reachable(&user, &dir)?;
            chown_tree(&dir, user.uid, user.gid).map_err(|source| SandboxError::Io {
                context: format!("handing {} to the step's uid {}", dir.display(), user.uid),
                source,
            })?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(
                |source| SandboxError::Io {
                    context: format!("restricting {}", dir.display()),
                    source,
                },
            )
        })
        .await
        .map_err(|e| SandboxError::Io {
            context: "preparing the working directory".into(),
            source: io::Error::other(e),
        })?
    }

    /// A command that runs `program` (arguments to follow) in `work_dir`
    /// (which has a `tmp` directory, the step's /tmp) under this step's
    /// isolation.
    pub fn command(&self, program: &Path, work_dir: &Path) -> Command {
        let sandbox = &self.sandbox;
        let tmp = work_dir.join("tmp");
        let mut exec = Exec {
            limits: sandbox.limits,
            ids: self
                .uid
                .as_ref()
                .zip(sandbox.user.as_ref())
                .map(|(uid, user)| (uid.uid(), user.gid)),
            cgroup_procs: self
                .cgroup
                .as_ref()
                .map(StepCgroup::procs_files)
                .unwrap_or_default(),
            private_tmp: None,
        };
        let mut command = match &sandbox.bwrap {
            Some(bwrap) => sandbox.wrap(bwrap, work_dir, Some(&tmp), program),
            None => {
                if sandbox.private_tmp() {
                    exec.private_tmp = PrivateTmp::new(work_dir, &tmp);
                }
                Command::new(program)
            }
        };
        exec.apply(&mut command);
        command
    }

    /// Kills every process of the step, wherever it went.
    pub fn kill(&self) {
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill();
        }
        if let Some(uid) = &self.uid {
            uid.kill_all();
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        // Each kills what is left of the step as it goes.
        drop(self.cgroup.take());
        drop(self.uid.take());
        // Only root can read it from now on: a later step that happens to
        // get this uid again finds nothing of this one's.
        if let Some(dir) = self.work_dir.take() {
            let closed = std::os::unix::fs::lchown(&dir, Some(0), Some(0)).and_then(|()| {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            });
            if let Err(e) = closed {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), "a step's directory could not be closed: {e}");
                }
            }
        }
    }
}

/// One line for the server log, e.g. "namespaces (bubblewrap; hidden from
/// scripts: /var/lib/cuttle), a uid of its own per step (group of nobody),
/// cgroup v2 per step (memory, pids), /tmp its own per step, the host's
/// network, limits cpu=3600s mem=4GiB per step files=4096 procs=1024 per step".
impl fmt::Display for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.off {
            return write!(f, "none: {NO_BUILT_IN_WORKER}");
        }
        if let Some(why) = &self.refused {
            return write!(f, "scripts are refused: {why}");
        }
        if let Some(why) = &self.unisolated {
            write!(f, "UNISOLATED, as the operator allowed: {why}; ")?;
        }
        match (&self.bwrap, &self.no_namespaces) {
            (Some(_), _) => {
                let hidden: Vec<_> = self
                    .hidden
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                write!(
                    f,
                    "namespaces (bubblewrap; hidden from scripts: {})",
                    hidden.join(", ")
                )?
            }
            (None, reason) => write!(
                f,
                "no namespaces ({})",
                reason.as_deref().unwrap_or("not probed")
            )?,
        }
        match &self.user {
            Some(u) => write!(f, ", a uid of its own per step (group of {})", u.name)?,
            None => write!(f, ", running as the server's user")?,
        }
        if self.bwrap.is_none() && self.user.is_none() {
            write!(
                f,
                " (scripts can read whatever the server can, its data directory included)"
            )?;
        }
        match (&self.cgroups, &self.no_cgroups) {
            (Some(c), _) => write!(f, ", {c}")?,
            (None, why) => write!(
                f,
                ", no cgroup per step ({})",
                why.as_deref().unwrap_or("not probed")
            )?,
        }
        if self.private_tmp() {
            write!(f, ", /tmp its own per step")?;
        } else {
            write!(f, ", the host's /tmp (TMPDIR is the step's own")?;
            match (&self.tmp_namespace, self.step_uids()) {
                (Err(why), true) => write!(f, "; {why})")?,
                _ => write!(f, ")")?,
            }
        }
        match (&self.network, &self.no_network) {
            (Some(_), _) => write!(
                f,
                ", a network of its own per step (out through slirp4netns, none to the host's \
                 loopback)"
            )?,
            (None, Some(why)) => write!(f, ", the host's network ({why})")?,
            (None, None) => write!(f, ", the host's network")?,
        }
        let show = |v: Option<u64>, unit: &dyn Fn(u64) -> String| {
            v.map_or_else(|| "inherited".to_owned(), unit)
        };
        let l = &self.limits;
        let memory_per = if self.caps_step_memory() {
            "per step"
        } else {
            "per process"
        };
        write!(
            f,
            ", limits cpu={} mem={} files={} procs={}",
            show(l.cpu_seconds, &|s| format!("{s}s")),
            show(l.memory_bytes, &|b| format!("{} {memory_per}", bytes(b))),
            show(l.open_files, &|n| n.to_string()),
            if self.limits_processes_per_step() {
                show(l.processes, &|n| format!("{n} per step"))
            } else {
                "unlimited (shared user)".to_owned()
            },
        )
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n => format!("{n}B"),
    }
}

fn first_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| !l.is_empty())
}

/// Whether the server runs as root (and so can give steps uids of their own).
pub(crate) fn runs_as_root() -> bool {
    effective_uid() == Some(0)
}

/// The server's effective user id: the owner of its own `/proc` entry.
fn effective_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Looks the user up in /etc/passwd: enough for the local system users a
/// worker runs as, and no unsafe libc calls.
fn find_user(name: Option<&str>) -> Result<WorkerUser, SandboxError> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|source| SandboxError::Io {
        context: "reading /etc/passwd".into(),
        source,
    })?;
    let lookup = |wanted: &str| {
        passwd.lines().find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            let gid = fields.next()?.parse().ok()?;
            (name == wanted).then(|| WorkerUser {
                name: name.to_owned(),
                uid,
                gid,
            })
        })
    };
    let found = match name {
        Some(name) => lookup(name).ok_or_else(|| SandboxError::UnknownUser(name.to_owned()))?,
        None => DEFAULT_USERS
            .iter()
            .find_map(|n| lookup(n))
            .ok_or_else(|| SandboxError::UnknownUser(DEFAULT_USERS.join(" or ")))?,
    };
    if found.uid == 0 {
        // Running scripts "unprivileged" as another uid 0 would protect nothing.
        return Err(SandboxError::UnknownUser(format!(
            "{} (it is uid 0)",
            found.name
        )));
    }
    Ok(found)
}

/// The user must be able to search every directory above its working
/// directory; otherwise the script would fail with a puzzling chdir error.
fn check_reachable(user: &WorkerUser, work_dir: &Path) -> Result<(), SandboxError> {
    let parent = work_dir.parent().unwrap_or(work_dir);
    match unsearchable(user, parent) {
        Some(blocked) => Err(SandboxError::Unreachable {
            user: user.name.clone(),
            work_dir: work_dir.to_owned(),
            blocked,
        }),
        None => Ok(()),
    }
}

/// The first of `dir` and its ancestors that `user` may not search, judged
/// by the permission bits.
fn unsearchable(user: &WorkerUser, dir: &Path) -> Option<PathBuf> {
    dir.ancestors().find_map(|dir| {
        let meta = std::fs::metadata(dir).ok()?;
        let mode = meta.mode();
        let searchable = if meta.uid() == user.uid {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        (!searchable).then(|| dir.to_owned())
    })
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    // lchown: a symlink is handed over itself, never what it points at.
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Makes a directory (the data directory, the work root) searchable but not
/// listable by others: a worker user may pass through it to its own working
/// directory, but cannot see what else is there.
pub fn restrict_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{run_script, OutputLine, ScriptOutcome, ScriptSpec, Syntax};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use tokio_util::sync::CancellationToken;

    const KEY: &str = "c3VwZXItc2VjcmV0LW1hc3Rlci1rZXktdGV4dA==";

    /// A data directory laid out as the server's: master.key 0600 beside the
    /// work root, and parents a worker user may pass through.
    struct DataDir {
        _tmp: tempfile::TempDir,
        data: PathBuf,
    }

    impl DataDir {
        fn new() -> DataDir {
            let tmp = tempfile::tempdir().unwrap();
            // tempdir makes it 0700; a real data directory's parents are searchable.
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
            let data = tmp.path().join("data");
            restrict_dir(&data.join("work")).unwrap();
            restrict_dir(&data).unwrap();
            let key = data.join("master.key");
            std::fs::write(&key, KEY).unwrap();
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            DataDir { _tmp: tmp, data }
        }

        fn config(&self, namespaces: bool) -> SandboxConfig {
            SandboxConfig {
                limits: Limits {
                    cpu_seconds: Some(600),
                    memory_bytes: Some(2 << 30),
                    open_files: Some(256),
                    processes: Some(300),
                },
                user: None,
                namespaces,
                cgroups: true,
                hidden_paths: vec![self.data.clone()],
                // The tests say what applies, and fail where isolation is required.
                allow_unisolated: true,
                ..SandboxConfig::default()
            }
        }

        async fn run(&self, sandbox: &Sandbox, body: &str) -> (ScriptOutcome, Vec<String>) {
            let spec = ScriptSpec {
                syntax: Syntax::Bash,
                body: body.into(),
                work_dir: self.data.join("work/ServerTasks-1/step-1"),
                env: vec![],
                timeout: Duration::from_secs(20),
                bootstrap: None,
                files: vec![("variables".into(), "from the server\n".into())],
                sandbox: Arc::new(sandbox.clone()),
            };
            let mut lines = vec![];
            let outcome = run_script(spec, CancellationToken::new(), |_, line: OutputLine| {
                lines.push(line.text)
            })
            .await
            .expect("the script runs");
            (outcome, lines)
        }
    }

    /// CI sets this (it installs bubblewrap, and runs as root), so there a
    /// script that can read the key is a failure; elsewhere it is reported.
    fn required() -> bool {
        std::env::var_os("CUTTLE_TEST_REQUIRE_ISOLATION").is_some()
    }

    #[tokio::test]
    async fn without_a_built_in_worker_every_script_is_refused_and_nothing_is_probed() {
        let sandbox = Arc::new(
            Sandbox::probe(&SandboxConfig {
                enabled: false,
                ..SandboxConfig::default()
            })
            .await,
        );
        assert!(sandbox.is_off() && sandbox.refuses());
        assert!(!sandbox.namespaces() && !sandbox.contains_steps());
        let err = sandbox.step().unwrap_err().to_string();
        assert!(err.contains("no built-in worker"), "{err}");
        assert!(sandbox.to_string().starts_with("none: "), "{sandbox}");
        // The default has one.
        assert!(!Sandbox::probe(&SandboxConfig::default()).await.is_off());
    }

    #[tokio::test]
    async fn a_script_cannot_read_the_master_key() {
        let dir = DataDir::new();
        let key = dir.data.join("master.key");
        let body = format!(
            "cat '{}'; echo \"cat=$?\"; id -u; ls -A '{}'; true",
            key.display(),
            dir.data.display()
        );
        for namespaces in [true, false] {
            let sandbox = Sandbox::probe(&dir.config(namespaces)).await;
            eprintln!("isolation: {sandbox}");
            let (outcome, lines) = dir.run(&sandbox, &body).await;
            assert_eq!(outcome, ScriptOutcome::Exited(0), "{lines:?}");
            if !sandbox.namespaces() && sandbox.user().is_none() {
                // Nothing stands between the script and the key: the report
                // must say so, and the test shows it can indeed read it.
                assert!(sandbox
                    .to_string()
                    .contains("can read whatever the server can"));
                assert!(lines.iter().any(|l| l == KEY), "{lines:?}");
                assert!(!required(), "no isolation applies: {sandbox}");
                eprintln!("WARNING: no isolation here, so the key was readable: {sandbox}");
                continue;
            }
            assert!(
                !lines.iter().any(|l| l.contains(KEY)),
                "{sandbox}: {lines:?}"
            );
            assert!(lines.contains(&"cat=1".to_owned()), "{sandbox}: {lines:?}");
            if sandbox.step_uids() {
                let uid = lines.iter().find_map(|l| l.parse::<u32>().ok());
                assert!(
                    uid.is_some_and(|u| u >= crate::step_user::FIRST_UID),
                    "{lines:?}"
                );
            }
            // In namespaces the data directory is an empty tmpfs but for the
            // way to the script's own work directory.
            let listed_key = lines.contains(&"master.key".to_owned());
            assert!(!listed_key, "{sandbox}: {lines:?}");
            if sandbox.namespaces() {
                assert_eq!(lines.last().map(String::as_str), Some("work"), "{lines:?}");
            }
        }
    }

    #[tokio::test]
    async fn limits_apply() {
        let dir = DataDir::new();
        for namespaces in [true, false] {
            let sandbox = Sandbox::probe(&dir.config(namespaces)).await;
            let (outcome, lines) = dir
                .run(
                    &sandbox,
                    "ulimit -n; ulimit -Hn; ulimit -c; ulimit -t; ulimit -v; ulimit -u",
                )
                .await;
            assert_eq!(outcome, ScriptOutcome::Exited(0), "{lines:?}");
            let memory_kib = (2u64 << 30) / 1024;
            assert_eq!(
                lines[..5],
                ["256", "256", "0", "600", &memory_kib.to_string()],
                "{sandbox}"
            );
            // The process limit counts the whole user's processes, so it
            // applies only to a dedicated user.
            if sandbox.user().is_some() {
                assert_eq!(lines[5], "300", "{sandbox}");
            } else {
                assert!(sandbox
                    .to_string()
                    .contains("procs=unlimited (shared user)"));
            }
        }
    }

    #[tokio::test]
    async fn an_open_files_limit_is_enforced() {
        let dir = DataDir::new();
        let sandbox = Sandbox::probe(&dir.config(true)).await;
        // Opening descriptors past 256 fails in the script.
        let body = "for fd in $(seq 3 300); do eval \"exec $fd>/dev/null\" 2>/dev/null || { echo \"failed at $fd\"; exit 0; }; done; echo unlimited";
        let (_, lines) = dir.run(&sandbox, body).await;
        // A few descriptors are in use already (bash's own, the script's).
        let failed_at = lines.iter().find_map(|l| l.strip_prefix("failed at "));
        let failed_at: u32 = failed_at.and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!((250..=256).contains(&failed_at), "{sandbox}: {lines:?}");
    }

    fn processes_with_argument(argument: &str) -> Vec<String> {
        let mut found = vec![];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'));
            if !zombie && cmdline.split(|&b| b == 0).any(|a| a == argument.as_bytes()) {
                found.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        found
    }

    #[tokio::test]
    async fn background_processes_die_with_the_script() {
        let dir = DataDir::new();
        for (namespaces, argument) in [(true, "61.2371"), (false, "61.2372")] {
            let sandbox = Sandbox::probe(&dir.config(namespaces)).await;
            // Even one that left the process group.
            let body = format!("sleep {argument} &\nsetsid sleep {argument} &\necho started");
            let (outcome, lines) = dir.run(&sandbox, &body).await;
            assert_eq!(
                (outcome, lines),
                (ScriptOutcome::Exited(0), vec!["started".to_owned()])
            );
            let until = Instant::now() + Duration::from_secs(3);
            loop {
                let left = processes_with_argument(argument);
                // Without isolation the setsid one escapes the group kill.
                let expected = usize::from(!sandbox.contains_steps());
                if left.len() <= expected {
                    break;
                }
                assert!(Instant::now() < until, "{sandbox}: still running: {left:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for pid in processes_with_argument(argument) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid])
                    .status();
            }
        }
    }

    #[tokio::test]
    async fn the_work_dir_and_its_files_belong_to_the_script() {
        let dir = DataDir::new();
        for namespaces in [true, false] {
            let sandbox = Sandbox::probe(&dir.config(namespaces)).await;
            let body = "cat variables; echo written > out && cat out; echo tmp > \"$TMPDIR/t\" && cat \"$TMPDIR/t\"; [ \"$HOME\" = \"$PWD\" ] && echo home";
            let (outcome, lines) = dir.run(&sandbox, body).await;
            assert_eq!(outcome, ScriptOutcome::Exited(0), "{sandbox}: {lines:?}");
            assert_eq!(
                lines,
                ["from the server", "written", "tmp", "home"],
                "{sandbox}"
            );
        }
    }

    #[tokio::test]
    async fn python_runs_in_the_sandbox() {
        let path = std::env::var_os("PATH").unwrap_or_default();
        if crate::script::find_on_path("python3", &path).is_none() {
            eprintln!("skipped: python3 is not on PATH");
            return;
        }
        let dir = DataDir::new();
        let sandbox = Sandbox::probe(&dir.config(true)).await;
        let spec = ScriptSpec {
            syntax: Syntax::Python,
            body: "print(open('variables').read())".into(),
            work_dir: dir.data.join("work/ServerTasks-2/step-1"),
            env: vec![],
            timeout: Duration::from_secs(20),
            bootstrap: None,
            files: vec![("variables".into(), "py".into())],
            sandbox: Arc::new(sandbox),
        };
        let mut lines = vec![];
        let outcome = run_script(spec, CancellationToken::new(), |_, l: OutputLine| {
            lines.push(l.text)
        })
        .await
        .unwrap();
        assert_eq!(
            (outcome, lines),
            (ScriptOutcome::Exited(0), vec!["py".to_owned()])
        );
    }

    /// Runs `body` as the step `name` of a task in `dir`, with `variables` as
    /// its variables file, until it ends or `cancel` fires.
    async fn run_step(
        dir: &DataDir,
        sandbox: &Sandbox,
        name: &str,
        variables: &str,
        body: &str,
        cancel: CancellationToken,
    ) -> (ScriptOutcome, Vec<String>) {
        let spec = ScriptSpec {
            syntax: Syntax::Bash,
            body: body.into(),
            work_dir: dir.data.join("work/ServerTasks-9").join(name),
            env: vec![],
            timeout: Duration::from_secs(30),
            bootstrap: None,
            files: vec![("variables".into(), variables.into())],
            sandbox: Arc::new(sandbox.clone()),
        };
        let mut lines = vec![];
        let outcome = run_script(spec, cancel, |_, line| lines.push(line.text))
            .await
            .expect("the script runs");
        (outcome, lines)
    }

    /// Waits (boundedly) until a step has written `file` in its directory.
    async fn wait_for_file(path: &Path) {
        let until = Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(Instant::now() < until, "{} never appeared", path.display());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill_all(pids: &[String]) {
        for pid in pids {
            if let Ok(pid) = pid.parse::<libc::pid_t>() {
                // SAFETY: kill(2) touches no memory; these run the test's marker.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }

    /// Nothing a step starts outlives it: not a `setsid` child, not a
    /// double-forked one, with or without bubblewrap.
    #[tokio::test]
    async fn fault_escaped_processes_die_with_the_step() {
        let dir = DataDir::new();
        // The last without a cgroup either: as root, the step's uid alone.
        let ways = [
            (true, true, "601.4711"),
            (false, true, "601.4712"),
            (false, false, "601.4713"),
        ];
        for (namespaces, cgroups, marker) in ways {
            let mut config = dir.config(namespaces);
            config.cgroups = cgroups;
            let sandbox = Sandbox::probe(&config).await;
            let body = format!(
                "setsid sleep {marker} &\n( ( exec sleep {marker} ) & ) &\n\
                 setsid sh -c '( exec sleep {marker} ) & sleep {marker}' &\nsleep 0.2; echo started"
            );
            let (outcome, lines) = dir.run(&sandbox, &body).await;
            assert_eq!(
                (outcome, lines),
                (ScriptOutcome::Exited(0), vec!["started".to_owned()]),
                "{sandbox}"
            );
            // Killing is immediate, but reaping by init may take a moment.
            let until = Instant::now() + Duration::from_secs(3);
            let mut left = processes_with_argument(marker);
            while !left.is_empty() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
                left = processes_with_argument(marker);
            }
            kill_all(&left);
            assert!(left.is_empty(), "{sandbox}: still running: {left:?}");
        }
    }

    /// A step cannot read another step's working directory or variables
    /// file: not a previous step's, not one running at the same time.
    #[tokio::test]
    async fn fault_a_step_cannot_read_another_steps_files() {
        let dir = DataDir::new();
        for namespaces in [true, false] {
            let sandbox = Sandbox::probe(&dir.config(namespaces)).await;
            let mode = if namespaces { "ns" } else { "plain" };
            let previous = format!("previous-{mode}");
            let (outcome, _) = run_step(
                &dir,
                &sandbox,
                &previous,
                "Secret-of-Previous",
                "echo done",
                CancellationToken::new(),
            )
            .await;
            assert_eq!(outcome, ScriptOutcome::Exited(0));

            let running = format!("running-{mode}");
            let cancel = CancellationToken::new();
            let concurrent = run_step(
                &dir,
                &sandbox,
                &running,
                "Secret-of-Running",
                "touch started; sleep 25",
                cancel.clone(),
            );
            let task = dir.data.join("work/ServerTasks-9");
            let snoop = format!(
                "for d in '{p}' '{r}'; do cat \"$d/variables\"; ls \"$d\"; done; true",
                p = task.join(&previous).display(),
                r = task.join(&running).display(),
            );
            let snooping = async {
                wait_for_file(&task.join(&running).join("started")).await;
                let seen = run_step(
                    &dir,
                    &sandbox,
                    &format!("snoop-{mode}"),
                    "",
                    &snoop,
                    CancellationToken::new(),
                )
                .await;
                cancel.cancel();
                seen
            };
            let ((outcome, lines), _) = tokio::join!(snooping, concurrent);
            assert_eq!(outcome, ScriptOutcome::Exited(0), "{sandbox}: {lines:?}");
            if !sandbox.separates_steps() {
                assert!(!required(), "steps are not separated: {sandbox}");
                eprintln!("WARNING: steps are not separated here: {sandbox}");
                continue;
            }
            let leaked: Vec<_> = lines
                .iter()
                .filter(|l| l.contains("Secret-of") || *l == "variables" || *l == "started")
                .collect();
            assert!(leaked.is_empty(), "{sandbox}: {lines:?}");
        }
    }

    /// Memory is capped per step, not per process: three processes of one
    /// step that each hold 100 MiB cannot all live under a 200 MiB cap.
    #[tokio::test]
    async fn fault_memory_is_capped_per_step() {
        let dir = DataDir::new();
        for namespaces in [true, false] {
            let mut config = dir.config(namespaces);
            config.limits.memory_bytes = Some(200 << 20);
            let sandbox = Sandbox::probe(&config).await;
            // tail keeps a line until its end, and /dev/zero has no newline:
            // each tail holds all 100 MiB until the sleep ends its input.
            let body = "for i in 1 2 3; do ( { head -c 104857600 /dev/zero; sleep 2; } | tail >/dev/null; echo \"held $i: $?\" ) & done; wait";
            let (outcome, lines) = dir.run(&sandbox, body).await;
            assert_eq!(outcome, ScriptOutcome::Exited(0), "{sandbox}: {lines:?}");
            let held = lines.iter().filter(|l| l.ends_with(": 0")).count();
            eprintln!("{sandbox}: {lines:?}");
            if !sandbox.caps_step_memory() {
                assert!(!required(), "memory is not capped per step: {sandbox}");
                eprintln!("WARNING: memory is capped per process only: {sandbox}");
                continue;
            }
            assert!(held <= 1, "{sandbox}: {lines:?}");
        }
    }

    /// One step's fork bomb (a bounded one) leaves other steps able to start
    /// processes.
    #[tokio::test]
    async fn fault_a_fork_bomb_does_not_starve_other_steps() {
        let dir = DataDir::new();
        for namespaces in [true, false] {
            let mut config = dir.config(namespaces);
            config.limits.processes = Some(40);
            let sandbox = Sandbox::probe(&config).await;
            let mode = if namespaces { "ns" } else { "plain" };
            let bomb = format!("bomb-{mode}");
            let cancel = CancellationToken::new();
            let bombing = run_step(
                &dir,
                &sandbox,
                &bomb,
                "",
                "for i in $(seq 100); do sleep 25 & done 2>errors; sleep 25",
                cancel.clone(),
            );
            // bash says so (and retries) once a fork fails: the step is at its cap.
            let errors = dir
                .data
                .join("work/ServerTasks-9")
                .join(&bomb)
                .join("errors");
            let other = async {
                let until = Instant::now() + Duration::from_secs(10);
                while !std::fs::read_to_string(&errors).is_ok_and(|e| e.contains("fork")) {
                    assert!(Instant::now() < until, "the bomb never reached its cap");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let seen = run_step(
                    &dir,
                    &sandbox,
                    &format!("other-{mode}"),
                    "",
                    "for i in 1 2 3; do sh -c 'echo forked'; done",
                    CancellationToken::new(),
                )
                .await;
                cancel.cancel();
                seen
            };
            let ((outcome, lines), _) = tokio::join!(other, bombing);
            if !sandbox.limits_processes_per_step() {
                assert!(!required(), "processes are not limited per step: {sandbox}");
                eprintln!("WARNING: processes are not limited per step: {sandbox}");
                continue;
            }
            assert_eq!(
                (outcome, lines),
                (ScriptOutcome::Exited(0), vec!["forked".to_owned(); 3]),
                "{sandbox}"
            );
        }
    }

    /// A step's /tmp is its own: it neither sees the host's files there nor
    /// leaves its own in the host's.
    #[tokio::test]
    async fn fault_a_steps_tmp_is_its_own() {
        let dir = DataDir::new();
        let host = tempfile::Builder::new()
            .prefix("cuttle-host-marker-")
            .tempfile_in("/tmp")
            .unwrap();
        let host_name = host
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for namespaces in [true, false] {
            let sandbox = Sandbox::probe(&dir.config(namespaces)).await;
            let step_file = format!("/tmp/{host_name}-from-step-{namespaces}");
            let body = format!(
                "[ -e '/tmp/{host_name}' ] && echo sees-host-tmp; echo x > '{step_file}' && echo wrote"
            );
            let (outcome, lines) = dir.run(&sandbox, &body).await;
            let leaked = Path::new(&step_file).exists();
            let _ = std::fs::remove_file(&step_file);
            assert_eq!(outcome, ScriptOutcome::Exited(0), "{sandbox}: {lines:?}");
            if !sandbox.private_tmp() {
                assert!(!required(), "/tmp is the host's: {sandbox}");
                eprintln!("WARNING: /tmp is the host's here: {sandbox}");
                continue;
            }
            assert_eq!(lines, ["wrote"], "{sandbox}");
            assert!(!leaked, "{sandbox}: the step wrote into the host's /tmp");
        }
    }

    #[tokio::test]
    async fn root_without_a_worker_user_refuses_scripts() {
        if effective_uid() != Some(0) {
            eprintln!("skipped: only a root server switches users");
            return;
        }
        let dir = DataDir::new();
        let mut config = dir.config(false);
        config.user = Some("no-such-cuttle-user".into());
        let sandbox = Sandbox::probe(&config).await;
        assert!(
            sandbox.to_string().starts_with("scripts are refused"),
            "{sandbox}"
        );
        let error = Arc::new(sandbox).step().unwrap_err();
        assert!(error.to_string().contains("no-such-cuttle-user"), "{error}");
    }

    #[test]
    fn describes_itself_in_one_line() {
        let mut sandbox = Sandbox::none();
        sandbox.limits = Limits::default();
        assert_eq!(
            sandbox.to_string(),
            "no namespaces (disabled), running as the server's user (scripts can read \
             whatever the server can, its data directory included), no cgroup per step \
             (disabled), the host's /tmp (TMPDIR is the step's own), the host's network, \
             limits cpu=3600s mem=4GiB per process files=4096 procs=unlimited (shared user)"
        );
        sandbox.user = Some(WorkerUser {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
        });
        sandbox.bwrap = Some("/usr/bin/bwrap".into());
        sandbox.hidden = vec!["/var/lib/cuttle".into()];
        assert_eq!(
            sandbox.to_string(),
            "namespaces (bubblewrap; hidden from scripts: /var/lib/cuttle), a uid of its own \
             per step (group of nobody), no cgroup per step (disabled), /tmp its own per \
             step, the host's network, limits cpu=3600s mem=4GiB per process files=4096 \
             procs=1024 per step"
        );
        // Root without bubblewrap, where no mount namespace may be made.
        sandbox.bwrap = None;
        sandbox.no_namespaces = Some("bubblewrap (bwrap) is not installed".into());
        sandbox.tmp_namespace = Err("no mount namespace: Operation not permitted".into());
        assert!(
            sandbox.to_string().contains(
                ", the host's /tmp (TMPDIR is the step's own; no mount namespace: Operation \
                 not permitted), "
            ),
            "{sandbox}"
        );
    }

    /// Without root and without bubblewrap nothing contains a step or keeps
    /// steps apart: scripts are refused, saying why and how to allow them.
    #[test]
    fn fault_an_unisolated_worker_is_refused_by_default() {
        let unisolated = || Sandbox {
            limits: Limits::default(),
            no_namespaces: Some("bubblewrap (bwrap) is not installed".into()),
            no_cgroups: Some("no cgroup v2 mount".into()),
            ..Sandbox::none()
        };
        let mut refused = unisolated();
        refused.settle(false);
        let line = refused.to_string();
        assert!(line.starts_with("scripts are refused: processes a step starts could outlive it and steps could read each other's working directories (no namespaces: bubblewrap (bwrap) is not installed; the server does not run as root; no cgroups: no cgroup v2 mount)"), "{line}");
        assert!(line.contains(UNISOLATED_OPT_IN), "{line}");
        let error = Arc::new(refused).step().unwrap_err();
        assert!(matches!(error, SandboxError::Refused(_)), "{error}");

        let mut allowed = unisolated();
        allowed.settle(true);
        assert!(
            allowed.to_string().starts_with(
                "UNISOLATED, as the operator allowed: processes a step starts could outlive it"
            ),
            "{allowed}"
        );
        assert!(Arc::new(allowed).step().is_ok());

        // A cgroup per step contains steps, but does not keep them apart.
        let mut contained = unisolated();
        contained.cgroups = Some(Cgroups::for_tests());
        contained.settle(false);
        let line = contained.to_string();
        assert!(
            line.starts_with(
                "scripts are refused: steps could read each other's working directories"
            ),
            "{line}"
        );

        // Root (a uid per step) or bubblewrap does both.
        for root in [true, false] {
            let mut isolated = unisolated();
            if root {
                isolated.user = Some(WorkerUser {
                    name: "nobody".into(),
                    uid: 65534,
                    gid: 65534,
                });
            } else {
                isolated.bwrap = Some("/usr/bin/bwrap".into());
            }
            isolated.settle(false);
            assert!(
                isolated.refused.is_none() && isolated.unisolated.is_none(),
                "{isolated}"
            );
        }
    }
}
