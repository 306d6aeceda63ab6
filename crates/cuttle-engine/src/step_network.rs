//! A network of a step's own: bubblewrap gives the step an empty network
//! namespace (loopback only) and slirp4netns gives it a way out through the
//! server's sockets, as any program of the server's would connect, but with
//! no way to the server's own loopback (`--disable-host-loopback`), where
//! the databases, the control plane and the other steps' ports listen.
//! Ports the step listens on are reached from the server's loopback through
//! forwards added on slirp4netns's API socket.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};

pub const SLIRP4NETNS: &str = "slirp4netns";
/// Where slirp4netns's DNS forwarder answers inside the namespace.
pub const RESOLV_CONF: &str = "nameserver 10.0.2.3\n";
/// How long a sandbox may take to make its network namespace.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("the step's network namespace did not appear within {0:?}")]
    NoNamespace(Duration),
    #[error("slirp4netns could not start: {0}")]
    Start(io::Error),
    #[error("slirp4netns exited ({status}) before its API socket answered: {says}")]
    Exited {
        status: std::process::ExitStatus,
        says: String,
    },
    #[error("slirp4netns's API socket did not answer within {0:?}")]
    NoApi(Duration),
    #[error("slirp4netns refused to forward port {port}: {message}")]
    Forward { port: u16, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

/// The way out of one step's network namespace. Dropping it kills
/// slirp4netns, which leaves the namespace with loopback alone.
#[derive(Debug)]
pub struct StepNetwork {
    slirp: Child,
    api_socket: PathBuf,
    /// A process inside the namespace.
    inside: u32,
}

impl StepNetwork {
    /// Gives the network namespace of `sandbox_pid`'s child (the process
    /// bubblewrap started with `--unshare-net`) a way out, controlled
    /// through `api_socket` (which must lie where the step cannot reach:
    /// whoever can write to it can forward ports).
    pub async fn attach(
        slirp4netns: &Path,
        sandbox_pid: u32,
        api_socket: PathBuf,
    ) -> Result<StepNetwork, NetworkError> {
        let inside = namespaced_child(sandbox_pid).await?;
        let _ = std::fs::remove_file(&api_socket);
        let mut command = Command::new(slirp4netns);
        command
            .args(["--configure", "--mtu=65520", "--disable-host-loopback"])
            // It runs as the server's user and handles the step's packets:
            // with no capabilities and a file system of its own.
            .arg("--enable-sandbox")
            .arg("--api-socket")
            .arg(&api_socket)
            // By path, not by process: given a process, it would join that
            // process's user namespace (bubblewrap's, when the step has a
            // uid of its own) and could no longer enter the network's.
            .arg("--netns-type=path")
            .arg(format!("/proc/{inside}/ns/net"))
            .arg("tap0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        // A server killed outright must not leave the way out behind.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let slirp = command.spawn().map_err(NetworkError::Start)?;
        let mut network = StepNetwork {
            slirp,
            api_socket,
            inside,
        };
        network.wait_for_api().await?;
        Ok(network)
    }

    /// Makes `127.0.0.1:port` on the server reach `port` in the namespace.
    pub async fn forward(&self, port: u16) -> Result<(), NetworkError> {
        let request = serde_json::json!({
            "execute": "add_hostfwd",
            "arguments": {"proto": "tcp", "host_addr": "127.0.0.1", "host_port": port, "guest_port": port},
        });
        let answer = self.call(&request).await?;
        match answer.get("error") {
            None => Ok(()),
            Some(error) => Err(NetworkError::Forward {
                port,
                message: error["desc"]
                    .as_str()
                    .unwrap_or("no reason given")
                    .to_owned(),
            }),
        }
    }

    /// Whether slirp4netns has ended: the namespace has no way out, and
    /// forwarded ports no longer reach it.
    pub fn ended(&mut self) -> bool {
        matches!(self.slirp.try_wait(), Ok(Some(_)))
    }

    /// Whether something in the namespace listens on TCP `port` (a forward
    /// accepts before then, so it cannot tell).
    pub fn listens_on(&self, port: u16) -> bool {
        ["tcp", "tcp6"].iter().any(|table| {
            std::fs::read_to_string(format!("/proc/{}/net/{table}", self.inside))
                .map(|text| listening(&text, port))
                .unwrap_or(false)
        })
    }

    async fn wait_for_api(&mut self) -> Result<(), NetworkError> {
        let until = Instant::now() + ATTACH_TIMEOUT;
        let probe = serde_json::json!({"execute": "list_hostfwd"});
        loop {
            if let Ok(Some(status)) = self.slirp.try_wait() {
                let mut says = String::new();
                if let Some(mut stderr) = self.slirp.stderr.take() {
                    let _ = (&mut stderr).take(4096).read_to_string(&mut says).await;
                }
                let says = says.trim().lines().last().unwrap_or("nothing").to_owned();
                return Err(NetworkError::Exited { status, says });
            }
            if self.call(&probe).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(NetworkError::NoApi(ATTACH_TIMEOUT));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn call(&self, request: &serde_json::Value) -> Result<serde_json::Value, NetworkError> {
        let io = |context: &str| {
            let context = context.to_owned();
            move |source| NetworkError::Io { context, source }
        };
        let mut stream = tokio::net::UnixStream::connect(&self.api_socket)
            .await
            .map_err(io("connecting to slirp4netns's API socket"))?;
        stream
            .write_all(request.to_string().as_bytes())
            .await
            .map_err(io("writing to slirp4netns's API socket"))?;
        stream
            .shutdown()
            .await
            .map_err(io("writing to slirp4netns's API socket"))?;
        let mut answer = Vec::new();
        stream
            .take(64 * 1024)
            .read_to_end(&mut answer)
            .await
            .map_err(io("reading slirp4netns's answer"))?;
        serde_json::from_slice(&answer).map_err(|e| NetworkError::Io {
            context: "reading slirp4netns's answer".into(),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })
    }
}

impl Drop for StepNetwork {
    fn drop(&mut self) {
        // slirp4netns itself is killed as its handle drops.
        let _ = std::fs::remove_file(&self.api_socket);
    }
}

/// The first child of `pid` that is in a network namespace other than the
/// server's (bubblewrap's own process stays outside the namespaces it
/// makes), once that child has started the program: until then its user
/// namespace may lack its uid map, and slirp4netns could not join it.
async fn namespaced_child(pid: u32) -> Result<u32, NetworkError> {
    let ours = std::fs::read_link("/proc/self/ns/net").map_err(|source| NetworkError::Io {
        context: "reading the server's network namespace".into(),
        source,
    })?;
    let until = Instant::now() + ATTACH_TIMEOUT;
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            let started = || {
                std::fs::read_to_string(format!("/proc/{child}/task/{child}/children"))
                    .is_ok_and(|c| !c.trim().is_empty())
            };
            match std::fs::read_link(format!("/proc/{child}/ns/net")) {
                Ok(ns) if ns != ours && started() => return Ok(child),
                _ => {}
            }
        }
        if Instant::now() > until {
            return Err(NetworkError::NoNamespace(ATTACH_TIMEOUT));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether a `/proc/net/tcp{,6}` table has a socket listening on `port`.
fn listening(table: &str, port: u16) -> bool {
    let wanted = format!("{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1).unwrap_or_default();
        let state = fields.nth(1).unwrap_or_default();
        state == "0A" && local.rsplit(':').next() == Some(wanted.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0050 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn a_listening_socket_is_found_by_its_port_and_state() {
        assert!(listening(TABLE, 8080));
        // Port 80 is there, but connected, not listening.
        assert!(!listening(TABLE, 80));
        assert!(!listening(TABLE, 8081));
        assert!(!listening("", 8080));
    }
}
