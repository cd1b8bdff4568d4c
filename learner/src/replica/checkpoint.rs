//! A replica's checkpoint: the epoch it completed, its weights and its optimizer state, written
//! atomically (temporary file, then rename) after every epoch, so a restarted replica resumes
//! from its last completed epoch and a crash mid-write leaves the previous checkpoint intact.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"GLCKPT01";
pub const FILE_NAME: &str = "checkpoint.bin";

#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub epoch: u64,
    pub weights: Vec<f32>,
    /// burn's optimizer record (burnpack bytes).
    pub optimizer: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}: not a learner checkpoint, or a damaged one")]
    Malformed(PathBuf),
}

impl Checkpoint {
    pub fn save(&self, dir: &Path) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let mut bytes = Vec::with_capacity(32 + self.weights.len() * 4 + self.optimizer.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&self.epoch.to_le_bytes());
        bytes.extend_from_slice(&(self.weights.len() as u64).to_le_bytes());
        for w in &self.weights {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        bytes.extend_from_slice(&(self.optimizer.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&self.optimizer);
        let temporary = dir.join(format!("{FILE_NAME}.tmp"));
        fs::write(&temporary, &bytes).map_err(io)?;
        fs::rename(&temporary, dir.join(FILE_NAME)).map_err(io)
    }

    /// The checkpoint in `dir`, or `None` if there is none yet.
    pub fn load(dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        let path = dir.join(FILE_NAME);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CheckpointError::Io { path, source }),
        };
        parse(&bytes)
            .map(Some)
            .ok_or(CheckpointError::Malformed(path))
    }
}

fn parse(bytes: &[u8]) -> Option<Checkpoint> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let (epoch, rest) = split_u64(rest)?;
    let (count, rest) = split_u64(rest)?;
    let (weights, rest) = rest.split_at_checked(usize::try_from(count).ok()?.checked_mul(4)?)?;
    let (len, rest) = split_u64(rest)?;
    if rest.len() as u64 != len {
        return None;
    }
    Some(Checkpoint {
        epoch,
        weights: weights
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect(),
        optimizer: rest.to_vec(),
    })
}

fn split_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_at_checked(8)?;
    Some((u64::from_le_bytes(head.try_into().ok()?), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Checkpoint::load(dir.path()).unwrap().is_none());
        let checkpoint = Checkpoint {
            epoch: 12,
            weights: vec![0.5, -1.25, 3.0],
            optimizer: vec![1, 2, 3, 4, 5],
        };
        checkpoint.save(dir.path()).unwrap();
        assert_eq!(
            Checkpoint::load(dir.path()).unwrap(),
            Some(checkpoint.clone())
        );
        let path = dir.path().join(FILE_NAME);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(
            Checkpoint::load(dir.path()),
            Err(CheckpointError::Malformed(_))
        ));
    }
}
