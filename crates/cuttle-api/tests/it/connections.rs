//! The HTTP port's limits, over real sockets on 127.0.0.1: clients that
//! connect and say nothing, send their headers a byte at a time or stall
//! in a body are cut off, and connections past the cap wait their turn
//! instead of using up the server's file descriptors. Connection handling
//! is the same whatever the database, so these run on SQLite only.

use cuttle_api::HttpLimits;
use cuttle_service::{Instance, InstanceConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "API-CONNECTIONSCONNECTIONSCONNECT01";
/// Generous: only to prove that something happens at all, never how fast.
const BOUND: Duration = Duration::from_secs(20);

struct Port {
    addr: std::net::SocketAddr,
    _inst: Arc<Instance>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn serve(limits: HttpLimits) -> Port {
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::open(InstanceConfig::new(dir.path().to_path_buf()))
        .await
        .unwrap();
    cuttle_service::auth::bootstrap_admin(&inst.store, dir.path(), Some("admin-pass"), Some(KEY))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = inst.clone();
    tokio::spawn(async move {
        let _ = cuttle_api::serve_with(listener, serving, limits, async {
            let _ = stopped.await;
        })
        .await;
    });
    Port {
        addr,
        _inst: inst,
        _stop: stop,
        _dir: dir,
    }
}

/// Sends one complete `GET /api` and reads the whole answer.
async fn get_root(addr: std::net::SocketAddr) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /api HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    answer
}

/// Whether the server has closed `tcp` (end of stream or a reset) within `limit`.
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let until = Instant::now() + limit;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before the close is fine: read on.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn fault_connections_past_the_cap_wait_for_a_free_slot() {
    let port = serve(HttpLimits {
        max_connections: 3,
        header_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_secs(60),
    })
    .await;
    let mut idle = vec![];
    for _ in 0..3 {
        idle.push(TcpStream::connect(port.addr).await.unwrap());
    }
    // Let the server accept them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = tokio::spawn(get_root(port.addr));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "a fourth connection was served while three held every slot"
    );
    drop(idle.pop());
    let answer = tokio::time::timeout(BOUND, waiting)
        .await
        .expect("the waiting client was served once a slot freed")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn fault_idle_and_slow_header_connections_are_closed() {
    let port = serve(HttpLimits {
        max_connections: 4,
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(60),
    })
    .await;
    // Twelve silent clients, three times the cap.
    let mut idle = vec![];
    for _ in 0..12 {
        idle.push(TcpStream::connect(port.addr).await.unwrap());
    }
    // A new client still gets its answer: the silent ones time out.
    let answer = tokio::time::timeout(BOUND, get_root(port.addr))
        .await
        .expect("a new client was served while silent clients held the port");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for (i, tcp) in idle.iter_mut().enumerate() {
        assert!(
            closed_within(tcp, BOUND).await,
            "silent connection {i} was never closed"
        );
    }

    // Headers a byte every 200 ms never finish in time; the server closes
    // the connection while they are still coming.
    let mut slow = TcpStream::connect(port.addr).await.unwrap();
    let started = Instant::now();
    let mut cut_off = false;
    for b in b"GET /api HTTP/1.1\r\nHost: test\r\nX-Padding: "
        .iter()
        .chain([b'a'; 200].iter())
    {
        if slow.write_all(&[*b]).await.is_err() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if started.elapsed() > BOUND {
            break;
        }
    }
    assert!(
        cut_off || closed_within(&mut slow, Duration::from_millis(100)).await,
        "a client sending its headers a byte at a time kept its connection for {:?}",
        started.elapsed()
    );

    // A connection kept alive after a request is closed once idle.
    let mut kept = TcpStream::connect(port.addr).await.unwrap();
    kept.write_all(b"GET /api HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut kept, BOUND).await,
        "an idle kept-alive connection was never closed"
    );
}

#[tokio::test]
async fn fault_a_stalled_request_body_is_cut_off() {
    let port = serve(HttpLimits {
        max_connections: 4,
        header_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_secs(1),
    })
    .await;
    let mut tcp = TcpStream::connect(port.addr).await.unwrap();
    let head = format!(
        "POST /api/environments HTTP/1.1\r\nHost: test\r\nX-Octopus-ApiKey: {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"Name\": \"Sta"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(BOUND, tcp.read(&mut answer))
        .await
        .expect("a request whose body stalled was answered or closed")
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(
        n == 0 || answer.starts_with("HTTP/1.1 4"),
        "a stalled body was answered: {answer}"
    );
    // And nothing was created from half a body.
    let list = reqwest::Client::new()
        .get(format!("http://{}/api/environments", port.addr))
        .header("X-Octopus-ApiKey", KEY)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(list["TotalResults"], 0, "{list}");
}

/// Reads one response with a `Content-Length` body off a kept-alive
/// connection; empty when the server closed or reset it instead.
async fn read_response(tcp: &mut TcpStream) -> String {
    let mut got = vec![];
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        match tokio::time::timeout(BOUND, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return String::from_utf8_lossy(&got).into_owned(),
        }
    }
}

/// Octopus clients pool connections for as long as Octopus keeps them; one
/// busy for longer than half a minute (zipping a large package, say) then
/// sends its next request on the connection it already had.
#[tokio::test]
async fn a_kept_alive_connection_outlasts_a_client_busy_for_longer_than_half_a_minute() {
    let port = serve(HttpLimits::default()).await;
    let mut tcp = TcpStream::connect(port.addr).await.unwrap();
    let request = b"GET /api HTTP/1.1\r\nHost: test\r\n\r\n";
    tcp.write_all(request).await.unwrap();
    let first = read_response(&mut tcp).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    tokio::time::sleep(Duration::from_secs(35)).await;
    tcp.write_all(request).await.unwrap();
    let second = read_response(&mut tcp).await;
    assert!(
        second.starts_with("HTTP/1.1 200"),
        "the kept-alive connection was closed while the client was busy: {second:?}"
    );
}
