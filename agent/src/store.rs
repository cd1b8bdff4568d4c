//! The agent's local durable state in sled: the process groups it started (replicated state
//! lives in the same database, see [`crate::cluster::replication`]).

use std::path::Path;

use std::collections::BTreeMap;

use orchestrator::{Application, Component, WorkloadId};

use serde::{Deserialize, Serialize};

use crate::rollout::history::Revision;

const PROCESS_GROUPS: &str = "process-groups";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store: corrupt record {key:?}: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
}

/// An application as accepted by a deploy, with what its rollouts need (see
/// [`crate::rollout::history`]). The whole value is sealed by the admin who deployed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredApp {
    pub app: Application,
    /// Bumped on every deploy that changes the application.
    pub generation: u64,
    /// When this generation was deployed (wall-clock milliseconds, the deploying agent's
    /// clock): its rollouts' progress deadlines count from here.
    #[serde(default)]
    pub deployed_ms: u64,
    /// Per component, the last definition that was fully available when this generation was
    /// deployed: where a rollout that misses its deadline returns to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stable: BTreeMap<String, Component>,
    /// Earlier generations, newest first, bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Revision>,
}

impl StoredApp {
    /// A first generation deployed at `deployed_ms`, with no history.
    pub fn first(app: Application, deployed_ms: u64) -> Self {
        crate::rollout::history::next(None, app, deployed_ms, |_, _| false)
    }
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    process_groups: sled::Tree,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::open(dir.join("state.sled"))?;
        Ok(Store {
            process_groups: db.open_tree(PROCESS_GROUPS)?,
            db,
        })
    }

    /// The underlying database, shared with the replicated state.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Remembers the process group a replica runs in, so a restarted agent can find leftovers.
    pub fn record_process_group(&self, id: &WorkloadId, pgid: u32) -> Result<(), StoreError> {
        self.process_groups
            .insert(id.to_string().as_bytes(), &pgid.to_be_bytes())?;
        self.process_groups.flush()?;
        Ok(())
    }

    pub fn forget_process_group(&self, id: &WorkloadId) -> Result<(), StoreError> {
        self.process_groups.remove(id.to_string().as_bytes())?;
        Ok(())
    }

    /// Every recorded `(workload, process group)`; at start-up these are leftovers.
    pub fn process_groups(&self) -> Result<Vec<(String, u32)>, StoreError> {
        self.process_groups
            .iter()
            .filter_map(|entry| match entry {
                Ok((key, value)) => {
                    let pgid = u32::from_be_bytes(value.as_ref().try_into().ok()?);
                    Some(Ok((String::from_utf8_lossy(&key).into_owned(), pgid)))
                }
                Err(e) => Some(Err(e.into())),
            })
            .collect()
    }

    pub fn clear_process_groups(&self) -> Result<(), StoreError> {
        self.process_groups.clear()?;
        self.process_groups.flush()?;
        Ok(())
    }
}
