//! A cgroup per step on the built-in worker: its memory and process limits
//! hold for the step as a whole (not per process, not per user), and ending
//! the step kills every process in it, wherever they went.
//!
//! cgroup v2 is used where the server's cgroup can delegate the memory and
//! pids controllers; otherwise the v1 memory and pids hierarchies, where they
//! are mounted and writable (hybrid hosts). Step cgroups are created beside
//! the server's own, named `cuttle-step-<server pid>-<n>`.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where the server moves itself on cgroup v2 when its own cgroup holds
/// processes: a cgroup with processes cannot hand controllers to children.
const SERVER_LEAF: &str = "cuttle-server";
const STEP_PREFIX: &str = "cuttle-step-";
/// How long the removal of an ended step's cgroup keeps trying.
const REMOVAL: Duration = Duration::from_secs(10);

/// One hierarchy step cgroups are created in (v2 has one; v1 one per
/// controller).
#[derive(Clone, Debug)]
struct Hierarchy {
    /// The server's cgroup in it: step cgroups are its children.
    parent: PathBuf,
    memory: bool,
    pids: bool,
}

/// The cgroups this server can create steps in, as probed at start.
#[derive(Clone, Debug)]
pub struct Cgroups {
    v2: bool,
    hierarchies: Vec<Hierarchy>,
}

impl Cgroups {
    /// Finds where step cgroups can go, trying each by creating one. The
    /// error says why none can.
    pub fn probe() -> Result<Cgroups, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        let mounts = parse_mounts(&mountinfo);
        let v2_error = match probe_v2(&mounts, &own) {
            Ok(cgroups) => return Ok(cgroups),
            Err(e) => e,
        };
        match probe_v1(&mounts, &own) {
            Ok(cgroups) => Ok(cgroups),
            Err(v1_error) => Err(format!("{v2_error}; {v1_error}")),
        }
    }

    /// Step cgroups that are never created: for tests of what they imply.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Cgroups {
        Cgroups {
            v2: true,
            hierarchies: vec![],
        }
    }

    pub fn memory(&self) -> bool {
        self.hierarchies.iter().any(|h| h.memory)
    }

    pub fn pids(&self) -> bool {
        self.hierarchies.iter().any(|h| h.pids)
    }

    /// Creates a step's cgroup with these limits (`None`: no limit).
    pub fn create(&self, memory: Option<u64>, pids: Option<u64>) -> io::Result<StepCgroup> {
        let name = unique_name();
        let mut step = StepCgroup {
            v2: self.v2,
            dirs: Vec::with_capacity(self.hierarchies.len()),
        };
        for h in &self.hierarchies {
            let dir = h.parent.join(&name);
            std::fs::create_dir(&dir)?;
            // Pushed at once, so a failure below still removes it.
            step.dirs.push(dir.clone());
            if let (true, Some(bytes)) = (h.memory, memory) {
                if self.v2 {
                    write(&dir.join("memory.max"), &bytes.to_string())?;
                } else {
                    write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                    // Present only with swap accounting: swap counts too.
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &bytes.to_string())?;
                    }
                }
            }
            if let (true, Some(n)) = (h.pids, pids) {
                write(&dir.join("pids.max"), &n.to_string())?;
            }
        }
        Ok(step)
    }
}

impl std::fmt::Display for Cgroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let controllers: Vec<&str> = [(self.memory(), "memory"), (self.pids(), "pids")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        write!(
            f,
            "cgroup {} per step ({})",
            if self.v2 { "v2" } else { "v1" },
            controllers.join(", ")
        )
    }
}

/// A step's cgroup. Dropping it kills what is left in it and removes it.
#[derive(Debug)]
pub struct StepCgroup {
    v2: bool,
    dirs: Vec<PathBuf>,
}

impl StepCgroup {
    /// The files a process writes "0" to, between fork and exec, to join.
    pub fn procs_files(&self) -> Vec<CString> {
        self.dirs
            .iter()
            .filter_map(|d| CString::new(d.join("cgroup.procs").as_os_str().as_bytes()).ok())
            .collect()
    }

    /// Kills every process in the step's cgroup: at once with cgroup.kill
    /// (v2, Linux 5.14+), else one pass over its members. A member that forks
    /// during the pass is caught by the next one (see [`Drop`]).
    pub fn kill(&self) {
        for dir in &self.dirs {
            if self.v2 && write(&dir.join("cgroup.kill"), "1").is_ok() {
                continue;
            }
            for pid in members(dir) {
                // SAFETY: kill(2) touches no memory of ours; the pid was read
                // from the step's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.dirs.iter().all(|d| members(d).is_empty())
    }
}

impl Drop for StepCgroup {
    fn drop(&mut self) {
        // The removal below holds a `StepCgroup` of its own and empties it
        // when done, so dropping that one starts nothing.
        if self.dirs.is_empty() {
            return;
        }
        let mut step = StepCgroup {
            v2: self.v2,
            dirs: std::mem::take(&mut self.dirs),
        };
        step.kill();
        // Members killed a moment ago may not have exited yet, and rmdir
        // fails until they have: a thread waits, off the async threads.
        let removing = move || {
            let until = Instant::now() + REMOVAL;
            loop {
                step.kill();
                let removed = step.is_empty()
                    && step
                        .dirs
                        .iter()
                        .all(|d| std::fs::remove_dir(d).is_ok() || !d.exists());
                if removed {
                    break;
                }
                if Instant::now() > until {
                    tracing::warn!(cgroups = ?step.dirs, "a step's cgroup could not be removed");
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            step.dirs.clear();
        };
        if let Err(e) = std::thread::Builder::new()
            .name("cuttle-cgroup-removal".into())
            .spawn(removing)
        {
            tracing::warn!("a step's cgroup is left: {e}");
        }
    }
}

fn members(dir: &Path) -> Vec<libc::pid_t> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// A cgroup file system mount: where, its root, and (v1) its controllers.
struct Mount {
    point: PathBuf,
    root: String,
    v2: bool,
    options: Vec<String>,
}

fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut left = left.split(' ');
            let root = left.nth(3)?.to_owned();
            let point = unescape(left.next()?);
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let options = right.nth(1).unwrap_or("");
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            Some(Mount {
                point: PathBuf::from(point),
                root,
                v2,
                options: options.split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// mountinfo escapes spaces and the like as octal (`\040`).
fn unescape(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        if bytes[i] == b'\\' {
            if let Some(n) = octal {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of the server's cgroup `own` (as /proc/self/cgroup names
/// it) under `mount`.
fn own_dir(mount: &Mount, own: &str) -> Option<PathBuf> {
    // Inside a container the mount's root may be the container's cgroup.
    let relative = if mount.root == "/" {
        own
    } else {
        own.strip_prefix(mount.root.as_str())?
    };
    Some(mount.point.join(relative.trim_start_matches('/')))
}

/// A step cgroup's name, unique on the host: this server's pid, and a count
/// (several runners in one process probe and create at once).
fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{STEP_PREFIX}{}-{n}", std::process::id())
}

/// Creates and removes a step cgroup under `parent`, proving it can, and
/// removes those a server that is gone (killed outright) left there.
fn try_child(parent: &Path) -> Result<(), String> {
    let probe = parent.join(unique_name());
    std::fs::create_dir(&probe)
        .map_err(|e| format!("cannot create cgroups in {}: {e}", parent.display()))?;
    let _ = std::fs::remove_dir(&probe);
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(STEP_PREFIX)) else {
            continue;
        };
        let owner = rest.split('-').next().unwrap_or_default();
        if !owner.is_empty() && !Path::new("/proc").join(owner).exists() {
            let dir = entry.path();
            for pid in members(&dir) {
                // SAFETY: kill(2) touches no memory; the pid is a member of a
                // step cgroup whose server is gone.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
    Ok(())
}

fn probe_v2(mounts: &[Mount], own: &str) -> Result<Cgroups, String> {
    let mount = mounts.iter().find(|m| m.v2).ok_or("no cgroup v2 mount")?;
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("the server is in no cgroup v2")?;
    let mut parent = own_dir(mount, own).ok_or("the server's cgroup v2 is outside the mount")?;
    // A second runner in this process finds the server moved already.
    if parent.file_name().is_some_and(|n| n == SERVER_LEAF) {
        parent.pop();
    }
    let available = std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
    let wanted: Vec<&str> = ["memory", "pids"]
        .into_iter()
        .filter(|c| available.split_whitespace().any(|a| a == *c))
        .collect();
    if wanted.is_empty() {
        return Err(format!(
            "cgroup v2 offers neither memory nor pids at {}",
            parent.display()
        ));
    }
    let enable: Vec<String> = wanted.iter().map(|c| format!("+{c}")).collect();
    let subtree = parent.join("cgroup.subtree_control");
    if let Err(e) = std::fs::write(&subtree, enable.join(" ")) {
        // Busy: the cgroup holds processes (the server's). Move the server
        // into a leaf of its own, as a delegated service should, and retry.
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(format!(
                "cannot enable cgroup v2 controllers in {}: {e}",
                parent.display()
            ));
        }
        let leaf = parent.join(SERVER_LEAF);
        let moved = std::fs::create_dir_all(&leaf)
            .and_then(|()| {
                for pid in members(&parent) {
                    std::fs::write(leaf.join("cgroup.procs"), pid.to_string())?;
                }
                Ok(())
            })
            .and_then(|()| std::fs::write(&subtree, enable.join(" ")));
        moved.map_err(|e| {
            format!(
                "cannot enable cgroup v2 controllers in {} (run the server in a delegated \
                 cgroup, e.g. systemd's Delegate=yes): {e}",
                parent.display()
            )
        })?;
    }
    try_child(&parent)?;
    Ok(Cgroups {
        v2: true,
        hierarchies: vec![Hierarchy {
            parent,
            memory: wanted.contains(&"memory"),
            pids: wanted.contains(&"pids"),
        }],
    })
}

fn probe_v1(mounts: &[Mount], own: &str) -> Result<Cgroups, String> {
    let mut hierarchies = vec![];
    let mut errors = vec![];
    for controller in ["memory", "pids"] {
        let Some(mount) = mounts
            .iter()
            .find(|m| !m.v2 && m.options.iter().any(|o| o == controller))
        else {
            errors.push(format!("no cgroup v1 {controller} hierarchy"));
            continue;
        };
        let path = own.lines().find_map(|l| {
            let mut fields = l.splitn(3, ':');
            let _id = fields.next()?;
            let controllers = fields.next()?;
            let path = fields.next()?;
            controllers
                .split(',')
                .any(|c| c == controller)
                .then_some(path)
        });
        let Some(parent) = path.and_then(|p| own_dir(mount, p)) else {
            errors.push(format!("the server is in no cgroup v1 {controller} group"));
            continue;
        };
        match try_child(&parent) {
            Ok(()) => hierarchies.push(Hierarchy {
                parent,
                memory: controller == "memory",
                pids: controller == "pids",
            }),
            Err(e) => errors.push(e),
        }
    }
    if hierarchies.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(Cgroups {
        v2: false,
        hierarchies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads of this process whose name starts as the removal's does.
    fn removal_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(Result::ok)
                    .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                    .filter(|name| name.starts_with("cuttle-cgroup"))
                    .count()
            })
            .unwrap_or(0)
    }

    #[test]
    fn fault_a_removed_step_cgroup_leaves_no_thread_behind() {
        let cgroups = match Cgroups::probe() {
            Ok(c) => c,
            Err(why) => {
                eprintln!("skipped: no cgroups to create here ({why})");
                return;
            }
        };
        let step = cgroups
            .create(Some(64 << 20), Some(16))
            .expect("a step cgroup");
        let dirs = step.dirs.clone();
        drop(step);
        // The removal ends once the cgroup is gone, and starts no other.
        let until = Instant::now() + Duration::from_secs(5);
        while (removal_threads() > 0 || dirs.iter().any(|d| d.exists())) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(dirs.iter().all(|d| !d.exists()), "left: {dirs:?}");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(removal_threads(), 0, "the removal keeps running");
    }

    #[test]
    fn reads_cgroup_mounts() {
        let info = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n\
                    42 31 0:39 /docker/abc /sys/fs/cgroup/my\\040pids rw - cgroup cgroup rw,pids\n\
                    43 31 0:40 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let mounts = parse_mounts(info);
        assert_eq!(mounts.len(), 3);
        assert!(mounts[0].options.contains(&"memory".to_owned()) && !mounts[0].v2);
        assert_eq!(mounts[1].point, Path::new("/sys/fs/cgroup/my pids"));
        assert_eq!(
            own_dir(&mounts[1], "/docker/abc/x"),
            Some(PathBuf::from("/sys/fs/cgroup/my pids/x"))
        );
        assert_eq!(own_dir(&mounts[1], "/elsewhere"), None);
        assert!(mounts[2].v2);
        assert_eq!(
            own_dir(&mounts[2], "/"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/"))
        );
    }
}
