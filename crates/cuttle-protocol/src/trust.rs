//! Pinned trust: TLS 1.3, both sides present a certificate, and each accepts
//! the other's only if its thumbprint is in a set it was given.
//!
//! Pinning replaces only the chain and name checks of ordinary web PKI. The
//! handshake signatures are still verified with the provider's algorithms
//! against the presented certificate's key, so a peer must hold the private
//! key of a pinned certificate, not merely a copy of the certificate.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::identity::{provider, Identity, Thumbprint};

/// The name a client puts in its handshake (SNI). Nothing checks it, as the
/// certificate is pinned, but rustls needs one; a fixed name keeps host names
/// and IP addresses of agents out of the question.
pub const SERVER_NAME: &str = "cuttle";

/// The thumbprints one side trusts. Cloning shares the set: the copy inside a
/// TLS configuration sees every later change, so agents registered (or
/// thumbprints added during a rotation) while the process runs are accepted
/// on the next connection without rebuilding anything.
#[derive(Clone, Default)]
pub struct TrustedThumbprints(Arc<RwLock<HashSet<Thumbprint>>>);

impl TrustedThumbprints {
    pub fn new(thumbprints: impl IntoIterator<Item = Thumbprint>) -> Self {
        Self(Arc::new(RwLock::new(thumbprints.into_iter().collect())))
    }

    /// Returns whether it was not trusted before.
    pub fn insert(&self, thumbprint: Thumbprint) -> bool {
        self.write().insert(thumbprint)
    }

    /// Returns whether it was trusted. Connections already open stay open;
    /// closing them is the caller's business.
    pub fn remove(&self, thumbprint: &Thumbprint) -> bool {
        self.write().remove(thumbprint)
    }

    /// Makes the set exactly `thumbprints`, e.g. after reloading the
    /// registered agents from the database.
    pub fn replace_all(&self, thumbprints: impl IntoIterator<Item = Thumbprint>) {
        *self.write() = thumbprints.into_iter().collect();
    }

    pub fn contains(&self, thumbprint: &Thumbprint) -> bool {
        // A panic while holding the lock cannot leave a set half-changed
        // (each change is one HashSet call), so a poisoned lock is still good.
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(thumbprint)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashSet<Thumbprint>> {
        self.0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for TrustedThumbprints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.0.read().unwrap_or_else(|p| p.into_inner());
        f.debug_set()
            .entries(set.iter().map(|t| t.as_str()))
            .finish()
    }
}

/// Why a handshake failed on this side: the peer's certificate is not pinned.
/// rustls carries it inside its error; [`untrusted_peer`] gets it back out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the peer presented certificate {thumbprint}, which is not trusted")]
pub struct UntrustedPeer {
    pub thumbprint: Thumbprint,
}

/// The untrusted thumbprint behind a failed handshake, if that is why it
/// failed: for logging, or to offer an operator to trust it.
pub fn untrusted_peer<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a UntrustedPeer> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<UntrustedPeer>() {
            return Some(found);
        }
        if let Some(rustls::Error::Other(other)) = e.downcast_ref::<rustls::Error>() {
            if let Some(found) = other.0.downcast_ref::<UntrustedPeer>() {
                return Some(found);
            }
        }
        // io::Error's source() skips the error it wraps; look inside.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            current = Some(inner);
            continue;
        }
        current = e.source();
    }
    None
}

#[derive(Debug, thiserror::Error)]
#[error("could not build the TLS configuration: {0}")]
pub struct ConfigError(#[from] rustls::Error);

/// For the side that opens the TLS connection: presents `identity` and
/// accepts the other side only if its certificate is in `trusted`.
pub fn client_config(
    identity: &Identity,
    trusted: TrustedThumbprints,
) -> Result<Arc<ClientConfig>, ConfigError> {
    let provider = provider();
    let verifier = Arc::new(PinnedServer(Pinned {
        trusted: Some(trusted),
        provider: provider.clone(),
    }));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
            identity.certified_key(),
        )));
    // A resumed session skips certificate checks, so a thumbprint removed
    // from the set would still get in. Connections are long-lived; a full
    // handshake each time costs nothing that matters.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// For the side that accepts TLS connections: presents `identity`, requires
/// a client certificate, and accepts it only if it is in `trusted`.
pub fn server_config(
    identity: &Identity,
    trusted: TrustedThumbprints,
) -> Result<Arc<ServerConfig>, ConfigError> {
    acceptor_config(identity, Some(trusted))
}

/// For the server's polling endpoint: requires a client certificate and
/// checks that the client holds its key, but accepts any thumbprint. The
/// caller must then look the thumbprint up among registered agents (as
/// `polling::PollingHub` does, before it sends a request) and drop the
/// connection of one it does not know: the database, not a copy of it, is
/// the authority, so a registration or a deletion applies at once.
pub fn polling_server_config(identity: &Identity) -> Result<Arc<ServerConfig>, ConfigError> {
    acceptor_config(identity, None)
}

/// As [`polling_server_config`], for a listener that accepts the agents of
/// many installations: `certificates` picks the certificate to present by
/// the name the agent sends (SNI), each installation presenting its own.
pub fn polling_server_config_resolving(
    certificates: Arc<dyn rustls::server::ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, ConfigError> {
    acceptor_config_with(None, certificates)
}

fn acceptor_config(
    identity: &Identity,
    trusted: Option<TrustedThumbprints>,
) -> Result<Arc<ServerConfig>, ConfigError> {
    acceptor_config_with(
        trusted,
        Arc::new(rustls::sign::SingleCertAndKey::from(
            identity.certified_key(),
        )),
    )
}

fn acceptor_config_with(
    trusted: Option<TrustedThumbprints>,
    certificates: Arc<dyn rustls::server::ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, ConfigError> {
    let provider = provider();
    let verifier = Arc::new(PinnedClient(Pinned {
        trusted,
        provider: provider.clone(),
    }));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certificates);
    // No resumption (see client_config): every connection re-checks the
    // client's certificate against the set as it is now.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The name to connect with: [`SERVER_NAME`].
pub fn server_name() -> ServerName<'static> {
    ServerName::DnsName(
        rustls_pki_types::DnsName::try_from(SERVER_NAME)
            .expect("SERVER_NAME is a valid DNS name")
            .to_owned(),
    )
}

/// Presents the certificate of the installation an agent names (SNI); no
/// certificate, so no handshake, for a name that is none of them.
pub(crate) struct ByServerName(pub(crate) crate::polling::Identities);

impl fmt::Debug for ByServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ByServerName")
    }
}

impl rustls::server::ResolvesServerCert for ByServerName {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let identity = (self.0)(hello.server_name()?)?;
        Some(identity.certified_key())
    }
}

/// The name a polling agent sends when it dials `address` (`HOST:PORT`):
/// `explicit` if given, else the host when it is a DNS name (a host of many
/// installations presents the certificate of the one so named), else
/// [`SERVER_NAME`]. Only the thumbprint is checked either way.
pub fn server_name_for(address: &str, explicit: Option<&str>) -> ServerName<'static> {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let candidate = explicit.unwrap_or(host);
    let is_address = candidate.parse::<std::net::IpAddr>().is_ok();
    match rustls_pki_types::DnsName::try_from(candidate.to_owned()) {
        Ok(name) if !is_address && !candidate.is_empty() => ServerName::DnsName(name),
        _ => server_name(),
    }
}

/// What both verifiers share: the pinned set and the algorithms that check
/// handshake signatures.
struct Pinned {
    /// `None` accepts any certificate (signatures are still checked); the
    /// caller then decides by the thumbprint after the handshake.
    trusted: Option<TrustedThumbprints>,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        // Intermediates, names and dates are ignored: the certificate itself
        // is trusted, not whoever issued it.
        let thumbprint = Thumbprint::of(end_entity);
        if self
            .trusted
            .as_ref()
            .is_none_or(|t| t.contains(&thumbprint))
        {
            Ok(())
        } else {
            // Error::Other rather than InvalidCertificate: rustls prints the
            // latter's payload with Debug, and this message is for logs. The
            // cost: the peer is sent handshake_failure, not certificate_unknown.
            Err(rustls::Error::Other(OtherError(Arc::new(UntrustedPeer {
                thumbprint,
            }))))
        }
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Unreachable while only TLS 1.3 is offered; verified properly anyway
        // rather than waved through.
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl fmt::Debug for Pinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pinned")
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct PinnedServer(Pinned);

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}

#[derive(Debug)]
struct PinnedClient(Pinned);

impl ClientCertVerifier for PinnedClient {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No CA to hint at: each certificate is trusted by itself.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(address: &str, explicit: Option<&str>) -> String {
        match server_name_for(address, explicit) {
            ServerName::DnsName(n) => n.as_ref().to_owned(),
            other => panic!("not a DNS name: {other:?}"),
        }
    }

    #[test]
    fn a_polling_agent_names_the_host_it_dials_unless_it_is_an_address() {
        assert_eq!(
            name("acme.cuttle.example:10943", None),
            "acme.cuttle.example"
        );
        assert_eq!(name("127.0.0.1:10943", None), SERVER_NAME);
        assert_eq!(name("[::1]:10943", None), SERVER_NAME);
        assert_eq!(
            name("127.0.0.1:10943", Some("acme.cuttle.example")),
            "acme.cuttle.example"
        );
        // Nothing usable given: the fixed name.
        assert_eq!(name("127.0.0.1:10943", Some("")), SERVER_NAME);
        assert_eq!(name("127.0.0.1:10943", Some("not a name!")), SERVER_NAME);
    }
}
