//! What a replicated entry's seal covers, and who may have written it.
//!
//! Every entry of the replicated state is a write of one key at one version (an HLC stamp),
//! with a value or, for a deletion, none. Its statement is the bytes a seal signs: a domain
//! tag naming the map, then the key, the version and the canonical JSON of the value (or a
//! deletion marker), each length-prefixed so no two different writes share bytes. Signing the
//! version means a sealed entry cannot be replayed at another version: an older generation
//! stays older, and an attacker cannot lift it above the current one.
//!
//! Authority is checked on the statement's author, not on who delivered it:
//!
//! | map | key | may be written by |
//! |---|---|---|
//! | applications | app name | an admin certificate |
//! | revocations | certificate serial | an admin certificate |
//! | node records | node name | that node's certificate |
//! | workload status | `...@NODE` | the certificate of `NODE` |
//! | activity (events, witnessed rollouts) | `APP@NODE` | the certificate of `NODE` |
//! | maintenance (cordon, drain) | node name | an admin certificate |
//!
//! Pure: callers verify the seal ([`crate::trust::seal::verify`]) and pass the role it names.

use orchestrator::state::{Timestamp, canonical_json};
use serde::Serialize;

use crate::cluster::identity::Role;

/// The replicated maps, as statements name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Map {
    Apps,
    Nodes,
    Workloads,
    Revocations,
    Activity,
    Maintenance,
}

impl Map {
    fn tag(self) -> &'static [u8] {
        match self {
            Map::Apps => b"gossipctl/v1/apps",
            Map::Nodes => b"gossipctl/v1/nodes",
            Map::Workloads => b"gossipctl/v1/workloads",
            Map::Revocations => b"gossipctl/v1/revocations",
            Map::Activity => b"gossipctl/v1/activity",
            Map::Maintenance => b"gossipctl/v1/maintenance",
        }
    }
}

/// Why an author may not write an entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error(
        "only an admin may write applications, revocations, cordons and drains; {0} is not one"
    )]
    NotAdmin(String),
    #[error("{author} may not write entries of node {owner}")]
    NotOwner { author: String, owner: String },
    #[error("workload key {0:?} names no node")]
    NoOwner(String),
    #[error("the value cannot be encoded")]
    Encoding,
}

fn put(bytes: &mut Vec<u8>, field: &[u8]) {
    bytes.extend_from_slice(&(field.len() as u64).to_le_bytes());
    bytes.extend_from_slice(field);
}

/// The bytes a seal over the write of `key` at `version` in `map` signs. `value` is `None` for
/// a deletion.
pub fn statement<V: Serialize>(
    map: Map,
    key: &str,
    version: &Timestamp,
    value: Option<&V>,
) -> Result<Vec<u8>, Refusal> {
    let mut bytes = Vec::new();
    put(&mut bytes, map.tag());
    put(&mut bytes, key.as_bytes());
    put(&mut bytes, &version.wall_ms.to_le_bytes());
    put(&mut bytes, &version.logical.to_le_bytes());
    put(&mut bytes, version.node.as_bytes());
    match value {
        Some(value) => {
            put(&mut bytes, b"put");
            put(&mut bytes, &canonical_json(value).ok_or(Refusal::Encoding)?);
        }
        None => put(&mut bytes, b"delete"),
    }
    Ok(bytes)
}

/// Whether `author` may write `key` in `map`.
pub fn authorize(author: &Role, map: Map, key: &str) -> Result<(), Refusal> {
    let owner = match map {
        Map::Apps | Map::Revocations | Map::Maintenance => {
            return match author {
                Role::Admin { .. } => Ok(()),
                other => Err(Refusal::NotAdmin(other.name().to_string())),
            };
        }
        Map::Nodes => key,
        Map::Workloads | Map::Activity => key
            .rsplit_once('@')
            .map(|(_, node)| node)
            .filter(|node| !node.is_empty())
            .ok_or_else(|| Refusal::NoOwner(key.to_string()))?,
    };
    match author {
        Role::Node { name } if name == owner => Ok(()),
        other => Err(Refusal::NotOwner {
            author: other.name().to_string(),
            owner: owner.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::trust::seal::tests::cluster;
    use crate::trust::seal::{Sealer, verify};

    fn at(wall_ms: u64, logical: u32, node: &str) -> Timestamp {
        Timestamp {
            wall_ms,
            logical,
            node: node.into(),
        }
    }

    fn admin() -> Role {
        Role::Admin {
            name: "admin".into(),
        }
    }

    fn node(name: &str) -> Role {
        Role::Node { name: name.into() }
    }

    #[test]
    fn applications_are_the_admins_and_records_their_nodes() {
        assert_eq!(authorize(&admin(), Map::Apps, "web"), Ok(()));
        assert_eq!(
            authorize(&node("node-1"), Map::Apps, "web"),
            Err(Refusal::NotAdmin("node-1".into()))
        );
        assert_eq!(authorize(&node("node-1"), Map::Nodes, "node-1"), Ok(()));
        assert!(authorize(&node("node-1"), Map::Nodes, "node-2").is_err());
        assert!(authorize(&admin(), Map::Nodes, "node-1").is_err());
        assert_eq!(
            authorize(&node("node-1"), Map::Workloads, "web/api/0@node-1"),
            Ok(())
        );
        assert!(authorize(&node("node-1"), Map::Workloads, "web/api/0@node-2").is_err());
        assert!(authorize(&node("node-1"), Map::Workloads, "web/api/0").is_err());
        // A name that merely ends like the owner's is another node.
        assert!(authorize(&node("node-1"), Map::Workloads, "web/api/0@xnode-1").is_err());
        assert_eq!(
            authorize(&node("node-1"), Map::Activity, "web@node-1"),
            Ok(())
        );
        assert!(authorize(&node("node-1"), Map::Activity, "web@node-2").is_err());
        assert!(authorize(&admin(), Map::Activity, "web@node-1").is_err());
        assert_eq!(authorize(&admin(), Map::Maintenance, "node-1"), Ok(()));
        assert!(authorize(&node("node-1"), Map::Maintenance, "node-1").is_err());
    }

    #[test]
    fn a_sealed_write_cannot_be_moved_to_another_version_key_map_or_value() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, _) = cluster(dir.path());
        let sealer = Sealer::new(&admin).unwrap();
        let v3 = at(3_000, 0, "node-1");
        let signed = statement(Map::Apps, "web", &v3, Some(&"image: a")).unwrap();
        let seal = sealer.seal(&signed).unwrap();
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap();
        assert!(verify(&admin.ca, &seal, &signed, now).is_ok());
        let replays = [
            statement(Map::Apps, "web", &at(9_000, 0, "node-1"), Some(&"image: a")),
            statement(Map::Apps, "web", &at(3_000, 1, "node-1"), Some(&"image: a")),
            statement(Map::Apps, "web", &at(3_000, 0, "node-2"), Some(&"image: a")),
            statement(Map::Apps, "api", &v3, Some(&"image: a")),
            statement(Map::Nodes, "web", &v3, Some(&"image: a")),
            statement(Map::Apps, "web", &v3, Some(&"image: b")),
            statement::<&str>(Map::Apps, "web", &v3, None),
        ];
        for replay in replays {
            assert!(verify(&admin.ca, &seal, &replay.unwrap(), now).is_err());
        }
    }

    proptest! {
        /// Different writes never share a statement (the length prefixes keep field
        /// boundaries apart).
        #[test]
        fn distinct_writes_have_distinct_statements(
            a in ("[a-z@/]{0,6}", "[a-z@/]{0,6}", 0u64..4, any::<Option<u8>>()),
            b in ("[a-z@/]{0,6}", "[a-z@/]{0,6}", 0u64..4, any::<Option<u8>>()),
        ) {
            let encode = |(key, node, wall, value): &(String, String, u64, Option<u8>)| {
                statement(Map::Workloads, key, &at(*wall, 0, node), value.as_ref()).unwrap()
            };
            prop_assert_eq!(encode(&a) == encode(&b), a == b);
        }
    }
}
