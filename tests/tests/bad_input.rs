//! Bad input: exit code 2, a specific message, and nothing changed in the cluster.

use e2e::{Cluster, gossipctl};

const GOOD: &str = r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: keeper
spec:
  components:
    - name: job
      type: process
      properties:
        command: ["sleep", "600"]
"#;

fn with_component(component: &str) -> String {
    format!(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: bad\nspec:\n  components:\n{component}"
    )
}

/// A process component whose properties end with `probe` (written at the properties' indent,
/// on line 12).
fn with_probe(probe: &str) -> String {
    with_component(&format!(
        "    - name: web\n      type: process\n      properties:\n        command: [\"sleep\", \"60\"]\n        {probe}\n"
    ))
}

fn alias_bomb() -> String {
    let mut doc = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (name, previous) in ["b", "c", "d", "e", "f", "g", "h", "i"]
        .iter()
        .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
    {
        let refs = vec![format!("*{previous}"); 9].join(",");
        doc += &format!("{name}: &{name} [{refs}]\n");
    }
    doc
}

#[test]
fn bad_files_are_refused_with_specific_errors_and_change_nothing() {
    let cluster = Cluster::up(1);
    cluster
        .ctl(&["deploy", &cluster.write("good.yaml", GOOD), "--wait"])
        .ok();
    let apps_before = cluster.apps();
    let workloads_before = cluster.workloads();

    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "syntax.yaml",
            "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: x\n  - item\n"
                .into(),
            vec!["syntax.yaml:5:", "YAML syntax error"],
        ),
        (
            "unknown-type.yaml",
            with_component("    - name: db\n      type: databse\n      properties: {}\n"),
            vec![
                "unknown-type.yaml:8:7:",
                "spec.components[0].type",
                "databse",
                "process",
            ],
        ),
        (
            "unknown-trait.yaml",
            with_component(
                "    - name: web\n      type: process\n      properties:\n        command: [\"true\"]\n      traits:\n        - type: autoscaler\n",
            ),
            vec!["spec.components[0].traits[0].type", "autoscaler", "scaler"],
        ),
        (
            "no-command.yaml",
            with_component(
                "    - name: web\n      type: process\n      properties:\n        env: []\n",
            ),
            vec!["spec.components[0].properties", "command"],
        ),
        (
            "bad-name.yaml",
            with_component(
                "    - name: Web_Server\n      type: process\n      properties:\n        command: [\"true\"]\n",
            ),
            vec!["spec.components[0].name", "Web_Server", "DNS-1123"],
        ),
        (
            "duplicate.yaml",
            with_component(
                "    - name: web\n      type: process\n      properties:\n        command: [\"true\"]\n    - name: web\n      type: process\n      properties:\n        command: [\"true\"]\n",
            ),
            vec!["spec.components[1].name", "duplicate", "web"],
        ),
        (
            "cycle.yaml",
            with_component(
                "    - name: a\n      type: process\n      dependsOn: [b]\n      properties:\n        command: [\"true\"]\n    - name: b\n      type: process\n      dependsOn: [a]\n      properties:\n        command: [\"true\"]\n",
            ),
            vec!["cycle", "a -> b -> a"],
        ),
        ("bomb.yaml", alias_bomb(), vec!["alias"]),
        (
            "probe-two-handlers.yaml",
            with_probe(
                "livenessProbe:\n          exec: {command: [\"true\"]}\n          tcpSocket: {port: 80}",
            ),
            vec![
                "probe-two-handlers.yaml:13:11:",
                "spec.components[0].properties.livenessProbe.tcpSocket",
                "only one of exec, tcpSocket",
            ],
        ),
        (
            "probe-no-handler.yaml",
            with_probe("readinessProbe:\n          periodSeconds: 5"),
            vec![
                "probe-no-handler.yaml:11:9:",
                "readinessProbe needs one of exec, httpGet or tcpSocket",
            ],
        ),
        (
            "probe-period.yaml",
            with_probe(
                "readinessProbe:\n          tcpSocket: {port: 80}\n          periodSeconds: 0",
            ),
            vec![
                "probe-period.yaml:13:11:",
                "spec.components[0].properties.readinessProbe.periodSeconds",
                "expected an integer from 1 to 86400",
            ],
        ),
        (
            "probe-port.yaml",
            with_probe("livenessProbe:\n          httpGet: {path: /healthz, port: 70000}"),
            vec![
                "probe-port.yaml:12:",
                "livenessProbe.httpGet.port",
                "invalid port 70000",
            ],
        ),
        (
            "probe-named-port.yaml",
            with_probe("livenessProbe:\n          tcpSocket: {port: http}"),
            vec![
                "tcpSocket.port",
                "named port \"http\"",
                "not supported by gossipctl",
            ],
        ),
        (
            "probe-liveness-success.yaml",
            with_probe(
                "livenessProbe:\n          exec: {command: [\"true\"]}\n          successThreshold: 2",
            ),
            vec![
                "probe-liveness-success.yaml:13:11:",
                "successThreshold must be 1 for a liveness probe",
            ],
        ),
        (
            "probe-typo.yaml",
            with_probe(
                "readinessProbe:\n          exec: {command: [\"true\"]}\n          failureTreshold: 2",
            ),
            vec![
                "probe-typo.yaml:13:11:",
                "unknown field \"failureTreshold\"",
                "failureThreshold",
            ],
        ),
        (
            "rollout-zero.yaml",
            with_component(
                "    - name: web\n      type: process\n      properties:\n        command: [\"true\"]\n      traits:\n        - type: rollout\n          properties: {maxUnavailable: 0, maxSurge: 0}\n",
            ),
            vec![
                "rollout-zero.yaml:13:",
                "spec.components[0].traits[0].properties.maxSurge",
                "cannot both be 0",
            ],
        ),
        (
            "rollout-percent.yaml",
            with_component(
                "    - name: web\n      type: process\n      properties:\n        command: [\"true\"]\n      traits:\n        - type: rollout\n          properties:\n            maxUnavailable: 120%\n",
            ),
            vec![
                "rollout-percent.yaml:14:13:",
                "traits[0].properties.maxUnavailable",
                "a percentage such as \"25%\"",
            ],
        ),
        (
            "rollout-deadline.yaml",
            with_component(
                "    - name: web\n      type: process\n      properties:\n        command: [\"true\"]\n      traits:\n        - type: rollout\n          properties:\n            progressDeadlineSeconds: soon\n",
            ),
            vec![
                "rollout-deadline.yaml:14:",
                "progressDeadlineSeconds",
                "expected an integer",
            ],
        ),
        (
            "probe-https.yaml",
            with_probe("readinessProbe:\n          httpGet: {path: /, port: 443, scheme: HTTPS}"),
            vec!["httpGet.scheme", "not supported by gossipctl"],
        ),
    ];

    for (name, contents, expected) in &cases {
        let file = cluster.write(name, contents);
        for command in ["validate", "deploy"] {
            let run = cluster.ctl(&[command, &file]);
            assert_eq!(run.code, 2, "{command} {name}: {run:?}");
            for fragment in expected {
                assert!(
                    run.stderr.contains(fragment),
                    "{command} {name}: expected {fragment:?} in {:?}",
                    run.stderr
                );
            }
            assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
            // Problem matchers read FILE:LINE:COL: at the start of each line.
            if run.stderr.contains(&format!("{name}:")) {
                for line in run.stderr.lines() {
                    assert!(
                        line.starts_with(file.as_str()),
                        "{command} {name}: a line that does not start with the file: {line:?}"
                    );
                }
            }
        }
    }

    // 50 MB: refused from its size alone, quickly.
    let huge = cluster.dir.path().join("huge.yaml");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(50 << 20).unwrap();
    let started = std::time::Instant::now();
    let run = cluster.ctl(&["deploy", huge.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("limited to"), "{}", run.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // Usage errors are input errors too.
    assert_eq!(gossipctl(&["get", "pods"], &cluster.config()).code, 2);
    assert_eq!(cluster.ctl(&["logs", "not-a-workload"]).code, 2);

    assert_eq!(cluster.apps(), apps_before);
    let ids = |w: &[serde_json::Value]| {
        w.iter()
            .map(|w| (w["id"].clone(), w["pid"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&cluster.workloads()), ids(&workloads_before));
}
