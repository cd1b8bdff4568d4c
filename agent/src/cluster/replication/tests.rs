use super::*;
use orchestrator::Resources;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A replica named `name` that seals its own writes with `creds`' key.
fn sealing(name: &str, creds: &crate::cluster::identity::Credentials) -> Replica {
    let mut replica = Replica::new(name);
    replica.sealer = Some(Arc::new(crate::trust::seal::Sealer::new(creds).unwrap()));
    replica
}

/// The store in `db` opened as agent `b`, checking seals against `creds`' cluster CA.
fn open_checked(
    db: &sled::Db,
    creds: &crate::cluster::identity::Credentials,
    wall_ms: u64,
) -> ReplicatedState {
    ReplicatedState::open(
        db,
        "b",
        wall_ms,
        Some(Authority::new(creds.ca.clone())),
        None,
    )
    .unwrap()
}

fn node_record(name: &str) -> NodeRecord {
    NodeRecord {
        info: NodeInfo {
            name: name.into(),
            labels: Default::default(),
            capacity: Resources::default(),
            runtimes: Default::default(),
            cordoned: false,
        },
        address: "127.0.0.1:1".parse().unwrap(),
        version: "test".into(),
        left: false,
        node_ip: None,
    }
}

#[test]
fn a_push_pull_exchange_converges_two_replicas() {
    let mut a = Replica::new("a");
    let mut b = Replica::new("b");
    a.put_node(node_record("a"), 1000);
    b.put_node(node_record("b"), 1000);
    b.put_node(node_record("c"), 1001);
    assert_ne!(a.fingerprint(), b.fingerprint());

    let (for_a, wanted_by_b) = b.answer(&a.digest());
    a.merge(&for_a, 1002);
    let for_b = a.entries_for(&wanted_by_b);
    b.merge(&for_b, 1002);
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.nodes, b.nodes);
}

#[test]
fn state_survives_a_reopen_and_later_writes_win() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let state = ReplicatedState::open(&db, "a", 5000, None, None).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime
        .block_on(state.change(true, |r| r.put_node(node_record("x"), 5000)))
        .unwrap();
    drop(state);
    // The wall clock went backwards while the agent was down.
    let reopened = ReplicatedState::open(&db, "a", 10, None, None).unwrap();
    assert!(reopened.read(|r| r.nodes.get("x").is_some()));
    let before = reopened.read(|r| r.nodes.entry("x").unwrap().version.clone());
    runtime
        .block_on(reopened.change(false, |r| r.put_node(node_record("x"), 10)))
        .unwrap();
    assert!(reopened.read(|r| r.nodes.entry("x").unwrap().version.clone()) > before);
}

/// An application write sealed by `sealer`, as a deploy's commit produces it.
fn sealed_app(
    sealer: &crate::trust::seal::Sealer,
    name: &str,
    value: Option<StoredApp>,
    version: Timestamp,
) -> Updates {
    let write = crate::api::PendingWrite {
        app: name.into(),
        version,
        value,
        outcome: None,
    };
    let seal = sealer.seal(&write.statement().unwrap()).unwrap();
    Updates {
        apps: vec![(name.into(), write.entry(&seal))],
        ..Updates::default()
    }
}

#[test]
fn only_admin_sealed_applications_enter_and_a_deleted_one_never_comes_back() {
    use crate::trust::seal::Sealer;
    use crate::trust::seal::tests::cluster;
    let dir = tempfile::tempdir().unwrap();
    let (admin, node) = cluster(dir.path());
    let admin = Sealer::new(&admin).unwrap();
    let node_sealer = Sealer::new(&node).unwrap();
    let ca = crate::cluster::identity::Credentials::load_node(&dir.path().join("n1"))
        .unwrap()
        .ca;
    let mut replica = Replica::new("b");
    replica.authority = Some(Authority::new(ca));
    let wall = 1_800_000_000_000;
    let app = StoredApp {
        app: orchestrator::parse_application(
            "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: web\nspec:\n  components:\n    - name: api\n      type: process\n      properties:\n        command: [\"sleep\", \"1\"]\n",
            "web.yaml",
        )
        .unwrap(),
        generation: 1,
        deployed_ms: 0,
        stable: Default::default(),
        history: Vec::new(),
    };
    let at = |ms: u64| Timestamp {
        wall_ms: ms,
        logical: 0,
        node: "a".into(),
    };
    let deploy = sealed_app(&admin, "web", Some(app.clone()), at(wall));
    assert_eq!(replica.merge(&deploy, wall).apps.len(), 1);
    // The same write sealed by a node, or not sealed at all, changes nothing.
    let by_node = sealed_app(&node_sealer, "other", Some(app.clone()), at(wall));
    assert!(replica.merge(&by_node, wall).is_empty());
    let unsealed = Updates {
        apps: vec![("web".into(), Entry::tombstone(at(wall + 5)))],
        ..Updates::default()
    };
    assert!(replica.merge(&unsealed, wall).is_empty());
    assert!(replica.apps.get("web").is_some());
    // A sealed deletion does; its tombstone outlives every expiry, so the old deploy,
    // replayed long after, stays refused.
    let delete = sealed_app(&admin, "web", None, at(wall + 10));
    assert_eq!(replica.merge(&delete, wall).apps.len(), 1);
    let much_later = wall + 365 * 24 * 3600 * 1000;
    replica.expire_tombstones(much_later);
    assert!(replica.merge(&deploy, much_later).is_empty());
    assert!(replica.apps.get("web").is_none());
}

/// A revocation of `serial`, sealed by `sealer`.
fn revocation(
    sealer: &crate::trust::seal::Sealer,
    serial: &str,
    name: &str,
    wall_ms: u64,
) -> Updates {
    let version = Timestamp {
        wall_ms,
        logical: 0,
        node: "admin".into(),
    };
    let value = Revocation {
        name: name.into(),
        revoked_at_ms: wall_ms,
        keep: Vec::new(),
    };
    let signed = statement(Map::Revocations, serial, &version, Some(&value)).unwrap();
    let seal = encode(&sealer.seal(&signed).unwrap());
    Updates {
        revocations: vec![(serial.into(), Entry::live(value, version).sealed(seal))],
        ..Updates::default()
    }
}

#[test]
fn a_revocation_purges_and_refuses_the_node_and_outlives_a_restart() {
    use crate::trust::revocation::serial_of;
    use crate::trust::seal::Sealer;
    use crate::trust::seal::tests::cluster;
    let dir = tempfile::tempdir().unwrap();
    let (admin, node) = cluster(dir.path());
    let serial = serial_of(node.chain[0].as_ref()).unwrap();
    let admin = Sealer::new(&admin).unwrap();
    let wall = now_ms();
    // node-1 writes its own record, sealed with its key.
    let mut node_1 = sealing("node-1", &node);
    let record = node_1.put_node(node_record("node-1"), wall);

    let db_dir = tempfile::tempdir().unwrap();
    let db = sled::open(db_dir.path()).unwrap();
    let open = |wall_ms: u64| open_checked(&db, &node, wall_ms);
    let state = open(wall);
    assert_eq!(state.merge(&record, wall).unwrap().nodes.len(), 1);

    // A node cannot revoke; the admin can, and the revoked node's record goes at once.
    let by_node = revocation(&Sealer::new(&node).unwrap(), &serial, "node-1", wall);
    assert!(state.merge(&by_node, wall).unwrap().is_empty());
    assert!(state.read(|r| r.nodes.get("node-1").is_some()));
    let revoke = revocation(&admin, &serial, "node-1", wall + 1);
    assert_eq!(state.merge(&revoke, wall).unwrap().revocations.len(), 1);
    assert!(state.read(|r| r.nodes.entry("node-1").is_none()));
    // Whatever node-1 seals from now on is refused, whoever relays it.
    let newer = node_1.put_node(node_record("node-1"), wall + 2);
    assert!(state.merge(&newer, wall).unwrap().is_empty());
    // A deletion of the revocation is no revocation.
    let undo = Updates {
        revocations: vec![(
            serial.clone(),
            Entry::tombstone(revoke.revocations[0].1.version.clone()),
        )],
        ..Updates::default()
    };
    assert!(state.merge(&undo, wall).unwrap().is_empty());
    let fingerprint = state.read(|r| r.fingerprint());
    drop(state);

    // After a restart the revocation is still in force.
    let reopened = open(wall + 3);
    assert!(reopened.read(|r| {
        r.authority.as_ref().unwrap().revoked().contains(&serial)
            && r.nodes.entry("node-1").is_none()
    }));
    assert_eq!(reopened.read(|r| r.fingerprint()), fingerprint);
    assert!(reopened.merge(&record, wall).unwrap().is_empty());
}

#[test]
fn a_revoked_admin_keeps_only_the_listed_writes_and_cannot_backdate_new_ones() {
    use crate::trust::revocation::serial_of;
    use crate::trust::seal::Sealer;
    use crate::trust::seal::tests::cluster;
    let dir = tempfile::tempdir().unwrap();
    let (admin, _) = cluster(dir.path());
    let ca = ClusterCaForTests::issue_second_admin(dir.path());
    let revoked_serial = serial_of(ca.chain[0].as_ref()).unwrap();
    let other = Sealer::new(&admin).unwrap();
    let thief = Sealer::new(&ca).unwrap();
    let wall = now_ms();
    let at = |ms: u64| Timestamp {
        wall_ms: ms,
        logical: 0,
        node: "a".into(),
    };
    let app = |name: &str| {
        StoredApp {
        app: orchestrator::parse_application(
            &format!("apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: api\n      type: process\n      properties:\n        command: [\"sleep\", \"1\"]\n"),
            "app.yaml",
        )
        .unwrap(),
        generation: 1,
        deployed_ms: 0,
        stable: Default::default(),
        history: Vec::new(),
    }
    };
    let mut replica = Replica::new("b");
    replica.authority = Some(Authority::new(admin.ca.clone()));
    let web = sealed_app(&thief, "web", Some(app("web")), at(wall));
    let db = sealed_app(&thief, "db", Some(app("db")), at(wall + 1));
    replica.merge(&web, wall);
    replica.merge(&db, wall);
    assert_eq!(replica.apps.len(), 2);

    // Revoked by the other admin, keeping web's write only.
    let version = at(wall + 10);
    let value = Revocation {
        name: "ops".into(),
        revoked_at_ms: wall + 10,
        keep: vec![("web".into(), at(wall))],
    };
    let signed = statement(Map::Revocations, &revoked_serial, &version, Some(&value)).unwrap();
    let revoke = Updates {
        revocations: vec![(
            revoked_serial.clone(),
            Entry::live(value, version).sealed(encode(&other.seal(&signed).unwrap())),
        )],
        ..Updates::default()
    };
    replica.merge(&revoke, wall);
    assert!(replica.apps.get("web").is_some(), "kept");
    assert!(replica.apps.get("db").is_none(), "not kept: dropped");
    assert_eq!(replica.purged_apps, vec!["db".to_string()]);
    // The revoked key cannot write again, not even backdated before the revocation.
    let backdated = sealed_app(&thief, "evil", Some(app("evil")), at(wall - 1));
    assert!(replica.merge(&backdated, wall).is_empty());
    let replayed_db = sealed_app(&thief, "db", Some(app("db")), at(wall + 1));
    assert!(replica.merge(&replayed_db, wall).is_empty());
}

/// A second admin's credentials in a cluster made by `trust::seal::tests::cluster`.
struct ClusterCaForTests;

impl ClusterCaForTests {
    fn issue_second_admin(dir: &std::path::Path) -> crate::cluster::identity::Credentials {
        use crate::cluster::identity::{ADMIN_CERT_FILE, ADMIN_KEY_FILE, CA_CERT_FILE};
        let ca = crate::cluster::identity::ClusterCa::load(dir).unwrap();
        let home = dir.join("ops");
        std::fs::create_dir_all(&home).unwrap();
        ca.issue_admin_named("ops", &home, std::time::Duration::from_secs(3600))
            .unwrap();
        crate::cluster::identity::Credentials::load(
            &home.join(CA_CERT_FILE),
            &home.join(ADMIN_CERT_FILE),
            &home.join(ADMIN_KEY_FILE),
        )
        .unwrap()
    }
}

fn status(node: &str, replica: u32) -> WorkloadRecord {
    WorkloadRecord {
        id: orchestrator::WorkloadId {
            app: "web".into(),
            component: "api".into(),
            replica,
        },
        node: node.into(),
        state: crate::api::WorkloadState::Running,
        restarts: 0,
        message: String::new(),
        pid: Some(42),
        fingerprint: 7,
        learner: None,
        since_ms: 0,
        last_exit: String::new(),
        address: None,
    }
}

#[test]
fn workload_status_is_accepted_only_from_the_node_that_runs_the_replica() {
    use crate::trust::revocation::serial_of;
    use crate::trust::seal::Sealer;
    use crate::trust::seal::tests::cluster;
    let dir = tempfile::tempdir().unwrap();
    let (admin, node) = cluster(dir.path());
    let wall = now_ms();
    let mut node_1 = sealing("node-1", &node);

    let db_dir = tempfile::tempdir().unwrap();
    let db = sled::open(db_dir.path()).unwrap();
    let open = |wall_ms: u64| open_checked(&db, &node, wall_ms);
    let state = open(wall);

    // node-1's status of its own replica, sealed with its key, enters.
    let own = node_1.put_workload(status("node-1", 0), wall);
    assert!(own.workloads[0].1.seal.is_some());
    assert_eq!(state.merge(&own, wall).unwrap().workloads.len(), 1);

    // Its key cannot speak for node-2's replica, nor file node-2's record under its own key.
    let for_node_2 = node_1.put_workload(status("node-2", 1), wall + 1);
    assert!(state.merge(&for_node_2, wall).unwrap().is_empty());
    let mut misfiled = node_1.put_workload(status("node-1", 2), wall + 2);
    let key = misfiled.workloads[0].0.clone();
    let mut entry = Entry::live(status("node-2", 2), misfiled.workloads[0].1.version.clone());
    let signed = statement(Map::Workloads, &key, &entry.version, entry.value.as_ref()).unwrap();
    entry = entry.sealed(encode(&Sealer::new(&node).unwrap().seal(&signed).unwrap()));
    misfiled.workloads[0].1 = entry;
    assert!(state.merge(&misfiled, wall).unwrap().is_empty());
    // An unsealed status, or a deletion nobody sealed, changes nothing.
    let unsealed = Updates {
        workloads: vec![
            (
                workload_key(&status("node-1", 3).id, "node-1"),
                Entry::live(status("node-1", 3), node_1.next_version(wall + 3)),
            ),
            (
                own.workloads[0].0.clone(),
                Entry::tombstone(node_1.next_version(wall + 4)),
            ),
        ],
        ..Updates::default()
    };
    assert!(state.merge(&unsealed, wall).unwrap().is_empty());
    assert_eq!(state.read(|r| r.workloads.iter().count()), 1);
    // node-1's own sealed deletion does.
    let gone = node_1.delete_workload(&own.workloads[0].0, wall + 5);
    assert_eq!(state.merge(&gone, wall).unwrap().workloads.len(), 1);
    let again = node_1.put_workload(status("node-1", 4), wall + 6);
    assert_eq!(state.merge(&again, wall).unwrap().workloads.len(), 1);

    // Revoking node-1's certificate purges its status, on disk too.
    let serial = serial_of(node.chain[0].as_ref()).unwrap();
    let revoke = revocation(&Sealer::new(&admin).unwrap(), &serial, "node-1", wall + 7);
    state.merge(&revoke, wall).unwrap();
    assert!(state.read(|r| r.workloads.iter().next().is_none()));
    drop(state);
    let reopened = open(wall + 8);
    assert!(reopened.read(|r| r.workloads.iter().next().is_none()));
}

#[test]
fn a_pass_of_status_writes_shares_one_signature_and_each_entry_stands_alone() {
    use crate::trust::seal::Seal;
    use crate::trust::seal::tests::cluster;
    let dir = tempfile::tempdir().unwrap();
    let (_, node) = cluster(dir.path());
    let wall = now_ms();
    let mut node_1 = sealing("node-1", &node);
    let checking = || {
        let mut replica = Replica::new("b");
        replica.authority = Some(Authority::new(node.ca.clone()));
        replica
    };
    // Four of node-1's replicas and, slipped into the same pass, one of node-2's.
    let mut records: Vec<WorkloadRecord> = (0..4).map(|i| status("node-1", i)).collect();
    records.push(status("node-2", 9));
    let pass = node_1.report_workloads(&[], records, wall);
    let seals: Vec<Seal> = pass
        .workloads
        .iter()
        .map(|(_, e)| Seal::decode(e.seal.as_deref().unwrap()).unwrap())
        .collect();
    assert!(seals.iter().all(|s| s.proof.is_some()));
    assert!(seals.windows(2).all(|w| w[0].signature == w[1].signature));

    // All at once: node-1's four enter, node-2's does not.
    let mut all = checking();
    let merged = all.merge(&pass, wall).workloads;
    assert_eq!(merged.len(), 4);
    assert!(merged.iter().all(|(key, _)| key.ends_with("@node-1")));
    // One at a time, in another order, on another replica: each stands alone.
    let mut one_by_one = checking();
    for (key, entry) in pass.workloads.iter().rev() {
        let single = Updates {
            workloads: vec![(key.clone(), entry.clone())],
            ..Updates::default()
        };
        let accepted = one_by_one.merge(&single, wall).workloads.len();
        assert_eq!(accepted, usize::from(key.ends_with("@node-1")), "{key}");
    }
    // An entry altered after sealing, or given another entry's proof, is refused.
    let mut altered = pass.clone();
    altered.workloads[1].1.value.as_mut().unwrap().restarts = 99;
    let mut borrowed = pass.clone();
    borrowed.workloads[1].1.seal = pass.workloads[2].1.seal.clone();
    for forged in [altered, borrowed] {
        let single = Updates {
            workloads: vec![forged.workloads[1].clone()],
            ..Updates::default()
        };
        assert!(checking().merge(&single, wall).is_empty());
    }
    // A lone write carries a plain seal, as before batches.
    let lone = node_1.put_workload(status("node-1", 7), wall + 1);
    let seal = Seal::decode(lone.workloads[0].1.seal.as_deref().unwrap()).unwrap();
    assert!(seal.proof.is_none());
    assert_eq!(checking().merge(&lone, wall).workloads.len(), 1);
}
