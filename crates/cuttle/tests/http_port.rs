//! The server process's HTTP port as configured by its flags: connections
//! past `--http-max-connections` wait for a slot, silent ones are closed
//! after `--http-header-timeout`, and API keys sent in the query string
//! never reach the logs, even at debug level.

#[path = "it/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{TestServer, KEY};

/// Generous: only to prove that something happens at all, never how fast.
const BOUND: Duration = Duration::from_secs(20);

fn address(server: &TestServer) -> String {
    server.url().trim_start_matches("http://").to_owned()
}

/// One complete request with the key in the query string; the answer.
fn get(server: &TestServer, path: &str) -> String {
    let mut tcp = TcpStream::connect(address(server)).unwrap();
    tcp.set_read_timeout(Some(BOUND)).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer);
    answer
}

/// Whether the server closed `tcp` within `limit`.
fn closed_within(tcp: &mut TcpStream, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    let mut buf = [0u8; 512];
    while Instant::now() < until {
        tcp.set_read_timeout(Some(Duration::from_millis(250)))
            .unwrap();
        match tcp.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn fault_silent_clients_cannot_hold_the_http_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        dir.path(),
        None,
        &["--http-max-connections", "4", "--http-header-timeout", "1"],
    );
    let mut silent: Vec<TcpStream> = (0..12)
        .map(|_| TcpStream::connect(address(&server)).unwrap())
        .collect();
    let answer = get(&server, "/api");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for (i, tcp) in silent.iter_mut().enumerate() {
        assert!(
            closed_within(tcp, BOUND),
            "silent connection {i} was never closed"
        );
    }
}

#[test]
fn fault_an_api_key_in_the_query_is_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        dir.path(),
        None,
        &[],
        &[("RUST_LOG", "warn,tower_http=debug")],
    );
    let answer = get(&server, &format!("/api/users/me?apikey={KEY}"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The request's trace lines are written as it is answered.
    std::thread::sleep(Duration::from_millis(300));
    let output = server.recent_output();
    assert!(
        output.contains("/api/users/me?apikey=[redacted]"),
        "the request was not traced at debug level:\n{output}"
    );
    assert!(!output.contains(KEY), "the API key was logged:\n{output}");
}

/// The soft and hard open-file limits in a /proc/<pid>/limits text.
fn open_file_limits(limits: &str) -> (u64, u64) {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

#[test]
fn fault_the_server_raises_its_open_file_limit() {
    let own = std::fs::read_to_string("/proc/self/limits").unwrap();
    let (soft, hard) = open_file_limits(&own);
    if hard <= 256 {
        eprintln!("skipped: the hard open-file limit ({hard}) leaves nothing to raise");
        return;
    }
    // The server inherits a low soft limit, as under many service managers.
    let lowered = libc::rlimit {
        rlim_cur: 256,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct given.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None, &[]);
    let restored = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &restored) };
    let theirs = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    assert_eq!(open_file_limits(&theirs), (hard.min(65_536), hard));
}
