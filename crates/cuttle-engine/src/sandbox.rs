//! Isolation of scripts on the built-in worker (design principle 3): resource
//! limits always; a dedicated unprivileged user when the server runs as root;
//! and, where bubblewrap works, Linux namespaces in which the server's data
//! directory is an empty tmpfs except for the script's own working directory.
//!
//! Everything is decided once, when the runner starts ([`Sandbox::probe`]),
//! and logged in one line, so an operator can see which protections apply.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// Resource limits of each script process (`None`: inherit the server's).
/// They apply per process: the timeout bounds the step's wall-clock time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// RLIMIT_CPU, in seconds.
    pub cpu_seconds: Option<u64>,
    /// RLIMIT_AS, in bytes: address space, the only memory limit that holds
    /// for every allocator.
    pub memory_bytes: Option<u64>,
    /// RLIMIT_NOFILE.
    pub open_files: Option<u64>,
    /// RLIMIT_NPROC. It counts every process of the *user*, so it applies
    /// only when scripts run as their own user: as the server's user it would
    /// count (and could starve) the server itself.
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
    /// The user scripts run as when the server runs as root. `None`:
    /// `cuttle-worker` if that user exists, else `nobody`.
    pub user: Option<String>,
    /// Use bubblewrap namespaces where they work.
    pub namespaces: bool,
    /// Hidden from scripts inside namespaces (the data directory); the
    /// script's own working directory stays visible.
    pub hidden_paths: Vec<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            limits: Limits::default(),
            user: None,
            namespaces: true,
            hidden_paths: vec![],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("scripts cannot run on the built-in worker: the server runs as root and {0}")]
    Refused(String),
    #[error("the user '{0}' that scripts should run as does not exist")]
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

/// A user scripts run as instead of the server's.
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
    user: Option<WorkerUser>,
    /// bubblewrap, when it was found and worked.
    bwrap: Option<PathBuf>,
    /// Why namespaces are not used, when they are not.
    no_namespaces: Option<String>,
    hidden: Vec<PathBuf>,
    /// Why no script may run at all (the server is root and has no user to
    /// run them as).
    refused: Option<String>,
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
            refused: None,
        }
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
            user: None,
            bwrap: None,
            no_namespaces: Some("scripts on an agent run as the agent's user".into()),
            hidden: vec![],
            refused: None,
        }
    }

    /// Decides what isolation can apply here: looks up the worker user when
    /// the server is root, and runs bubblewrap once, exactly as scripts will
    /// run it, to see whether this kernel (or container) permits it.
    ///
    /// Never fails: when the server is root but no unprivileged user is
    /// found, scripts are refused rather than run as root.
    pub async fn probe(config: &SandboxConfig) -> Sandbox {
        let (user, refused) = if effective_uid() == Some(0) {
            match find_user(config.user.as_deref()) {
                Ok(user) => (Some(user), None),
                Err(e) => (None, Some(e.to_string())),
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
            refused,
        };
        if !config.namespaces {
            sandbox.no_namespaces = Some("disabled in the configuration".into());
            return sandbox;
        }
        let path = std::env::var_os("PATH").unwrap_or_else(|| crate::script::DEFAULT_PATH.into());
        let Some(bwrap) = crate::script::find_on_path(BWRAP, &path) else {
            sandbox.no_namespaces = Some("bubblewrap (bwrap) is not installed".into());
            return sandbox;
        };
        let probe_dir = std::env::temp_dir();
        let mut command = sandbox.wrap(&bwrap, &probe_dir, Path::new("true"));
        command
            .current_dir(&probe_dir)
            .env_clear()
            .env("PATH", &path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        sandbox.no_namespaces = match command.output().await {
            Ok(out) if out.status.success() => {
                sandbox.bwrap = Some(bwrap);
                None
            }
            Ok(out) => Some(format!(
                "bubblewrap is not permitted here: {}",
                first_line(&String::from_utf8_lossy(&out.stderr))
                    .unwrap_or(&format!("it exited with {}", out.status))
            )),
            Err(e) => Some(format!("bubblewrap could not be started: {e}")),
        };
        sandbox
    }

    /// Whether scripts run inside namespaces that hide the data directory.
    pub fn namespaces(&self) -> bool {
        self.bwrap.is_some()
    }

    /// The user scripts run as, when not the server's.
    pub fn user(&self) -> Option<&WorkerUser> {
        self.user.as_ref()
    }

    /// The server's PATH without the directories the script's user cannot
    /// search (root's own tool directories under /root, say), so that the
    /// interpreter and the commands a script runs resolve to ones it may run.
    pub fn search_path(&self, path: &OsStr) -> OsString {
        let Some(user) = &self.user else {
            return path.to_owned();
        };
        let usable = std::env::split_paths(path).filter(|dir| unsearchable(user, dir).is_none());
        std::env::join_paths(usable).unwrap_or_else(|_| path.to_owned())
    }

    /// Hands the script's freshly written working directory to the script's
    /// user (its files, written 0600 by the server, included), after checking
    /// that the user can reach it at all.
    pub async fn prepare(&self, work_dir: &Path) -> Result<(), SandboxError> {
        if let Some(why) = &self.refused {
            return Err(SandboxError::Refused(why.clone()));
        }
        let Some(user) = self.user.clone() else {
            return Ok(());
        };
        let work_dir = work_dir.to_owned();
        // Blocking file-system walks belong off the async threads.
        tokio::task::spawn_blocking(move || {
            check_reachable(&user, &work_dir)?;
            chown_tree(&work_dir, user.uid, user.gid).map_err(|source| SandboxError::Io {
                context: format!("handing {} to the user {}", work_dir.display(), user.name),
                source,
            })?;
            std::fs::set_permissions(&work_dir, std::fs::Permissions::from_mode(0o700)).map_err(
                |source| SandboxError::Io {
                    context: format!("restricting {}", work_dir.display()),
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
    /// under this sandbox.
    pub fn command(&self, program: &Path, work_dir: &Path) -> Command {
        match &self.bwrap {
            Some(bwrap) => self.wrap(bwrap, work_dir, program),
            None => {
                let mut command = Command::new(program);
                self.restrict(&mut command);
                command
            }
        }
    }

    fn wrap(&self, bwrap: &Path, work_dir: &Path, program: &Path) -> Command {
        let mut command = Command::new(bwrap);
        // The whole file system stays as it was (read-write, subject to the
        // user's permissions), as deployment scripts expect of the host; only
        // the data directory is replaced by an empty tmpfs, with the script's
        // working directory bound back into it. Later mounts cover earlier
        // ones. The network stays shared: deployments need it.
        command.args(["--die-with-parent", "--unshare-pid", "--unshare-ipc"]);
        command.args(["--unshare-uts", "--bind", "/", "/"]);
        command.args(["--dev", "/dev", "--proc", "/proc"]);
        for hidden in &self.hidden {
            command.arg("--tmpfs").arg(hidden);
        }
        command.arg("--bind").arg(work_dir).arg(work_dir);
        command.arg("--chdir").arg(work_dir);
        command.arg("--").arg(program);
        self.restrict(&mut command);
        command
    }

    /// Limits and the user switch, applied in the child between fork and exec.
    fn restrict(&self, command: &mut Command) {
        // Everything is computed here, before the fork: the closure may only
        // make async-signal-safe system calls.
        let mut limits: Vec<(LimitResource, libc::rlim_t)> = vec![(libc::RLIMIT_CORE, 0)];
        let l = &self.limits;
        let wanted = [
            (libc::RLIMIT_CPU, l.cpu_seconds),
            (libc::RLIMIT_AS, l.memory_bytes),
            (libc::RLIMIT_NOFILE, l.open_files),
        ];
        limits.extend(wanted.into_iter().filter_map(|(r, v)| Some((r, v?))));
        if self.user.is_some() {
            if let Some(n) = l.processes {
                limits.push((libc::RLIMIT_NPROC, n));
            }
        }
        let ids = self.user.as_ref().map(|u| (u.uid, u.gid));
        // SAFETY: between fork and exec only async-signal-safe system calls
        // are made (getrlimit, setrlimit, setgroups, setgid, setuid, prctl),
        // on values prepared before the fork; nothing allocates or locks.
        unsafe {
            command.pre_exec(move || {
                for &(resource, value) in &limits {
                    let mut current = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(resource, &mut current) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // Never above the server's own hard limit: only root may raise it.
                    let value = value.min(current.rlim_max);
                    let limit = libc::rlimit {
                        rlim_cur: value,
                        rlim_max: value,
                    };
                    if libc::setrlimit(resource, &limit) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if let Some((uid, gid)) = ids {
                    // Groups first, then the group, then the user: after
                    // setuid the others are no longer permitted.
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                }
                // Set after setuid, which clears it: a script must not
                // outlive a server that was killed outright.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type LimitResource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type LimitResource = libc::c_int;

/// One line for the server log, e.g. "namespaces (bubblewrap), user nobody,
/// limits cpu=3600s mem=4GiB files=4096 procs=1024".
impl fmt::Display for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(why) = &self.refused {
            return write!(f, "scripts are refused: {why}");
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
            Some(u) => write!(f, ", user {} (uid {})", u.name, u.uid)?,
            None => write!(f, ", running as the server's user")?,
        }
        if self.bwrap.is_none() && self.user.is_none() {
            write!(
                f,
                " (scripts can read whatever the server can, its data directory included)"
            )?;
        }
        let show = |v: Option<u64>, unit: &dyn Fn(u64) -> String| {
            v.map_or_else(|| "inherited".to_owned(), unit)
        };
        let l = &self.limits;
        write!(
            f,
            ", limits cpu={} mem={} files={} procs={}",
            show(l.cpu_seconds, &|s| format!("{s}s")),
            show(l.memory_bytes, &bytes),
            show(l.open_files, &|n| n.to_string()),
            if self.user.is_some() {
                show(l.processes, &|n| n.to_string())
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
                hidden_paths: vec![self.data.clone()],
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
            if let Some(user) = sandbox.user() {
                assert!(lines.contains(&user.uid.to_string()), "{lines:?}");
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
            // Even one that left the process group, where namespaces apply.
            let body = format!("sleep {argument} &\nsetsid sleep {argument} &\necho started");
            let (outcome, lines) = dir.run(&sandbox, &body).await;
            assert_eq!(
                (outcome, lines),
                (ScriptOutcome::Exited(0), vec!["started".to_owned()])
            );
            let until = Instant::now() + Duration::from_secs(3);
            loop {
                let left = processes_with_argument(argument);
                // Without namespaces the setsid one escapes the group kill.
                let expected = usize::from(!sandbox.namespaces());
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
        let error = sandbox.prepare(&dir.data.join("work")).await.unwrap_err();
        assert!(error.to_string().contains("no-such-cuttle-user"), "{error}");
    }

    #[test]
    fn describes_itself_in_one_line() {
        let mut sandbox = Sandbox::none();
        sandbox.limits = Limits::default();
        assert_eq!(
            sandbox.to_string(),
            "no namespaces (disabled), running as the server's user (scripts can read \
             whatever the server can, its data directory included), limits cpu=3600s \
             mem=4GiB files=4096 procs=unlimited (shared user)"
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
            "namespaces (bubblewrap; hidden from scripts: /var/lib/cuttle), user nobody \
             (uid 65534), limits cpu=3600s mem=4GiB files=4096 procs=1024"
        );
    }
}
