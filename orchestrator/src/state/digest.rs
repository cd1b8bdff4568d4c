//! Anti-entropy for [`LwwMap`]: a cheap fingerprint to notice that two replicas differ, and a
//! digest of versions to find out where.
//!
//! Push-on-change gossip can lose messages; a periodic exchange repairs that. Comparing one
//! `u64` first keeps a converged cluster's rounds to a few bytes; only on a mismatch do peers
//! swap digests (key and version, no values), and only the entries one side lacks travel:
//!
//! 1. A sends `a.digest()`.
//! 2. B answers with `b.newer_than(&digest)` and `b.wanted_from(&digest)`.
//! 3. A merges the entries and sends back `a.entries_for(&wanted)`, which B merges.
//!
//! Only versions are compared, so two entries with one version but different values (a clock
//! issuing a timestamp twice, which `Clock` never does) look converged here; `merge_entry`'s
//! tie-break settles them wherever both meet through an ordinary push instead.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use super::hlc::Timestamp;
use super::lww::{Entry, LwwMap};

/// Every key a replica holds with the version it holds it at, tombstones included: the
/// tombstones matter as much as the values, or a peer would resend deleted keys forever.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Digest(pub BTreeMap<String, Timestamp>);

impl Digest {
    /// The fingerprint of the map this digest was taken from, so a receiver can check that
    /// it holds what it asked about without recomputing anything from values.
    pub fn fingerprint(&self) -> u64 {
        fingerprint_of(self.0.iter())
    }
}

impl<V> LwwMap<V> {
    pub fn digest(&self) -> Digest {
        Digest(
            self.entries()
                .map(|(key, entry)| (key.clone(), entry.version.clone()))
                .collect(),
        )
    }

    /// Keys the digest's owner holds at a newer version than we do, or that we lack entirely:
    /// what to ask that peer for.
    pub fn wanted_from(&self, digest: &Digest) -> Vec<String> {
        digest
            .0
            .iter()
            .filter(|(key, theirs)| self.entry(key).is_none_or(|ours| ours.version < **theirs))
            .map(|(key, _)| key.clone())
            .collect()
    }
}

impl<V: Clone> LwwMap<V> {
    /// Entries the digest's owner lacks or holds at an older version: what to send that peer.
    pub fn newer_than(&self, digest: &Digest) -> Vec<(String, Entry<V>)> {
        self.entries()
            .filter(|(key, ours)| {
                digest
                    .0
                    .get(key.as_str())
                    .is_none_or(|theirs| *theirs < ours.version)
            })
            .map(|(key, entry)| (key.clone(), entry.clone()))
            .collect()
    }

    /// The stored entries for the keys a peer asked for. Keys no longer held (a tombstone
    /// expired in between) are skipped; the next round will sort them out.
    pub fn entries_for(&self, keys: &[String]) -> Vec<(String, Entry<V>)> {
        keys.iter()
            .filter_map(|key| Some((key.clone(), self.entry(key)?.clone())))
            .collect()
    }
}

/// The fingerprint of a map or digest: the wrapping sum of one hash per `(key, version)`.
/// Equal fingerprints mean (up to a 2^-64 chance of collision) the same versions, hence the
/// same entries as long as no writer issued one timestamp twice. Values are left out: they are
/// determined by their versions. A sum, unlike a hash over the entries in key order, can be
/// kept current as entries change (add the new entry's hash, subtract the old one's), which is
/// what [`LwwMap`] does: an anti-entropy round between two converged agents costs O(1), not
/// O(state).
fn fingerprint_of<'a>(versions: impl Iterator<Item = (&'a String, &'a Timestamp)>) -> u64 {
    versions
        .map(|(key, version)| entry_hash(key, version))
        .fold(0, u64::wrapping_add)
}

/// One entry's share of a fingerprint. The encoding is explicit little-endian with length
/// prefixes, so the result is stable across platforms and no two different entries feed the
/// hasher the same bytes.
pub(crate) fn entry_hash(key: &str, version: &Timestamp) -> u64 {
    let mut hasher = Xxh3::new();
    write_text(&mut hasher, key);
    hasher.update(&version.wall_ms.to_le_bytes());
    hasher.update(&version.logical.to_le_bytes());
    write_text(&mut hasher, &version.node);
    hasher.digest()
}

/// Length-prefixed, so that no key and node name can run into each other.
fn write_text(hasher: &mut Xxh3, text: &str) {
    hasher.update(&(text.len() as u64).to_le_bytes());
    hasher.update(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(wall_ms: u64, node: &str) -> Timestamp {
        Timestamp {
            wall_ms,
            logical: 0,
            node: node.to_owned(),
        }
    }

    fn sample() -> LwwMap<u32> {
        let mut map = LwwMap::new();
        map.put("same", 1, at(10, "a"));
        map.put("ours-newer", 2, at(30, "a"));
        map.put("theirs-newer", 3, at(10, "a"));
        map.put("only-ours", 4, at(10, "a"));
        map.delete("deleted-here", at(40, "a"));
        map
    }

    fn their_digest() -> Digest {
        Digest(BTreeMap::from([
            ("same".to_owned(), at(10, "a")),
            ("ours-newer".to_owned(), at(20, "b")),
            ("theirs-newer".to_owned(), at(20, "b")),
            ("only-theirs".to_owned(), at(5, "b")),
            ("deleted-here".to_owned(), at(35, "b")),
        ]))
    }

    #[test]
    fn newer_than_sends_what_the_peer_lacks_or_holds_older() {
        let keys: Vec<String> = sample()
            .newer_than(&their_digest())
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(keys, ["deleted-here", "only-ours", "ours-newer"]);
    }

    #[test]
    fn wanted_from_asks_for_what_we_lack_or_hold_older() {
        assert_eq!(
            sample().wanted_from(&their_digest()),
            ["only-theirs", "theirs-newer"]
        );
    }

    #[test]
    fn digest_lists_every_version_including_tombstones() {
        let digest = sample().digest();
        assert_eq!(digest.0.len(), 5);
        assert_eq!(digest.0.get("deleted-here"), Some(&at(40, "a")));
        assert_eq!(digest.fingerprint(), sample().fingerprint());
    }

    #[test]
    fn fingerprint_changes_with_any_version_and_ignores_write_order() {
        let base = sample().fingerprint();
        let mut newer = sample();
        newer.put("same", 1, at(11, "a"));
        assert_ne!(newer.fingerprint(), base);
        let mut deleted = sample();
        deleted.delete("same", at(12, "a"));
        assert_ne!(deleted.fingerprint(), newer.fingerprint());
        let mut reordered = LwwMap::new();
        for (key, entry) in sample().entries().collect::<Vec<_>>().into_iter().rev() {
            reordered.merge_entry(key.clone(), entry.clone());
        }
        assert_eq!(reordered.fingerprint(), base);
    }

    /// The kept fingerprint follows every kind of change, and a map read back from JSON
    /// (sled, the wire) has the same one.
    #[test]
    fn the_kept_fingerprint_follows_changes_expiry_and_serialisation() {
        let mut map = sample();
        map.put("same", 9, at(50, "b"));
        map.merge(&sample());
        assert_eq!(map.fingerprint(), map.digest().fingerprint());
        assert_eq!(map.expire_tombstones(45), 1);
        assert_eq!(map.fingerprint(), map.digest().fingerprint());
        let read: LwwMap<u32> = serde_json::from_slice(&serde_json::to_vec(&map).unwrap()).unwrap();
        assert_eq!(read.fingerprint(), map.fingerprint());
        assert_eq!(read, map);
    }

    #[test]
    fn fingerprint_separates_keys_from_node_names() {
        let mut left = LwwMap::new();
        left.put("ab", 1, at(1, "c"));
        let mut right = LwwMap::new();
        right.put("a", 1, at(1, "bc"));
        assert_ne!(left.fingerprint(), right.fingerprint());
        assert_ne!(LwwMap::<u32>::new().fingerprint(), left.fingerprint());
    }

    #[test]
    fn entries_for_skips_keys_no_longer_held() {
        let keys = ["same".to_owned(), "gone".to_owned()];
        let entries = sample().entries_for(&keys);
        assert_eq!(entries, [("same".to_owned(), Entry::live(1, at(10, "a")))]);
    }

    #[test]
    fn digest_serializes_as_a_plain_object() {
        let digest = Digest(BTreeMap::from([("k".to_owned(), at(3, "a"))]));
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, r#"{"k":{"wall_ms":3,"logical":0,"node":"a"}}"#);
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);
    }
}
