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

/// Step uids come from this range: far above the users of distributions and
/// the subordinate ranges usually given to containers (100000 + 65536·n).
pub const FIRST_UID: u32 = 0x6000_0000;
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
    /// A uid no other step of this process holds. Picked at random from a
    /// large range, so that other servers on the host (which pick their own)
    /// are very unlikely to hold it either.
    pub fn allocate() -> StepUid {
        let mut in_use = IN_USE.lock().unwrap_or_else(PoisonError::into_inner);
        let in_use = in_use.get_or_insert_with(HashSet::new);
        loop {
            let offset = (uuid::Uuid::new_v4().as_u128() % u128::from(COUNT)) as u32;
            let uid = FIRST_UID + offset;
            if in_use.insert(uid) {
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
/// fatal signal is pending). Only root can take another uid; elsewhere the
/// child can signal nothing of ours, as it exits at once.
fn kill_uid(uid: u32) {
    // SAFETY: between fork and _exit the child makes only async-signal-safe
    // system calls on values it already has; the parent waits for it alone.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            // The raw system call: glibc's setuid would try to reach threads
            // that do not exist in the child. All three ids change, so the
            // child keeps no capability (CAP_KILL included).
            if libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0 {
                libc::kill(-1, libc::SIGKILL);
            }
            libc::_exit(0);
        }
        if pid > 0 {
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
