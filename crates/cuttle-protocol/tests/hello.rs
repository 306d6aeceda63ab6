//! The server asking a listening agent `GET /v1/hello` in-process, over real
//! TLS on loopback: the answer, and each way it can go wrong.

use std::time::Duration;

use cuttle_protocol::client::hello;
use cuttle_protocol::listen::serve;
use cuttle_protocol::trust::server_config;
use cuttle_protocol::{Hello, Identity, ProtocolError, TrustedThumbprints, PROTOCOL_VERSION};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const LIMIT: Duration = Duration::from_secs(10);

fn answer() -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "1.2.3".into(),
        operating_system: "linux".into(),
        architecture: "x86_64".into(),
        free_disk_bytes: 42,
        name: "web01".into(),
    }
}

/// An agent serving `answer` with `agent`'s identity, trusting `trusted`;
/// returns its uri and the sender that stops it.
async fn agent(
    agent: &Identity,
    trusted: TrustedThumbprints,
    answer: Hello,
) -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("https://{}/", listener.local_addr().unwrap());
    let tls = server_config(agent, trusted).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, tls, move || answer.clone(), async {
        let _ = stopped.await;
    }));
    (uri, stop)
}

#[tokio::test]
async fn a_trusting_agent_answers() {
    let (server, agent_id) = (
        Identity::generate("s").unwrap(),
        Identity::generate("a").unwrap(),
    );
    let trusted = TrustedThumbprints::new([server.thumbprint().clone()]);
    let (uri, _stop) = agent(&agent_id, trusted, answer()).await;
    let got = hello(&uri, agent_id.thumbprint(), &server, LIMIT)
        .await
        .unwrap();
    assert_eq!(got, answer());
}

#[tokio::test]
async fn another_certificate_is_named() {
    let (server, agent_id) = (
        Identity::generate("s").unwrap(),
        Identity::generate("a").unwrap(),
    );
    let other = Identity::generate("o").unwrap();
    let trusted = TrustedThumbprints::new([server.thumbprint().clone()]);
    let (uri, _stop) = agent(&agent_id, trusted, answer()).await;
    let err = hello(&uri, other.thumbprint(), &server, LIMIT)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProtocolError::WrongThumbprint { presented, .. } if presented == agent_id.thumbprint()),
        "{err}"
    );
    assert!(
        err.to_string().contains(other.thumbprint().as_str()),
        "{err}"
    );
}

#[tokio::test]
async fn an_agent_that_does_not_trust_the_server_refuses_it() {
    let (server, agent_id) = (
        Identity::generate("s").unwrap(),
        Identity::generate("a").unwrap(),
    );
    let (uri, _stop) = agent(&agent_id, TrustedThumbprints::default(), answer()).await;
    let err = hello(&uri, agent_id.thumbprint(), &server, LIMIT)
        .await
        .unwrap_err();
    assert!(matches!(err, ProtocolError::Refused { .. }), "{err}");
    assert!(
        err.to_string().contains(server.thumbprint().as_str()),
        "{err}"
    );
}

#[tokio::test]
async fn another_protocol_version_is_refused_naming_both() {
    let (server, agent_id) = (
        Identity::generate("s").unwrap(),
        Identity::generate("a").unwrap(),
    );
    let trusted = TrustedThumbprints::new([server.thumbprint().clone()]);
    let newer = Hello {
        protocol_version: PROTOCOL_VERSION + 1,
        ..answer()
    };
    let (uri, _stop) = agent(&agent_id, trusted, newer).await;
    let err = hello(&uri, agent_id.thumbprint(), &server, LIMIT)
        .await
        .unwrap_err();
    assert!(matches!(err, ProtocolError::Version { .. }), "{err}");
}

#[tokio::test]
async fn silence_times_out_and_nobody_listening_is_a_connect_error() {
    let server = Identity::generate("s").unwrap();
    let agent_id = Identity::generate("a").unwrap();
    // Accepts TCP (the kernel does) but never speaks TLS.
    let mute = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("https://{}/", mute.local_addr().unwrap());
    let err = hello(
        &uri,
        agent_id.thumbprint(),
        &server,
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ProtocolError::Timeout { .. }), "{err}");

    let port = mute.local_addr().unwrap().port();
    drop(mute);
    let err = hello(
        &format!("https://127.0.0.1:{port}/"),
        agent_id.thumbprint(),
        &server,
        LIMIT,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ProtocolError::Connect { .. }), "{err}");
}
