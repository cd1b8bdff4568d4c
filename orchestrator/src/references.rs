//! Checks that need every component at once: unique names, and references between components
//! (`dependsOn`, `podAffinity`, `podAntiAffinity`) that point at components that exist, never
//! at the referring component itself, and never round in a circle.

use std::collections::HashMap;

use crate::components::ComponentDraft;
use crate::diagnostics::Report;
use crate::graph::find_cycles;
use crate::path::FieldPath;

/// A component name written somewhere in the document, and where.
#[derive(Debug, Clone)]
pub(crate) struct Reference {
    pub name: String,
    pub path: FieldPath,
}

pub(crate) fn check_references(drafts: &[ComponentDraft], report: &mut Report) {
    let index_of = unique_names(drafts, report);
    let mut known_names: Vec<&str> = index_of.keys().copied().collect();
    known_names.sort_by_key(|name| index_of.get(name));
    let resolve = |reference: &Reference, report: &mut Report| -> Option<usize> {
        let target = index_of.get(reference.name.as_str()).copied();
        if target.is_none() {
            report.error(
                &reference.path,
                format!(
                    "unknown component {:?}; expected one of {}",
                    reference.name,
                    abbreviated(&known_names)
                ),
            );
        }
        target
    };

    let mut successors = vec![Vec::new(); drafts.len()];
    for (index, draft) in drafts.iter().enumerate() {
        for reference in &draft.depends_on {
            match resolve(reference, report) {
                Some(target) if target == index => {
                    report.error(&reference.path, "a component cannot depend on itself");
                }
                Some(target) => successors[index].push(target),
                None => {}
            }
        }
        let placement_references = [
            (&draft.colocate_with, "podAffinity"),
            (&draft.avoid, "podAntiAffinity"),
        ];
        for (references, field) in placement_references {
            for reference in references {
                if draft.name.as_deref() == Some(reference.name.as_str()) {
                    let advice = if field == "podAntiAffinity" {
                        "; to keep its replicas apart, use the spread trait"
                    } else {
                        ""
                    };
                    report.error(
                        &reference.path,
                        format!("{field} names the component itself{advice}"),
                    );
                } else {
                    resolve(reference, report);
                }
            }
        }
    }

    for cycle in find_cycles(&successors) {
        let names: Vec<&str> = cycle
            .iter()
            .chain(cycle.first())
            .filter_map(|&index| drafts[index].name.as_deref())
            .collect();
        let Some(&first) = cycle.first() else {
            continue;
        };
        let path = drafts[first].path.key("dependsOn");
        report.error(&path, format!("dependsOn cycle: {}", names.join(" -> ")));
    }
}

/// Maps each component name to the first component that has it, reporting later duplicates.
fn unique_names<'a>(drafts: &'a [ComponentDraft], report: &mut Report) -> HashMap<&'a str, usize> {
    let mut index_of: HashMap<&str, usize> = HashMap::new();
    for (index, draft) in drafts.iter().enumerate() {
        let Some(name) = draft.name.as_deref() else {
            continue;
        };
        if let Some(&first) = index_of.get(name) {
            let first = report.first_defined_at(&drafts[first].path.key("name"));
            report.error(
                &draft.path.key("name"),
                format!("duplicate component name {name:?}{first}"),
            );
        } else {
            index_of.insert(name, index);
        }
    }
    index_of
}

/// The names in a list of component names (`dependsOn`, `podAffinity.components`) at `path`,
/// each with its own path; a name listed twice is reported and kept once.
pub(crate) fn unique_references(
    names: Vec<String>,
    path: &FieldPath,
    report: &mut Report,
) -> Vec<Reference> {
    let mut first_use: HashMap<String, usize> = HashMap::new();
    let mut references = Vec::with_capacity(names.len());
    for (index, name) in names.into_iter().enumerate() {
        let reference_path = path.index(index);
        if let Some(&first) = first_use.get(&name) {
            let first = report.first_defined_at(&path.index(first));
            report.error(&reference_path, format!("{name:?} is listed twice{first}"));
            continue;
        }
        first_use.insert(name.clone(), index);
        references.push(Reference {
            name,
            path: reference_path,
        });
    }
    references
}

/// At most a handful of names: a message repeated for every bad reference must stay short
/// even in an application with thousands of components.
fn abbreviated(names: &[&str]) -> String {
    const SHOWN: usize = 10;
    if names.len() <= SHOWN {
        names.join(", ")
    } else {
        format!(
            "{}, ... ({} more)",
            names[..SHOWN].join(", "),
            names.len() - SHOWN
        )
    }
}
