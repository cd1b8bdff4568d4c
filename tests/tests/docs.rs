//! The README's promises about the repository itself: its Quickstart names two commands, one
//! that runs the product and one that runs every test, and CI runs that same test command, so
//! the two cannot drift apart.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use e2e::docker::repo_root;

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_root().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// The commands of the first `sh` block under `## Quickstart`, without their comments.
fn quickstart_commands(readme: &str) -> Vec<String> {
    let section = readme
        .split("\n## Quickstart")
        .nth(1)
        .expect("README has a ## Quickstart section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the Quickstart section has a ```sh block");
    block
        .lines()
        .map(|line| line.split(" #").next().unwrap_or("").trim().to_string())
        .filter(|command| !command.is_empty() && !command.starts_with('#'))
        .collect()
}

/// The commands `.ci/run` runs: its lines that are neither comments nor shell set-up.
fn ci_commands(script: &str) -> Vec<String> {
    script
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn assert_executable(relative: &str) {
    let path = repo_root().join(relative);
    let mode = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
        .permissions()
        .mode();
    assert!(mode & 0o111 != 0, "{relative} is not executable");
}

#[test]
fn ci_runs_the_readmes_test_command() {
    let quickstart = quickstart_commands(&read("README.md"));
    assert_eq!(
        quickstart.len(),
        2,
        "the Quickstart block should hold two commands (run, test): {quickstart:?}"
    );
    let (run, test) = (&quickstart[0], &quickstart[1]);
    for command in [run, test] {
        let program = command.split_whitespace().next().unwrap();
        assert!(
            Path::new(program).is_relative() && repo_root().join(program).is_file(),
            "the Quickstart command {command:?} should be a script in the repository"
        );
        assert_executable(program);
    }

    let ci = ci_commands(&read(".ci/run"));
    assert_eq!(
        ci.last(),
        Some(test),
        "the last command .ci/run runs should be the README's test command {test:?}: {ci:?}"
    );
    // The test command is the whole workspace's tests, as pinned by the lock file.
    let script = read(test.split_whitespace().next().unwrap());
    assert!(
        script.contains("cargo test --workspace --locked"),
        "{test} does not run `cargo test --workspace --locked`"
    );
}

#[test]
fn the_quickstart_parser_reads_commands_and_drops_comments() {
    let readme = "# x\n\n## Quickstart\n\n```sh\na.sh   # one\n# note\nb.sh --x  # two\n```\n\n## Next\n```sh\nc.sh\n```\n";
    assert_eq!(quickstart_commands(readme), ["a.sh", "b.sh --x"]);
    let ci = "#!/bin/sh\nset -e\n# comment\n\nscripts/test.sh\n";
    assert_eq!(
        ci_commands(ci).last().map(String::as_str),
        Some("scripts/test.sh")
    );
}

/// `scripts/test.sh` run without root (as `nobody` when the tests run as root), with `env`.
fn test_script_without_root(env: &[(&str, &str)]) -> e2e::Run {
    let script = repo_root().join("scripts/test.sh");
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    let mut command = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash"])
            .arg(&script);
        c
    } else {
        std::process::Command::new(&script)
    };
    command.envs(env.iter().copied());
    command.output().expect("run scripts/test.sh").into()
}

#[test]
fn the_test_command_names_what_is_missing_and_runs_nothing_without_root() {
    // A missing prerequisite is named with the command that installs it.
    let missing = test_script_without_root(&[("BUSYBOX", "/nonexistent/busybox")]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing.stderr.contains("  busybox-static\n"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("apt-get install -y") && missing.stderr.contains("busybox-static"),
        "{}",
        missing.stderr
    );
    assert!(!missing.stderr.contains("cargo test"), "{}", missing.stderr);
    // With everything installed (this test runs under scripts/test.sh, which installed it),
    // the partition test's need for root still stops it before any test runs.
    let unprivileged = test_script_without_root(&[]);
    assert_eq!(unprivileged.code, 1, "{unprivileged:?}");
    assert!(
        unprivileged.stderr.contains("needs root"),
        "{}",
        unprivileged.stderr
    );
}
