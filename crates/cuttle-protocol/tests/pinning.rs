//! Pinned trust over real TLS on loopback: handshakes between the
//! configurations `cuttle_protocol::trust` builds, and peers they must refuse.

use std::sync::Arc;
use std::time::Duration;

use cuttle_protocol::trust::{self, untrusted_peer, TrustedThumbprints};
use cuttle_protocol::{Identity, Thumbprint};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Nothing here should take more than a moment; a hang is a failure.
const LIMIT: Duration = Duration::from_secs(10);

fn identity(name: &str) -> Identity {
    Identity::generate(name).expect("generate an identity")
}

fn trusting(thumbprints: &[&Thumbprint]) -> TrustedThumbprints {
    TrustedThumbprints::new(thumbprints.iter().map(|t| (*t).clone()))
}

/// Accepts one connection; on a good handshake reads "ping", answers "pong".
async fn serve_one(
    listener: &TcpListener,
    config: Arc<ServerConfig>,
) -> Result<(), std::io::Error> {
    let (tcp, _) = listener.accept().await?;
    let mut tls = TlsAcceptor::from(config).accept(tcp).await?;
    let mut ping = [0u8; 4];
    tls.read_exact(&mut ping).await?;
    assert_eq!(&ping, b"ping");
    tls.write_all(b"pong").await?;
    tls.shutdown().await
}

/// Connects, says "ping", and returns what came back.
async fn ping(addr: std::net::SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<Vec<u8>> {
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = TlsConnector::from(config)
        .connect(trust::server_name(), tcp)
        .await?;
    tls.write_all(b"ping").await?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await?;
    Ok(answer)
}

async fn exchange(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (std::io::Result<()>, std::io::Result<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let both = async { tokio::join!(serve_one(&listener, server), ping(addr, client)) };
    tokio::time::timeout(LIMIT, both)
        .await
        .expect("the exchange finished in time")
}

#[tokio::test]
async fn peers_that_pin_each_other_talk() {
    let (server, agent) = (identity("Cuttle Server"), identity("Cuttle Agent"));
    let server_config =
        trust::server_config(&server, trusting(&[agent.thumbprint()])).expect("server config");
    let client_config =
        trust::client_config(&agent, trusting(&[server.thumbprint()])).expect("client config");

    let (served, answer) = exchange(server_config, client_config).await;
    served.expect("the server side succeeds");
    assert_eq!(answer.expect("the client side succeeds"), b"pong");
}

#[tokio::test]
async fn a_client_refuses_a_server_it_does_not_pin() {
    let (server, agent, other) = (identity("S"), identity("A"), identity("O"));
    let server_config = trust::server_config(&server, trusting(&[agent.thumbprint()])).unwrap();
    let client_config = trust::client_config(&agent, trusting(&[other.thumbprint()])).unwrap();

    let (served, answer) = exchange(server_config, client_config).await;
    let err = answer.expect_err("the client refuses the server");
    let expected = format!(
        "the peer presented certificate {}, which is not trusted",
        server.thumbprint()
    );
    assert!(err.to_string().contains(&expected), "{err}");
    let found = untrusted_peer(&err).expect("the error names the untrusted certificate");
    assert_eq!(&found.thumbprint, server.thumbprint());
    assert!(served.is_err(), "the server saw the handshake fail");
}

#[tokio::test]
async fn a_server_refuses_a_client_it_does_not_pin() {
    let (server, agent, other) = (identity("S"), identity("A"), identity("O"));
    let server_config = trust::server_config(&server, trusting(&[other.thumbprint()])).unwrap();
    let client_config = trust::client_config(&agent, trusting(&[server.thumbprint()])).unwrap();

    let (served, answer) = exchange(server_config, client_config).await;
    let err = served.expect_err("the server refuses the client");
    assert!(
        err.to_string().contains(&format!(
            "the peer presented certificate {}, which is not trusted",
            agent.thumbprint()
        )),
        "{err}"
    );
    assert_eq!(
        untrusted_peer(&err).map(|u| &u.thumbprint),
        Some(agent.thumbprint())
    );
    // In TLS 1.3 the client finishes its half of the handshake before the
    // server judges its certificate, so it learns of the refusal on reading.
    if let Ok(bytes) = answer {
        assert!(bytes.is_empty(), "the client got {bytes:?}");
    }
}

#[tokio::test]
async fn a_client_trusted_while_the_server_runs_is_accepted_next_time() {
    let (server, agent) = (identity("S"), identity("A"));
    let trusted = TrustedThumbprints::default();
    let server_config = trust::server_config(&server, trusted.clone()).unwrap();
    let client_config = trust::client_config(&agent, trusting(&[server.thumbprint()])).unwrap();

    let (served, _) = exchange(server_config.clone(), client_config.clone()).await;
    assert!(served.is_err(), "not trusted yet");

    // The same configuration object: registration needs no rebuild.
    assert!(trusted.insert(agent.thumbprint().clone()));
    let (served, answer) = exchange(server_config.clone(), client_config.clone()).await;
    served.expect("trusted now");
    assert_eq!(answer.unwrap(), b"pong");

    assert!(trusted.remove(agent.thumbprint()));
    let (served, _) = exchange(server_config, client_config).await;
    assert!(served.is_err(), "no longer trusted");
}

#[tokio::test]
async fn a_pinned_certificate_without_its_key_is_refused() {
    // The impostor has a copy of the agent's certificate, which is public,
    // but signs the handshake with a key of its own.
    let (server, agent, impostor) = (identity("S"), identity("A"), identity("I"));
    let server_config = trust::server_config(&server, trusting(&[agent.thumbprint()])).unwrap();
    let stolen = rustls::sign::CertifiedKey::new(
        vec![agent.certificate_der().clone()],
        impostor.certified_key().key.clone(),
    );
    let client_config = ClientConfig::builder_with_provider(ring())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(ring())))
        .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(stolen)));

    let (served, answer) = exchange(server_config, Arc::new(client_config)).await;
    let err = served.expect_err("the server refuses the impostor");
    assert!(untrusted_peer(&err).is_none(), "pinning let it through");
    assert!(err.to_string().contains("BadSignature"), "{err}");
    if let Ok(bytes) = answer {
        assert!(bytes.is_empty(), "the impostor got {bytes:?}");
    }
}

/// A client-side verifier that accepts any server certificate, for peers
/// whose refusal must come from something else (version, signature).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[tokio::test]
async fn the_server_refuses_tls_1_2() {
    let (server, agent) = (identity("S"), identity("A"));
    let server_config = trust::server_config(&server, trusting(&[agent.thumbprint()])).unwrap();
    let old_client = ClientConfig::builder_with_provider(ring())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(ring())))
        .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
            agent.certified_key(),
        )));

    let (served, answer) = exchange(server_config, Arc::new(old_client)).await;
    let err = served.expect_err("the server refuses TLS 1.2");
    assert!(err.to_string().contains("Tls12NotOffered"), "{err}");
    assert!(answer.is_err());
}

#[tokio::test]
async fn the_client_refuses_tls_1_2() {
    let (server, agent) = (identity("S"), identity("A"));
    let old_server = ServerConfig::builder_with_provider(ring())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
            server.certified_key(),
        )));
    let client_config = trust::client_config(&agent, trusting(&[server.thumbprint()])).unwrap();

    let (served, answer) = exchange(Arc::new(old_server), client_config).await;
    let err = answer.expect_err("the client refuses TLS 1.2");
    assert!(served.is_err());
    // Whichever side notices first, no TLS 1.2 session comes of it.
    let text = err.to_string().to_lowercase();
    assert!(text.contains("version") || text.contains("alert"), "{err}");
}
