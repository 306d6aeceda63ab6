//! What a step's process does between fork and exec, before it runs the
//! script: join the step's cgroup (first, so that everything it starts is
//! in it), take a mount namespace with /tmp its own, set its limits, and
//! become the step's uid. Only async-signal-safe system calls on values
//! prepared before the fork.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::sandbox::Limits;

/// /tmp of a step without bubblewrap: the server (root) gives the child a
/// mount namespace of its own where `tmp` is bound on /tmp, and the working
/// directory bound back where it was when it lies below /tmp.
pub(crate) struct PrivateTmp {
    work_dir: CString,
    tmp: CString,
    /// The directories to create in the new /tmp for the working directory
    /// to be bound back at its path, outermost first (empty: not below /tmp).
    way_back: Vec<CString>,
}

impl PrivateTmp {
    pub(crate) fn new(work_dir: &Path, tmp: &Path) -> Option<PrivateTmp> {
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).ok();
        let way_back = match work_dir.strip_prefix("/tmp") {
            Ok(below) => {
                let mut path = PathBuf::from("/tmp");
                let mut dirs = vec![];
                for part in below.components() {
                    path.push(part);
                    dirs.push(c(&path)?);
                }
                dirs
            }
            Err(_) => vec![],
        };
        Some(PrivateTmp {
            work_dir: c(work_dir)?,
            tmp: c(tmp)?,
            way_back,
        })
    }

    /// Between fork and exec, as root: only system calls on prepared values.
    ///
    /// # Safety
    /// Async-signal-safe: no allocation, no locks.
    unsafe fn enter(&self) -> io::Result<()> {
        let fail = || Err(io::Error::last_os_error());
        let root = c"/";
        let tmp_mount = c"/tmp";
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return fail();
        }
        // Nothing done here may reach the host's mounts.
        let none = std::ptr::null();
        if libc::mount(
            none,
            root.as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            none.cast(),
        ) != 0
        {
            return fail();
        }
        // Held across the mount on /tmp, which may hide the path; opened in
        // the new namespace, as a bind mount's source must be.
        let dir = libc::open(
            self.work_dir.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if dir < 0
            || libc::mount(
                self.tmp.as_ptr(),
                tmp_mount.as_ptr(),
                none,
                libc::MS_BIND,
                none.cast(),
            ) != 0
        {
            return fail();
        }
        if !self.way_back.is_empty() {
            for d in &self.way_back {
                if libc::mkdir(d.as_ptr(), 0o755) != 0
                    && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                {
                    return fail();
                }
            }
            // "/proc/self/fd/<dir>", written without allocating.
            let mut source = *b"/proc/self/fd/\0\0\0\0\0\0\0\0\0\0\0\0";
            let mut digits = [0u8; 11];
            let (mut n, mut len) = (dir as u32, 0);
            loop {
                digits[len] = b'0' + (n % 10) as u8;
                len += 1;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            for i in 0..len {
                source[14 + i] = digits[len - 1 - i];
            }
            if libc::mount(
                source.as_ptr().cast(),
                self.work_dir.as_ptr(),
                none,
                libc::MS_BIND,
                none.cast(),
            ) != 0
            {
                return fail();
            }
        }
        libc::close(dir);
        // The working directory as the new mounts show it.
        if libc::chdir(self.work_dir.as_ptr()) != 0 {
            return fail();
        }
        Ok(())
    }
}

/// What the child does between fork and exec.
pub(crate) struct Exec {
    pub limits: Limits,
    /// The step's uid and group.
    pub ids: Option<(u32, u32)>,
    /// The step's cgroups' `cgroup.procs` files.
    pub cgroup_procs: Vec<CString>,
    pub private_tmp: Option<PrivateTmp>,
}

impl Exec {
    pub(crate) fn apply(self, command: &mut Command) {
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
        if self.ids.is_some() {
            if let Some(n) = l.processes {
                limits.push((libc::RLIMIT_NPROC, n));
            }
        }
        let Exec {
            ids,
            cgroup_procs,
            private_tmp,
            ..
        } = self;
        // SAFETY: between fork and exec only async-signal-safe system calls
        // are made (open, write, close, unshare, mount, mkdir, chdir,
        // getrlimit, setrlimit, setgroups, setgid, setuid, prctl), on values
        // prepared before the fork; nothing allocates or locks.
        unsafe {
            command.pre_exec(move || {
                // First, so that everything the step starts is in its cgroup.
                for procs in &cgroup_procs {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                    if written != 1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if let Some(tmp) = &private_tmp {
                    tmp.enter()?;
                }
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
