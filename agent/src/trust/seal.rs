//! A seal: a signature over a statement, with the certificate of whoever made it.
//!
//! Signing uses the private key that already backs the signer's TLS identity (rustls' ring
//! provider picks the scheme for the key type), so no new key material exists. Verifying a
//! seal checks, with no network and no clock other than the caller's:
//!
//! 1. the certificate was issued by the cluster CA (its signature, via x509-parser);
//! 2. it is within its validity period at `now`;
//! 3. the signature over the statement verifies with the certificate's public key (ring).
//!
//! Only then is the certificate's role (admin or node, and its name) read and returned, so a
//! caller decides what that signer may write ([`crate::trust::statement`]).

use rustls::SignatureScheme;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::cluster::identity::{Credentials, Role};
use crate::trust::batch::{self, Proof};

/// A statement's signature and the signer's certificate (DER). With a `proof`, the signature
/// covers the root of a batch of statements ([`crate::trust::batch`]) and the proof leads from
/// this statement to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    pub certificate: Vec<u8>,
    /// The TLS signature scheme's code (`rustls::SignatureScheme`).
    pub scheme: u16,
    pub signature: Vec<u8>,
    /// Last, and left out when absent, so a seal without one encodes exactly as seals did
    /// before batches (see [`Seal::decode`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
}

/// A seal as written before batches existed.
#[derive(Deserialize)]
struct SingleSeal {
    certificate: Vec<u8>,
    scheme: u16,
    signature: Vec<u8>,
}

impl Seal {
    /// Reads a seal as entries carry it (postcard). postcard is not self-describing, so a seal
    /// without a proof (every seal before batches) is read as the shorter form.
    pub fn decode(bytes: &[u8]) -> Option<Seal> {
        if let Ok(seal) = postcard::from_bytes::<Seal>(bytes) {
            return Some(seal);
        }
        let single: SingleSeal = postcard::from_bytes(bytes).ok()?;
        Some(Seal {
            certificate: single.certificate,
            scheme: single.scheme,
            signature: single.signature,
            proof: None,
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the signer's certificate cannot be parsed")]
    Certificate,
    #[error("the signer's certificate was not issued by this cluster's CA")]
    NotIssuedByCluster,
    #[error("the signer's certificate is not valid at this time")]
    Expired,
    #[error("signature scheme {0:#06x} is not accepted")]
    Scheme(u16),
    #[error("the signature does not match the statement")]
    BadSignature,
    #[error("the signer's certificate names no role")]
    NoRole,
    #[error("this key cannot sign: {0}")]
    Key(String),
}

/// Schemes a seal may use: what rcgen issues (ECDSA P-256) and Ed25519.
const SCHEMES: [SignatureScheme; 2] = [
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ED25519,
];

/// Signs statements as the holder of a set of credentials.
pub struct Sealer {
    certificate: Vec<u8>,
    key: std::sync::Arc<dyn rustls::sign::SigningKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

impl Sealer {
    pub fn new(credentials: &Credentials) -> Result<Self, SealError> {
        let certificate = credentials
            .chain
            .first()
            .ok_or(SealError::Certificate)?
            .as_ref()
            .to_vec();
        Self::from_parts(certificate, &credentials.key)
    }

    pub fn from_parts(certificate: Vec<u8>, key: &PrivateKeyDer<'_>) -> Result<Self, SealError> {
        let key = rustls::crypto::ring::sign::any_supported_type(key)
            .map_err(|e| SealError::Key(e.to_string()))?;
        Ok(Sealer { certificate, key })
    }

    /// The signer's name, as its certificate states it ("" when unreadable).
    pub fn name(&self) -> String {
        Role::from_certificate(&CertificateDer::from(self.certificate.as_slice()))
            .map(|role| role.name().to_string())
            .unwrap_or_default()
    }

    /// Seals `statement`.
    pub fn seal(&self, statement: &[u8]) -> Result<Seal, SealError> {
        let signer = self
            .key
            .choose_scheme(&SCHEMES)
            .ok_or_else(|| SealError::Key("no accepted signature scheme for this key".into()))?;
        let signature = signer
            .sign(statement)
            .map_err(|e| SealError::Key(e.to_string()))?;
        Ok(Seal {
            certificate: self.certificate.clone(),
            scheme: u16::from(signer.scheme()),
            signature,
            proof: None,
        })
    }

    /// Seals `statements` with one signature: a single statement as [`Sealer::seal`] does,
    /// several over their Merkle root, each seal carrying its statement's proof.
    pub fn seal_batch(&self, statements: &[Vec<u8>]) -> Result<Vec<Seal>, SealError> {
        match statements {
            [] => Ok(Vec::new()),
            [one] => Ok(vec![self.seal(one)?]),
            many => {
                let (root, proofs) = batch::tree(many);
                let root_seal = self.seal(&batch::message(&root))?;
                Ok(proofs
                    .into_iter()
                    .map(|proof| Seal {
                        proof: Some(proof),
                        ..root_seal.clone()
                    })
                    .collect())
            }
        }
    }
}

/// A certificate the cluster CA issued, reduced to what checking its seals needs. Checking the
/// chain is half the cost of a seal; [`crate::trust::authority::Authority`] keeps these per
/// certificate, so each signer's chain is checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub role: Role,
    /// Validity, in Unix seconds, both ends included.
    not_before: i64,
    not_after: i64,
    public_key: Vec<u8>,
}

/// Checks that `certificate` (DER) was issued by the cluster CA `ca` and names a role.
pub fn certified(ca: &CertificateDer<'_>, certificate: &[u8]) -> Result<Signer, SealError> {
    let (_, root) =
        x509_parser::parse_x509_certificate(ca.as_ref()).map_err(|_| SealError::Certificate)?;
    let (_, leaf) =
        x509_parser::parse_x509_certificate(certificate).map_err(|_| SealError::Certificate)?;
    leaf.verify_signature(Some(root.public_key()))
        .map_err(|_| SealError::NotIssuedByCluster)?;
    let role =
        Role::from_certificate(&CertificateDer::from(certificate)).ok_or(SealError::NoRole)?;
    let validity = leaf.validity();
    Ok(Signer {
        role,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        public_key: leaf.public_key().subject_public_key.data.to_vec(),
    })
}

impl Signer {
    /// Whether the certificate is valid at `now_unix`.
    pub fn valid_at(&self, now_unix: i64) -> bool {
        (self.not_before..=self.not_after).contains(&now_unix)
    }

    /// Checks `seal` (made with this signer's certificate) over `statement` at `now_unix`.
    pub fn check(&self, seal: &Seal, statement: &[u8], now_unix: i64) -> Result<&Role, SealError> {
        if !self.valid_at(now_unix) {
            return Err(SealError::Expired);
        }
        let algorithm: &dyn ring::signature::VerificationAlgorithm =
            match SignatureScheme::from(seal.scheme) {
                SignatureScheme::ECDSA_NISTP256_SHA256 => &ring::signature::ECDSA_P256_SHA256_ASN1,
                SignatureScheme::ED25519 => &ring::signature::ED25519,
                _ => return Err(SealError::Scheme(seal.scheme)),
            };
        ring::signature::UnparsedPublicKey::new(algorithm, &self.public_key)
            .verify(statement, &seal.signature)
            .map_err(|_| SealError::BadSignature)?;
        Ok(&self.role)
    }
}

/// Checks `seal` over `statement` against the cluster CA at `now_unix` (seconds) and returns
/// the signer's role.
pub fn verify(
    ca: &CertificateDer<'_>,
    seal: &Seal,
    statement: &[u8],
    now_unix: i64,
) -> Result<Role, SealError> {
    let signer = certified(ca, &seal.certificate)?;
    match &seal.proof {
        None => signer.check(seal, statement, now_unix).cloned(),
        Some(proof) => {
            let root = proof.root(statement).ok_or(SealError::BadSignature)?;
            signer
                .check(seal, &batch::message(&root), now_unix)
                .cloned()
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::cluster::identity::{ADMIN_CERT_FILE, ADMIN_KEY_FILE, CA_CERT_FILE, ClusterCa};

    /// A cluster CA in `dir` with an admin and a node `node-1`; returns (admin, node).
    pub(crate) fn cluster(dir: &Path) -> (Credentials, Credentials) {
        let ca = ClusterCa::create(dir, "test").expect("CA");
        ca.issue_admin(dir).expect("admin");
        ca.issue_node("node-1", &dir.join("n1")).expect("node");
        let admin = Credentials::load(
            &dir.join(CA_CERT_FILE),
            &dir.join(ADMIN_CERT_FILE),
            &dir.join(ADMIN_KEY_FILE),
        )
        .expect("admin credentials");
        let node = Credentials::load_node(&dir.join("n1")).expect("node credentials");
        (admin, node)
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64
    }

    #[test]
    fn a_sealed_statement_verifies_and_names_its_signer() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, node) = cluster(dir.path());
        let seal = Sealer::new(&admin).unwrap().seal(b"deploy web").unwrap();
        assert!(matches!(
            verify(&admin.ca, &seal, b"deploy web", now()),
            Ok(Role::Admin { .. })
        ));
        let seal = Sealer::new(&node).unwrap().seal(b"status").unwrap();
        assert_eq!(
            verify(&node.ca, &seal, b"status", now()),
            Ok(Role::Node {
                name: "node-1".into()
            })
        );
    }

    #[test]
    fn a_seal_over_another_statement_or_from_another_cluster_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, _) = cluster(dir.path());
        let other = tempfile::tempdir().unwrap();
        let (stranger, _) = cluster(other.path());
        let seal = Sealer::new(&admin).unwrap().seal(b"deploy web").unwrap();
        assert_eq!(
            verify(&admin.ca, &seal, b"deploy evil", now()),
            Err(SealError::BadSignature)
        );
        let foreign = Sealer::new(&stranger).unwrap().seal(b"deploy web").unwrap();
        assert_eq!(
            verify(&admin.ca, &foreign, b"deploy web", now()),
            Err(SealError::NotIssuedByCluster)
        );
        // Someone else's certificate on our signature: the key does not match.
        let borrowed = Seal {
            certificate: foreign.certificate.clone(),
            ..seal.clone()
        };
        assert_eq!(
            verify(&stranger.ca, &borrowed, b"deploy web", now()),
            Err(SealError::BadSignature)
        );
        // Outside the certificate's validity (issued certificates do not yet expire; before
        // their start is outside too).
        assert_eq!(
            verify(&admin.ca, &seal, b"deploy web", 0),
            Err(SealError::Expired)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Flipping any bit of the statement or of the signature breaks the seal.
        #[test]
        fn any_flipped_bit_breaks_the_seal(at in any::<prop::sample::Index>(), bit in 0u8..8, in_signature in any::<bool>()) {
            let dir = tempfile::tempdir().unwrap();
            let (admin, _) = cluster(dir.path());
            let statement = b"apps/web generation 3".to_vec();
            let seal = Sealer::new(&admin).unwrap().seal(&statement).unwrap();
            let (mut statement, mut seal) = (statement, seal);
            if in_signature {
                let i = at.index(seal.signature.len());
                seal.signature[i] ^= 1 << bit;
            } else {
                let i = at.index(statement.len());
                statement[i] ^= 1 << bit;
            }
            prop_assert!(verify(&admin.ca, &seal, &statement, now()).is_err());
        }
    }
}
