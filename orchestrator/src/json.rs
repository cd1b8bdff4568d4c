//! Free-form properties (those of policies) are kept as JSON values: JSON is what agents store
//! and replicate, and its maps have string keys and a canonical key order.
//!
//! Converting refuses the YAML that JSON cannot represent (non-string keys, tags, NaN), so the
//! stored value is exactly what the file said.

use std::collections::BTreeMap;

use serde_yaml::Value;

use crate::diagnostics::Report;
use crate::path::FieldPath;

/// Converts an optional properties mapping; absent or null means empty.
pub(crate) fn to_json_object(
    value: Option<Value>,
    path: &FieldPath,
    report: &mut Report,
) -> Option<BTreeMap<String, serde_json::Value>> {
    let mapping = match value {
        None | Some(Value::Null) => return Some(BTreeMap::new()),
        Some(Value::Mapping(mapping)) => mapping,
        Some(_) => {
            report.error(path, "expected a mapping of property names to values");
            return None;
        }
    };
    let mut object = BTreeMap::new();
    let mut ok = true;
    for (key, value) in mapping {
        match key {
            Value::String(key) => {
                let converted = to_json(value, &path.key(&key), report);
                match converted {
                    Some(converted) => {
                        object.insert(key, converted);
                    }
                    None => ok = false,
                }
            }
            _ => {
                report.error(path, non_string_key(&key));
                ok = false;
            }
        }
    }
    ok.then_some(object)
}

/// Converts any YAML value, reporting every part that has no JSON equivalent.
fn to_json(value: Value, path: &FieldPath, report: &mut Report) -> Option<serde_json::Value> {
    match value {
        Value::Null => Some(serde_json::Value::Null),
        Value::Bool(flag) => Some(serde_json::Value::Bool(flag)),
        Value::String(text) => Some(serde_json::Value::String(text)),
        Value::Number(number) => {
            let converted = if let Some(unsigned) = number.as_u64() {
                Some(serde_json::Number::from(unsigned))
            } else if let Some(signed) = number.as_i64() {
                Some(serde_json::Number::from(signed))
            } else {
                number.as_f64().and_then(serde_json::Number::from_f64)
            };
            if converted.is_none() {
                report.error(
                    path,
                    format!("{number} is not a finite number; JSON cannot hold it"),
                );
            }
            converted.map(serde_json::Value::Number)
        }
        Value::Sequence(items) => {
            let mut converted = Vec::with_capacity(items.len());
            let mut ok = true;
            for (index, item) in items.into_iter().enumerate() {
                match to_json(item, &path.index(index), report) {
                    Some(item) => converted.push(item),
                    None => ok = false,
                }
            }
            ok.then_some(serde_json::Value::Array(converted))
        }
        Value::Mapping(_) => to_json_object(Some(value), path, report)
            .map(|object| serde_json::Value::Object(object.into_iter().collect())),
        Value::Tagged(tagged) => {
            report.error(
                path,
                format!(
                    "YAML tags such as {} are not supported; remove the tag",
                    tagged.tag
                ),
            );
            None
        }
    }
}

fn non_string_key(key: &Value) -> String {
    let shown = serde_yaml::to_string(key).unwrap_or_default();
    format!(
        "mapping key {} is not a string; quote it so it is stored as one",
        shown.trim_end()
    )
}
