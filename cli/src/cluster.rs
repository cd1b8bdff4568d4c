//! `gossipctl cluster init` and `cluster add-node`: the cluster's credentials.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use agent::cluster::identity::{ClusterCa, is_dns_label};
use anyhow::Context;

use crate::config::{CONFIG_FILE, Config};
use crate::failure::invalid;

/// Where a node's certificate bundle lives inside a cluster directory.
pub fn node_certs_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(name).join("certs")
}

/// Creates the CA, the admin credentials and the CLI config (listing `agents`) in `dir`.
pub fn init(dir: &Path, cluster_name: &str, agents: Vec<SocketAddr>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca = ClusterCa::create(dir, cluster_name)?;
    ca.issue_admin(dir)?;
    let config = Config {
        agents,
        ..Config::for_admin()
    };
    config.save(&dir.join(CONFIG_FILE))?;
    Ok(())
}

/// Whether `dir` already holds a cluster CA.
pub fn is_initialized(dir: &Path) -> bool {
    dir.join(agent::cluster::identity::CA_KEY_FILE).exists()
}

/// Issues `name`'s certificate bundle under `dir/NAME/certs`; returns that directory.
pub fn add_node(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    if !is_dns_label(name) {
        return Err(invalid(format!(
            "invalid node name {name:?}: expected a DNS-1123 label (lowercase letters, digits, '-')"
        )));
    }
    if !is_initialized(dir) {
        return Err(invalid(format!(
            "{} holds no cluster CA; run `gossipctl cluster init --dir {}` first",
            dir.display(),
            dir.display()
        )));
    }
    let ca = ClusterCa::load(dir)?;
    let certs = node_certs_dir(dir, name);
    ca.issue_node(name, &certs)?;
    Ok(certs)
}
