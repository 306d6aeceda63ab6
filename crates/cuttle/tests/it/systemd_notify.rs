//! Under systemd (`Type=notify`), the server says READY=1 once it serves and
//! STOPPING=1 when SIGTERM begins its shutdown, on $NOTIFY_SOCKET.

use crate::support;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;
use support::TestServer;

fn next_message(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn the_server_notifies_systemd_when_ready_and_when_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let data = dir.path().join("data");
    let mut server = TestServer::start_with_env(
        &data,
        None,
        &[],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    assert_eq!(next_message(&socket).trim(), "READY=1");
    // Ready means serving: the API answers at once.
    let status = get_status(&format!("{}/api", server.url));
    assert_eq!(status, 200);
    server.signal("-TERM");
    assert_eq!(next_message(&socket).trim(), "STOPPING=1");
    assert!(server.wait_exit(Duration::from_secs(20)).is_some());
}

/// The status of a GET, on a runtime of its own.
fn get_status(url: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { reqwest::get(url).await.unwrap().status().as_u16() })
}
