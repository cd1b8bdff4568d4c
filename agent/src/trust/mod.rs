//! Who wrote an entry of the replicated state, checked on the entry itself rather than on the
//! connection that delivered it: a leaderless cluster relays everything through its members,
//! so a member's TLS identity says only who passed an entry on.
//!
//! - [`seal`]: a signature over a statement with the signer's certificate, made with the key
//!   that backs the signer's TLS identity and verified against the cluster CA.
//! - [`statement`]: what a seal over one replicated write covers (map, key, HLC version, value
//!   or deletion) and who may author which writes (admins the applications; each node its
//!   own record and its replicas' status).
//!
//! Both are pure. The agent does not seal or check replicated entries with them yet; until it
//! does, any node certificate can still write any entry (see the README's trust section).

pub mod seal;
pub mod statement;
