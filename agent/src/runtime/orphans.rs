//! Start-up sweep of replicas left behind by a previous run of this agent.
//!
//! Replicas die with the agent through their parent-death signal, but what they forked does
//! not; the process groups recorded in the store find those. A group is killed only if one of
//! its members still carries this node's `GOSSIP_NODE` marker, so a recycled group id that now
//! belongs to an unrelated program is left alone.

use std::fs;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::store::{Store, StoreError};

/// Kills leftover process groups recorded by a previous run; returns how many it killed.
pub fn sweep(store: &Store, node: &str) -> Result<usize, StoreError> {
    let marker = format!("GOSSIP_NODE={node}");
    let mut killed = 0;
    for (workload, pgid) in store.process_groups()? {
        if group_members(pgid)
            .iter()
            .any(|&pid| environ_contains(pid, &marker))
        {
            tracing::info!(%workload, pgid, "killing a replica left by a previous run");
            if killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL).is_ok() {
                killed += 1;
            }
        }
    }
    store.clear_process_groups()?;
    Ok(killed)
}

/// Processes whose process group is `pgid`, from /proc.
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| process_group_of(pid) == Some(pgid))
        .collect()
}

fn process_group_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; fields resume after the
    // last ')': state, ppid, pgrp.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

fn environ_contains(pid: u32, entry: &str) -> bool {
    fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|&b| b == 0).any(|e| e == entry.as_bytes()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_process_group_of_this_process() {
        let me = std::process::id();
        let expected = nix::unistd::getpgrp().as_raw() as u32;
        assert_eq!(process_group_of(me), Some(expected));
        assert!(group_members(expected).contains(&me));
    }
}
