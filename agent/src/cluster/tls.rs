//! QUIC endpoint configuration: mutual TLS against the cluster CA, in both directions.
//!
//! A peer that cannot present a certificate signed by the cluster CA fails the handshake and
//! never reaches a request handler, so every handler may assume an authenticated peer. Agents
//! also refuse, in both directions, a certificate an admin revoked (see
//! [`crate::trust::revocation`]): rustls' WebPKI verifiers check the chain, and a thin wrapper
//! around each checks the leaf's serial against the replicated revocations.

use std::sync::{Arc, Once};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ClientConfig, ServerConfig, TransportConfig};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};

use crate::cluster::identity::{Credentials, Role};
use crate::trust::revocation::Revoked;

/// Application protocol of the agent API. Bumped on incompatible changes.
pub const ALPN: &[u8] = b"gossipctl/1";

/// How long a connection may be silent before it is dropped. Agents keep no keep-alives on
/// their peer connections: with one connection per peer, keep-alives would make steady traffic
/// grow with the cluster. The timeout is long because in a large cluster gossip visits a given
/// peer only every minute or so, and a new TLS handshake costs kilobytes; a dead or restarted
/// peer's connection is dropped by the membership layer instead. (Failure detection is SWIM's
/// job, not the transport's.)
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// The round trip a connection assumes before it has measured one.
const INITIAL_RTT: Duration = Duration::from_millis(50);
/// Interactive clients keep their one connection open while, say, following a quiet log.
const CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid cluster CA certificate: {0}")]
    Ca(rustls::Error),
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    // Only ring is compiled in; installing it explicitly keeps rustls from guessing.
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn roots(ca: &CertificateDer<'static>) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(TlsError::Ca)?;
    Ok(Arc::new(roots))
}

fn transport(keep_alive: Option<Duration>) -> Arc<TransportConfig> {
    let mut transport = TransportConfig::default();
    transport.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("idle timeout fits")));
    transport.keep_alive_interval(keep_alive);
    // Path MTU discovery probes every new connection with packets up to 1.4 kB, and again every
    // ten minutes; among fifty agents that is most of the steady traffic for the first minute.
    // Membership datagrams are capped to fit QUIC's 1,200-byte floor, and larger messages are
    // streams, which split as they must.
    transport.mtu_discovery_config(None);
    // Before its first round trip a connection assumes QUIC's default 333 ms, so a handshake
    // whose first packet is lost (the peer's socket not yet bound, as when many agents start
    // together) is retried only after about a second. Edge links are mostly far faster; after
    // the first sample the real round trip is used, and on a slow link a too-early retry costs
    // one small packet.
    transport.initial_rtt(INITIAL_RTT);
    Arc::new(transport)
}

fn refuse_revoked(revoked: &Revoked, leaf: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    if revoked.certificate(leaf.as_ref()) {
        return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
    }
    Ok(())
}

/// The cluster CA's client verifier, refusing revoked certificates.
#[derive(Debug)]
struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Revoked,
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        refuse_revoked(&self.revoked, end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The cluster CA's server verifier, refusing revoked certificates.
#[derive(Debug)]
struct ServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    revoked: Revoked,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        refuse_revoked(&self.revoked, end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Server side: a client certificate from the cluster CA, not revoked, is required.
pub fn server_config(creds: &Credentials, revoked: &Revoked) -> Result<ServerConfig, TlsError> {
    install_crypto_provider();
    let inner = WebPkiClientVerifier::builder(roots(&creds.ca)?)
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let verifier = Arc::new(ClientVerifier {
        inner,
        revoked: revoked.clone(),
    });
    let mut tls = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(creds.chain.clone(), creds.key.clone_key())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport(None));
    Ok(config)
}

/// Client side for agents dialling agents: the server must present a certificate from the
/// cluster CA that is not revoked.
pub fn client_config(creds: &Credentials, revoked: &Revoked) -> Result<ClientConfig, TlsError> {
    client_config_with(creds, revoked, None)
}

/// Client side for the CLI: as [`client_config`], with keep-alives. (The CLI holds no
/// revocations; a revoked agent's replicated state is refused by every other agent.)
pub fn interactive_client_config(creds: &Credentials) -> Result<ClientConfig, TlsError> {
    client_config_with(creds, &Revoked::default(), Some(CLIENT_KEEP_ALIVE))
}

fn client_config_with(
    creds: &Credentials,
    revoked: &Revoked,
    keep_alive: Option<Duration>,
) -> Result<ClientConfig, TlsError> {
    install_crypto_provider();
    let inner = WebPkiServerVerifier::builder(roots(&creds.ca)?)
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let verifier = Arc::new(ServerVerifier {
        inner,
        revoked: revoked.clone(),
    });
    let mut tls = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(creds.chain.clone(), creds.key.clone_key())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport(keep_alive));
    Ok(config)
}

/// The verified role of the peer on an established connection.
pub fn peer_role(connection: &quinn::Connection) -> Option<Role> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    Role::from_certificate(chain.first()?)
}
