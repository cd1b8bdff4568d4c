//! Health probes: `livenessProbe` and `readinessProbe` in a component's properties, in the
//! vocabulary of Kubernetes' `Probe` and KubeVela's `webservice` (`exec.command`,
//! `httpGet{path, port}`, `tcpSocket{port}`, and the five timing fields with Kubernetes'
//! defaults and limits).
//!
//! The node that runs a replica runs its probes. A liveness probe that fails
//! `failureThreshold` times in a row restarts the replica under its restart policy; a
//! readiness probe decides whether a running replica is reported `ready`.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::diagnostics::Report;
use crate::names::check_no_nul;
use crate::path::FieldPath;
use crate::raw::Integer;
use crate::workloads::check_range;

/// A replica's health probes, as a component's properties hold them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probes {
    /// `livenessProbe`: restarts the replica when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// `readinessProbe`: whether a running replica is ready; without one it is once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
}

impl Probes {
    pub fn is_empty(&self) -> bool {
        self.liveness_probe.is_none() && self.readiness_probe.is_none()
    }
}

/// One probe, validated: what to check and how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub action: ProbeAction,
    /// Seconds after the replica starts before the first check (default 0).
    pub initial_delay_seconds: u32,
    /// Seconds between checks (default 10).
    pub period_seconds: u32,
    /// Seconds a check may take before it counts as failed (default 1).
    pub timeout_seconds: u32,
    /// Consecutive successes that make a failing probe pass (default 1; always 1 for liveness).
    pub success_threshold: u32,
    /// Consecutive failures that make a passing probe fail (default 3).
    pub failure_threshold: u32,
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProbeAction {
    /// Runs `command` (inside the container, for containers); exit status 0 passes.
    Exec { command: Vec<String> },
    /// `GET path` on `port`; a status from 200 to 399 passes.
    HttpGet {
        path: String,
        port: u16,
        /// Defaults to the replica's address: loopback for a process, the container's own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        headers: Vec<HttpHeader>,
    },
    /// A TCP connection to `port` that opens passes.
    TcpSocket {
        port: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

/// Which probe: liveness restarts, readiness gates traffic and rollouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeKind {
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub(crate) fn field(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "livenessProbe",
            ProbeKind::Readiness => "readinessProbe",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a probe: a mapping with one of exec, httpGet, tcpSocket, and initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold, failureThreshold"
)]
pub(crate) struct RawProbe {
    exec: Option<Value>,
    http_get: Option<Value>,
    tcp_socket: Option<Value>,
    /// Valid in Kubernetes, refused with a message of its own.
    grpc: Option<IgnoredAny>,
    initial_delay_seconds: Option<Integer>,
    period_seconds: Option<Integer>,
    timeout_seconds: Option<Integer>,
    success_threshold: Option<Integer>,
    failure_threshold: Option<Integer>,
    /// Valid in Kubernetes, refused with a message of its own.
    termination_grace_period_seconds: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "exec: a mapping with command")]
struct RawExec {
    command: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "httpGet: a mapping with path, port, host, scheme and httpHeaders"
)]
struct RawHttpGet {
    path: Option<String>,
    port: Option<Value>,
    host: Option<String>,
    scheme: Option<String>,
    http_headers: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "tcpSocket: a mapping with port and host"
)]
struct RawTcpSocket {
    port: Option<Value>,
    host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an HTTP header: a mapping with name and value"
)]
struct RawHeader {
    name: Option<String>,
    value: Option<String>,
}

/// The longest delay, period or timeout accepted: a day. Longer ones are surely typos.
const MAX_SECONDS: u32 = 24 * 3600;
/// The largest threshold accepted.
const MAX_THRESHOLD: u32 = 1_000;

/// Decodes the probe at `path` (a `livenessProbe` or `readinessProbe` field); reports every
/// problem and returns `None` if there was one.
pub(crate) fn decode_probe(
    value: Value,
    kind: ProbeKind,
    path: &FieldPath,
    report: &mut Report,
) -> Option<Probe> {
    let raw: RawProbe = report.decode(value, path)?;
    let mut ok = true;
    if raw.grpc.is_some() {
        report.error(
            &path.key("grpc"),
            "grpc probes are valid in Kubernetes, not supported by gossipctl; use exec, httpGet or tcpSocket",
        );
        ok = false;
    }
    if raw.termination_grace_period_seconds.is_some() {
        report.error(
            &path.key("terminationGracePeriodSeconds"),
            "terminationGracePeriodSeconds is valid in Kubernetes, not supported by gossipctl; a replica gets 5 s between SIGTERM and SIGKILL",
        );
        ok = false;
    }
    let handlers = [
        ("exec", raw.exec.is_some()),
        ("httpGet", raw.http_get.is_some()),
        ("tcpSocket", raw.tcp_socket.is_some()),
    ];
    let given: Vec<&str> = handlers
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
    let action = match given.as_slice() {
        [] => {
            report.error(
                path,
                format!("{} needs one of exec, httpGet or tcpSocket", kind.field()),
            );
            None
        }
        [_] => {
            if let Some(exec) = raw.exec {
                decode_exec(exec, &path.key("exec"), report)
            } else if let Some(http) = raw.http_get {
                decode_http_get(http, &path.key("httpGet"), report)
            } else if let Some(tcp) = raw.tcp_socket {
                decode_tcp_socket(tcp, &path.key("tcpSocket"), report)
            } else {
                None
            }
        }
        [_, second, ..] => {
            report.error(
                &path.key(second),
                format!(
                    "a probe checks one thing; set only one of {}",
                    given.join(", ")
                ),
            );
            None
        }
    };
    let mut seconds = |value: Option<Integer>, field: &str, default: u32, min: u32| {
        check_range(value, default, min..=MAX_SECONDS, field, path, report)
    };
    let initial_delay_seconds = seconds(raw.initial_delay_seconds, "initialDelaySeconds", 0, 0);
    let period_seconds = seconds(raw.period_seconds, "periodSeconds", 10, 1);
    let timeout_seconds = seconds(raw.timeout_seconds, "timeoutSeconds", 1, 1);
    let success_threshold = check_range(
        raw.success_threshold,
        1,
        1..=MAX_THRESHOLD,
        "successThreshold",
        path,
        report,
    );
    let failure_threshold = check_range(
        raw.failure_threshold,
        3,
        1..=MAX_THRESHOLD,
        "failureThreshold",
        path,
        report,
    );
    if kind == ProbeKind::Liveness && success_threshold.is_some_and(|s| s != 1) {
        report.error(
            &path.key("successThreshold"),
            "successThreshold must be 1 for a liveness probe (as in Kubernetes)",
        );
        ok = false;
    }
    let probe = Probe {
        action: action?,
        initial_delay_seconds: initial_delay_seconds?,
        period_seconds: period_seconds?,
        timeout_seconds: timeout_seconds?,
        success_threshold: success_threshold?,
        failure_threshold: failure_threshold?,
    };
    ok.then_some(probe)
}

fn decode_exec(value: Value, path: &FieldPath, report: &mut Report) -> Option<ProbeAction> {
    let raw: RawExec = report.decode(value, path)?;
    let Some(command) = raw.command else {
        report.error(
            &path.key("command"),
            "missing command; an exec probe runs a program and passes when it exits with 0, e.g. command: [\"cat\", \"/tmp/healthy\"]",
        );
        return None;
    };
    let command_path = path.key("command");
    match command.first() {
        None => {
            report.error(
                &command_path,
                "command is empty; expected the program to run, then its arguments",
            );
            return None;
        }
        Some(program) if program.is_empty() => {
            report.error(&command_path.index(0), "the program name is empty");
            return None;
        }
        Some(_) => {}
    }
    let mut ok = true;
    for (index, argument) in command.iter().enumerate() {
        ok &= report.check(
            &command_path.index(index),
            check_no_nul("argument", argument),
        );
    }
    ok.then_some(ProbeAction::Exec { command })
}

fn decode_http_get(value: Value, path: &FieldPath, report: &mut Report) -> Option<ProbeAction> {
    let raw: RawHttpGet = report.decode(value, path)?;
    let mut ok = true;
    let probe_path = match raw.path {
        None => "/".to_string(),
        Some(p) if p.starts_with('/') && !p.chars().any(|c| c.is_whitespace() || c == '\0') => p,
        Some(p) => {
            report.error(
                &path.key("path"),
                format!("invalid path {p:?}; expected an absolute path such as \"/healthz\""),
            );
            ok = false;
            String::new()
        }
    };
    let port = decode_port(raw.port, &path.key("port"), report);
    match raw.scheme.as_deref() {
        None | Some("HTTP") => {}
        Some("HTTPS") => {
            report.error(
                &path.key("scheme"),
                "scheme HTTPS is valid in Kubernetes, not supported by gossipctl; probes speak plain HTTP",
            );
            ok = false;
        }
        Some(other) => {
            report.error(
                &path.key("scheme"),
                format!("unknown scheme {other:?}; expected HTTP"),
            );
            ok = false;
        }
    }
    let host = decode_host(raw.host, &path.key("host"), report, &mut ok);
    let mut headers = Vec::new();
    for (index, header) in raw.http_headers.unwrap_or_default().into_iter().enumerate() {
        let header_path = path.key("httpHeaders").index(index);
        let Some(raw) = report.decode::<RawHeader>(header, &header_path) else {
            ok = false;
            continue;
        };
        let name = match raw.name {
            Some(name) if is_header_name(&name) => name,
            Some(name) => {
                report.error(
                    &header_path.key("name"),
                    format!("invalid header name {name:?}; expected letters, digits and -"),
                );
                ok = false;
                continue;
            }
            None => {
                report.error(&header_path.key("name"), "missing header name");
                ok = false;
                continue;
            }
        };
        let value = raw.value.unwrap_or_default();
        if value.chars().any(|c| c.is_control() && c != '\t') {
            report.error(
                &header_path.key("value"),
                "header values may not hold control characters",
            );
            ok = false;
            continue;
        }
        headers.push(HttpHeader { name, value });
    }
    let port = port?;
    ok.then_some(ProbeAction::HttpGet {
        path: probe_path,
        port,
        host,
        headers,
    })
}

fn decode_tcp_socket(value: Value, path: &FieldPath, report: &mut Report) -> Option<ProbeAction> {
    let raw: RawTcpSocket = report.decode(value, path)?;
    let mut ok = true;
    let port = decode_port(raw.port, &path.key("port"), report);
    let host = decode_host(raw.host, &path.key("host"), report, &mut ok);
    let port = port?;
    ok.then_some(ProbeAction::TcpSocket { port, host })
}

fn decode_port(value: Option<Value>, path: &FieldPath, report: &mut Report) -> Option<u16> {
    match value {
        None => {
            report.error(path, "missing port; expected a port number from 1 to 65535");
            None
        }
        Some(Value::Number(number)) => match number.as_i64().map(u16::try_from) {
            Some(Ok(port)) if port > 0 => Some(port),
            _ => {
                report.error(path, format!("invalid port {number}; expected 1 to 65535"));
                None
            }
        },
        Some(Value::String(name)) => {
            report.error(
                path,
                format!(
                    "named port {name:?} is valid in Kubernetes, not supported by gossipctl; write the port number"
                ),
            );
            None
        }
        Some(_) => {
            report.error(path, "expected a port number from 1 to 65535");
            None
        }
    }
}

fn decode_host(
    host: Option<String>,
    path: &FieldPath,
    report: &mut Report,
    ok: &mut bool,
) -> Option<String> {
    let host = host?;
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        report.error(
            path,
            format!("invalid host {host:?}; expected a host name or IP address"),
        );
        *ok = false;
        return None;
    }
    Some(host)
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
}
