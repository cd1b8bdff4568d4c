//! Who wrote an entry of the replicated state, checked on the entry itself rather than on the
//! connection that delivered it: a leaderless cluster relays everything through its members,
//! so a member's TLS identity says only who passed an entry on.
//!
//! - [`seal`]: a signature over a statement with the signer's certificate, made with the key
//!   that backs the signer's TLS identity and verified against the cluster CA.
//! - [`statement`]: what a seal over one replicated write covers (map, key, HLC version, value
//!   or deletion) and who may author which writes (admins the applications; each node its
//!   own record and its replicas' status).
//! - [`batch`]: one signature over many writes (a Merkle tree of their statements), each
//!   entry carrying its path to the signed root.
//! - [`authority`]: the check a replica runs on every write it is offered, on every path.
//! - [`revocation`]: certificates an admin revoked, refused in handshakes and in seals.
//! - [`expiry`]: what an agent says as its own certificate nears its end.
//!
//! Applications are sealed by the admin who deploys or deletes them, node records and workload
//! status by their node (a reconcile pass's status writes in one batch), and all of them are
//! checked everywhere.

pub mod authority;
pub mod batch;
pub mod expiry;
pub mod revocation;
pub mod seal;
pub mod statement;
