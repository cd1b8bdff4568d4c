//! A newcomer's first call without a cluster: the CLI says how to get a config, and exits 2
//! (a usage problem) without touching anything.

use std::process::Command;

fn gossipctl_in(home: &std::path::Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gossipctl"))
        .args(args)
        .env_remove("GOSSIPCTL_CONFIG")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .output()
        .expect("run gossipctl");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn without_a_config_the_cli_says_how_to_get_one() {
    let home = tempfile::tempdir().unwrap();
    let (code, stderr) = gossipctl_in(home.path(), &["get", "nodes"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no cluster config"), "{stderr}");
    assert!(stderr.contains("gossipctl up"), "{stderr}");
    assert!(stderr.contains("gossipctl cluster init"), "{stderr}");
    assert!(stderr.contains("GOSSIPCTL_CONFIG"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr}");
}

#[test]
fn a_config_flag_naming_a_missing_file_says_how_to_make_one() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("nowhere.yaml");
    let (code, stderr) = gossipctl_in(
        home.path(),
        &["--config", missing.to_str().unwrap(), "get", "apps"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(missing.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("gossipctl up"), "{stderr}");
    assert!(
        std::fs::read_dir(home.path()).unwrap().next().is_none(),
        "wrote something"
    );
}
