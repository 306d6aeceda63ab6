//! Uploading files to a real `cuttle agent run` process over pinned TLS and
//! HTTP/2 on loopback, through a proxy that cuts every connection after a
//! few megabytes: the upload resumes where the agent stands, never re-sends
//! an acknowledged byte, and the agent keeps only a verified file; a new
//! version travels as a delta from the one the agent holds.

use crate::support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cuttle_engine::agent_files::sha256_of;
use cuttle_engine::remote::{upload_file, AgentTarget, ConnectionLimits};
use cuttle_model::machine::{CommunicationStyle, Endpoint};
use cuttle_protocol::polling::PollingHub;
use cuttle_protocol::{Agents, Identity};
use support::agents::{free_port, Agent};
use support::{noise, BIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards connections to `upstream`, cutting each one once `budget`
/// bytes have gone towards the agent; counts the connections.
async fn cutting_proxy(upstream: SocketAddr, budget: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(agent) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut agent_read, mut agent_write) = agent.into_split();
                let towards_agent = async {
                    let mut sent = 0;
                    let mut buffer = vec![0u8; 16 * 1024];
                    while sent < budget {
                        let n = match client_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n.min(budget - sent),
                        };
                        if agent_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                        sent += n;
                    }
                };
                let towards_client = tokio::io::copy(&mut agent_read, &mut client_write);
                // Whichever ends first ends the connection, both ways.
                tokio::select! {
                    _ = towards_agent => {}
                    _ = towards_client => {}
                }
            });
        }
    });
    (address, connections)
}

/// An agent process in `dir` that trusts `server` and listens on `port`,
/// set up by hand as `register` would (no Cuttle server is involved).
fn agent_trusting(dir: &std::path::Path, server: &Identity, port: u16) -> (Agent, Identity) {
    let init = std::process::Command::new(BIN)
        .args(["agent", "init", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let config = serde_json::json!({
        "Name": "web-1",
        "Listen": format!("127.0.0.1:{port}"),
        "ServerUrl": "http://127.0.0.1:9",
        "TrustedServerThumbprints": [server.thumbprint().to_string()],
        "MachineId": "Machines-1",
        "SpaceId": "Spaces-1",
    });
    std::fs::write(dir.join("agent.json"), config.to_string()).unwrap();
    let identity = Identity::load(dir).unwrap();
    (Agent::start(dir), identity)
}

#[tokio::test]
async fn a_cut_upload_resumes_and_the_agent_keeps_a_verified_file() {
    let root = tempfile::tempdir().unwrap();
    let server = Identity::generate("server").unwrap();
    let port = free_port();
    let agent_dir = root.path().join("agent");
    let (_agent, agent) = agent_trusting(&agent_dir, &server, port);
    let agent_address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (proxy, connections) = cutting_proxy(agent_address, 3 * 1024 * 1024).await;

    // 10 MiB that do not compress or repeat in step with the chunks.
    let content = noise(10 << 20, 0x9E37_79B9_7F4A_7C15);
    let file = root.path().join("package.bin");
    std::fs::write(&file, &content).unwrap();
    let hash = sha256_of(&file).unwrap();
    let size = content.len() as u64;

    let agents = Agents::new(Arc::new(server), PollingHub::new());
    let endpoint = Endpoint {
        communication_style: Some(CommunicationStyle::TentaclePassive),
        uri: format!("https://{proxy}/"),
        thumbprint: agent.thumbprint().to_string(),
        ..Default::default()
    };
    let target = AgentTarget {
        name: "web-1",
        endpoint: &endpoint,
        machine_policy_id: "",
    };
    let limits = ConnectionLimits {
        connect: Duration::from_secs(10),
        retry: Duration::from_secs(30),
        retry_sleep: Duration::from_millis(50),
    };
    let upload = upload_file(&agents, &target, limits, &file, &hash, size, &[])
        .await
        .expect("the upload completes despite the cuts");
    assert!(!upload.cached);
    assert!(upload.resumes >= 2, "{upload:?}");
    // Acknowledged chunks are never sent again.
    assert_eq!(upload.sent_bytes, size, "{upload:?}");
    assert!(connections.load(Ordering::SeqCst) >= 3);
    let kept = agent_dir.join("files").join(&hash);
    assert_eq!(sha256_of(&kept).unwrap(), hash);
    assert!(
        !root
            .path()
            .join("files/partial")
            .join(format!("{hash}.part"))
            .exists(),
        "the partial upload became the cached file"
    );

    // The agent has it now: nothing is sent.
    let again = upload_file(&agents, &target, limits, &file, &hash, size, &[])
        .await
        .unwrap();
    assert!(again.cached && again.sent_bytes == 0, "{again:?}");

    // A file that is not what its hash says is refused and not kept.
    let liar = root.path().join("liar.bin");
    std::fs::write(&liar, b"not the package").unwrap();
    let err = upload_file(&agents, &target, limits, &liar, &"0".repeat(64), 15, &[])
        .await
        .unwrap_err();
    assert!(
        err.contains("refused the file") && err.contains("SHA-256"),
        "{err}"
    );
    assert!(!agent_dir.join("files").join("0".repeat(64)).exists());

    // The next version differs in 1% of its bytes: only a delta from the
    // version the agent holds is sent, and the agent rebuilds and verifies it.
    let mut next = content.clone();
    let at = content.len() / 3;
    for b in &mut next[at..at + content.len() / 100] {
        *b ^= 0x5a;
    }
    let next_file = root.path().join("package-2.bin");
    std::fs::write(&next_file, &next).unwrap();
    let next_hash = sha256_of(&next_file).unwrap();
    let bases = ["f".repeat(64), hash.clone()];
    let delta = upload_file(
        &agents,
        &target,
        limits,
        &next_file,
        &next_hash,
        next.len() as u64,
        &bases,
    )
    .await
    .unwrap();
    assert_eq!(
        delta.delta_from.as_deref(),
        Some(hash.as_str()),
        "{delta:?}"
    );
    assert!(
        delta.sent_bytes * 20 < next.len() as u64,
        "sent {} bytes for a 1% change of {}",
        delta.sent_bytes,
        next.len()
    );
    let kept = agent_dir.join("files").join(&next_hash);
    assert_eq!(std::fs::read(&kept).unwrap(), next);
}
