//! KubeVela's `spec.workflow`, as far as gossipctl can honour it.
//!
//! gossipctl has no workflow engine: a deploy starts every component at once, each after the
//! components it `dependsOn`. A workflow whose steps only deploy (`deploy`, `apply-component`,
//! `apply-application`) therefore means nothing more than that, and is accepted with a note;
//! any other step (an approval, a notification, a webhook) would be silently skipped, so it is
//! refused by name. What a workflow does decide is which `override` policies apply: those its
//! `deploy` steps name. KubeVela can deploy one application in several variants (one per step);
//! gossipctl runs one, so every deploying step must ask for the same overrides.

use serde_yaml::Value;

use crate::diagnostics::Report;
use crate::kubevela::{STEP_TYPES, unsupported};
use crate::path::FieldPath;
use crate::raw::{RawDeployStep, RawStep, RawWorkflow};
use crate::references::Reference;

/// The step types that only deploy components.
const DEPLOY_STEPS: [&str; 3] = ["deploy", "apply-component", "apply-application"];

/// Which policies the workflow's `deploy` steps ask for.
#[derive(Debug, Default)]
pub(crate) struct DeployPolicies {
    /// One entry per `deploy` step, in step order.
    pub steps: Vec<DeployStep>,
    /// Whether the workflow has steps at all. Without any (no workflow, or `steps: []`),
    /// every `override` policy applies, as in KubeVela's generated default workflow; with
    /// only `apply-component` / `apply-application` steps, none does.
    pub has_steps: bool,
}

#[derive(Debug)]
pub(crate) struct DeployStep {
    pub path: FieldPath,
    pub policies: Vec<Reference>,
}

/// Decodes `spec.workflow` at `path`, refusing every step that does more than deploy.
pub(crate) fn decode_workflow(
    value: Value,
    path: &FieldPath,
    report: &mut Report,
) -> DeployPolicies {
    let mut plan = DeployPolicies::default();
    let Some(raw) = report.decode::<RawWorkflow>(value, path) else {
        return plan;
    };
    if raw.reference.is_some() {
        report.error(
            &path.key("ref"),
            unsupported(
                "a workflow stored elsewhere (ref)",
                "write its deploy steps under workflow.steps",
            ),
        );
    }
    let steps_path = path.key("steps");
    for (index, step) in raw.steps.unwrap_or_default().into_iter().enumerate() {
        plan.has_steps = true;
        let step_path = steps_path.index(index);
        if let Some(step) = decode_step(step, &step_path, report) {
            plan.steps.push(step);
        }
    }
    report.note(
        path,
        "workflow steps are not run one by one: gossipctl deploys every component at once, \
         each starting after the components it dependsOn",
    );
    plan
}

fn decode_step(value: Value, path: &FieldPath, report: &mut Report) -> Option<DeployStep> {
    let raw = report.decode::<RawStep>(value, path)?;
    let expected = format!("expected one of {}", DEPLOY_STEPS.join(", "));
    let kind = match raw.kind {
        None => {
            report.error(path, format!("missing type; {expected}"));
            return None;
        }
        Some(kind) => kind,
    };
    let type_path = path.key("type");
    if !DEPLOY_STEPS.contains(&kind.as_str()) {
        let message = if STEP_TYPES.contains(&kind.as_str()) {
            unsupported(
                &format!("workflow step type {kind:?}"),
                &format!("only steps that deploy are accepted ({expected})"),
            )
        } else {
            format!("unknown workflow step type {kind:?}; {expected}")
        };
        report.error(&type_path, message);
        return None;
    }
    if raw.sub_steps.is_some() {
        report.error(
            &path.key("subSteps"),
            unsupported(
                "subSteps (a step-group)",
                "list the deploy steps one by one",
            ),
        );
    }
    let properties_path = path.key("properties");
    let mut step = DeployStep {
        path: path.clone(),
        policies: Vec::new(),
    };
    if kind != "deploy" {
        // apply-component and apply-application deploy what the file says; only deploy steps
        // choose policies.
        return None;
    }
    let properties = match raw.properties {
        None | Some(Value::Null) => return Some(step),
        Some(properties) => properties,
    };
    let deploy = report.decode::<RawDeployStep>(properties, &properties_path)?;
    if deploy.auto == Some(false) {
        report.error(
            &properties_path.key("auto"),
            unsupported(
                "auto: false (waiting for a manual approval)",
                "a deploy starts at once; remove it",
            ),
        );
    }
    let policies_path = properties_path.key("policies");
    step.policies = deploy
        .policies
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(index, name)| Reference {
            name,
            path: policies_path.index(index),
        })
        .collect();
    Some(step)
}

impl DeployPolicies {
    /// The indices of the `override` policies to apply, in order, given each policy's name and
    /// type as written. Names a step gives that match no policy are reported.
    pub(crate) fn overrides(
        &self,
        policies: &[(Option<String>, Option<String>)],
        report: &mut Report,
    ) -> Vec<usize> {
        let is_override = |index: &usize| policies[*index].1.as_deref() == Some("override");
        let Some(first) = self.steps.first() else {
            return if self.has_steps {
                Vec::new()
            } else {
                (0..policies.len()).filter(is_override).collect()
            };
        };
        let known: Vec<&str> = policies.iter().filter_map(|(n, _)| n.as_deref()).collect();
        let mut chosen: Vec<Vec<usize>> = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let mut indices = Vec::new();
            for reference in &step.policies {
                match policies
                    .iter()
                    .position(|(name, _)| name.as_deref() == Some(reference.name.as_str()))
                {
                    Some(index) => indices.push(index),
                    None => report.error(
                        &reference.path,
                        format!(
                            "no policy named {:?}; expected one of {}",
                            reference.name,
                            if known.is_empty() {
                                "the policies under spec.policies (there are none)".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ),
                }
            }
            indices.retain(is_override);
            chosen.push(indices);
        }
        if let Some(other) = chosen.iter().position(|c| *c != chosen[0]) {
            report.error(
                &self.steps[other].path,
                unsupported(
                    "deploying one application in several variants (deploy steps with \
                     different override policies)",
                    &format!(
                        "gossipctl runs one variant: name the same override policies as the \
                         step at line {}",
                        report.line_of(&first.path).unwrap_or(0)
                    ),
                ),
            );
        }
        chosen.swap_remove(0)
    }
}
