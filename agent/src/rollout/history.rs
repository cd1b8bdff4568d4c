//! An application's generations: what a deploy writes beside the new definition, so that a
//! rollout can return to the last definition that was fully available, and an operator can
//! list and undo generations. All of it is inside the admin-sealed application entry, so no
//! node can rewrite the history or the rollback target.

use std::collections::BTreeMap;

use orchestrator::Application;
use serde::{Deserialize, Serialize};

use crate::store::StoredApp;

/// Earlier generations kept per application (`rollout history`), newest first.
pub const HISTORY_KEPT: usize = 10;

/// One earlier generation of an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub generation: u64,
    /// When it was deployed (wall-clock milliseconds, the deploying agent's clock).
    pub deployed_ms: u64,
    pub app: Application,
}

/// What a deploy of `app` at `now_ms` stores, given the stored application `previous`.
/// `complete(component, fingerprint)` says whether that definition of a component was fully
/// available (its rollout complete): such a definition becomes the component's rollback
/// target; otherwise the previous target stays.
pub fn next(
    previous: Option<&StoredApp>,
    app: Application,
    now_ms: u64,
    complete: impl Fn(&str, u64) -> bool,
) -> StoredApp {
    let Some(previous) = previous else {
        return StoredApp {
            app,
            generation: 1,
            deployed_ms: now_ms,
            stable: BTreeMap::new(),
            history: Vec::new(),
        };
    };
    let mut stable = BTreeMap::new();
    for component in &app.components {
        let before = previous
            .app
            .components
            .iter()
            .find(|c| c.name == component.name);
        let kept = match before {
            Some(before) if complete(&before.name, before.fingerprint()) => Some(before.clone()),
            _ => previous.stable.get(&component.name).cloned(),
        };
        if let Some(kept) = kept {
            stable.insert(component.name.clone(), kept);
        }
    }
    let mut history = Vec::with_capacity(HISTORY_KEPT);
    history.push(Revision {
        generation: previous.generation,
        deployed_ms: previous.deployed_ms,
        app: previous.app.clone(),
    });
    history.extend(previous.history.iter().take(HISTORY_KEPT - 1).cloned());
    StoredApp {
        app,
        generation: previous.generation + 1,
        deployed_ms: now_ms,
        stable,
        history,
    }
}

/// The definition `rollout undo` deploys again: generation `to`, or the one before the
/// current generation.
pub fn undo_target(stored: &StoredApp, to: Option<u64>) -> Result<&Application, String> {
    match to {
        None => stored.history.first().map(|r| &r.app).ok_or_else(|| {
            format!(
                "application {:?} has no earlier generation to return to",
                stored.app.name
            )
        }),
        Some(generation) if generation == stored.generation => Err(format!(
            "generation {generation} of {:?} is the current one",
            stored.app.name
        )),
        Some(generation) => stored
            .history
            .iter()
            .find(|r| r.generation == generation)
            .map(|r| &r.app)
            .ok_or_else(|| {
                let kept: Vec<String> = stored
                    .history
                    .iter()
                    .map(|r| r.generation.to_string())
                    .collect();
                format!(
                    "application {:?} keeps no generation {generation}; kept: {}",
                    stored.app.name,
                    if kept.is_empty() {
                        "none".to_string()
                    } else {
                        kept.join(", ")
                    }
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(image: &str) -> Application {
        let source = format!(
            "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: shop\nspec:\n  components:\n    - name: web\n      type: process\n      properties:\n        command: [\"{image}\"]\n"
        );
        orchestrator::parse_application(&source, "app.yaml").expect("valid")
    }

    #[test]
    fn a_complete_generation_becomes_the_rollback_target_and_history_is_bounded() {
        let first = next(None, app("v1"), 10, |_, _| false);
        assert_eq!((first.generation, first.deployed_ms), (1, 10));
        let v1 = first.app.components[0].clone();
        let second = next(Some(&first), app("v2"), 20, |_, fp| fp == v1.fingerprint());
        assert_eq!(second.generation, 2);
        assert_eq!(second.stable.get("web"), Some(&v1));
        // v2 never completed: a third deploy still returns to v1 if it fails.
        let third = next(Some(&second), app("v3"), 30, |_, _| false);
        assert_eq!(third.stable.get("web"), Some(&v1));
        assert_eq!(
            third
                .history
                .iter()
                .map(|r| r.generation)
                .collect::<Vec<_>>(),
            vec![2, 1]
        );
        let mut stored = third;
        for i in 4..30 {
            stored = next(Some(&stored), app(&format!("v{i}")), i, |_, _| true);
        }
        assert_eq!(stored.history.len(), HISTORY_KEPT);
        assert_eq!(stored.history[0].generation, stored.generation - 1);
    }

    #[test]
    fn undo_returns_to_the_previous_or_a_named_generation() {
        let first = next(None, app("v1"), 0, |_, _| true);
        assert!(undo_target(&first, None).is_err());
        let second = next(Some(&first), app("v2"), 0, |_, _| true);
        let third = next(Some(&second), app("v3"), 0, |_, _| true);
        assert_eq!(undo_target(&third, None).unwrap(), &second.app);
        assert_eq!(undo_target(&third, Some(1)).unwrap(), &first.app);
        let missing = undo_target(&third, Some(9)).unwrap_err();
        assert!(missing.contains("kept: 2, 1"), "{missing}");
        assert!(
            undo_target(&third, Some(3))
                .unwrap_err()
                .contains("current")
        );
    }
}
