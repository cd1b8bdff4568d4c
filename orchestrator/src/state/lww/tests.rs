//! Hand-written cases for the last-writer-wins rules, including the conflicts a correct clock
//! never produces.

use std::collections::HashMap;

use serde::{Serialize, Serializer, ser::Error as _};

use super::*;

fn at(wall_ms: u64, logical: u32, node: &str) -> Timestamp {
    Timestamp {
        wall_ms,
        logical,
        node: node.to_owned(),
    }
}

fn map_of(writes: &[(&str, Option<&str>, Timestamp)]) -> LwwMap<String> {
    let mut map = LwwMap::new();
    for (key, value, version) in writes {
        let entry = Entry {
            version: version.clone(),
            value: value.map(str::to_owned),
            seal: None,
        };
        map.merge_entry((*key).to_owned(), entry);
    }
    map
}

#[test]
fn put_then_get_reads_the_value() {
    let mut map = LwwMap::new();
    assert!(map.put("web", 1, at(10, 0, "a")));
    assert_eq!(map.get("web"), Some(&1));
    assert_eq!(map.entry("web"), Some(&Entry::live(1, at(10, 0, "a"))));
    assert_eq!(map.get("db"), None);
}

#[test]
fn newer_put_replaces_and_older_put_is_ignored() {
    let mut map = LwwMap::new();
    map.put("web", 1, at(10, 0, "a"));
    assert!(map.put("web", 2, at(11, 0, "b")));
    assert!(!map.put("web", 3, at(10, 5, "c")));
    assert_eq!(map.get("web"), Some(&2));
}

#[test]
fn newer_put_of_the_same_value_still_counts_as_a_change() {
    let mut map = LwwMap::new();
    map.put("web", 1, at(10, 0, "a"));
    assert!(map.put("web", 1, at(11, 0, "a")));
    assert_eq!(
        map.entry("web").map(|entry| &entry.version),
        Some(&at(11, 0, "a"))
    );
}

#[test]
fn delete_then_older_put_stays_deleted() {
    let mut map = LwwMap::new();
    map.put("web", 1, at(10, 0, "a"));
    assert!(map.delete("web", at(20, 0, "a")));
    assert!(!map.put("web", 2, at(15, 0, "b")));
    assert_eq!(map.get("web"), None);
    assert_eq!(map.entry("web"), Some(&Entry::tombstone(at(20, 0, "a"))));
}

#[test]
fn put_after_delete_with_newer_version_resurrects() {
    let mut map = LwwMap::new();
    map.put("web", 1, at(10, 0, "a"));
    map.delete("web", at(20, 0, "a"));
    assert!(map.put("web", 3, at(20, 1, "b")));
    assert_eq!(map.get("web"), Some(&3));
}

#[test]
fn delete_of_an_unknown_key_records_a_tombstone() {
    let mut map: LwwMap<u32> = LwwMap::new();
    assert!(map.delete("web", at(20, 0, "a")));
    assert!(map.entry("web").is_some_and(Entry::is_tombstone));
    assert!(map.is_empty());
    assert!(
        !map.put("web", 1, at(10, 0, "b")),
        "the older put must not win"
    );
}

#[test]
fn merge_entry_returns_false_for_stale_and_repeated_entries() {
    let mut map = LwwMap::new();
    assert!(map.merge_entry("web".into(), Entry::live(2, at(20, 0, "a"))));
    assert!(!map.merge_entry("web".into(), Entry::live(1, at(19, 9, "z"))));
    assert!(!map.merge_entry("web".into(), Entry::tombstone(at(5, 0, "a"))));
    assert!(!map.merge_entry("web".into(), Entry::live(2, at(20, 0, "a"))));
    assert_eq!(map.get("web"), Some(&2));
}

#[test]
fn equal_versions_across_nodes_are_told_apart_by_node_name() {
    let mut map = LwwMap::new();
    map.put("web", "from b", at(10, 0, "b"));
    assert!(!map.put("web", "from a", at(10, 0, "a")));
    assert_eq!(map.get("web"), Some(&"from b"));
}

#[test]
fn conflicting_tombstone_wins_in_either_order() {
    let version = at(10, 0, "a");
    let value_first = map_of(&[
        ("k", Some("v"), version.clone()),
        ("k", None, version.clone()),
    ]);
    let tombstone_first = map_of(&[("k", None, version.clone()), ("k", Some("v"), version)]);
    assert_eq!(value_first, tombstone_first);
    assert_eq!(value_first.get("k"), None);
}

#[test]
fn conflicting_values_settle_on_the_larger_encoding_in_either_order() {
    let version = at(10, 0, "a");
    let forward = map_of(&[
        ("k", Some("apple"), version.clone()),
        ("k", Some("banana"), version.clone()),
    ]);
    let backward = map_of(&[
        ("k", Some("banana"), version.clone()),
        ("k", Some("apple"), version),
    ]);
    assert_eq!(forward, backward);
    assert_eq!(forward.get("k").map(String::as_str), Some("banana"));
}

#[test]
fn canonical_encoding_ignores_hash_map_order() {
    let forward: HashMap<String, u32> = (0..32).map(|n| (format!("k{n}"), n)).collect();
    let backward: HashMap<String, u32> = (0..32).rev().map(|n| (format!("k{n}"), n)).collect();
    assert_eq!(canonical_json(&forward), canonical_json(&backward));
    let encoded = canonical_json(&forward).unwrap();
    assert!(
        String::from_utf8(encoded)
            .unwrap()
            .starts_with(r#"{"k0":0,"k1":1,"k10":10"#)
    );
}

/// A value whose serialization always fails, standing in for anything serde_json rejects.
#[derive(Debug, Clone, PartialEq)]
enum Shaky {
    Fine(u32),
    Unencodable,
}

impl Serialize for Shaky {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Shaky::Fine(number) => serializer.serialize_u32(*number),
            Shaky::Unencodable => Err(S::Error::custom("cannot encode")),
        }
    }
}

#[test]
fn a_value_that_cannot_be_encoded_loses_a_conflict_without_panicking() {
    let version = at(10, 0, "a");
    for order in [
        [Shaky::Unencodable, Shaky::Fine(0)],
        [Shaky::Fine(0), Shaky::Unencodable],
    ] {
        let mut map = LwwMap::new();
        for value in order {
            map.put("k", value, version.clone());
        }
        assert_eq!(map.get("k"), Some(&Shaky::Fine(0)));
    }
    let mut map = LwwMap::new();
    assert!(map.put("k", Shaky::Unencodable, version.clone()));
    assert!(!map.put("k", Shaky::Unencodable, version));
}

#[test]
fn a_value_unequal_to_itself_does_not_count_as_a_change() {
    let mut map = LwwMap::new();
    map.put("k", f64::NAN, at(10, 0, "a"));
    let copy = map.clone();
    assert!(!map.merge(&copy));
}

#[test]
fn iter_len_and_is_empty_see_live_values_only_in_key_order() {
    let map = map_of(&[
        ("c", Some("3"), at(1, 0, "a")),
        ("a", Some("1"), at(1, 1, "a")),
        ("b", None, at(1, 2, "a")),
    ]);
    let live: Vec<(&str, &str)> = map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(live, [("a", "1"), ("c", "3")]);
    assert_eq!(map.len(), 2);
    assert!(!map.is_empty());
    let keys: Vec<&String> = map.entries().map(|(key, _)| key).collect();
    assert_eq!(keys, ["a", "b", "c"]);
    assert!(map_of(&[("b", None, at(1, 2, "a"))]).is_empty());
}

#[test]
fn merge_takes_the_newer_entry_per_key_and_reports_changes() {
    let mut ours = map_of(&[
        ("a", Some("ours"), at(10, 0, "a")),
        ("b", Some("ours"), at(30, 0, "a")),
    ]);
    let theirs = map_of(&[
        ("a", Some("theirs"), at(20, 0, "b")),
        ("b", None, at(25, 0, "b")),
        ("c", None, at(5, 0, "b")),
    ]);
    assert!(ours.merge(&theirs));
    assert_eq!(ours.get("a").map(String::as_str), Some("theirs"));
    assert_eq!(ours.get("b").map(String::as_str), Some("ours"));
    assert!(ours.entry("c").is_some_and(Entry::is_tombstone));
    assert!(!ours.merge(&theirs));
    assert!(!ours.clone().merge(&LwwMap::new()));
}

#[test]
fn newest_version_covers_tombstones() {
    assert_eq!(LwwMap::<String>::new().newest_version(), None);
    let map = map_of(&[
        ("a", Some("1"), at(10, 0, "a")),
        ("b", None, at(12, 0, "b")),
    ]);
    assert_eq!(map.newest_version(), Some(&at(12, 0, "b")));
}

#[test]
fn expiry_removes_only_tombstones_older_than_the_cutoff() {
    let mut map = map_of(&[
        ("old-live", Some("kept"), at(1, 0, "a")),
        ("old-dead", None, at(5, 0, "a")),
        ("edge-dead", None, at(10, 0, "a")),
        ("new-dead", None, at(15, 0, "a")),
    ]);
    assert_eq!(map.expire_tombstones(10), 1);
    assert_eq!(map.entry("old-dead"), None);
    assert!(map.entry("edge-dead").is_some());
    assert!(map.entry("new-dead").is_some());
    assert_eq!(map.get("old-live").map(String::as_str), Some("kept"));
    assert_eq!(map.expire_tombstones(u64::MAX), 2);
    assert_eq!(map.len(), 1);
    assert_eq!(map.entries().count(), 1);
}

#[test]
fn purge_removes_without_tombstones_and_keeps_the_fingerprint_exact() {
    let mut map = map_of(&[
        ("a", Some("keep"), at(1, 0, "a")),
        ("b", Some("forged"), at(2, 0, "b")),
        ("c", None, at(3, 0, "b")),
    ]);
    let purged = map.purge(|_, entry| entry.version.node == "b");
    assert_eq!(purged, vec!["b".to_string(), "c".to_string()]);
    assert_eq!(map.entries().count(), 1);
    let rebuilt = map_of(&[("a", Some("keep"), at(1, 0, "a"))]);
    assert_eq!(map.fingerprint(), rebuilt.fingerprint());
    // Nothing is left to outrank an older copy: a purge is not a deletion.
    assert!(map.would_accept("b", &Entry::live("older".to_string(), at(1, 0, "b"))));
}

#[test]
fn serializes_as_a_plain_object_of_entries_and_round_trips() {
    let mut map = LwwMap::new();
    map.put("web", 7, at(10, 1, "a"));
    map.delete("db", at(11, 0, "b"));
    let json = serde_json::to_value(&map).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "db": {"version": {"wall_ms": 11, "logical": 0, "node": "b"}, "value": null},
            "web": {"version": {"wall_ms": 10, "logical": 1, "node": "a"}, "value": 7},
        })
    );
    let back: LwwMap<u32> = serde_json::from_value(json).unwrap();
    assert_eq!(back, map);
}

/// Merging by reference decides exactly as merging by value: same answer, same map, same
/// fingerprint, over every order of conflicting writes (ties, tombstones, older versions).
#[test]
fn merging_by_reference_matches_merging_by_value() {
    let writes = [
        ("web", Some("a"), at(10, 0, "a")),
        ("web", Some("b"), at(10, 0, "a")),
        ("web", None, at(10, 0, "a")),
        ("web", Some("c"), at(9, 5, "b")),
        ("db", Some("d"), at(11, 0, "b")),
        ("web", Some("e"), at(12, 0, "c")),
        ("db", None, at(11, 0, "b")),
    ];
    for start in 0..writes.len() {
        let order: Vec<_> = writes[start..].iter().chain(&writes[..start]).collect();
        let (mut by_value, mut by_ref) = (LwwMap::new(), LwwMap::new());
        for (key, value, version) in order {
            let entry = Entry {
                version: version.clone(),
                value: value.map(str::to_owned),
                seal: None,
            };
            let a = by_value.merge_entry((*key).to_owned(), entry.clone());
            let b = by_ref.merge_entry_ref(key, &entry);
            assert_eq!(a, b, "{key} {entry:?}");
            assert_eq!(by_value, by_ref);
            assert_eq!(by_value.fingerprint(), by_ref.fingerprint());
        }
    }
}

#[test]
fn seals_are_written_as_base64_and_read_in_either_form() {
    let entry = Entry::live("v".to_string(), at(5, 0, "a")).sealed(vec![0, 1, 2, 250, 255]);
    let json = serde_json::to_value(&entry).unwrap();
    assert_eq!(json["seal"], serde_json::json!("AAEC+v8="));
    let read: Entry<String> = serde_json::from_value(json).unwrap();
    assert_eq!(read, entry);

    // As versions before base64 wrote it.
    let old = serde_json::json!({
        "version": {"wall_ms": 5, "logical": 0, "node": "a"},
        "value": "v",
        "seal": [0, 1, 2, 250, 255],
    });
    assert_eq!(serde_json::from_value::<Entry<String>>(old).unwrap(), entry);

    let unsealed = Entry::live("v".to_string(), at(5, 0, "a"));
    let json = serde_json::to_value(&unsealed).unwrap();
    assert!(json.get("seal").is_none());
    assert_eq!(
        serde_json::from_value::<Entry<String>>(json).unwrap(),
        unsealed
    );

    let garbled = serde_json::json!({
        "version": {"wall_ms": 5, "logical": 0, "node": "a"},
        "value": "v",
        "seal": "not base64!",
    });
    assert!(serde_json::from_value::<Entry<String>>(garbled).is_err());
}
