//! The agent's local durable state in sled: the process groups it started (replicated state
//! lives in the same database, see [`crate::cluster::replication`]).

use std::path::Path;

use orchestrator::{Application, WorkloadId};

use serde::{Deserialize, Serialize};

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

/// An application as accepted by a deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredApp {
    pub app: Application,
    /// Bumped on every deploy that changes the application.
    pub generation: u64,
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
