//! A user id of its own for each step on the built-in worker, when the
//! server runs as root. With it a step cannot read another step's working
//! directory or variables file (both are its uid's alone), its process limit
//! counts its own processes only, and killing every process of the uid ends
//! everything the step started, however it detached.
//!
//! The uids have no /etc/passwd entry: scripts that look their user up by
//! name (`whoami`, ssh) find none. The group is the worker user's, so what an
//! operator grants that group stays reachable.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

/// Step uids come from this range: in the one systemd's table of uid ranges
/// leaves unused (above its containers' ranges, below 2³¹, which some tools
/// take for negative, and below its foreign range), far above the users of
/// distributions.
pub const FIRST_UID: u32 = 0x7000_0000;
const COUNT: u32 = 1 << 24;

/// The uids of the steps running in this process. A uid is a resource of the
/// host, not of one installation, so every runner in the process shares it.
static IN_USE: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

/// A step's uid, held until the step has ended. Dropping it kills every
/// process left running as it.
#[derive(Debug)]
pub struct StepUid {
    uid: u32,
}

impl StepUid {
    /// A uid no other step of this process holds, and no process on the
    /// host runs as: picked at random from a large range, so that other
    /// servers on the host are very unlikely to pick it too.
    pub fn allocate() -> StepUid {
        let mut in_use = IN_USE.lock().unwrap_or_else(PoisonError::into_inner);
        let in_use = in_use.get_or_insert_with(HashSet::new);
        loop {
            let offset = (uuid::Uuid::new_v4().as_u128() % u128::from(COUNT)) as u32;
            let uid = FIRST_UID + offset;
            if !in_use.contains(&uid) && !has_processes(uid) {
                in_use.insert(uid);
                return StepUid { uid };
            }
        }
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Kills every process running as the step's uid.
    pub fn kill_all(&self) {
        kill_uid(self.uid);
    }
}

impl Drop for StepUid {
    fn drop(&mut self) {
        self.kill_all();
        let mut in_use = IN_USE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(in_use) = in_use.as_mut() {
            in_use.remove(&self.uid);
        }
    }
}

/// Sends SIGKILL to every process of `uid`, from a child that takes that uid
/// and calls kill(-1): the kernel signals them all at once, and a process
/// forking at that moment cannot hand its child the slip (fork fails when a
/// fatal signal is pending).
fn kill_uid(uid: u32) {
    // SAFETY: see `in_child_as`; kill(2) touches no memory.
    unsafe {
        in_child_as(uid, || {
            libc::kill(-1, libc::SIGKILL);
            0
        });
    }
}

/// Whether any process runs as `uid`. The kernel counts each user's
/// processes for RLIMIT_NPROC: with a limit of 2, a child that took the uid
/// can fork only if it is the uid's one process.
fn has_processes(uid: u32) -> bool {
    // SAFETY: see `in_child_as`; setrlimit, fork, waitpid and _exit are
    // async-signal-safe, and the grandchild only exits.
    let code = unsafe {
        in_child_as(uid, || {
            let two = libc::rlimit {
                rlim_cur: 2,
                rlim_max: 2,
            };
            if libc::setrlimit(libc::RLIMIT_NPROC, &two) != 0 {
                return 2;
            }
            match libc::fork() {
                0 => libc::_exit(0),
                pid if pid > 0 => {
                    let mut status = 0;
                    libc::waitpid(pid, &mut status, 0);
                    0
                }
                _ => 1,
            }
        })
    };
    // Where the uid cannot be taken, no step runs as it either.
    code == Some(1)
}

/// Runs `body` in a child that has taken `uid`, returning its exit code
/// (`None` when the uid could not be taken: only root can).
///
/// # Safety
/// `body` runs between fork and _exit in a copy of a multi-threaded process:
/// it may only make async-signal-safe system calls, on values it already has.
unsafe fn in_child_as(uid: u32, body: impl Fn() -> libc::c_int) -> Option<libc::c_int> {
    let pid = libc::fork();
    if pid == 0 {
        // The raw system call: glibc's setuid would try to reach threads
        // that do not exist in the child. All three ids change, so the child
        // keeps no capability (CAP_KILL and CAP_SYS_RESOURCE included).
        if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
            libc::_exit(255);
        }
        libc::_exit(body());
    }
    let mut status = 0;
    if pid < 0 || libc::waitpid(pid, &mut status, 0) != pid || !libc::WIFEXITED(status) {
        return None;
    }
    match libc::WEXITSTATUS(status) {
        255 => None,
        code => Some(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A uid a process runs as is not handed to a step; killing a step's uid
    /// ends its processes.
    #[test]
    fn a_uid_in_use_is_skipped_and_killing_ends_its_processes() {
        if !crate::sandbox::runs_as_root() {
            eprintln!("skipped: only root can take other uids");
            return;
        }
        let held = StepUid::allocate();
        assert!(!has_processes(held.uid()));
        let mut sleeper = std::process::Command::new("sleep");
        sleeper.arg("30");
        std::os::unix::process::CommandExt::uid(&mut sleeper, held.uid());
        let mut sleeper = sleeper.spawn().unwrap();
        assert!(has_processes(held.uid()));
        held.kill_all();
        let status = sleeper.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        assert!(!has_processes(held.uid()));
    }

    #[test]
    fn uids_are_distinct_while_held() {
        let held: Vec<StepUid> = (0..64).map(|_| StepUid::allocate()).collect();
        let distinct: HashSet<u32> = held.iter().map(StepUid::uid).collect();
        assert_eq!(distinct.len(), held.len());
        assert!(distinct
            .iter()
            .all(|u| (FIRST_UID..FIRST_UID + COUNT).contains(u)));
    }
}
