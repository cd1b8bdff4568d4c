//! `gossipctl cluster init` and `cluster add-node`: the cluster's credentials.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use agent::cluster::identity::{ADMIN_CERT_FILE, ClusterCa, NODE_CERT_FILE, is_dns_label};
use agent::trust::revocation::{is_serial, serial_of_pem_file};
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

/// The CA in `dir`, about to issue a certificate to the `role` named `name`: refuses a name
/// that is not a DNS-1123 label and a directory without a CA.
fn ca_issuing(dir: &Path, role: &str, name: &str) -> anyhow::Result<ClusterCa> {
    if !is_dns_label(name) {
        return Err(invalid(format!(
            "invalid {role} name {name:?}: expected a DNS-1123 label (lowercase letters, digits, '-')"
        )));
    }
    if !is_initialized(dir) {
        return Err(invalid(format!(
            "{} holds no cluster CA; run `gossipctl cluster init --dir {}` first",
            dir.display(),
            dir.display()
        )));
    }
    Ok(ClusterCa::load(dir)?)
}

/// Issues `name`'s certificate bundle, valid for `validity`, under `dir/NAME/certs`; returns
/// that directory.
pub fn add_node(dir: &Path, name: &str, validity: std::time::Duration) -> anyhow::Result<PathBuf> {
    let ca = ca_issuing(dir, "node", name)?;
    let certs = node_certs_dir(dir, name);
    ca.issue_node_for(name, &certs, validity)?;
    Ok(certs)
}

/// The serial of the certificate to revoke for `name`: `given`, or the one in the bundle
/// `add-node` wrote under `dir`.
pub fn serial_to_revoke(dir: &Path, name: &str, given: Option<String>) -> anyhow::Result<String> {
    if let Some(serial) = given {
        let serial = serial.to_ascii_lowercase().replace(':', "");
        if !is_serial(&serial) {
            return Err(invalid(format!(
                "--serial {serial:?}: expected the certificate's serial number in hex"
            )));
        }
        return Ok(serial);
    }
    let candidates = [
        node_certs_dir(dir, name).join(NODE_CERT_FILE),
        dir.join(name).join(ADMIN_CERT_FILE),
    ];
    let Some(path) = candidates.iter().find(|p| p.exists()) else {
        return Err(invalid(format!(
            "no certificate of {name:?} is kept in {} (looked for {} and {}); pass --serial",
            dir.display(),
            candidates[0].display(),
            candidates[1].display()
        )));
    };
    serial_of_pem_file(path).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// Issues admin credentials for `name` under `dir/NAME`, with a CLI config listing the agents
/// of `dir`'s config; returns that directory.
pub fn add_admin(dir: &Path, name: &str, validity: std::time::Duration) -> anyhow::Result<PathBuf> {
    let ca = ca_issuing(dir, "admin", name)?;
    let home = dir.join(name);
    if home.exists() {
        return Err(invalid(format!(
            "{} already exists (a node or admin of that name); choose another name",
            home.display()
        )));
    }
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    ca.issue_admin_named(name, &home, validity)?;
    let agents = Config::load(&dir.join(CONFIG_FILE))
        .map(|c| c.agents)
        .unwrap_or_default();
    Config {
        agents,
        ..Config::for_admin()
    }
    .save(&home.join(CONFIG_FILE))?;
    Ok(home)
}
