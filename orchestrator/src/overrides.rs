//! KubeVela's `override` policy: per-deployment changes to components, merged into the
//! components as written before they are validated.
//!
//! The merge follows KubeVela's: a patch names a component (or, without a name, applies to every
//! component, or to every component of its `type`); its `properties` are merged into the
//! component's (mappings key by key, recursively; anything else, lists included, is replaced;
//! `null` removes a key, as in JSON Merge Patch, RFC 7396); each of its `traits` is merged into
//! the component's trait of the same type, appended when there is none, or removed with
//! `disable: true`. Policies apply in the order they are listed (or named by the workflow's
//! deploy step), so a later one wins. `selector` keeps only the named components.
//!
//! Every merged value is reported, when it is wrong, where the policy wrote it.

use std::collections::BTreeSet;

use serde_yaml::{Mapping, Value};

use crate::components::ComponentDraft;
use crate::diagnostics::Report;
use crate::path::FieldPath;
use crate::raw::{RawComponentPatch, RawOverride, RawTraitPatch};

/// Applies one `override` policy, whose properties are at `path`, to `components` (at
/// `components_path`). Returns its `selector`, if it has one.
pub(crate) fn apply_override(
    properties: Value,
    path: &FieldPath,
    components: &mut [Value],
    components_path: &FieldPath,
    report: &mut Report,
) -> Option<BTreeSet<String>> {
    let raw = report.decode::<RawOverride>(properties, path)?;
    let names: Vec<Option<String>> = components.iter().map(|c| text(c, "name")).collect();
    let patches_path = path.key("components");
    for (index, patch) in raw.components.unwrap_or_default().into_iter().enumerate() {
        let patch_path = patches_path.index(index);
        let Some(patch) = report.decode::<RawComponentPatch>(patch, &patch_path) else {
            continue;
        };
        let traits = trait_patches(
            patch.traits.clone().unwrap_or_default(),
            &patch_path,
            report,
        );
        let targets = targets(&patch, &patch_path, components, &names, report);
        for target in targets {
            let component_path = components_path.index(target);
            patch_component(
                &mut components[target],
                patch.properties.clone(),
                &traits,
                &component_path,
                &patch_path,
                report,
            );
        }
    }
    let selector = raw.selector?;
    let selector_path = path.key("selector");
    let mut selected = BTreeSet::new();
    for (index, name) in selector.into_iter().enumerate() {
        if names.iter().flatten().any(|known| *known == name) {
            selected.insert(name);
        } else {
            report.error(
                &selector_path.index(index),
                format!("selector names {name:?}, which is not a component of this application"),
            );
        }
    }
    Some(selected)
}

/// The indices of the components `patch` applies to.
fn targets(
    patch: &RawComponentPatch,
    path: &FieldPath,
    components: &[Value],
    names: &[Option<String>],
    report: &mut Report,
) -> Vec<usize> {
    let of_type = |index: usize| {
        patch
            .kind
            .as_ref()
            .is_none_or(|kind| text(&components[index], "type").as_ref() == Some(kind))
    };
    let Some(name) = &patch.name else {
        return (0..components.len()).filter(|&i| of_type(i)).collect();
    };
    let Some(index) = names.iter().position(|n| n.as_ref() == Some(name)) else {
        let known: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
        report.error(
            &path.key("name"),
            format!(
                "no component named {name:?} to override; expected one of {}",
                known.join(", ")
            ),
        );
        return Vec::new();
    };
    if !of_type(index) {
        let actual = text(&components[index], "type").unwrap_or_default();
        report.error(
            &path.key("type"),
            format!(
                "component {name:?} is of type {actual:?}, not {:?}; the override cannot change a component's type",
                patch.kind.as_deref().unwrap_or_default()
            ),
        );
        return Vec::new();
    }
    vec![index]
}

/// One decoded entry of a patch's `traits`, with the path it was written at.
struct TraitPatch {
    kind: String,
    properties: Option<Value>,
    disable: bool,
    path: FieldPath,
}

fn trait_patches(
    traits: Vec<Value>,
    patch_path: &FieldPath,
    report: &mut Report,
) -> Vec<TraitPatch> {
    let traits_path = patch_path.key("traits");
    let mut decoded = Vec::with_capacity(traits.len());
    for (index, value) in traits.into_iter().enumerate() {
        let path = traits_path.index(index);
        let Some(raw) = report.decode::<RawTraitPatch>(value, &path) else {
            continue;
        };
        let Some(kind) = raw.kind else {
            report.error(
                &path,
                "missing type; a trait patch names the trait it changes",
            );
            continue;
        };
        decoded.push(TraitPatch {
            kind,
            properties: raw.properties,
            disable: raw.disable == Some(true),
            path,
        });
    }
    decoded
}

fn patch_component(
    component: &mut Value,
    properties: Option<Value>,
    traits: &[TraitPatch],
    component_path: &FieldPath,
    patch_path: &FieldPath,
    report: &mut Report,
) {
    let Value::Mapping(component) = component else {
        // A malformed component is reported when it is decoded.
        return;
    };
    if let Some(properties) = properties {
        merge_into(
            component,
            "properties",
            properties,
            component_path,
            patch_path,
            report,
        );
    }
    for patch in traits {
        patch_trait(component, patch, &component_path.key("traits"), report);
    }
}

fn patch_trait(
    component: &mut Mapping,
    patch: &TraitPatch,
    traits_path: &FieldPath,
    report: &mut Report,
) {
    let (kind, disable, patch_path) = (patch.kind.as_str(), patch.disable, &patch.path);
    let properties = patch.properties.clone();
    let traits = component
        .entry(Value::from("traits"))
        .or_insert_with(|| Value::Sequence(Vec::new()));
    let Value::Sequence(traits) = traits else {
        // A malformed traits list is reported when the component is decoded.
        return;
    };
    let existing = traits
        .iter()
        .position(|t| text(t, "type").as_deref() == Some(kind));
    match (existing, disable) {
        (Some(index), true) => {
            traits.remove(index);
            // Every later trait moved up by one: report it where it was written.
            for moved in index..traits.len() {
                report.alias(traits_path.index(moved), traits_path.index(moved + 1));
            }
        }
        (None, true) => {}
        (Some(index), false) => {
            if let (Some(properties), Value::Mapping(existing)) = (properties, &mut traits[index]) {
                merge_into(
                    existing,
                    "properties",
                    properties,
                    &traits_path.index(index),
                    patch_path,
                    report,
                );
            }
        }
        (None, false) => {
            let mut added = Mapping::new();
            added.insert(Value::from("type"), Value::from(kind));
            if let Some(properties) = properties {
                added.insert(Value::from("properties"), properties);
            }
            report.alias(traits_path.index(traits.len()), patch_path.clone());
            traits.push(Value::Mapping(added));
        }
    }
}

/// Merges `patch` into `base[key]`, both under their own paths.
fn merge_into(
    base: &mut Mapping,
    key: &str,
    patch: Value,
    base_path: &FieldPath,
    patch_path: &FieldPath,
    report: &mut Report,
) {
    let (base_path, patch_path) = (base_path.key(key), patch_path.key(key));
    match base.get_mut(key) {
        Some(existing) => merge(existing, patch, &base_path, &patch_path, report),
        None if patch.is_null() => {}
        None => {
            report.alias(base_path, patch_path);
            base.insert(Value::from(key), patch);
        }
    }
}

/// JSON Merge Patch (RFC 7396) on YAML values, recording where each replaced value came from.
fn merge(
    base: &mut Value,
    patch: Value,
    base_path: &FieldPath,
    patch_path: &FieldPath,
    report: &mut Report,
) {
    match (base, patch) {
        (Value::Mapping(base), Value::Mapping(patch)) => {
            for (key, value) in patch {
                let Some(name) = key.as_str().map(str::to_owned) else {
                    base.insert(key, value);
                    continue;
                };
                if value.is_null() {
                    base.remove(&key);
                } else {
                    merge_into(base, &name, value, base_path, patch_path, report);
                }
            }
        }
        (base, patch) => {
            report.alias(base_path.clone(), patch_path.clone());
            *base = patch;
        }
    }
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Keeps the components every selector names; a kept component may not refer to one left out.
pub(crate) fn apply_selector(
    drafts: Vec<ComponentDraft>,
    selected: &BTreeSet<String>,
    report: &mut Report,
) -> Vec<ComponentDraft> {
    let kept: Vec<ComponentDraft> = drafts
        .into_iter()
        .filter(|draft| draft.name.as_ref().is_some_and(|n| selected.contains(n)))
        .collect();
    for draft in &kept {
        let references = draft
            .depends_on
            .iter()
            .chain(&draft.colocate_with)
            .chain(&draft.avoid);
        for reference in references {
            if !selected.contains(&reference.name) {
                report.error(
                    &reference.path,
                    format!(
                        "{:?} is left out by the override policy's selector; a selected \
                         component cannot refer to it",
                        reference.name
                    ),
                );
            }
        }
    }
    kept
}
