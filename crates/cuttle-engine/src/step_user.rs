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
    let stack = ChildStack::new();
    // SAFETY: see `in_child_as`; kill(2) touches no memory.
    unsafe {
        in_child_as(&stack, uid, &|| {
            libc::kill(-1, libc::SIGKILL);
            0
        });
    }
}

/// Whether any process runs as `uid`. The kernel counts each user's
/// processes for RLIMIT_NPROC: with a limit of 2, a child that took the uid
/// can start another process only if it is the uid's one process.
fn has_processes(uid: u32) -> bool {
    // Both made before: the child may not allocate.
    let (stack, inner) = (ChildStack::new(), ChildStack::new());
    // SAFETY: see `in_child_as`; setrlimit and `in_shared_child` (clone,
    // waitpid, _exit) are async-signal-safe, on a stack made before, and
    // the grandchild only exits.
    let code = unsafe {
        in_child_as(&stack, uid, &|| {
            let two = libc::rlimit {
                rlim_cur: 2,
                rlim_max: 2,
            };
            if libc::setrlimit(libc::RLIMIT_NPROC, &two) != 0 {
                return 2;
            }
            match in_shared_child(&inner, &|| 0) {
                Some(_) => 0,
                None => 1,
            }
        })
    };
    // Where the uid cannot be taken, no step runs as it either.
    code == Some(1)
}

/// A stack for a child that shares the server's memory.
struct ChildStack {
    _memory: Vec<u8>,
    /// Its 16-byte aligned top (stacks grow down).
    top: *mut libc::c_void,
}

impl ChildStack {
    /// Ample for the few system calls a child makes; untouched pages of it
    /// cost nothing.
    const SIZE: usize = 256 * 1024;

    fn new() -> ChildStack {
        let mut memory = vec![0u8; Self::SIZE];
        let end = memory.as_mut_ptr().wrapping_add(Self::SIZE);
        let top = end.wrapping_sub(end as usize % 16).cast();
        ChildStack {
            _memory: memory,
            top,
        }
    }
}

/// Runs `body` in a child that has taken `uid`, returning its exit code
/// (`None` when the uid could not be taken: only root can).
///
/// # Safety
/// As for [`in_shared_child`].
unsafe fn in_child_as(
    stack: &ChildStack,
    uid: u32,
    body: &dyn Fn() -> libc::c_int,
) -> Option<libc::c_int> {
    let code = in_shared_child(stack, &|| {
        // The raw system call: glibc's setuid would try to reach threads
        // that do not exist in the child. All three ids change, so the
        // child keeps no capability (CAP_KILL and CAP_SYS_RESOURCE
        // included). Credentials are the child's own, memory or not.
        if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
            return 255;
        }
        body()
    });
    match code {
        Some(255) => None,
        code => code,
    }
}

/// Runs `body` in a child process that shares this process's memory, on
/// `stack`, while the calling thread waits for it to exit (`CLONE_VM |
/// CLONE_VFORK`, as posix_spawn starts a process); returns its exit code,
/// or `None` if it could not be started or did not exit. A fork would copy
/// the page tables of the whole server, which costs milliseconds of CPU
/// at a server's size, several times for every step.
///
/// # Safety
/// `body` runs in a process that shares the memory of a multi-threaded
/// process whose other threads go on running: it may only make
/// async-signal-safe system calls on values made before, must not allocate,
/// lock or unwind, and starts processes only through this function, on a
/// stack made before.
unsafe fn in_shared_child(
    stack: &ChildStack,
    body: &dyn Fn() -> libc::c_int,
) -> Option<libc::c_int> {
    extern "C" fn start(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `&dyn Fn` of the caller below, which waits
        // for this child to exit before it returns.
        unsafe {
            let body = &*(arg as *const &dyn Fn() -> libc::c_int);
            libc::_exit(body())
        }
    }
    let arg = &body as *const &dyn Fn() -> libc::c_int as *mut libc::c_void;
    let pid = libc::clone(
        start,
        stack.top,
        libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
        arg,
    );
    let mut status = 0;
    if pid < 0 || libc::waitpid(pid, &mut status, 0) != pid || !libc::WIFEXITED(status) {
        return None;
    }
    Some(libc::WEXITSTATUS(status))
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
