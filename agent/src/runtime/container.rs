//! The `container` runtime: one Docker container per replica, through the Docker Engine API.
//!
//! Containers outlive their agent on purpose: an agent that restarts (an upgrade, a crash)
//! adopts the containers it finds running with the definition it wants, so edge services keep
//! serving through it. Everything else labelled with this node's name — a replica the plan
//! moved away meanwhile, a changed definition, a container left exited — is removed: by the
//! replica's next attempt when the name matches, and otherwise by [`ContainerRuntime::sweep`].
//! Names are unique per engine, so one replica can never run twice on one node.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkSettings, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;
use orchestrator::{ContainerSpec, Resources, RestartPolicy, WorkloadId};

use crate::api::LogStream;
use crate::logs::{LineWriter, LogStore, MAX_LINES_PER_WORKLOAD};
use crate::runtime::env::replica_env;
use crate::runtime::probe::Target;
use crate::runtime::supervisor::{Attempt, Exit, Runner, STOP_GRACE};

/// How long the agent waits for an engine to answer before it offers no container runtime.
const ENGINE_PROBE: Duration = Duration::from_secs(3);
const LABEL_APP: &str = "dev.gossipctl.app";
const LABEL_COMPONENT: &str = "dev.gossipctl.component";
const LABEL_REPLICA: &str = "dev.gossipctl.replica";
const LABEL_NODE: &str = "dev.gossipctl.node";
const LABEL_FINGERPRINT: &str = "dev.gossipctl.fingerprint";

/// This node's container engine.
#[derive(Clone)]
pub struct ContainerRuntime {
    docker: Docker,
    node: String,
}

impl std::fmt::Debug for ContainerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerRuntime")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl ContainerRuntime {
    /// The engine `DOCKER_HOST` names (the local socket without it), if it answers.
    pub async fn detect(node: &str) -> Option<Self> {
        let docker = match Docker::connect_with_defaults() {
            Ok(docker) => docker,
            Err(e) => {
                tracing::info!("no container runtime: {e}");
                return None;
            }
        };
        let answered = tokio::time::timeout(ENGINE_PROBE, async {
            let docker = docker.negotiate_version().await?;
            docker.ping().await?;
            Ok::<_, DockerError>(docker)
        })
        .await;
        match answered {
            Ok(Ok(docker)) => Some(ContainerRuntime {
                docker,
                node: node.to_string(),
            }),
            Ok(Err(e)) => {
                tracing::info!("no container runtime: the engine did not answer: {e}");
                None
            }
            Err(_) => {
                tracing::info!(
                    "no container runtime: the engine did not answer in {ENGINE_PROBE:?}"
                );
                None
            }
        }
    }

    pub fn runner(&self, launch: ContainerLaunch) -> ContainerRunner {
        ContainerRunner {
            docker: self.docker.clone(),
            launch,
        }
    }

    /// Removes this node's containers whose replica `keep` rejects; returns how many.
    pub async fn sweep(&self, keep: impl Fn(&WorkloadId) -> bool) -> Result<usize, String> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_NODE}={}", self.node)],
        )]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| describe(&e))?;
        let mut removed = 0;
        for container in containers {
            let labels = container.labels.unwrap_or_default();
            let Some(id) = replica_of(&labels) else {
                continue;
            };
            if keep(&id) {
                continue;
            }
            let name = container.id.unwrap_or_default();
            tracing::info!(workload = %id, container = %name, "removing a container this node no longer runs");
            if remove(&self.docker, &name).await.is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Everything a replica's container needs.
#[derive(Debug, Clone)]
pub struct ContainerLaunch {
    pub id: WorkloadId,
    pub spec: ContainerSpec,
    /// What Docker lets the container use: the component's limit (its reservation unless the
    /// `resource` trait sets higher `limits`).
    pub resources: Resources,
    pub replicas: u32,
    pub node: String,
    /// The component's definition fingerprint: a container with another one is replaced.
    pub fingerprint: u64,
    /// Variables about the network it finds in its environment (`GOSSIP_NODE_IP`).
    pub network: Vec<(String, String)>,
}

impl ContainerLaunch {
    /// The engine-wide name: DNS labels hold no `_`, so distinct replicas never share one.
    pub fn name(&self) -> String {
        format!(
            "gossip_{}_{}_{}_{}",
            self.node, self.id.app, self.id.component, self.id.replica
        )
    }

    fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_APP.to_string(), self.id.app.clone()),
            (LABEL_COMPONENT.to_string(), self.id.component.clone()),
            (LABEL_REPLICA.to_string(), self.id.replica.to_string()),
            (LABEL_NODE.to_string(), self.node.clone()),
            (LABEL_FINGERPRINT.to_string(), self.fingerprint.to_string()),
        ])
    }

    /// The engine's create request. `cmd` replaces the image's entrypoint and `args` its
    /// command, as Kubernetes' `command` and `args` do; exposed ports are published on the
    /// node, at `hostPort` or else the container's port.
    pub fn create_body(&self) -> ContainerCreateBody {
        let mut env: Vec<String> = replica_env(&self.id, self.replicas, &self.node)
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .chain(
                self.network
                    .iter()
                    .map(|(name, value)| format!("{name}={value}")),
            )
            .collect();
        env.extend(
            self.spec
                .env
                .iter()
                .map(|var| format!("{}={}", var.name, var.value)),
        );
        let port_key = |port: u16| format!("{port}/tcp");
        let exposed_ports: Vec<String> = self.spec.ports.iter().map(|p| port_key(p.port)).collect();
        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = self
            .spec
            .ports
            .iter()
            .filter(|p| p.expose)
            .map(|p| {
                let binding = PortBinding {
                    host_ip: None,
                    host_port: Some(p.host_port.unwrap_or(p.port).to_string()),
                };
                (port_key(p.port), Some(vec![binding]))
            })
            .collect();
        let non_empty = |list: &Vec<String>| (!list.is_empty()).then(|| list.clone());
        let limit = |value: u64| (value > 0).then(|| i64::try_from(value).unwrap_or(i64::MAX));
        ContainerCreateBody {
            image: Some(self.spec.image.clone()),
            entrypoint: non_empty(&self.spec.cmd),
            cmd: non_empty(&self.spec.args),
            env: Some(env),
            labels: Some(self.labels()),
            exposed_ports: non_empty(&exposed_ports),
            stop_timeout: Some(STOP_GRACE.as_secs() as i64),
            host_config: Some(HostConfig {
                memory: limit(self.resources.memory_bytes),
                nano_cpus: limit(self.resources.cpu_millis.saturating_mul(1_000_000)),
                port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// The replica a container's labels name.
fn replica_of(labels: &HashMap<String, String>) -> Option<WorkloadId> {
    Some(WorkloadId {
        app: labels.get(LABEL_APP)?.clone(),
        component: labels.get(LABEL_COMPONENT)?.clone(),
        replica: labels.get(LABEL_REPLICA)?.parse().ok()?,
    })
}

/// Runs one replica's container.
pub struct ContainerRunner {
    docker: Docker,
    launch: ContainerLaunch,
}

enum Started {
    Created,
    Adopted,
}

impl Runner for ContainerRunner {
    fn restart_policy(&self) -> RestartPolicy {
        self.launch.spec.restart
    }

    async fn run(&mut self, attempt: &mut Attempt<'_>) -> Exit {
        let name = self.launch.name();
        let (pid, address) = match self.start(&name).await {
            Ok((how, pid, address)) => {
                attempt.note(match how {
                    Started::Created => {
                        format!("started container {name} ({})", self.launch.spec.image)
                    }
                    Started::Adopted => format!("adopted running container {name}"),
                });
                (pid, address)
            }
            Err(message) => return Exit::Failed(message),
        };
        let target = Target::Container {
            docker: self.docker.clone(),
            name: name.clone(),
            address,
        };
        attempt.running(pid, target);
        let follower = tokio::spawn(follow_logs(
            self.docker.clone(),
            name.clone(),
            attempt.logs().clone(),
            attempt.id().to_string(),
        ));
        let outcome = tokio::select! {
            exit = wait(&self.docker, &name) => exit,
            _ = attempt.stop_requested() => {
                stop(&self.docker, &name).await;
                attempt.note("stopped");
                Exit::Stopped
            }
        };
        // The log stream ends with the container; don't let a stuck one hold the replica.
        if tokio::time::timeout(Duration::from_secs(1), follower)
            .await
            .is_err()
        {
            tracing::debug!(container = %name, "log follower did not finish");
        }
        outcome
    }

    async fn release(&mut self) {
        let _ = remove(&self.docker, &self.launch.name()).await;
    }
}

impl ContainerRunner {
    /// Adopts the replica's container if it runs with this definition; otherwise replaces
    /// whatever has its name with a fresh one. Returns how, the container's main pid and its
    /// address.
    async fn start(&self, name: &str) -> Result<(Started, Option<u32>, Option<IpAddr>), String> {
        let docker = &self.docker;
        let wanted = self.launch.fingerprint.to_string();
        match docker.inspect_container(name, None).await {
            Ok(found) => {
                let state = found.state.unwrap_or_default();
                let labels = found.config.and_then(|c| c.labels).unwrap_or_default();
                let same = labels.get(LABEL_FINGERPRINT) == Some(&wanted);
                if same && state.running == Some(true) {
                    let pid = state.pid.and_then(|p| u32::try_from(p).ok());
                    return Ok((Started::Adopted, pid, address_of(found.network_settings)));
                }
                remove(docker, name).await?;
            }
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(format!("cannot inspect container {name}: {}", describe(&e))),
        }
        let options = CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let created = match docker
            .create_container(Some(options.clone()), self.launch.create_body())
            .await
        {
            Err(e) if not_found(&e) => {
                self.pull().await?;
                docker
                    .create_container(Some(options), self.launch.create_body())
                    .await
            }
            other => other,
        };
        created.map_err(|e| format!("cannot create container {name}: {}", describe(&e)))?;
        docker
            .start_container(name, None)
            .await
            .map_err(|e| format!("cannot start container {name}: {}", describe(&e)))?;
        let inspected = docker.inspect_container(name, None).await.ok();
        let pid = inspected
            .as_ref()
            .and_then(|c| c.state.as_ref()?.pid)
            .and_then(|p| u32::try_from(p).ok());
        let address = inspected.and_then(|c| address_of(c.network_settings));
        Ok((Started::Created, pid, address))
    }

    /// Fetches the image from its registry, for engines that can reach one.
    async fn pull(&self) -> Result<(), String> {
        let image = &self.launch.spec.image;
        let options = CreateImageOptions {
            from_image: Some(image.clone()),
            ..Default::default()
        };
        let mut progress = self.docker.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            if let Err(e) = step {
                return Err(format!(
                    "image {image:?} is not on this node and pulling it failed: {}",
                    describe(&e)
                ));
            }
        }
        Ok(())
    }
}

/// A container's address on its first network (the engine's bridge, by default).
fn address_of(settings: Option<NetworkSettings>) -> Option<IpAddr> {
    settings?
        .networks?
        .into_values()
        .filter_map(|endpoint| endpoint.ip_address?.parse().ok())
        .next()
}

/// Waits for the container to stop running and says how it ended.
async fn wait(docker: &Docker, name: &str) -> Exit {
    loop {
        let options = WaitContainerOptions {
            condition: "not-running".to_string(),
        };
        let mut waiting = docker.wait_container(name, Some(options));
        match waiting.next().await {
            Some(Ok(response)) if response.status_code == 0 => return Exit::Succeeded,
            Some(Ok(response)) => {
                return Exit::Failed(format!("exited with status {}", response.status_code));
            }
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => {
                return Exit::Failed(format!("exited with status {code}"));
            }
            // The client gives up on long requests; the container may still be running.
            Some(Err(DockerError::RequestTimeoutError)) => continue,
            Some(Err(e)) => return Exit::Failed(format!("lost the container: {}", describe(&e))),
            None => return Exit::Failed("lost the container: the engine closed the wait".into()),
        }
    }
}

/// Copies the container's output into the replica's log until the container stops.
async fn follow_logs(docker: Docker, name: String, logs: LogStore, workload: String) {
    let options = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        // An adopted container's recent past, as far as the log store would keep it.
        tail: MAX_LINES_PER_WORKLOAD.to_string(),
        ..Default::default()
    };
    let mut out = LineWriter::new(logs.clone(), workload.clone(), LogStream::Stdout);
    let mut err = LineWriter::new(logs, workload, LogStream::Stderr);
    let mut stream = docker.logs(&name, Some(options));
    while let Some(Ok(output)) = stream.next().await {
        match output {
            bollard::container::LogOutput::StdErr { message } => err.write(&message),
            other => out.write(other.as_ref()),
        }
    }
    out.finish();
    err.finish();
}

/// Stops the container (SIGTERM, then SIGKILL after the grace period) and removes it.
async fn stop(docker: &Docker, name: &str) {
    let options = StopContainerOptions {
        t: Some(STOP_GRACE.as_secs() as i32),
        ..Default::default()
    };
    if let Err(e) = docker.stop_container(name, Some(options)).await {
        tracing::debug!(container = %name, "stop: {}", describe(&e));
    }
    if let Err(message) = remove(docker, name).await {
        tracing::warn!(container = %name, "{message}");
    }
}

async fn remove(docker: &Docker, name: &str) -> Result<(), String> {
    let options = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(format!("cannot remove container {name}: {}", describe(&e))),
    }
}

fn not_found(error: &DockerError) -> bool {
    matches!(
        error,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The engine's own words for an error, without the client's framing.
fn describe(error: &DockerError) -> String {
    match error {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator::{EnvVar, PortSpec};

    fn launch() -> ContainerLaunch {
        ContainerLaunch {
            id: WorkloadId {
                app: "shop".into(),
                component: "web".into(),
                replica: 2,
            },
            spec: ContainerSpec {
                image: "gossipctl/busybox:local".into(),
                cmd: vec!["/bin/busybox".into()],
                args: vec!["httpd".into(), "-f".into()],
                env: vec![EnvVar {
                    name: "MODE".into(),
                    value: "edge".into(),
                }],
                ports: vec![
                    PortSpec {
                        port: 8080,
                        expose: true,
                        host_port: Some(18080),
                    },
                    PortSpec {
                        port: 9090,
                        expose: false,
                        host_port: None,
                    },
                ],
                restart: RestartPolicy::Always,
                probes: Default::default(),
            },
            resources: Resources {
                cpu_millis: 500,
                memory_bytes: 64 << 20,
            },
            replicas: 3,
            node: "node-1".into(),
            fingerprint: 42,
            network: vec![("GOSSIP_NODE_IP".into(), "10.0.0.7".into())],
        }
    }

    #[test]
    fn the_create_request_carries_the_definition_limits_and_identity() {
        let body = launch().create_body();
        assert_eq!(body.entrypoint.unwrap(), ["/bin/busybox"]);
        assert_eq!(body.cmd.unwrap(), ["httpd", "-f"]);
        let env = body.env.unwrap();
        for expected in [
            "GOSSIP_APP=shop",
            "GOSSIP_COMPONENT=web",
            "GOSSIP_REPLICA=2",
            "GOSSIP_REPLICAS=3",
            "GOSSIP_NODE=node-1",
            "MODE=edge",
        ] {
            assert!(env.iter().any(|e| e == expected), "{expected} missing");
        }
        let host = body.host_config.unwrap();
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        let bindings = host.port_bindings.unwrap();
        assert_eq!(bindings.len(), 1, "only exposed ports are published");
        let published = bindings["8080/tcp"].as_ref().unwrap();
        assert_eq!(published[0].host_port.as_deref(), Some("18080"));
        assert_eq!(body.exposed_ports.unwrap(), ["8080/tcp", "9090/tcp"]);
        let labels = body.labels.unwrap();
        assert_eq!(replica_of(&labels), Some(launch().id));
        assert_eq!(labels[LABEL_NODE], "node-1");
        assert_eq!(labels[LABEL_FINGERPRINT], "42");
    }

    #[test]
    fn no_limits_and_no_overrides_when_none_are_asked_for() {
        let mut bare = launch();
        bare.spec.cmd.clear();
        bare.spec.args.clear();
        bare.spec.ports.clear();
        bare.resources = Resources::default();
        let body = bare.create_body();
        assert_eq!(body.entrypoint, None, "the image's entrypoint stays");
        assert_eq!(body.cmd, None);
        assert_eq!(body.exposed_ports, None);
        let host = body.host_config.unwrap();
        assert_eq!((host.memory, host.nano_cpus), (None, None));
        assert_eq!(host.port_bindings, None);
    }

    #[test]
    fn names_are_unique_per_node_and_replica() {
        let a = launch();
        let mut b = launch();
        b.node = "node-2".into();
        let mut c = launch();
        c.id.replica = 3;
        assert_eq!(a.name(), "gossip_node-1_shop_web_2");
        assert_ne!(a.name(), b.name());
        assert_ne!(a.name(), c.name());
    }

    #[test]
    fn containers_without_our_labels_are_not_ours() {
        let mut labels = launch().labels();
        labels.remove(LABEL_REPLICA);
        assert_eq!(replica_of(&labels), None);
    }
}
