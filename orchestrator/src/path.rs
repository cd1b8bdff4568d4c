//! Field paths such as `spec.components[1].traits[0].properties.replicas`.
//!
//! One type is shared by the positions pass and the validator so that a path built while checking
//! a field is, byte for byte, the key under which the positions pass recorded that field.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// A path from the document root to one node. The empty path is the root itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct FieldPath(Vec<Segment>);

impl FieldPath {
    pub(crate) fn root() -> Self {
        Self::default()
    }

    pub(crate) fn key(&self, key: &str) -> Self {
        self.with(Segment::Key(key.to_owned()))
    }

    pub(crate) fn index(&self, index: usize) -> Self {
        self.with(Segment::Index(index))
    }

    pub(crate) fn with(&self, segment: Segment) -> Self {
        let mut segments = Vec::with_capacity(self.0.len() + 1);
        segments.extend_from_slice(&self.0);
        segments.push(segment);
        Self(segments)
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// `self` with its prefix `from` replaced by `to`, or `None` when `self` is not under `from`.
    pub(crate) fn rebase(&self, from: &FieldPath, to: &FieldPath) -> Option<FieldPath> {
        let rest = self.0.strip_prefix(from.0.as_slice())?;
        let mut segments = to.0.clone();
        segments.extend_from_slice(rest);
        Some(FieldPath(segments))
    }

    /// Appends a path reported by `serde_path_to_error`, relative to `self`.
    ///
    /// Segments serde could not name (non-string keys, enum variants) end the path there: the
    /// position of the nearest named ancestor is more useful than a made-up name.
    pub(crate) fn join_serde(&self, relative: &serde_path_to_error::Path) -> Self {
        let mut joined = self.clone();
        for segment in relative.iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => {
                    joined.0.push(Segment::Index(*index));
                }
                serde_path_to_error::Segment::Map { key } => {
                    joined.0.push(Segment::Key(key.clone()));
                }
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => {
                    break;
                }
            }
        }
        joined
    }
}

/// Keys made of these characters are written `a.b`; anything else is quoted, `a["x.y/z"]`, so
/// that a label key such as `kubernetes.io/arch` does not read as three nested fields.
fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if is_plain_key(key) => {
                    if position > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Key(key) => write!(f, "[{key:?}]")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_keys_indices_and_quoted_keys() {
        let path = FieldPath::root()
            .key("spec")
            .key("components")
            .index(1)
            .key("traits")
            .index(0)
            .key("properties")
            .key("nodeSelector")
            .key("kubernetes.io/arch");
        assert_eq!(
            path.to_string(),
            r#"spec.components[1].traits[0].properties.nodeSelector["kubernetes.io/arch"]"#
        );
        assert_eq!(FieldPath::root().to_string(), "");
    }

    #[test]
    fn rebase_moves_only_paths_under_the_prefix() {
        let from = FieldPath::root().key("spec").key("components").index(0);
        let to = FieldPath::root().key("spec").key("policies").index(2);
        let inside = from.key("traits").index(1);
        assert_eq!(
            inside.rebase(&from, &to).map(|p| p.to_string()),
            Some("spec.policies[2].traits[1]".to_owned())
        );
        assert_eq!(from.rebase(&from, &to), Some(to.clone()));
        let sibling = FieldPath::root().key("spec").key("components").index(1);
        assert_eq!(sibling.rebase(&from, &to), None);
    }
}
