//! What a replica reserves and may use, written either as KubeVela's short form (`cpu`,
//! `memory`: reserved, and the limit) or in Kubernetes' form (`requests` reserved, `limits`
//! the most a container may use), in the `resource` trait or a container's own properties.

use serde_yaml::{Mapping, Value};

use crate::diagnostics::Report;
use crate::kubevela;
use crate::model::Resources;
use crate::path::FieldPath;
use crate::raw::RawAmounts;
use crate::workloads::{Amount, decode_quantity};

/// Resources as written at one place.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Amounts {
    /// Reserved per replica; `None` where not written.
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    /// Limits above the reservation (zero where there is none).
    pub limits: Resources,
}

/// The four fields of the mapping at `path`, any of which may be absent.
pub(crate) struct Written {
    pub cpu: Option<Value>,
    pub memory: Option<Value>,
    pub requests: Option<Value>,
    pub limits: Option<Value>,
}

pub(crate) fn decode_resources(written: Written, path: &FieldPath, report: &mut Report) -> Amounts {
    let short = written.cpu.is_some() || written.memory.is_some();
    if short && (written.requests.is_some() || written.limits.is_some()) {
        let field = if written.requests.is_some() {
            "requests"
        } else {
            "limits"
        };
        report.error(
            &path.key(field),
            "write cpu and memory, or requests and limits, not both",
        );
        return Amounts::default();
    }
    if short {
        let (cpu_millis, memory_bytes) = decode_amounts(written.cpu, written.memory, path, report);
        return Amounts {
            cpu_millis,
            memory_bytes,
            limits: Resources::default(),
        };
    }
    // Kubernetes' rules: a request left out is the limit; a limit below its request is wrong.
    let mut amounts = |value: Option<Value>, field: &str| {
        let path = path.key(field);
        value
            .map(|value| without_storage(value, &path, report))
            .and_then(|value| report.decode::<RawAmounts>(value, &path))
            .map(|raw| decode_amounts(raw.cpu, raw.memory, &path, report))
            .unwrap_or_default()
    };
    let requests = amounts(written.requests, "requests");
    let limits = amounts(written.limits, "limits");
    let fields = [
        ("cpu", requests.0, limits.0),
        ("memory", requests.1, limits.1),
    ];
    let mut reserved = [None, None];
    let mut above = [0, 0];
    for (index, (field, request, limit)) in fields.into_iter().enumerate() {
        reserved[index] = request.or(limit);
        if let (Some(request), Some(limit)) = (request, limit) {
            if limit < request {
                report.error(
                    &path.key("limits").key(field),
                    format!(
                        "limits.{field} is less than requests.{field}; a limit is at least the request"
                    ),
                );
            } else if limit > request {
                above[index] = limit;
            }
        }
    }
    Amounts {
        cpu_millis: reserved[0],
        memory_bytes: reserved[1],
        limits: Resources {
            cpu_millis: above[0],
            memory_bytes: above[1],
        },
    }
}

/// KubeVela's trait also takes `ephemeral-storage`, which gossipctl does not account for.
fn without_storage(mut value: Value, path: &FieldPath, report: &mut Report) -> Value {
    if let Value::Mapping(mapping) = &mut value
        && Mapping::remove(mapping, "ephemeral-storage").is_some()
    {
        report.error(
            &path.key("ephemeral-storage"),
            kubevela::unsupported("ephemeral-storage", "gossipctl accounts for cpu and memory"),
        );
    }
    value
}

/// `cpu` and `memory` quantities under `path`.
fn decode_amounts(
    cpu: Option<Value>,
    memory: Option<Value>,
    path: &FieldPath,
    report: &mut Report,
) -> (Option<u64>, Option<u64>) {
    (
        cpu.and_then(|cpu| decode_quantity(cpu, &path.key("cpu"), report, Amount::Cpu)),
        memory.and_then(|memory| {
            decode_quantity(memory, &path.key("memory"), report, Amount::Memory)
        }),
    )
}
