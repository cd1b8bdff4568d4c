//! The machine's Docker engine, for end-to-end tests of container workloads and of the
//! agent's own image: the project's images, built locally, and what the engine runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository's root, where `scripts/`, `Dockerfile` and `compose.yaml` live.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// Builds `gossipctl/gossipd:dev` and `gossipctl/busybox:local` with `scripts/images.sh`,
/// once per test binary. The script's cargo build uses its own target directory, so it does
/// not wait on the lock of the build that is running these tests.
pub fn build_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(repo_root().join("scripts/images.sh"))
            .status()
            .expect("run scripts/images.sh");
        assert!(status.success(), "scripts/images.sh failed: {status}");
    });
}

/// Runs `docker ARGS` and returns its stdout; panics with its stderr if it fails.
#[track_caller]
pub fn docker(args: &[&str]) -> String {
    stdout_of(Command::new("docker").args(args))
}

/// Runs `command` and returns its stdout; panics with the command and its stderr if it fails.
#[track_caller]
pub fn stdout_of(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Ids of the containers, running or not, that carry the label `key=value`.
pub fn containers_labelled(key: &str, value: &str) -> Vec<String> {
    docker(&[
        "ps",
        "--all",
        "--quiet",
        "--no-trunc",
        "--filter",
        &format!("label={key}={value}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// Removes the containers labelled `key=value`, whatever their state.
pub fn remove_labelled(key: &str, value: &str) {
    let ids = containers_labelled(key, value);
    if !ids.is_empty() {
        let mut args = vec!["rm", "--force"];
        args.extend(ids.iter().map(String::as_str));
        let _ = Command::new("docker").args(&args).output();
    }
}
