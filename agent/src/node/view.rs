//! What one agent makes of the replicated state: members, applications, status reports,
//! rollout steps, maintenance, and the plan they imply.

use super::*;

/// Everything one agent knows about the cluster at one moment, and the plan it implies.
pub struct View {
    pub apps: Vec<StoredApp>,
    /// Every node ever heard of, with how this agent sees it now.
    pub nodes: BTreeMap<String, (NodeState, NodeRecord)>,
    /// Live status reports, by `APP/COMPONENT/REPLICA@NODE`.
    pub records: BTreeMap<String, WorkloadRecord>,
    /// Every component's rollout step; its slots are what the plan places.
    pub rollouts: BTreeMap<ComponentKey, Decision>,
    /// Nodes an admin cordoned or is draining (see [`crate::maintenance`]).
    pub maintenance: BTreeMap<String, Mode>,
    pub plan: Plan,
}

impl View {
    pub(crate) fn component(&self, id: &WorkloadId) -> Option<&Component> {
        self.apps
            .iter()
            .find(|a| a.app.name == id.app)?
            .app
            .components
            .iter()
            .find(|c| c.name == id.component)
    }

    /// The definition replica `id` should run now: the current one, or during a rollout the
    /// one its step keeps it on.
    pub(crate) fn definition(&self, id: &WorkloadId) -> Option<&Component> {
        let current = self.component(id)?;
        let fingerprint = self
            .rollouts
            .get(&(id.app.clone(), id.component.clone()))
            .and_then(|d| d.fingerprint(id.replica));
        match fingerprint {
            Some(fingerprint) if fingerprint != current.fingerprint() => {
                let stored = self.apps.iter().find(|a| a.app.name == id.app)?;
                Some(decide::definition(stored, &id.component, fingerprint).unwrap_or(current))
            }
            _ => Some(current),
        }
    }

    pub(crate) fn is_active(&self, node: &str) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|(state, _)| matches!(state, NodeState::Alive | NodeState::Suspect))
    }
}

impl Node {
    /// This agent's view of the cluster and the plan it implies.
    pub fn view(&self) -> View {
        let members = self.gossip.members.borrow().clone();
        let (apps, node_records, records, revoked, completed, maintenance) = self.state.read(|r| {
            let apps: Vec<StoredApp> = r.apps.iter().map(|(_, a)| a.clone()).collect();
            let nodes: Vec<NodeRecord> = r.nodes.iter().map(|(_, n)| n.clone()).collect();
            let records: BTreeMap<String, WorkloadRecord> = r
                .workloads
                .iter()
                .map(|(k, w)| (k.clone(), w.clone()))
                .collect();
            let revoked: BTreeSet<String> =
                r.revocations.iter().map(|(_, v)| v.name.clone()).collect();
            let completed = activity::completed(r.activity.iter());
            let maintenance: BTreeMap<String, Mode> = r
                .maintenance
                .iter()
                .filter(|(_, m)| m.mode != Mode::Schedulable)
                .map(|(name, m)| (name.clone(), m.mode))
                .collect();
            (apps, nodes, records, revoked, completed, maintenance)
        });
        let mut nodes: BTreeMap<String, (NodeState, NodeRecord)> = BTreeMap::new();
        for record in node_records {
            let name = record.info.name.clone();
            let state = if name == self.info.name {
                NodeState::Alive
            } else {
                match members.get(&name).map(|(_, l)| *l) {
                    Some(Liveness::Alive) if !record.left => NodeState::Alive,
                    Some(Liveness::Suspect) if !record.left => NodeState::Suspect,
                    _ if record.left => NodeState::Left,
                    _ => NodeState::Dead,
                }
            };
            nodes.insert(name, (state, record));
        }
        nodes.insert(
            self.info.name.clone(),
            (NodeState::Alive, self.record(false)),
        );
        // Members whose record has not arrived yet: alive, but not schedulable until it does.
        // A member with a revoked certificate and no record under a newer one is no member at
        // all: it counts as gone before the failure detector finds it unreachable.
        let mut unrecorded = BTreeSet::new();
        for (name, (id, liveness)) in &members {
            if nodes.contains_key(name) || *liveness == Liveness::Down || revoked.contains(name) {
                continue;
            }
            let state = if *liveness == Liveness::Suspect {
                NodeState::Suspect
            } else {
                NodeState::Alive
            };
            let record = NodeRecord {
                info: NodeInfo {
                    name: name.clone(),
                    labels: BTreeMap::new(),
                    capacity: Default::default(),
                    runtimes: BTreeSet::new(),
                    cordoned: false,
                },
                address: id.addr,
                version: String::new(),
                left: false,
                node_ip: None,
            };
            unrecorded.insert(name.clone());
            nodes.insert(name.clone(), (state, record));
        }

        let schedulable: Vec<NodeInfo> = nodes
            .iter()
            .filter(|(name, (state, _))| {
                matches!(state, NodeState::Alive | NodeState::Suspect)
                    && !unrecorded.contains(*name)
            })
            .map(|(name, (_, record))| NodeInfo {
                cordoned: maintenance.get(name).is_some_and(|m| m.cordoned()),
                ..record.info.clone()
            })
            .collect();
        let active = |node: &str| {
            nodes
                .get(node)
                .is_some_and(|(s, _)| matches!(s, NodeState::Alive | NodeState::Suspect))
        };
        let mut running = Running::new();
        for record in records.values() {
            if active(&record.node) && record.state != WorkloadState::Stopped {
                running
                    .entry(record.id.clone())
                    .or_default()
                    .insert(record.node.clone());
            }
        }
        // A draining node hands over one replica at a time: that one is placed afresh.
        let draining: BTreeSet<String> = maintenance
            .iter()
            .filter(|(_, mode)| **mode == Mode::Draining)
            .map(|(name, _)| name.clone())
            .collect();
        for (node, id) in maintenance::moving(&draining, records.values()) {
            if let Some(hosts) = running.get_mut(&id) {
                hosts.remove(&node);
            }
        }
        let observed = decide::observed(&apps, records.values(), active);
        let rollouts = decide::decide(&apps, &observed, &completed, now_ms());
        // The plan places each component's current slots: its replicas, plus surge replicas
        // while a rollout lasts.
        let desired: Vec<Application> = apps
            .iter()
            .map(|stored| {
                let mut app = stored.app.clone();
                for component in &mut app.components {
                    if let Some(decision) =
                        rollouts.get(&(app.name.clone(), component.name.clone()))
                    {
                        component.replicas = decision.slots();
                    }
                }
                app
            })
            .collect();
        let mut plan = plan(&desired, &schedulable, &running);
        // A surge replica no node can take (its host port is bound everywhere, say) only
        // slows a rollout down: a component is unschedulable when a desired replica is.
        plan.unschedulable.retain(|(app, component), _| {
            let wanted = apps
                .iter()
                .filter(|a| &a.app.name == app)
                .flat_map(|a| &a.app.components)
                .find(|c| &c.name == component)
                .map_or(0, |c| c.replicas);
            (0..wanted).any(|replica| {
                !plan.assignments.contains_key(&WorkloadId {
                    app: app.clone(),
                    component: component.clone(),
                    replica,
                })
            })
        });
        View {
            apps,
            nodes,
            records,
            rollouts,
            maintenance,
            plan,
        }
    }
}
