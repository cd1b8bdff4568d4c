//! The CLI's cluster config, like a kubeconfig: where the agents are and which credentials to
//! present. Paths inside it are relative to the file, so a cluster directory can be moved.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use agent::cluster::identity::{ADMIN_CERT_FILE, ADMIN_KEY_FILE, CA_CERT_FILE, Credentials};
use anyhow::Context;
use serde::{Deserialize, Serialize};

pub const CONFIG_FILE: &str = "config.yaml";
pub const CONFIG_ENV: &str = "GOSSIPCTL_CONFIG";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Agent API addresses, tried in order.
    #[serde(default)]
    pub agents: Vec<SocketAddr>,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Config {
    /// A config for the admin credentials that `cluster init` writes beside it.
    pub fn for_admin() -> Self {
        Config {
            agents: Vec::new(),
            ca: CA_CERT_FILE.into(),
            cert: ADMIN_CERT_FILE.into(),
            key: ADMIN_KEY_FILE.into(),
        }
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(crate::failure::invalid(format!(
                    "no cluster config at {}: run `gossipctl up` for a local cluster, or \
                     `gossipctl cluster init` for your own agents, and use the config.yaml it writes",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read cluster config {}", path.display()));
            }
        };
        serde_yaml::from_str(&text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            crate::failure::invalid(format!("{}{at}: {e}", path.display()))
        })
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_yaml::to_string(self).expect("config serialises");
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn credentials(&self, config_path: &Path) -> anyhow::Result<Credentials> {
        let base = config_path.parent().unwrap_or(Path::new("."));
        Credentials::load(
            &base.join(&self.ca),
            &base.join(&self.cert),
            &base.join(&self.key),
        )
        .with_context(|| format!("loading credentials named in {}", config_path.display()))
    }
}

/// `--config`, else `$GOSSIPCTL_CONFIG`, else `<user config dir>/gossipctl/config.yaml`.
pub fn locate(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let default = dirs::config_dir().map(|d| d.join("gossipctl").join(CONFIG_FILE));
    match default {
        Some(path) if path.exists() => Ok(path),
        _ => Err(crate::failure::invalid(format!(
            "no cluster config: pass --config FILE, set {CONFIG_ENV}, or run `gossipctl up` \
             (or `gossipctl cluster init`) and point {CONFIG_ENV} at the config.yaml it writes"
        ))),
    }
}
