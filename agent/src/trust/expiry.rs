//! Certificate expiry, as operators see it: every node and admin certificate carries one
//! (a year by default, see [`crate::cluster::identity::DEFAULT_VALIDITY`]), agents refuse an
//! expired certificate in handshakes and seals, and an agent warns ahead of its own.
//!
//! Pure: the caller passes the time.

use std::time::Duration;

use crate::cluster::identity::EXPIRY_WARNING;

/// What an agent should say about its own certificate, expiring at `expires_at` (seconds since
/// the Unix epoch), at `now`: nothing while more than [`EXPIRY_WARNING`] is left.
pub fn warning(node: &str, expires_at: i64, now: i64) -> Option<String> {
    let left = expires_at - now;
    if left > EXPIRY_WARNING.as_secs() as i64 {
        return None;
    }
    let date = date(expires_at);
    let renew = format!(
        "issue a new one with `gossipctl cluster add-node {node}` and restart the agent with it"
    );
    Some(if left <= 0 {
        format!("this node's certificate expired on {date}; peers refuse it: {renew}")
    } else {
        let days = left / (24 * 3600);
        format!("this node's certificate expires in {days} days, on {date}: {renew}")
    })
}

/// A Unix time as an RFC 3339 date and time (UTC, seconds).
pub fn date(unix: i64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3600;

    #[test]
    fn an_agent_warns_in_the_last_thirty_days_and_after_expiry() {
        let now = 1_800_000_000;
        assert_eq!(warning("edge-1", now + 31 * DAY, now), None);
        let soon = warning("edge-1", now + 20 * DAY + 5, now).unwrap();
        assert!(soon.contains("expires in 20 days"), "{soon}");
        assert!(soon.contains("gossipctl cluster add-node edge-1"), "{soon}");
        let gone = warning("edge-1", now - DAY, now).unwrap();
        assert!(gone.contains("expired on"), "{gone}");
        assert_eq!(date(0), "1970-01-01T00:00:00Z");
    }
}
