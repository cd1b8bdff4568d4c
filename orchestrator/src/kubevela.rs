//! KubeVela's built-in vocabulary that gossipctl knows of but does not run.
//!
//! A name from these lists is valid in a KubeVela file; refusing it as "unknown" would read as
//! a typo. Each refusal says so instead, and still exits with the validation error code.

/// Component types of KubeVela's built-in definitions (v1.9) with no gossipctl runtime.
pub(crate) const COMPONENT_TYPES: &[&str] = &[
    "cron-task",
    "daemon",
    "task",
    "k8s-objects",
    "ref-objects",
    "raw",
    "helm",
    "kustomize",
    "config-image-registry",
    "config-dex-connector",
    "config-helm-repository",
];

/// Trait types of KubeVela's built-in definitions (v1.9) that gossipctl does not apply.
pub(crate) const TRAIT_TYPES: &[&str] = &[
    "annotations",
    "labels",
    "env",
    "command",
    "container-image",
    "container-ports",
    "sidecar",
    "init-container",
    "storage",
    "hostalias",
    "cpuscaler",
    "hpa",
    "k8s-update-strategy",
    "service-binding",
    "service-account",
    "json-patch",
    "json-merge-patch",
    "startup-probe",
    "lifecycle",
    "securitycontext",
    "podsecuritycontext",
    "pure-ingress",
    "https-route",
    "http-route",
    "tcp-route",
    "nocalhost",
    "import-grafana-dashboard",
];

/// Policy types of KubeVela's built-in definitions (v1.9) that gossipctl does not apply.
pub(crate) const POLICY_TYPES: &[&str] = &[
    "garbage-collect",
    "apply-once",
    "shared-resource",
    "take-over",
    "read-only",
    "replication",
    "debug",
    "health",
    "resource-update",
    "envbinding",
];

/// Workflow step types of KubeVela's built-in definitions (v1.9) that gossipctl does not run.
pub(crate) const STEP_TYPES: &[&str] = &[
    "suspend",
    "step-group",
    "notification",
    "webhook",
    "request",
    "apply-object",
    "read-object",
    "apply-deployment",
    "apply-job",
    "apply-terraform-config",
    "apply-terraform-provider",
    "deploy-cloud-resource",
    "share-cloud-resource",
    "export2config",
    "export2secret",
    "export-service",
    "export-data",
    "collect-service-endpoints",
    "depends-on-app",
    "build-push-image",
    "clean-jobs",
    "create-config",
    "delete-config",
    "list-config",
    "read-config",
    "print-message-in-status",
    "generate-jdbc-connection",
    "check-metrics",
    "addon-operation",
    "vela-cli",
];

/// Properties of KubeVela's `webservice` and `worker` definitions that gossipctl does not run.
pub(crate) const CONTAINER_FIELDS: &[&str] = &[
    "imagePullPolicy",
    "imagePullSecrets",
    "volumeMounts",
    "volumes",
    "labels",
    "annotations",
    "exposeType",
    "hostAliases",
    "addRevisionLabel",
    "startupProbe",
];

/// `"X is valid in KubeVela, not supported by gossipctl"`, with what is expected instead.
pub(crate) fn unsupported(what: &str, expected: &str) -> String {
    format!("{what} is valid in KubeVela, not supported by gossipctl; {expected}")
}
