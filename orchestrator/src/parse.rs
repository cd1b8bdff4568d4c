//! Reading an OAM `Application` document into the validated [`Application`] model.
//!
//! Parsing happens in passes, each refusing what the next should not see: the size check keeps
//! huge inputs away from the YAML parsers, the positions pass keeps alias bombs away from
//! serde_yaml (and learns where every field is), serde gives the document its shape, and the
//! validator checks meaning, reporting every problem at once with its line and column.

use std::collections::{BTreeSet, HashMap};

use serde_yaml::Value;

use crate::components::decode_component;
use crate::diagnostics::Report;
use crate::json::to_json_object;
use crate::kubevela::{self, unsupported};
use crate::model::{Application, Policy};
use crate::names::check_dns_label;
use crate::overrides::{apply_override, apply_selector};
use crate::path::FieldPath;
use crate::positions::{Position, scan};
use crate::raw::{RawApplication, RawMetadata, RawPolicy, RawSpec};
use crate::references::check_references;
use crate::workflow::{DeployPolicies, decode_workflow};

pub use crate::diagnostics::{Diagnostic, Diagnostics};

/// Applications are small; anything larger is a mistake or an attack, and is refused before
/// any parsing starts.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

const API_VERSION: &str = "core.oam.dev/v1beta1";
const KIND: &str = "Application";
const POLICY_TYPES: [&str; 2] = ["topology", "override"];

/// A valid document: the application, and what the user should know about how it was read
/// (a workflow whose steps are not run one by one, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub application: Application,
    pub notes: Vec<Diagnostic>,
}

/// Parses and validates one OAM `Application` document. `file` is only used to label the
/// diagnostics; nothing is read from disk.
pub fn parse_application(source: &str, file: &str) -> Result<Application, Diagnostics> {
    parse_document(source, file).map(|parsed| parsed.application)
}

/// [`parse_application`], with the notes.
pub fn parse_document(source: &str, file: &str) -> Result<Parsed, Diagnostics> {
    if source.len() > MAX_DOCUMENT_BYTES {
        let message = format!(
            "file is {} bytes; applications are limited to 1 MiB",
            source.len()
        );
        return Err(Diagnostics::single(file, None, &FieldPath::root(), message));
    }
    // serde_yaml misreads a document that starts with a byte order mark, and it carries nothing.
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let source_map = scan(source).map_err(|failure| {
        Diagnostics::single(file, failure.position, &failure.path, failure.message)
    })?;
    // A trailing empty document (`---` and comments) is cut off before serde_yaml, which
    // reads one document only.
    let first = match source_map.end {
        Some(end) => source
            .char_indices()
            .nth(end)
            .map_or(source, |(byte, _)| &source[..byte]),
        None => source,
    };
    let document = load(first).map_err(|(position, message)| {
        Diagnostics::single(file, position, &FieldPath::root(), message)
    })?;
    let mut report = Report::new(file, &source_map);
    let application = check_application(document, &mut report);
    report
        .finish(application)
        .map(|(application, notes)| Parsed { application, notes })
}

/// Hands the document to serde_yaml, which by now can only fail on the few inputs its parser
/// (libyaml) reads differently from yaml-rust2.
fn load(source: &str) -> Result<Value, (Option<Position>, String)> {
    serde_yaml::from_str(source).map_err(|error| {
        let position = error.location().map(|location| Position {
            line: location.line(),
            column: location.column(),
        });
        // The position is reported separately; drop serde_yaml's copy of it from the text.
        let message = error.to_string();
        let message = message.split(" at line ").next().unwrap_or_default();
        (position, format!("YAML syntax error: {message}"))
    })
}

fn check_application(document: Value, report: &mut Report) -> Option<Application> {
    let root = FieldPath::root();
    if document == Value::Null {
        let expected = format!("apiVersion: {API_VERSION}, kind: {KIND}");
        report.error(
            &root,
            format!("the document is empty; expected an OAM Application ({expected})"),
        );
        return None;
    }
    let raw: RawApplication = report.decode(document, &root)?;
    check_header(raw.api_version, "apiVersion", API_VERSION, report);
    check_header(raw.kind, "kind", KIND, report);
    let name = check_metadata(raw.metadata, report);
    let spec_path = root.key("spec");
    let Some(spec) = raw.spec else {
        report.error(&root, "missing spec; expected spec.components");
        return None;
    };
    let spec: RawSpec = report.decode(spec, &spec_path)?;
    let deploy = spec
        .workflow
        .map(|workflow| decode_workflow(workflow, &spec_path.key("workflow"), report))
        .unwrap_or_default();
    let policies_path = spec_path.key("policies");
    let raw_policies = spec.policies.unwrap_or_default();
    let policies = check_policies(raw_policies.clone(), &policies_path, report);
    let components_path = spec_path.key("components");
    let components = match spec.components {
        None => {
            report.error(
                &spec_path,
                "missing components; an application needs at least one",
            );
            Vec::new()
        }
        Some(components) if components.is_empty() => {
            report.error(
                &components_path,
                "components is empty; an application needs at least one",
            );
            Vec::new()
        }
        Some(components) => components,
    };
    let mut components = components;
    let selected = apply_overrides(
        &raw_policies,
        &policies_path,
        &deploy,
        &mut components,
        &components_path,
        report,
    );
    let mut drafts: Vec<_> = components
        .into_iter()
        .enumerate()
        .map(|(index, value)| decode_component(value, components_path.index(index), report))
        .collect();
    check_references(&drafts, report);
    if let Some(selected) = selected {
        drafts = apply_selector(drafts, &selected, report);
    }
    Some(Application {
        name: name?,
        components: drafts
            .into_iter()
            .filter_map(|draft| draft.component)
            .collect(),
        policies,
    })
}

/// Applies the `override` policies the workflow asks for (all of them without one) to the
/// components as written; returns the components their selectors keep, if any has one.
fn apply_overrides(
    policies: &[Value],
    policies_path: &FieldPath,
    deploy: &DeployPolicies,
    components: &mut [Value],
    components_path: &FieldPath,
    report: &mut Report,
) -> Option<BTreeSet<String>> {
    let field =
        |policy: &Value, key: &str| policy.get(key).and_then(Value::as_str).map(str::to_owned);
    let named: Vec<_> = policies
        .iter()
        .map(|policy| (field(policy, "name"), field(policy, "type")))
        .collect();
    let mut selected: Option<BTreeSet<String>> = None;
    for index in deploy.overrides(&named, report) {
        let properties = policies[index]
            .get("properties")
            .cloned()
            .unwrap_or_default();
        let path = policies_path.index(index).key("properties");
        let properties = match properties {
            Value::Null => continue,
            properties => properties,
        };
        if let Some(names) = apply_override(properties, &path, components, components_path, report)
        {
            selected = Some(match selected {
                None => names,
                Some(earlier) => earlier.intersection(&names).cloned().collect(),
            });
        }
    }
    selected
}

fn check_header(value: Option<String>, field: &str, expected: &str, report: &mut Report) {
    match value {
        Some(value) if value == expected => {}
        Some(value) => report.error(
            &FieldPath::root().key(field),
            format!("unsupported {field} {value:?}; expected {expected}"),
        ),
        None => report.error(
            &FieldPath::root(),
            format!("missing {field}; expected {field}: {expected}"),
        ),
    }
}

fn check_metadata(metadata: Option<Value>, report: &mut Report) -> Option<String> {
    let path = FieldPath::root().key("metadata");
    let Some(metadata) = metadata else {
        report.error(
            &FieldPath::root(),
            "missing metadata; expected metadata.name",
        );
        return None;
    };
    let metadata: RawMetadata = report.decode(metadata, &path)?;
    let Some(name) = metadata.name else {
        report.error(&path, "missing name; the application needs a DNS-1123 name");
        return None;
    };
    report.check(&path.key("name"), check_dns_label(&name));
    Some(name)
}

fn check_policies(policies: Vec<Value>, path: &FieldPath, report: &mut Report) -> Vec<Policy> {
    let mut checked = Vec::with_capacity(policies.len());
    let mut first_use: HashMap<String, usize> = HashMap::new();
    for (index, value) in policies.into_iter().enumerate() {
        let policy_path = path.index(index);
        let Some(raw) = report.decode::<RawPolicy>(value, &policy_path) else {
            continue;
        };
        let name_path = policy_path.key("name");
        let name = match raw.name {
            None => {
                report.error(
                    &policy_path,
                    "missing name; every policy needs a DNS-1123 name",
                );
                None
            }
            Some(name) => {
                if let Some(&first) = first_use.get(&name) {
                    let first = report.first_defined_at(&path.index(first).key("name"));
                    report.error(&name_path, format!("duplicate policy name {name:?}{first}"));
                } else {
                    first_use.insert(name.clone(), index);
                }
                report
                    .check(&name_path, check_dns_label(&name))
                    .then_some(name)
            }
        };
        let expected_types = POLICY_TYPES.join(" or ");
        let kind = match raw.kind {
            None => {
                report.error(
                    &policy_path,
                    format!("missing type; expected {expected_types}"),
                );
                None
            }
            Some(kind) if POLICY_TYPES.contains(&kind.as_str()) => Some(kind),
            Some(kind) if kubevela::POLICY_TYPES.contains(&kind.as_str()) => {
                report.error(
                    &policy_path.key("type"),
                    unsupported(
                        &format!("policy type {kind:?}"),
                        &format!("expected {expected_types}"),
                    ),
                );
                None
            }
            Some(kind) => {
                report.error(
                    &policy_path.key("type"),
                    format!("unknown policy type {kind:?}; expected {expected_types}"),
                );
                None
            }
        };
        let properties = to_json_object(raw.properties, &policy_path.key("properties"), report);
        if let (Some(name), Some(kind), Some(properties)) = (name, kind, properties) {
            checked.push(Policy {
                name,
                kind,
                properties,
            });
        }
    }
    checked
}

#[cfg(test)]
mod round_trip;
#[cfg(test)]
mod tests;
