//! One signature for many writes: a Merkle tree over their statements.
//!
//! A node reports the status of every replica it runs, and during a burst that is hundreds of
//! writes a second, each checked by every agent. A signature check costs about 90 us (ECDSA
//! P-256), so checking one per status made a 500-replica burst on 50 agents cost seconds of
//! CPU. Instead, a node seals all the writes of one reconcile pass together: the leaves are the
//! writes' statements, the signature covers the tree's root, and each entry carries its own
//! path to the root (a few 32-byte hashes), so entries still travel, merge and get checked
//! one by one. A checker verifies the root's signature once and remembers it; the batch's
//! other entries then cost a few hashes each.
//!
//! Leaves and inner nodes are hashed with distinct prefixes (as RFC 6962 does), so a leaf can
//! never pass for an inner node; a level with an odd count carries its last hash up unchanged.
//! The signed message is framed like a statement under its own domain tag, so it can never be
//! mistaken for a single write's statement.

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

pub type Hash = [u8; 32];

/// Where one statement sits in a sealed batch, and the sibling hashes up to the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub index: u32,
    pub leaves: u32,
    pub path: Vec<Hash>,
}

fn hash(prefix: u8, parts: &[&[u8]]) -> Hash {
    let mut context = Context::new(&SHA256);
    context.update(&[prefix]);
    for part in parts {
        context.update(part);
    }
    context
        .finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

pub fn leaf(statement: &[u8]) -> Hash {
    hash(0, &[statement])
}

fn inner(left: &Hash, right: &Hash) -> Hash {
    hash(1, &[left, right])
}

/// The bytes a batch's signature covers.
pub fn message(root: &Hash) -> Vec<u8> {
    let tag = b"gossipctl/v1/batch";
    let mut bytes = Vec::with_capacity(16 + tag.len() + root.len());
    for field in [&tag[..], &root[..]] {
        bytes.extend_from_slice(&(field.len() as u64).to_le_bytes());
        bytes.extend_from_slice(field);
    }
    bytes
}

/// The root over `statements` (at least one) and each one's proof.
pub fn tree(statements: &[Vec<u8>]) -> (Hash, Vec<Proof>) {
    let leaves = statements.len();
    let mut level: Vec<Hash> = statements.iter().map(|s| leaf(s)).collect();
    let mut positions: Vec<usize> = (0..leaves).collect();
    let mut paths: Vec<Vec<Hash>> = vec![Vec::new(); leaves];
    while level.len() > 1 {
        for (position, path) in positions.iter_mut().zip(paths.iter_mut()) {
            let sibling = *position ^ 1;
            if sibling < level.len() {
                path.push(level[sibling]);
            }
            *position /= 2;
        }
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => inner(left, right),
                [last] => *last,
                _ => unreachable!("chunks of two"),
            })
            .collect();
    }
    let proofs = paths
        .into_iter()
        .enumerate()
        .map(|(index, path)| Proof {
            index: index as u32,
            leaves: leaves as u32,
            path,
        })
        .collect();
    (level[0], proofs)
}

impl Proof {
    /// The root that `statement` at this proof's place leads to; `None` when the proof does not
    /// fit a tree of its size.
    pub fn root(&self, statement: &[u8]) -> Option<Hash> {
        let (mut index, mut size) = (self.index as usize, self.leaves as usize);
        if index >= size {
            return None;
        }
        let mut path = self.path.iter();
        let mut node = leaf(statement);
        while size > 1 {
            let sibling = index ^ 1;
            if sibling < size {
                let other = path.next()?;
                node = if index % 2 == 0 {
                    inner(&node, other)
                } else {
                    inner(other, &node)
                };
            }
            index /= 2;
            size = size.div_ceil(2);
        }
        path.next().is_none().then_some(node)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Every statement's proof leads to the root, and no other statement, place or
        /// altered path does.
        #[test]
        fn every_proof_leads_to_the_root_and_nothing_else_does(
            statements in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..40),
            flip in any::<prop::sample::Index>(),
        ) {
            let (root, proofs) = tree(&statements);
            for (statement, proof) in statements.iter().zip(&proofs) {
                prop_assert_eq!(proof.root(statement), Some(root));
                let mut other = statement.clone();
                other.push(0);
                prop_assert_ne!(proof.root(&other), Some(root));
            }
            let n = statements.len();
            if n > 1 {
                let i = flip.index(n);
                // Another statement's proof, for this statement (unless they are equal).
                let j = (i + 1) % n;
                if statements[i] != statements[j] {
                    prop_assert_ne!(proofs[j].root(&statements[i]), Some(root));
                }
                let mut bent = proofs[i].clone();
                bent.path[0][0] ^= 1;
                prop_assert_ne!(bent.root(&statements[i]), Some(root));
                let mut moved = proofs[i].clone();
                moved.index = moved.leaves;
                prop_assert_eq!(moved.root(&statements[i]), None);
            }
        }
    }

    #[test]
    fn one_statement_is_its_own_root_and_the_message_is_framed() {
        let (root, proofs) = tree(&[b"a".to_vec()]);
        assert_eq!(root, leaf(b"a"));
        assert_eq!(proofs[0].path, Vec::<Hash>::new());
        assert_eq!(message(&root).len(), 8 + 18 + 8 + 32);
        assert_ne!(leaf(b"a"), inner(&leaf(b"a"), &leaf(b"a")));
    }
}
