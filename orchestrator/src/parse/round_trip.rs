//! Properties over generated input: every valid application survives rendering and parsing,
//! and no input at all makes the parser panic.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::model::{
    Component, ContainerSpec, EnvVar, LEARNER_AGGREGATIONS, LEARNER_BACKENDS, LEARNER_MODELS,
    LearnerSpec, LearningRate, MatchExpression, Operator, Placement, PortSpec, PreferredTerm,
    ProcessSpec, Resources, RestartPolicy, Spread, Workload,
};
use crate::probes::{HttpHeader, Probe, ProbeAction, Probes};
use crate::rollout::{RolloutSpec, Share};
use crate::services::{Gateway, Protocol, Service, ServicePort, ServiceType};

fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"
}

/// Free text, including control characters and strings YAML would read as something else if
/// they were not quoted.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ -~]{0,12}",
        1 => "\\PC{0,6}",
        1 => "[\\x01-\\x1f\\x7f-\\u{9f}\\u{2028}\\u{feff} a]{1,4}",
        1 => prop::sample::select(vec![
            "true", "null", "~", "123", "0x1F", "1e3", "- item", "a: b", "#x", "'", "\"",
            "multi\nline", " padded ", "tab\there", "*alias", "&anchor", "!tag", "{}", "[]",
        ])
        .prop_map(str::to_owned),
    ]
}

fn label_key() -> impl Strategy<Value = String> {
    "([a-z]{1,4}(\\.[a-z]{1,4})?/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,6}[A-Za-z0-9])?"
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9]([A-Za-z0-9_.-]{0,6}[A-Za-z0-9])?",
        prop::sample::select(vec!["true", "1", "1.5", "null", "yes", "1e3"])
            .prop_map(str::to_owned),
    ]
}

fn restart() -> impl Strategy<Value = RestartPolicy> {
    prop::sample::select(vec![
        RestartPolicy::Always,
        RestartPolicy::OnFailure,
        RestartPolicy::Never,
    ])
}

fn env() -> impl Strategy<Value = Vec<EnvVar>> {
    prop::collection::btree_map("[A-Za-z_][A-Za-z0-9_.-]{0,6}", text(), 0..3).prop_map(|vars| {
        vars.into_iter()
            .map(|(name, value)| EnvVar { name, value })
            .collect()
    })
}

fn probe(liveness: bool) -> impl Strategy<Value = Probe> {
    let action = prop_oneof![
        prop::collection::vec("[a-z][a-z0-9 /._-]{0,8}", 1..3)
            .prop_map(|command| ProbeAction::Exec { command }),
        (
            "/[a-z0-9/._-]{0,10}",
            1..=u16::MAX,
            prop::option::of("[a-z][a-z0-9.-]{0,8}"),
            prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,8}", "[ -~]{0,8}"), 0..2),
        )
            .prop_map(|(path, port, host, headers)| ProbeAction::HttpGet {
                path,
                port,
                host,
                headers: headers
                    .into_iter()
                    .map(|(name, value)| HttpHeader {
                        name,
                        value: value.trim().to_string(),
                    })
                    .collect(),
            }),
        (
            1..=u16::MAX,
            prop::option::of("[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}")
        )
            .prop_map(|(port, host)| ProbeAction::TcpSocket { port, host }),
    ];
    (action, 0..100u32, 1..100u32, 1..30u32, 1..10u32, 1..10u32).prop_map(
        move |(action, delay, period, timeout, success, failure)| Probe {
            action,
            initial_delay_seconds: delay,
            period_seconds: period,
            timeout_seconds: timeout,
            success_threshold: if liveness { 1 } else { success },
            failure_threshold: failure,
        },
    )
}

fn process() -> impl Strategy<Value = Workload> {
    (
        "[a-z/][a-z0-9/._-]{0,10}",
        prop::collection::vec(text(), 0..3),
        env(),
        prop::option::of("/[a-z0-9/]{0,10}"),
        restart(),
        prop::option::of(probe(true)),
        prop::option::of(probe(false)),
    )
        .prop_map(
            |(program, args, env, working_dir, restart, liveness_probe, readiness_probe)| {
                let command = std::iter::once(program).chain(args).collect();
                Workload::Process(ProcessSpec {
                    command,
                    env,
                    working_dir,
                    restart,
                    probes: Probes {
                        liveness_probe,
                        readiness_probe,
                    },
                })
            },
        )
}

fn container(webservice: bool) -> impl Strategy<Value = Workload> {
    let ports = prop::collection::btree_map(
        1..=u16::MAX,
        (any::<bool>(), prop::option::of(1..=u16::MAX)),
        0..3,
    );
    (
        "[a-z][a-z0-9./:_-]{0,15}",
        prop::collection::vec(text(), 0..2),
        prop::collection::vec(text(), 0..3),
        env(),
        ports,
        restart(),
        prop::option::of(probe(true)),
        prop::option::of(probe(false)),
    )
        .prop_map(
            move |(image, cmd, args, env, ports, restart, liveness_probe, readiness_probe)| {
                let ports = ports
                    .into_iter()
                    .map(|(port, (expose, host_port))| PortSpec {
                        port,
                        expose,
                        host_port,
                    })
                    .collect();
                let spec = ContainerSpec {
                    image,
                    cmd,
                    args,
                    env,
                    ports,
                    restart,
                    probes: Probes {
                        liveness_probe,
                        readiness_probe,
                    },
                };
                if webservice {
                    Workload::Webservice(spec)
                } else {
                    Workload::Worker(spec)
                }
            },
        )
}

fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        prop::sample::select(vec![0.5, -2.25, 1.0, 1e-7, 3.0e10, 6.02e23])
            .prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
            prop::collection::btree_map(text(), inner, 0..3)
                .prop_map(|object| serde_json::Value::Object(object.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = BTreeMap<String, serde_json::Value>> {
    prop::collection::btree_map(text(), json(), 0..3)
}

/// A positive, finite float: the usual values, and any other that is representable.
fn positive_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::sample::select(vec![
            1e-3,
            0.01,
            0.5,
            1.0,
            3.0,
            1e-7,
            6.02e23,
            f64::MIN_POSITIVE
        ]),
        any::<f64>().prop_filter("positive and finite", |x| x.is_finite() && *x > 0.0),
    ]
}

fn learner() -> impl Strategy<Value = Workload> {
    let dataset = prop_oneof![
        Just("fashion-mnist".to_owned()),
        "/[a-z0-9/._-]{0,12}",
        text().prop_filter("not empty", |text| !text.is_empty()),
    ];
    let partition = prop_oneof![
        Just("iid".to_owned()),
        positive_float().prop_map(|alpha| format!("dirichlet:{alpha}")),
    ];
    let names = (
        prop::sample::select(LEARNER_MODELS.to_vec()),
        prop::sample::select(LEARNER_AGGREGATIONS.to_vec()),
        prop::sample::select(LEARNER_BACKENDS.to_vec()),
    );
    let epochs_and_window = (1..=100_000u32).prop_flat_map(|epochs| (Just(epochs), 1..=epochs));
    // intake 0 is `all`.
    let counts = (1..=65_536u32, 1..=10_000u32, 0..=10_000u32);
    (
        dataset,
        names,
        epochs_and_window,
        counts,
        positive_float(),
        partition,
        any::<u64>(),
    )
        .prop_map(
            |(
                dataset,
                (model, aggregation, backend),
                (epochs, window),
                (batch_size, peers, intake),
                learning_rate,
                partition,
                seed,
            )| {
                Workload::Learner(LearnerSpec {
                    dataset,
                    model: model.to_owned(),
                    aggregation: aggregation.to_owned(),
                    epochs,
                    window,
                    batch_size,
                    learning_rate: LearningRate(learning_rate),
                    partition,
                    seed,
                    peers,
                    intake,
                    backend: backend.to_owned(),
                })
            },
        )
}

fn workload() -> impl Strategy<Value = Workload> {
    prop_oneof![
        process(),
        container(true),
        container(false),
        Just(Workload::Learner(LearnerSpec::default())),
        learner(),
    ]
}

fn expressions() -> impl Strategy<Value = Vec<MatchExpression>> {
    let operator = prop::sample::select(vec![
        Operator::In,
        Operator::NotIn,
        Operator::Exists,
        Operator::DoesNotExist,
    ]);
    let expression = (
        label_key(),
        operator,
        prop::collection::vec(label_value(), 1..3),
    )
        .prop_map(|(key, operator, values)| {
            let values = match operator {
                Operator::In | Operator::NotIn => values,
                Operator::Exists | Operator::DoesNotExist => Vec::new(),
            };
            MatchExpression {
                key,
                operator,
                values,
            }
        });
    prop::collection::vec(expression, 1..3)
}

/// Placement for a component, with `others` the names it may colocate with or avoid.
fn placement(others: Vec<String>) -> impl Strategy<Value = Placement> {
    let count = others.len();
    let spread = prop::option::of((prop::option::of(label_key()), 1..=5u32)).prop_map(|spread| {
        spread.map(|(topology_key, max_skew)| Spread {
            topology_key,
            max_skew,
        })
    });
    (
        prop::collection::btree_map(label_key(), label_value(), 0..2),
        prop::collection::vec(expressions(), 0..2),
        prop::collection::vec((1..=100u32, expressions()), 0..2),
        spread,
        // For each other component: 0 = no relation, 1 = colocate, 2 = avoid.
        prop::collection::vec(0..3u8, count),
    )
        .prop_map(
            move |(node_selector, required_terms, preferred, spread, relations)| {
                let related = |wanted: u8| {
                    others
                        .iter()
                        .zip(&relations)
                        .filter(|&(_, &relation)| relation == wanted)
                        .map(|(name, _)| name.clone())
                        .collect()
                };
                Placement {
                    node_selector,
                    required_terms,
                    preferred: preferred
                        .into_iter()
                        .map(|(weight, expressions)| PreferredTerm {
                            weight,
                            expressions,
                        })
                        .collect(),
                    spread,
                    colocate_with: related(1),
                    avoid: related(2),
                }
            },
        )
}

/// Component `index` of `names`; it depends only on components before it, so `dependsOn`
/// stays acyclic.
fn component(names: Vec<String>, index: usize) -> impl Strategy<Value = Component> {
    let name = names[index].clone();
    let earlier = names[..index].to_vec();
    let others: Vec<String> = names
        .iter()
        .filter(|&other| *other != name)
        .cloned()
        .collect();
    let resources = (
        prop_oneof![Just(0u64), 1..=64_000u64],
        prop_oneof![Just(0u64), Just(256u64 << 20), 1..=(1u64 << 40)],
    )
        .prop_map(|(cpu_millis, memory_bytes)| Resources {
            cpu_millis,
            memory_bytes,
        });
    (
        workload(),
        prop_oneof![Just(1u32), 0..=10_000u32],
        placement(others),
        resources,
        prop::sample::subsequence(earlier.clone(), 0..=earlier.len()).prop_shuffle(),
        prop::option::of(rollout()),
        prop::option::of(service()),
        prop::option::of(gateway()),
        (
            prop_oneof![Just(0u64), 1..=4_000u64],
            prop_oneof![Just(0u64), 1..=(1u64 << 30)],
        ),
    )
        .prop_map(
            move |(
                workload,
                replicas,
                placement,
                resources,
                depends_on,
                rollout,
                service,
                gateway,
                (extra_cpu, extra_memory),
            )| {
                // A learner is never a service.
                let serves = !matches!(workload, Workload::Learner(_));
                // Limits above the reservation, for containers only.
                let container = matches!(workload, Workload::Webservice(_) | Workload::Worker(_));
                let above = |reserved: u64, extra: u64| {
                    if container && reserved > 0 && extra > 0 {
                        reserved + extra
                    } else {
                        0
                    }
                };
                let limits = Resources {
                    cpu_millis: above(resources.cpu_millis, extra_cpu),
                    memory_bytes: above(resources.memory_bytes, extra_memory),
                };
                Component {
                    name: name.clone(),
                    workload,
                    replicas,
                    placement,
                    resources,
                    limits,
                    depends_on,
                    rollout,
                    service: service.filter(|_| serves),
                    gateway: gateway.filter(|_| serves),
                }
            },
        )
}

fn service() -> impl Strategy<Value = Service> {
    let port = (
        1..=65535u16,
        prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)],
        prop::option::of(dns_label()),
        prop::option::of(30000..=32767u16),
    );
    (any::<bool>(), prop::collection::vec(port, 1..4)).prop_map(|(node_port, ports)| {
        let mut seen = BTreeSet::new();
        Service {
            kind: if node_port {
                ServiceType::NodePort
            } else {
                ServiceType::ClusterIP
            },
            ports: ports
                .into_iter()
                .filter(|(port, protocol, _, _)| seen.insert((*port, *protocol)))
                .map(|(port, protocol, name, chosen)| ServicePort {
                    port,
                    protocol,
                    name,
                    node_port: chosen.filter(|_| node_port),
                })
                .collect(),
        }
    })
}

fn gateway() -> impl Strategy<Value = Gateway> {
    (
        prop::option::of((dns_label(), dns_label()).prop_map(|(a, b)| format!("{a}.{b}"))),
        prop::collection::btree_map(
            prop_oneof![
                Just("/".to_string()),
                dns_label().prop_map(|p| format!("/{p}"))
            ],
            1..=65535u16,
            1..3,
        ),
        prop::option::of(Just("nginx".to_string())),
    )
        .prop_map(|(domain, http, class)| Gateway {
            domain,
            http,
            class,
        })
}

fn rollout() -> impl Strategy<Value = RolloutSpec> {
    let share = prop::option::of(prop_oneof![
        (1..=10_000u32).prop_map(Share::Count),
        (1..=100u32).prop_map(Share::Percent),
    ]);
    (share.clone(), share, 0..100u32, 0..1000u32).prop_map(
        |(max_unavailable, max_surge, min_ready_seconds, extra)| RolloutSpec {
            max_unavailable,
            max_surge,
            min_ready_seconds,
            progress_deadline_seconds: min_ready_seconds + 1 + extra,
        },
    )
}

fn policies() -> impl Strategy<Value = Vec<Policy>> {
    let kind = prop::sample::select(vec!["topology", "override"]);
    prop::collection::btree_map(dns_label(), (kind, json_object()), 0..3).prop_map(|policies| {
        policies
            .into_iter()
            .map(|(name, (kind, properties))| Policy {
                name,
                kind: kind.to_owned(),
                // An override's properties are applied, and have a shape of their own; the
                // policies tests check that rendering an overridden application is stable.
                properties: if kind == "override" {
                    Default::default()
                } else {
                    properties
                },
            })
            .collect()
    })
}

fn application() -> impl Strategy<Value = Application> {
    let names = prop::collection::btree_set(dns_label(), 1..=4)
        .prop_map(|names: BTreeSet<String>| names.into_iter().collect::<Vec<_>>())
        .prop_shuffle();
    let components = names.prop_flat_map(|names| {
        (0..names.len())
            .map(|index| component(names.clone(), index))
            .collect::<Vec<_>>()
    });
    (dns_label(), components, policies()).prop_map(|(name, components, policies)| Application {
        name,
        components,
        policies,
    })
}

proptest! {
    #[test]
    fn rendered_applications_parse_back_equal(application in application()) {
        let yaml = application.to_oam_yaml();
        let parsed = parse_application(&yaml, "generated.yaml");
        prop_assert_eq!(parsed, Ok(application), "rendered as:\n{}", yaml);
    }

    #[test]
    fn no_input_makes_the_parser_panic(source in "\\PC{0,200}") {
        let _ = parse_application(&source, "random.yaml");
    }

    #[test]
    fn no_mangled_application_makes_the_parser_panic(
        application in application(),
        cut in any::<prop::sample::Index>(),
        insert in "[-:{}\\[\\]&*!|>'\"# \\n]{1,3}",
    ) {
        let yaml = application.to_oam_yaml();
        let mut at = cut.index(yaml.len() + 1);
        while !yaml.is_char_boundary(at) {
            at -= 1;
        }
        let mangled = format!("{}{insert}{}", &yaml[..at], &yaml[at..]);
        let _ = parse_application(&mangled, "mangled.yaml");
    }
}
