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

impl Diagnostic {
    /// `FILE:LINE:COL: note: PATH: MESSAGE`: something the user should know that is not wrong.
    pub fn as_note(&self) -> String {
        let mut text = format!("{}:", self.file);
        if let Some(line) = self.line {
            text.push_str(&format!("{line}:"));
            if let Some(column) = self.column {
                text.push_str(&format!("{column}:"));
            }
        }
        text.push_str(" note:");
        if !self.path.is_empty() {
            text.push_str(&format!(" {}:", self.path));
        }
        text.push_str(&format!(" {}", self.message));
        text
    }
}

/// Collects diagnostics while a document is validated, attaching positions from the source map.
pub(crate) struct Report<'a> {
    file: &'a str,
    source_map: &'a SourceMap,
    diagnostics: Vec<Diagnostic>,
    notes: Vec<Diagnostic>,
    /// `(stands_for, written_at)`, oldest first: a field under `stands_for` was written under
    /// `written_at` (an `override` policy's value merged into a component, a trait moved up
    /// when one before it was removed). Problems are reported where the user wrote them.
    aliases: Vec<(FieldPath, FieldPath)>,
}

impl<'a> Report<'a> {
    pub(crate) fn new(file: &'a str, source_map: &'a SourceMap) -> Self {
        Report {
            file,
            source_map,
            diagnostics: Vec::new(),
            notes: Vec::new(),
            aliases: Vec::new(),
        }
    }

    /// Fields under `stands_for` are, from now on, reported at the same place under
    /// `written_at`. Aliases added together as one move must be added in an order where none
    /// maps onto one added after it (they are followed newest first, each at most once).
    pub(crate) fn alias(&mut self, stands_for: FieldPath, written_at: FieldPath) {
        self.aliases.push((stands_for, written_at));
    }

    /// Where `path` was written: each alias, newest first, rewrites the path if it applies.
    fn resolve(&self, path: &FieldPath) -> FieldPath {
        let mut resolved = path.clone();
        for (stands_for, written_at) in self.aliases.iter().rev() {
            if let Some(rebased) = resolved.rebase(stands_for, written_at) {
                resolved = rebased;
            }
        }
        resolved
    }

    fn diagnostic(&self, path: &FieldPath, message: String) -> Diagnostic {
        let path = self.resolve(path);
        let position = self.source_map.locate(&path);
        Diagnostic {
            file: self.file.to_owned(),
            line: position.map(|position| position.line),
            column: position.map(|position| position.column),
            path: path.to_string(),
            message,
        }
    }

    pub(crate) fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        let diagnostic = self.diagnostic(path, message.into());
        self.diagnostics.push(diagnostic);
    }

    /// Something the user should know that does not make the document invalid.
    pub(crate) fn note(&mut self, path: &FieldPath, message: impl Into<String>) {
        let diagnostic = self.diagnostic(path, message.into());
        self.notes.push(diagnostic);
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
            .exact(&self.resolve(path))
            .map_or_else(String::new, |first| {
                format!(" (first defined at line {})", first.line)
            })
    }

    /// The line `path` was written on, if the document spells it out.
    pub(crate) fn line_of(&self, path: &FieldPath) -> Option<usize> {
        self.source_map
            .locate(&self.resolve(path))
            .map(|position| position.line)
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
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<(T, Vec<Diagnostic>), Diagnostics> {
        let mut diagnostics = self.diagnostics;
        match value {
            Some(value) if diagnostics.is_empty() => return Ok((value, self.notes)),
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
