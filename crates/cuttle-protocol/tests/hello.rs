//! The server asking a listening agent `GET /v1/hello` in-process, over real
//! TLS on loopback: the answer, and each way it can go wrong.

use std::sync::Arc;
use std::time::Duration;

use cuttle_protocol::client::hello;
use cuttle_protocol::listen::serve;
use cuttle_protocol::messages::{ScriptStatus, StartScript};
use cuttle_protocol::trust::server_config;
use cuttle_protocol::{
    AgentService, Hello, Identity, ProtocolError, TrustedThumbprints, PROTOCOL_VERSION,
};
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

/// An agent that only says who it is.
struct HelloOnly(Hello);

impl AgentService for HelloOnly {
    fn hello(&self) -> Hello {
        self.0.clone()
    }
    fn start_script(&self, _: StartScript) -> Result<ScriptStatus, String> {
        Err("this agent runs no scripts".into())
    }
    async fn script_status(&self, _: &str, _: u64, _: Duration) -> Option<ScriptStatus> {
        None
    }
    async fn cancel_script(&self, _: &str) -> Option<ScriptStatus> {
        None
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
    tokio::spawn(serve(listener, tls, Arc::new(HelloOnly(answer)), async {
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

/// A polling agent dials the hub; the server asks it over that connection,
/// and a certificate the server does not know is dropped after the handshake.
#[tokio::test]
async fn polling_agents_are_asked_over_their_own_connection() {
    use cuttle_protocol::polling::{poll, PollingHub, Registered};
    use cuttle_protocol::trust::{client_config, polling_server_config};

    let server = Identity::generate("s").unwrap();
    let (known, stranger) = (
        Identity::generate("a").unwrap(),
        Identity::generate("b").unwrap(),
    );
    let hub = PollingHub::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let allowed = known.thumbprint().clone();
    let registered: Registered = Arc::new(move |t| {
        let ok = t == allowed;
        Box::pin(async move { ok })
    });
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(hub.clone().serve(
        listener,
        polling_server_config(&server).unwrap(),
        registered,
        async {
            let _ = stopped.await;
        },
    ));
    let trusts_server = TrustedThumbprints::new([server.thumbprint().clone()]);
    for identity in [&known, &stranger] {
        let tls = client_config(identity, trusts_server.clone()).unwrap();
        let service = Arc::new(HelloOnly(answer()));
        tokio::spawn(poll(
            address.clone(),
            cuttle_protocol::trust::server_name(),
            tls,
            service,
            std::future::pending(),
        ));
    }

    let connection = hub
        .wait_for(known.thumbprint(), LIMIT)
        .await
        .expect("the registered agent connects");
    assert_eq!(connection.hello().await.unwrap(), answer());
    assert!(
        hub.wait_for(stranger.thumbprint(), Duration::from_secs(2))
            .await
            .is_none(),
        "an unregistered certificate is never connected"
    );
    let _ = stop.send(());
}
