//! Errors as the user sees them, and the collector that lets validation report every problem in
//! one go instead of stopping at the first.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_yaml::Value;
use thiserror::Error;

use crate::path::FieldPath;
use crate::positions::{Position, SourceMap};
use crate::raw::field_names;

/// One problem with a document, located as precisely as the document allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; `None` when the problem has no place in the text (the file is too large).
    pub line: Option<usize>,
    /// 1-based, counted in characters.
    pub column: Option<usize>,
    /// The field the problem is about, e.g. `spec.components[1].type`; empty for the document
    /// as a whole.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: PATH: MESSAGE`, the shape editors and terminals turn into links.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.file)?;
        if let Some(line) = self.line {
            write!(f, "{line}:")?;
            if let Some(column) = self.column {
                write!(f, "{column}:")?;
            }
        }
        if !self.path.is_empty() {
            write!(f, " {}:", self.path)?;
        }
        write!(f, " {}", self.message)
    }
}

/// Every problem found in a document, in document order. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl Diagnostics {
    /// The one problem that stopped parsing before validation could start.
    pub(crate) fn single(
        file: &str,
        position: Option<Position>,
        path: &FieldPath,
        message: String,
    ) -> Self {
        Diagnostics(vec![Diagnostic {
            file: file.to_owned(),
            line: position.map(|position| position.line),
            column: position.map(|position| position.column),
            path: path.to_string(),
            message,
        }])
    }
}

/// Collects diagnostics while a document is validated, attaching positions from the source map.
pub(crate) struct Report<'a> {
    file: &'a str,
    source_map: &'a SourceMap,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    pub(crate) fn new(file: &'a str, source_map: &'a SourceMap) -> Self {
        Report {
            file,
            source_map,
            diagnostics: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        let position = self.source_map.locate(path);
        self.diagnostics.push(Diagnostic {
            file: self.file.to_owned(),
            line: position.map(|position| position.line),
            column: position.map(|position| position.column),
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Reports `outcome`'s message, if any, against `path`; true when there was none.
    pub(crate) fn check(&mut self, path: &FieldPath, outcome: Result<(), String>) -> bool {
        match outcome {
            Ok(()) => true,
            Err(message) => {
                self.error(path, message);
                false
            }
        }
    }

    /// `" (first defined at line 12)"` for a duplicate whose first occurrence is at `path`, or
    /// nothing when that has no position.
    pub(crate) fn first_defined_at(&self, path: &FieldPath) -> String {
        self.source_map
            .exact(path)
            .map_or_else(String::new, |first| {
                format!(" (first defined at line {})", first.line)
            })
    }

    /// Deserializes `value`, found at `path`, into one of the raw document shapes. Every unknown
    /// field of the mapping is reported (and dropped, so the rest can still be checked); after
    /// that, serde stops at the first type error, which is reported at the field it names.
    pub(crate) fn decode<T: DeserializeOwned>(
        &mut self,
        mut value: Value,
        path: &FieldPath,
    ) -> Option<T> {
        let allowed = field_names::<T>();
        if let Value::Mapping(mapping) = &mut value
            && !allowed.is_empty()
        {
            mapping.retain(|key, _| {
                let Value::String(key) = key else {
                    return true;
                };
                if allowed.contains(&key.as_str()) {
                    return true;
                }
                let message = if key == "<<" {
                    // YAML 1.1 merge keys; serde_yaml reads YAML 1.2, which has none.
                    "YAML merge keys (<<) are not supported; write the fields out".to_owned()
                } else {
                    format!(
                        "unknown field {key:?}; expected one of {}",
                        allowed.join(", ")
                    )
                };
                self.error(&path.key(key), message);
                false
            });
        }
        match serde_path_to_error::deserialize(value) {
            Ok(decoded) => Some(decoded),
            Err(error) => {
                let at = path.join_serde(error.path());
                self.error(&at, error.into_inner().to_string());
                None
            }
        }
    }

    /// `value` if nothing was reported, otherwise every diagnostic in document order (those
    /// without a position last).
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, Diagnostics> {
        let mut diagnostics = self.diagnostics;
        match value {
            Some(value) if diagnostics.is_empty() => return Ok(value),
            // Every path that yields no value reports why; this only keeps the promise that
            // an error is never empty should one ever forget to.
            None if diagnostics.is_empty() => diagnostics.push(Diagnostic {
                file: self.file.to_owned(),
                line: None,
                column: None,
                path: String::new(),
                message: "the application is invalid".to_owned(),
            }),
            _ => {}
        }
        diagnostics.sort_by_key(|diagnostic| {
            (
                diagnostic.line.is_none(),
                diagnostic.line,
                diagnostic.column,
            )
        });
        Err(Diagnostics(diagnostics))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagnostic(line: Option<usize>, column: Option<usize>, path: &str) -> Diagnostic {
        Diagnostic {
            file: "app.yaml".into(),
            line,
            column,
            path: path.into(),
            message: "broken".into(),
        }
    }

    #[test]
    fn display_omits_what_is_unknown() {
        let full = diagnostic(Some(3), Some(7), "spec.components[0].type");
        assert_eq!(
            full.to_string(),
            "app.yaml:3:7: spec.components[0].type: broken"
        );
        assert_eq!(diagnostic(None, None, "").to_string(), "app.yaml: broken");
        assert_eq!(
            diagnostic(Some(1), Some(1), "").to_string(),
            "app.yaml:1:1: broken"
        );
        let both = Diagnostics(vec![
            diagnostic(None, None, "a"),
            diagnostic(None, None, "b"),
        ]);
        assert_eq!(both.to_string(), "app.yaml: a: broken\napp.yaml: b: broken");
    }
}
