//! Fashion-MNIST (or any IDX image set of the same shape): finding it, loading it, splitting it.

mod idx;
mod partition;

use std::path::{Path, PathBuf};

pub use idx::{IdxArray, encode_idx, parse_idx, read_idx};
pub use partition::{NodeShard, Partition, partition};

/// Where the Debian package `dataset-fashion-mnist` installs the data.
pub const SYSTEM_DATA_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Environment variable naming a directory of IDX files, consulted when `--data` is not given.
pub const DATA_ENV: &str = "GOSSIP_DATA";

pub const IMAGE_SIDE: usize = 28;
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
pub const CLASSES: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "no Fashion-MNIST found; looked in {}. Install the Debian package `dataset-fashion-mnist` \
         (apt-get install dataset-fashion-mnist), or point --data or ${DATA_ENV} at a directory \
         holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, \
         t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz",
        looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotFound { looked: Vec<PathBuf> },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not an IDX file of unsigned bytes: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Shape { path: PathBuf, reason: String },
    #[error("partition `{0}`: expected `iid` or `dirichlet:ALPHA` with ALPHA a positive number")]
    BadPartition(String),
}

/// Labelled 28x28 grey images, pixels scaled to [0, 1], row-major, one image after another.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, index: usize) -> &[f32] {
        &self.images[index * IMAGE_PIXELS..(index + 1) * IMAGE_PIXELS]
    }

    /// The examples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * IMAGE_PIXELS);
        let mut labels = Vec::with_capacity(indices.len());
        for &index in indices {
            images.extend_from_slice(self.image(index));
            labels.push(self.labels[index]);
        }
        Dataset { images, labels }
    }
}

/// The training and test halves of an image set.
#[derive(Debug, Clone, PartialEq)]
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
}

/// The directories consulted: `--data` when given, else `$GOSSIP_DATA` when set, else the
/// system package's directory. A variable that is set replaces the default rather than adding
/// to it (as `XDG_DATA_DIRS` does), so a node can be pointed away from an installed copy.
pub fn candidate_dirs(explicit: Option<&Path>) -> Vec<PathBuf> {
    dirs_from(explicit, std::env::var_os(DATA_ENV).as_deref())
}

fn dirs_from(explicit: Option<&Path>, env: Option<&std::ffi::OsStr>) -> Vec<PathBuf> {
    let chosen = explicit
        .map(Path::to_path_buf)
        .or_else(|| env.filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(SYSTEM_DATA_DIR));
    vec![chosen]
}

/// Loads the first candidate directory that holds the four files.
pub fn load(explicit: Option<&Path>) -> Result<Splits, DataError> {
    let looked = candidate_dirs(explicit);
    match looked
        .iter()
        .find(|dir| file_in(dir, "train-images-idx3-ubyte").is_some())
    {
        Some(dir) => load_dir(dir),
        None => Err(DataError::NotFound { looked }),
    }
}

/// Loads `train-*` and `t10k-*` IDX files (gzipped or not) from `dir`.
pub fn load_dir(dir: &Path) -> Result<Splits, DataError> {
    Ok(Splits {
        train: load_pair(dir, "train")?,
        test: load_pair(dir, "t10k")?,
    })
}

fn file_in(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

fn required_file(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    file_in(dir, stem).ok_or_else(|| DataError::Io {
        path: dir.join(format!("{stem}.gz")),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })
}

fn load_pair(dir: &Path, prefix: &str) -> Result<Dataset, DataError> {
    let images_path = required_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = required_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = read_idx(&images_path)?;
    let labels = read_idx(&labels_path)?;
    if images.dims.len() != 3 || images.dims[1..] != [IMAGE_SIDE, IMAGE_SIDE] {
        return Err(DataError::Shape {
            path: images_path,
            reason: format!("dimensions {:?}, expected [N, 28, 28]", images.dims),
        });
    }
    if labels.dims != [images.dims[0]] {
        return Err(DataError::Shape {
            path: labels_path,
            reason: format!(
                "dimensions {:?}, expected [{}] to match the images",
                labels.dims, images.dims[0]
            ),
        });
    }
    if let Some(bad) = labels.values.iter().find(|&&l| l as usize >= CLASSES) {
        return Err(DataError::Shape {
            path: labels_path,
            reason: format!("label {bad}, expected 0 to 9"),
        });
    }
    Ok(Dataset {
        images: images
            .values
            .iter()
            .map(|&p| f32::from(p) / 255.0)
            .collect(),
        labels: labels.values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_dataset_names_every_place_looked_and_the_package() {
        let message = load(Some(Path::new("/nonexistent/fmnist")))
            .unwrap_err()
            .to_string();
        assert!(message.contains("/nonexistent/fmnist"), "{message}");
        assert!(
            message.contains("apt-get install dataset-fashion-mnist"),
            "{message}"
        );
    }

    #[test]
    fn the_flag_wins_then_the_variable_then_the_package() {
        let flag = Path::new("/flag");
        let env = std::ffi::OsStr::new("/env");
        assert_eq!(dirs_from(Some(flag), Some(env)), [PathBuf::from("/flag")]);
        assert_eq!(dirs_from(None, Some(env)), [PathBuf::from("/env")]);
        assert_eq!(
            dirs_from(None, Some(std::ffi::OsStr::new(""))),
            [PathBuf::from(SYSTEM_DATA_DIR)]
        );
        assert_eq!(dirs_from(None, None), [PathBuf::from(SYSTEM_DATA_DIR)]);
    }

    #[test]
    fn loads_the_committed_fixture() {
        let splits = load(Some(&crate::fixture_dir())).unwrap();
        assert_eq!(splits.train.images.len(), splits.train.len() * IMAGE_PIXELS);
        assert!(splits.train.len() >= 1000 && splits.test.len() >= 500);
        let classes: std::collections::BTreeSet<u8> = splits.test.labels.iter().copied().collect();
        assert_eq!(classes.len(), CLASSES);
        assert!(splits.train.images.iter().all(|p| (0.0..=1.0).contains(p)));
    }
}
