//! The check every replicated write passes before an agent accepts it, on every path: an
//! admin's commit, a rumour, an anti-entropy reply, the agent's own store at start-up.
//!
//! Applications must carry an admin's seal over exactly their key, version and content (or
//! deletion); node records and workload status (keyed `...@NODE`) their own node's, so a node
//! can lie about itself but cannot speak for another.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use orchestrator::state::Entry;
use rustls::pki_types::CertificateDer;
use serde::Serialize;

use crate::cluster::identity::Role;
use crate::trust::batch::{self, Hash};
use crate::trust::revocation::{Revoked, serial_of};
use crate::trust::seal::{Seal, SealError, Signer, certified};
use crate::trust::statement::{Map, Refusal, authorize, statement};

/// Why a write was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejected {
    #[error("it carries no seal")]
    Unsealed,
    #[error("its seal cannot be decoded")]
    Malformed,
    #[error("{0}")]
    Seal(#[from] SealError),
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("it is sealed with a revoked certificate (serial {0})")]
    Revoked(String),
}

/// How many signers' certificates an authority remembers as checked (a cluster's nodes and
/// admins); past that it forgets them all and checks again.
const SIGNERS_KEPT: usize = 4096;
/// How many batch signatures it remembers as checked (a batch is one reconcile pass of one
/// node); past that it forgets them all.
const BATCHES_KEPT: usize = 65_536;

/// The cluster CA that seals are checked against, and the certificates it no longer backs.
#[derive(Debug, Clone)]
pub struct Authority {
    ca: CertificateDer<'static>,
    revoked: Revoked,
    /// Certificates (DER) whose chain to `ca` was checked, shared by clones: the chain is half
    /// of a seal's cost, and a cluster has few signers.
    signers: Arc<Mutex<HashMap<Vec<u8>, Signer>>>,
    /// Batch signatures already checked: a hash of root, signature and certificate. The
    /// other entries of a checked batch then cost their proofs' hashes only.
    batches: Arc<Mutex<HashSet<Hash>>>,
}

impl Authority {
    pub fn new(ca: CertificateDer<'static>) -> Self {
        Authority {
            ca,
            revoked: Revoked::default(),
            signers: Arc::default(),
            batches: Arc::default(),
        }
    }

    /// Checks the signature over a batch's `root`, once per batch.
    fn check_batch(
        &self,
        signer: &Signer,
        seal: &Seal,
        root: &Hash,
        now: i64,
    ) -> Result<Role, SealError> {
        let id = batch::leaf(&[&root[..], &seal.signature, &seal.certificate].concat());
        if self.batches.lock().expect("batches lock").contains(&id) {
            return if signer.valid_at(now) {
                Ok(signer.role.clone())
            } else {
                Err(SealError::Expired)
            };
        }
        let role = signer.check(seal, &batch::message(root), now)?.clone();
        let mut batches = self.batches.lock().expect("batches lock");
        if batches.len() >= BATCHES_KEPT {
            batches.clear();
        }
        batches.insert(id);
        Ok(role)
    }

    /// `certificate`'s signer, its chain to the CA checked once.
    fn signer(&self, certificate: &[u8]) -> Result<Signer, SealError> {
        if let Some(signer) = self.signers.lock().expect("signers lock").get(certificate) {
            return Ok(signer.clone());
        }
        let signer = certified(&self.ca, certificate)?;
        let mut signers = self.signers.lock().expect("signers lock");
        if signers.len() >= SIGNERS_KEPT {
            signers.clear();
        }
        signers.insert(certificate.to_vec(), signer.clone());
        Ok(signer)
    }

    /// The revoked certificates this authority refuses (shared: add to it, and every holder
    /// of a clone sees it).
    pub fn revoked(&self) -> &Revoked {
        &self.revoked
    }

    /// Whether `entry`, a write of `key` in `map` this replica holds, was sealed with a
    /// certificate revoked since, and is not one its revocation keeps.
    pub fn void<V>(&self, map: Map, key: &str, entry: &Entry<V>) -> bool {
        Self::sealed_with(entry).is_some_and(|serial| {
            self.revoked.contains(&serial)
                && !(map == Map::Apps && self.revoked.keeps(&serial, key, &entry.version))
        })
    }

    /// The serial of the certificate that sealed `entry`, if it carries a readable seal.
    pub fn sealed_with<V>(entry: &Entry<V>) -> Option<String> {
        serial_of(&Self::certificate_of(entry)?)
    }

    /// The certificate (DER) that sealed `entry`, if it carries a readable seal.
    pub fn certificate_of<V>(entry: &Entry<V>) -> Option<Vec<u8>> {
        let seal = Seal::decode(entry.seal.as_deref()?)?;
        Some(seal.certificate)
    }

    /// Whether `entry`, a write of `key` in `map`, carries a seal by someone who may write it;
    /// returns the author. `wall_ms` is now, for the certificate's validity.
    pub fn check<V: Serialize>(
        &self,
        map: Map,
        key: &str,
        entry: &Entry<V>,
        wall_ms: u64,
    ) -> Result<Role, Rejected> {
        let bytes = entry.seal.as_deref().ok_or(Rejected::Unsealed)?;
        let seal = Seal::decode(bytes).ok_or(Rejected::Malformed)?;
        let signed = statement(map, key, &entry.version, entry.value.as_ref())?;
        let now = i64::try_from(wall_ms / 1000).unwrap_or(i64::MAX);
        let signer = self.signer(&seal.certificate)?;
        let author = match &seal.proof {
            None => signer.check(&seal, &signed, now)?.clone(),
            Some(proof) => {
                let root = proof.root(&signed).ok_or(SealError::BadSignature)?;
                self.check_batch(&signer, &seal, &root, now)?
            }
        };
        let serial = serial_of(&seal.certificate).ok_or(Rejected::Malformed)?;
        if self.revoked.contains(&serial)
            && !(map == Map::Apps && self.revoked.keeps(&serial, key, &entry.version))
        {
            return Err(Rejected::Revoked(serial));
        }
        authorize(&author, map, key)?;
        Ok(author)
    }
}

/// A seal as entries carry it (postcard; a seal is a certificate, a signature and perhaps a
/// batch proof, well under the buffer).
pub fn encode(seal: &Seal) -> Vec<u8> {
    let mut buffer = [0u8; 16 * 1024];
    // Copied out at its length: the entry keeps these bytes for as long as it lives, and a
    // truncated 16 KiB buffer would keep its whole capacity (16 MiB per thousand entries).
    postcard::to_slice(seal, &mut buffer)
        .expect("a seal fits 16 KiB")
        .to_vec()
}

#[cfg(test)]
mod tests {
    use orchestrator::state::Timestamp;

    use super::*;
    use crate::trust::seal::Sealer;
    use crate::trust::seal::tests::cluster;

    fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    fn version(wall_ms: u64) -> Timestamp {
        Timestamp {
            wall_ms,
            logical: 0,
            node: "node-1".into(),
        }
    }

    fn sealed(sealer: &Sealer, key: &str, entry: Entry<String>) -> Entry<String> {
        let signed = statement(Map::Apps, key, &entry.version, entry.value.as_ref()).unwrap();
        let seal = encode(&sealer.seal(&signed).unwrap());
        entry.sealed(seal)
    }

    #[test]
    fn only_an_admin_sealed_application_write_passes() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, node) = cluster(dir.path());
        let authority = Authority::new(admin.ca.clone());
        let by_admin = Sealer::new(&admin).unwrap();
        let by_node = Sealer::new(&node).unwrap();
        let now = now_ms();

        let deploy = sealed(
            &by_admin,
            "web",
            Entry::live("v1".to_string(), version(now)),
        );
        assert!(matches!(
            authority.check(Map::Apps, "web", &deploy, now),
            Ok(Role::Admin { .. })
        ));
        let delete = sealed(&by_admin, "web", Entry::tombstone(version(now + 1)));
        assert!(authority.check(Map::Apps, "web", &delete, now).is_ok());

        // A node's own seal, a missing one, an altered value, a moved key or version.
        let forged = sealed(
            &by_node,
            "web",
            Entry::live("evil".to_string(), version(now)),
        );
        assert!(matches!(
            authority.check(Map::Apps, "web", &forged, now),
            Err(Rejected::Refused(Refusal::NotAdmin(_)))
        ));
        let unsealed = Entry::live("v1".to_string(), version(now));
        assert_eq!(
            authority.check(Map::Apps, "web", &unsealed, now),
            Err(Rejected::Unsealed)
        );
        let mut altered = deploy.clone();
        altered.value = Some("evil".into());
        assert_eq!(
            authority.check(Map::Apps, "web", &altered, now),
            Err(Rejected::Seal(SealError::BadSignature))
        );
        assert!(authority.check(Map::Apps, "api", &deploy, now).is_err());
        let mut lifted = deploy.clone();
        lifted.version = version(now + 10_000);
        assert!(authority.check(Map::Apps, "web", &lifted, now).is_err());
        let mut garbled = deploy;
        garbled.seal = Some(vec![1, 2, 3]);
        assert_eq!(
            authority.check(Map::Apps, "web", &garbled, now),
            Err(Rejected::Malformed)
        );
    }
}
