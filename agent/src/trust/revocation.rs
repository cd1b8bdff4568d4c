//! Revoked certificates: an admin's word that a certificate no longer speaks for its holder.
//!
//! A revocation is a replicated entry like an application: keyed by the certificate's serial
//! number (lowercase hex), sealed by an admin, never deleted. Once an agent holds one it
//!
//! - refuses TLS handshakes from and to that certificate (see [`crate::cluster::tls`]) and
//!   closes the connections it already has with it;
//! - refuses every seal made with it, whoever relays the entry, and drops the node record it
//!   sealed, so the node is no longer listed as a member and its replicas are placed elsewhere
//!   as for a dead node;
//! - marks the member it identified down.
//!
//! A revoked node gets back in only with a new certificate (`gossipctl cluster add-node NAME`
//! issues one with a fresh serial). Revocations are add-only: a mistaken one is repaired the
//! same way.
//!
//! Revoking an admin certificate does not by itself void the applications that admin deployed
//! before: the revocation lists the application writes it keeps ([`Revocation::keep`], each
//! by name and version, as the revoking admin's agent held them), and every other write sealed
//! with the revoked certificate is refused, so whoever holds the revoked key cannot add a write
//! later, even one with an earlier version. With `--invalidate` the list is empty: the
//! applications whose current version that admin wrote are dropped everywhere, and must be
//! deployed again by an admin in good standing.
//!
//! Pure, apart from [`Revoked`], the shared set the TLS verifiers and the replica consult.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use orchestrator::state::Timestamp;
use serde::{Deserialize, Serialize};

/// The value of a revocation entry; its key is the certificate's serial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The certificate holder's name (its subject CN), for display.
    pub name: String,
    /// When the admin revoked it, milliseconds since the Unix epoch.
    pub revoked_at_ms: u64,
    /// Application writes sealed with this certificate that stay valid (an admin certificate
    /// revoked without `--invalidate`): `(application, version)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep: Vec<(String, Timestamp)>,
}

/// A certificate's serial number as revocations key it: lowercase hex of its bytes.
pub fn serial_of(der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(hex(certificate.raw_serial()))
}

/// The serial of the PEM certificate in `path`.
pub fn serial_of_pem_file(path: &std::path::Path) -> Result<String, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der =
        CertificateDer::from_pem_file(path).map_err(|e| format!("not a PEM certificate: {e}"))?;
    serial_of(der.as_ref()).ok_or_else(|| "not an X.509 certificate".to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `serial` is written as revocations key serials.
pub fn is_serial(serial: &str) -> bool {
    !serial.is_empty()
        && serial.len() <= 64
        && serial.len().is_multiple_of(2)
        && serial
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The serials revoked so far and their holders' names, shared by the replica (which fills
/// it) and the TLS verifiers and connection handlers (which consult it, and wait on
/// [`Revoked::subscribe`] to close connections made before a revocation).
#[derive(Debug, Clone)]
pub struct Revoked {
    serials: Arc<RwLock<BTreeMap<String, Revocation>>>,
    changes: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Default for Revoked {
    fn default() -> Self {
        Revoked {
            serials: Arc::default(),
            changes: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

impl Revoked {
    /// Changes whenever a serial is added.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<usize> {
        self.changes.subscribe()
    }

    pub fn contains(&self, serial: &str) -> bool {
        self.read().contains_key(serial)
    }

    /// Whether the certificate `der` is revoked (an unparseable one counts as revoked).
    pub fn certificate(&self, der: &[u8]) -> bool {
        serial_of(der).is_none_or(|serial| self.contains(&serial))
    }

    /// Whether the write of application `app` at `version`, sealed with the revoked
    /// certificate `serial`, is one its revocation keeps.
    pub fn keeps(&self, serial: &str, app: &str, version: &Timestamp) -> bool {
        self.read().get(serial).is_some_and(|revocation| {
            revocation
                .keep
                .iter()
                .any(|(name, kept)| name == app && kept == version)
        })
    }

    /// Adds a revocation; returns whether it was new.
    pub fn insert(&self, serial: &str, revocation: &Revocation) -> bool {
        let new = self
            .serials
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(serial.to_string(), revocation.clone())
            .is_none();
        if new {
            self.changes.send_modify(|count| *count += 1);
        }
        new
    }

    /// Every revoked serial with its holder's name.
    pub fn all(&self) -> BTreeMap<String, String> {
        self.read()
            .iter()
            .map(|(serial, revocation)| (serial.clone(), revocation.name.clone()))
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Revocation>> {
        self.serials.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::seal::tests::cluster;

    #[test]
    fn serials_are_lowercase_hex_and_differ_between_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, node) = cluster(dir.path());
        let a = serial_of(admin.chain[0].as_ref()).unwrap();
        let n = serial_of(node.chain[0].as_ref()).unwrap();
        assert!(is_serial(&a) && is_serial(&n), "{a} {n}");
        assert_ne!(a, n);
        assert!(!is_serial("AB"));
        assert!(!is_serial("abc"));
        assert!(!is_serial(""));
    }

    #[test]
    fn a_revoked_set_is_shared_and_add_only() {
        let dir = tempfile::tempdir().unwrap();
        let (_, node) = cluster(dir.path());
        let der = node.chain[0].as_ref();
        let revoked = Revoked::default();
        let seen_by_tls = revoked.clone();
        let mut changes = revoked.subscribe();
        assert!(!seen_by_tls.certificate(der));
        let revocation = Revocation {
            name: "node-1".into(),
            revoked_at_ms: 1,
            keep: Vec::new(),
        };
        assert!(revoked.insert(&serial_of(der).unwrap(), &revocation));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert!(!revoked.insert(&serial_of(der).unwrap(), &revocation));
        assert!(!changes.has_changed().unwrap(), "nothing new, no wake-up");
        assert!(seen_by_tls.certificate(der));
        assert!(seen_by_tls.certificate(b"not a certificate"));
        assert_eq!(revoked.all().values().collect::<Vec<_>>(), vec!["node-1"]);
    }
}
