//! `gossipctl validate` runs offline, so it is checked here against the real binary without a
//! cluster. Being an integration test of the `cli` package also makes `cargo test --workspace`
//! build `target/<profile>/gossipctl`, which the end-to-end tests in `tests/` run.

use std::path::Path;
use std::process::Command;

fn gossipctl(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gossipctl"))
        .args(args)
        .output()
        .expect("run gossipctl");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn the_shipped_examples_validate() {
    for name in [
        "hello.yaml",
        "fashion-mnist-delta-sum.yaml",
        "edge-app.yaml",
        "two-tier.yaml",
        "override.yaml",
    ] {
        let (code, stdout, stderr) = gossipctl(&["validate", &example(name)]);
        assert_eq!(code, 0, "{name}: stdout: {stdout}\nstderr: {stderr}");
    }
}

#[test]
fn a_bad_field_is_named_with_its_position_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: bad\nspec:\n  components:\n    - name: job\n      type: process\n      properties:\n        command: []\n",
    )
    .unwrap();
    let (code, _, stderr) = gossipctl(&["validate", file.to_str().unwrap()]);
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(
        stderr.contains("bad.yaml:"),
        "no file position in: {stderr}"
    );
    assert!(
        stderr.contains("spec.components[0].properties.command"),
        "no field path in: {stderr}"
    );
}

#[test]
fn an_override_policy_is_applied_and_a_deploy_only_workflow_noted() {
    let (code, stdout, stderr) = gossipctl(&["validate", &example("override.yaml")]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("1 component, 3 replicas"),
        "the production override's scaler applies: {stdout}"
    );
    let note = stderr
        .lines()
        .find(|line| line.contains("note: spec.workflow:"))
        .unwrap_or_else(|| panic!("no note about the workflow in: {stderr}"));
    assert!(note.contains("override.yaml:35:3:"), "{note}");
    assert!(note.contains("dependsOn"), "{note}");
}
