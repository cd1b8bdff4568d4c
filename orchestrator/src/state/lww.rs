//! A last-writer-wins map: every key holds the entry with the highest version ever written for
//! it, deletions included.
//!
//! Keeping the highest version per key is a join-semilattice, so merges commute, associate and
//! are idempotent, and replicas converge however gossip reorders or repeats messages.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry as Slot;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::digest::entry_hash;
use super::hlc::Timestamp;

/// One key's state: the value written at `version`, or `None` when that write was a delete.
///
/// Deletes are kept as tombstones rather than removing the key, because a replica that has not
/// yet seen the delete would otherwise gossip its older value back and resurrect the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry<V> {
    pub version: Timestamp,
    pub value: Option<V>,
    /// Who wrote this entry, as proof its readers check (the agent's `trust` seals): opaque
    /// here, travels and persists with the entry, and plays no part in which entry wins.
    /// Written as base64 text (a JSON array of numbers, which earlier versions wrote and
    /// which is still read, is about three times as long).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "seal_text")]
    pub seal: Option<Vec<u8>>,
}

/// Serde for [`Entry::seal`]: base64 (standard alphabet, padded) out; base64 or an array of
/// bytes in.
mod seal_text {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(seal: &Option<Vec<u8>>, out: S) -> Result<S::Ok, S::Error> {
        match seal {
            Some(bytes) => out.serialize_some(&STANDARD.encode(bytes)),
            None => out.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Bytes(Vec<u8>),
        }
        match Option::<Form>::deserialize(input)? {
            None => Ok(None),
            Some(Form::Bytes(bytes)) => Ok(Some(bytes)),
            Some(Form::Text(text)) => STANDARD
                .decode(text)
                .map(Some)
                .map_err(|e| D::Error::custom(format!("a seal is not base64: {e}"))),
        }
    }
}

impl<V> Entry<V> {
    pub fn live(value: V, version: Timestamp) -> Self {
        Self {
            version,
            value: Some(value),
            seal: None,
        }
    }

    pub fn tombstone(version: Timestamp) -> Self {
        Self {
            version,
            value: None,
            seal: None,
        }
    }

    pub fn sealed(mut self, seal: Vec<u8>) -> Self {
        self.seal = Some(seal);
        self
    }

    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// Replicated map from names to versioned values. Serializes as a plain JSON object of
/// entries, so the on-disk and on-wire forms are the same.
///
/// Keeps its [`LwwMap::fingerprint`] up to date on every change (a sum of per-entry hashes,
/// see [`super::digest`]), so comparing two replicas costs O(1) however large they grow.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "BTreeMap<String, Entry<V>>")]
#[serde(bound(deserialize = "V: Deserialize<'de>"))]
pub struct LwwMap<V> {
    entries: BTreeMap<String, Entry<V>>,
    /// The sum of [`super::digest::entry_hash`] over the entries.
    fingerprint: u64,
}

impl<V: Serialize> Serialize for LwwMap<V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(serializer)
    }
}

impl<V> From<BTreeMap<String, Entry<V>>> for LwwMap<V> {
    fn from(entries: BTreeMap<String, Entry<V>>) -> Self {
        let fingerprint = entries
            .iter()
            .map(|(key, entry)| entry_hash(key, &entry.version))
            .fold(0u64, u64::wrapping_add);
        LwwMap {
            entries,
            fingerprint,
        }
    }
}

/// Written by hand so that an empty map exists for any `V`, not only for `V: Default`.
impl<V> Default for LwwMap<V> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            fingerprint: 0,
        }
    }
}

impl<V> LwwMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The live value for `key`; a deleted key reads as absent.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key)?.value.as_ref()
    }

    /// The stored entry for `key`, tombstones included, for replication rather than reading.
    pub fn entry(&self, key: &str) -> Option<&Entry<V>> {
        self.entries.get(key)
    }

    /// Live values in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.entries
            .iter()
            .filter_map(|(key, entry)| Some((key, entry.value.as_ref()?)))
    }

    /// Every stored entry in key order, tombstones included.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry<V>)> {
        self.entries.iter()
    }

    /// The number of live values. Counted on each call rather than cached, so that no cached
    /// figure can disagree with a deserialized or merged map.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The highest version stored. A restarting agent feeds it to `Clock::observe`, so that
    /// its first new write is not older than what it wrote before the restart.
    pub fn newest_version(&self) -> Option<&Timestamp> {
        self.entries.values().map(|entry| &entry.version).max()
    }

    /// Removes tombstones whose version is older than `before_wall_ms`, returning how many.
    ///
    /// Tombstones would otherwise accumulate forever. The price: a replica partitioned for
    /// longer than the expiry age can still hold a value older than the delete, and once the
    /// tombstone is gone nothing outranks that value, so gossip resurrects the deleted key.
    /// Choose the age well above the longest partition you intend to tolerate. Expiry goes by
    /// the tombstone's own version rather than by when this replica received it, so every
    /// replica drops it at about the same moment instead of gossiping it back to the others.
    pub fn expire_tombstones(&mut self, before_wall_ms: u64) -> usize {
        let stored = self.entries.len();
        let fingerprint = &mut self.fingerprint;
        self.entries.retain(|key, entry| {
            let expired = entry.is_tombstone() && entry.version.wall_ms < before_wall_ms;
            if expired {
                *fingerprint = fingerprint.wrapping_sub(entry_hash(key, &entry.version));
            }
            !expired
        });
        stored - self.entries.len()
    }

    /// Removes the entries `drop` picks without leaving tombstones, returning their keys: for
    /// entries that turn out never to have been valid (their author's certificate was
    /// revoked), not for deletions, which must replicate.
    pub fn purge(&mut self, mut drop: impl FnMut(&str, &Entry<V>) -> bool) -> Vec<String> {
        let mut purged = Vec::new();
        let fingerprint = &mut self.fingerprint;
        self.entries.retain(|key, entry| {
            let gone = drop(key, entry);
            if gone {
                *fingerprint = fingerprint.wrapping_sub(entry_hash(key, &entry.version));
                purged.push(key.clone());
            }
            !gone
        });
        purged
    }

    /// See [`super::digest`]: the map's fingerprint, kept current on every change.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

impl<V: Clone + PartialEq + Serialize> LwwMap<V> {
    /// Writes `value` at `version`, which the caller takes fresh from its `Clock::tick`.
    ///
    /// A local write follows the same rule as a remote one: were a stale `version` to win
    /// here, this replica would disagree with every other replica forever. Returns whether
    /// the stored entry changed, i.e. whether there is something new to gossip.
    pub fn put(&mut self, key: impl Into<String>, value: V, version: Timestamp) -> bool {
        self.merge_entry(key.into(), Entry::live(value, version))
    }

    /// Deletes `key` at `version`, leaving a tombstone. A tombstone is recorded even for a key
    /// this replica never saw, since another replica may still hold an older value for it.
    pub fn delete(&mut self, key: &str, version: Timestamp) -> bool {
        self.merge_entry(key.to_owned(), Entry::tombstone(version))
    }

    /// Merges one remote entry: the higher version wins. Returns whether the stored entry
    /// changed.
    ///
    /// Equal versions with different entries mean one writer issued a timestamp twice, which
    /// a correct `Clock` never does. Such a conflict is still settled the same way on every
    /// replica: a tombstone beats a value, and between two values the one whose canonical JSON
    /// (object keys sorted) is bytewise larger wins, a value that fails to serialize losing.
    /// Values whose serialization is itself unstable (a `HashSet`'s order) can still settle
    /// differently on different replicas; nothing short of `V: Ord` would rule that out.
    pub fn merge_entry(&mut self, key: String, entry: Entry<V>) -> bool {
        let incoming = entry_hash(&key, &entry.version);
        match self.entries.entry(key) {
            Slot::Vacant(slot) => {
                slot.insert(entry);
                self.fingerprint = self.fingerprint.wrapping_add(incoming);
                true
            }
            Slot::Occupied(mut slot) => {
                let replaces = supersedes(&entry, slot.get());
                if replaces {
                    let outgoing = entry_hash(slot.key(), &slot.get().version);
                    slot.insert(entry);
                    self.fingerprint = self
                        .fingerprint
                        .wrapping_sub(outgoing)
                        .wrapping_add(incoming);
                }
                replaces
            }
        }
    }

    /// Whether merging `entry` under `key` would change this map, without merging it: lets a
    /// caller run costly checks (a signature) only on the entries that would win.
    pub fn would_accept(&self, key: &str, entry: &Entry<V>) -> bool {
        self.entries
            .get(key)
            .is_none_or(|current| supersedes(entry, current))
    }

    /// [`LwwMap::merge_entry`] for an entry held elsewhere: it is copied only if it wins, so
    /// merging a batch that is mostly known here (the common case under gossip) costs lookups,
    /// not copies.
    pub fn merge_entry_ref(&mut self, key: &str, entry: &Entry<V>) -> bool
    where
        V: Clone,
    {
        let incoming = entry_hash(key, &entry.version);
        match self.entries.get_mut(key) {
            None => {
                self.entries.insert(key.to_string(), entry.clone());
                self.fingerprint = self.fingerprint.wrapping_add(incoming);
                true
            }
            Some(current) => {
                if !supersedes(entry, current) {
                    return false;
                }
                let outgoing = entry_hash(key, &current.version);
                *current = entry.clone();
                self.fingerprint = self
                    .fingerprint
                    .wrapping_sub(outgoing)
                    .wrapping_add(incoming);
                true
            }
        }
    }

    /// Merges every entry of `other`, cloning only the ones that win. Returns whether anything
    /// changed.
    pub fn merge(&mut self, other: &LwwMap<V>) -> bool {
        let mut changed = false;
        for (key, incoming) in &other.entries {
            let replaces = self
                .entries
                .get(key)
                .is_none_or(|current| supersedes(incoming, current));
            if replaces {
                changed |= self.merge_entry(key.clone(), incoming.clone());
            }
        }
        changed
    }
}

/// Whether `incoming` should replace `current`: a total order on entries in which only equal
/// (or indistinguishable) entries tie, which is what makes merging order-independent.
fn supersedes<V: PartialEq + Serialize>(incoming: &Entry<V>, current: &Entry<V>) -> bool {
    match incoming.version.cmp(&current.version) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal if incoming == current => false,
        Ordering::Equal => match (&incoming.value, &current.value) {
            (None, _) => current.value.is_some(),
            (Some(_), None) => false,
            (Some(incoming), Some(current)) => canonical_json(incoming) > canonical_json(current),
        },
    }
}

/// Bytes that depend only on the value, not on a `HashMap`'s iteration order or on whether
/// serde_json preserves insertion order; `None` (which sorts first) when it cannot be encoded.
/// Also what signatures over values cover.
pub fn canonical_json<V: Serialize>(value: &V) -> Option<Vec<u8>> {
    let value = serde_json::to_value(value).ok()?;
    serde_json::to_vec(&with_sorted_keys(value)).ok()
}

fn with_sorted_keys(value: Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut fields: Vec<(String, Value)> = fields.into_iter().collect();
            fields.sort_by(|(left, _), (right, _)| left.cmp(right));
            Value::Object(
                fields
                    .into_iter()
                    .map(|(name, value)| (name, with_sorted_keys(value)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(with_sorted_keys).collect()),
        scalar => scalar,
    }
}

#[cfg(test)]
mod tests;
