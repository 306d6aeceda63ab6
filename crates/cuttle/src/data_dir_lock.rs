//! One server per SQLite data directory.
//!
//! SQLite has one writer, and a second server on the same database would run
//! the same queued tasks twice. The lock is the kernel's (flock on
//! `server.lock`), so it ends with the process however it ends; the file
//! also records the holder's pid, to name it in the refusal.

use anyhow::Context;
use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a start waits for a stopped server's lock to be let go.
const RELEASE_WAIT: Duration = Duration::from_secs(30);

/// Takes the data directory for this process alone; held while the file
/// returned is open.
///
/// Where the recorded holder is still running, the start is refused at once.
/// Where it has stopped but the lock is still held, a process it started
/// shares the lock's open file (for an instant between its fork and exec,
/// or while the kernel tears a killed server down): that is waited out for
/// up to 30 s rather than refused, so that a restart right after a crash
/// succeeds.
pub async fn lock_sqlite_data_dir(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join("server.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("could not open {}", path.display()))?;
    let started = Instant::now();
    let mut said = false;
    while !try_lock(&file) {
        let holder = recorded_holder(&mut file);
        let holder_runs = holder.is_some_and(is_running);
        if holder_runs || started.elapsed() >= RELEASE_WAIT {
            anyhow::bail!(
                "another Cuttle server ({}) is using the data directory {} and its SQLite \
                 database; one SQLite database takes one server node (several nodes need \
                 PostgreSQL)",
                describe_holder(holder, holder_runs, &path),
                dir.display()
            );
        }
        if !said {
            tracing::warn!(
                lock = %path.display(),
                "the server that last used this data directory has stopped, but its lock is \
                 still held; waiting up to {} s for it to be released",
                RELEASE_WAIT.as_secs()
            );
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a descriptor this function's caller owns; no memory is shared.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// The pid the holding server wrote, if the file names one.
fn recorded_holder(file: &mut File) -> Option<i32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok().filter(|pid| *pid > 0)
}

fn is_running(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    alive || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn describe_holder(holder: Option<i32>, runs: bool, path: &Path) -> String {
    match (holder, runs) {
        (Some(pid), true) => format!("pid {pid}"),
        (holder, _) => {
            let sharing = processes_with_open(path);
            let recorded = holder.map_or("unknown".to_owned(), |p| format!("{p}, stopped"));
            match sharing.is_empty() {
                true => format!("pid {recorded}"),
                false => format!(
                    "pid {recorded}; the lock is held open by {}",
                    sharing.join(", ")
                ),
            }
        }
    }
}

/// The processes (as "pid N (name)") that have `path` open, read from /proc.
fn processes_with_open(path: &Path) -> Vec<String> {
    let Ok(target) = path.canonicalize() else {
        return Vec::new();
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).ok() == Some(PathBuf::from(&target)));
        if holds {
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.push(format!("pid {pid} ({})", name.trim()));
        }
    }
    found
}
