//! [`compare`] on hand-made views: every kind of disagreement, and agreement.

use super::*;
use crate::balancer::HaproxyConfig;
use crate::balancer::ServerStatus;
use crate::cloud::{Metadata, Status, META_CLUSTER};
use crate::model::{Lease, OpKind, Replica};
use crate::ops::desired_set;

const C: &str = "c";

fn meta(replica: &str) -> Metadata {
    [
        (META_CLUSTER.to_string(), C.to_string()),
        (META_REPLICA.to_string(), replica.to_string()),
    ]
    .into()
}

fn replica(id: &str, role: Role, phase: Phase, port: u16) -> Replica {
    Replica {
        id: id.into(),
        role,
        phase,
        server_id: Some(format!("srv-{id}")),
        volume_id: Some(format!("vol-{id}")),
        az: None,
        address: Some(format!("127.0.0.1:{port}")),
        created_at: OffsetDateTime::UNIX_EPOCH,
        op_id: None,
        since: Default::default(),
        extra: Default::default(),
    }
}

fn server(id: &str) -> Server {
    Server {
        id: format!("srv-{id}"),
        name: resource_name(C, id),
        status: Status::Ready,
        az: None,
        metadata: meta(id),
        volume_ids: vec![format!("vol-{id}")],
        endpoint: None,
        fault: None,
    }
}

fn volume(id: &str) -> Volume {
    Volume {
        id: format!("vol-{id}"),
        name: resource_name(C, id),
        status: Status::Ready,
        size_gb: 1,
        az: None,
        snapshot_id: None,
        metadata: meta(id),
    }
}

fn on_node(name: &str, port: u16, admin: AdminState) -> ServerStatus {
    ServerStatus {
        name: name.into(),
        address: "127.0.0.1".into(),
        port,
        weight: 100,
        check: true,
        admin,
        oper: OperState::Up,
        sessions: 0,
        total_sessions: 0,
    }
}

/// A seed (base, static "seed" in haproxy.cfg) and two serving surge replicas a, b,
/// everywhere as they should be.
struct World {
    state: ClusterState,
    servers: Vec<Server>,
    volumes: Vec<Volume>,
    snapshots: Vec<cloud::Snapshot>,
    nodes: Vec<NodeView>,
    /// No document stored (the state above is the empty one read in its place).
    absent: bool,
}

impl World {
    fn agreeing() -> World {
        let mut state = ClusterState::new(C);
        state.replicas = vec![
            replica("seed", Role::Base, Phase::Serving, 6000),
            replica("a", Role::Surge, Phase::Serving, 6001),
            replica("b", Role::Surge, Phase::Serving, 6002),
        ];
        state.snapshots = vec![crate::model::Snapshot {
            id: "snap-1".into(),
            source_replica: Some("seed".into()),
            created_at: OffsetDateTime::UNIX_EPOCH,
            extra: Default::default(),
        }];
        let node = |n: &str| NodeView {
            node: n.into(),
            servers: Ok(vec![
                on_node("seed", 6000, AdminState::Ready),
                on_node("pgsurge-c-a", 6001, AdminState::Ready),
                on_node("pgsurge-c-b", 6002, AdminState::Ready),
            ]),
        };
        World {
            state,
            servers: ["seed", "a", "b"].map(server).to_vec(),
            volumes: ["seed", "a", "b"].map(volume).to_vec(),
            snapshots: vec![cloud::Snapshot {
                id: "snap-1".into(),
                name: "pgsurge-c-snap-op1".into(),
                volume_id: "vol-seed".into(),
                status: Status::Ready,
                size_gb: 1,
                created_at: "1970-01-01T00:00:00Z".into(),
                az: None,
                metadata: meta("seed"),
            }],
            nodes: vec![node("haproxy1"), node("haproxy2")],
            absent: false,
        }
    }

    fn report(&self) -> StatusReport {
        let desired = desired_set(&self.state, C, &HaproxyConfig::default());
        compare(&Views {
            cluster: C,
            state: &self.state,
            servers: &self.servers,
            volumes: &self.volumes,
            snapshots: &self.snapshots,
            nodes: &self.nodes,
            desired: &desired,
            now: OffsetDateTime::UNIX_EPOCH + time::Duration::hours(1),
            state_absent: self.absent,
            operation_deadline: time::Duration::minutes(30),
        })
    }

    fn node(&mut self, i: usize) -> &mut Vec<ServerStatus> {
        self.nodes[i].servers.as_mut().unwrap()
    }
}

/// (subject, kind, message) of every disagreement.
fn said(r: &StatusReport) -> Vec<(String, Kind, String)> {
    r.disagreements
        .iter()
        .map(|d| (d.subject.clone(), d.kind, d.message.clone()))
        .collect()
}

fn one(subject: &str, kind: Kind, message: &str) -> Vec<(String, Kind, String)> {
    vec![(subject.into(), kind, message.into())]
}

#[test]
fn all_agree() {
    let r = World::agreeing().report();
    assert!(r.agrees(), "{:?}", r.disagreements);
    let ids: Vec<&str> = r.replicas.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(ids, ["seed", "a", "b"]);
    for row in &r.replicas {
        assert_eq!(row.server.label(), "ready");
        assert_eq!(row.volume.label(), "ready");
        for n in ["haproxy1", "haproxy2"] {
            assert_eq!(row.haproxy[n].label(), "ready/up", "{} on {n}", row.id);
        }
        assert!(row.disagreements.is_empty());
    }
    assert_eq!(r.replicas[0].role.as_deref(), Some("base"));
    assert_eq!(r.nodes, ["haproxy1", "haproxy2"]);
    assert!(r.snapshots[0].in_state && r.unmanaged.is_empty());
}

#[test]
fn serving_but_absent_from_a_node() {
    let mut w = World::agreeing();
    w.node(1).retain(|s| s.name != "pgsurge-c-a");
    let r = w.report();
    assert_eq!(
        said(&r),
        one(
            "a",
            Kind::AbsentFromNode,
            "serving in state but absent from haproxy2"
        )
    );
    assert_eq!(r.replicas[1].haproxy["haproxy2"], NodeCell::Absent);
    assert_eq!(
        r.replicas[1].disagreements,
        ["serving in state but absent from haproxy2"]
    );
}

#[test]
fn a_server_gone_behind_our_back_is_one_disagreement() {
    let mut w = World::agreeing();
    w.servers.retain(|s| s.id != "srv-b");
    // Its PostgreSQL is gone too: HAProxy's check says down. Same fault, not repeated.
    for i in 0..2 {
        w.node(i)
            .iter_mut()
            .filter(|s| s.name == "pgsurge-c-b")
            .for_each(|s| s.oper = OperState::Down);
    }
    let r = w.report();
    assert_eq!(
        said(&r),
        one(
            "b",
            Kind::ServerMissing,
            "serving in state but server missing in cloud"
        )
    );
    assert_eq!(
        r.replicas[2].server,
        CloudCell::Missing { id: "srv-b".into() }
    );
    assert_eq!(r.replicas[2].volume.label(), "ready");
}

#[test]
fn volume_missing() {
    let mut w = World::agreeing();
    w.volumes.retain(|v| v.id != "vol-a");
    assert_eq!(
        said(&w.report()),
        one(
            "a",
            Kind::VolumeMissing,
            "serving in state but volume missing in cloud"
        )
    );
}

#[test]
fn orphans_in_the_cloud() {
    let mut w = World::agreeing();
    w.servers.push(server("x"));
    w.volumes.push(volume("x"));
    w.volumes.push(volume("y"));
    let r = w.report();
    assert_eq!(
        said(&r),
        vec![
            (
                "x".into(),
                Kind::OrphanServer,
                "server pgsurge-c-x in cloud, unknown to state (orphan)".into()
            ),
            (
                "x".into(),
                Kind::OrphanVolume,
                "volume pgsurge-c-x in cloud, unknown to state (orphan)".into()
            ),
            (
                "y".into(),
                Kind::OrphanVolume,
                "volume without server pgsurge-c-y in cloud, unknown to state (orphan)".into()
            ),
        ]
    );
    let x = &r.replicas[3];
    assert_eq!((x.id.as_str(), x.role.as_deref()), ("x", None));
    assert_eq!(x.haproxy["haproxy1"], NodeCell::Absent);
}

#[test]
fn a_second_server_claiming_a_replica_is_an_orphan() {
    let mut w = World::agreeing();
    let mut dup = server("a");
    dup.id = "srv-a2".into();
    w.servers.push(dup);
    assert_eq!(
        said(&w.report()),
        one(
            "a",
            Kind::OrphanServer,
            "server pgsurge-c-a (srv-a2) in cloud, but state records server srv-a for it"
        )
    );
}

#[test]
fn volume_without_server() {
    let mut w = World::agreeing();
    let mut r = replica("c", Role::Surge, Phase::Booting, 6003);
    r.server_id = None;
    r.address = None;
    w.state.replicas.push(r);
    w.volumes.push(volume("c"));
    assert_eq!(
        said(&w.report()),
        one(
            "c",
            Kind::VolumeWithoutServer,
            "booting in state, volume without server"
        )
    );
}

#[test]
fn creating_and_deleting_replicas_are_work_in_progress() {
    let mut w = World::agreeing();
    // Creating: volume and server exist, ids not recorded yet.
    let mut c = replica("c", Role::Surge, Phase::Creating, 6003);
    (c.server_id, c.volume_id, c.address) = (None, None, None);
    w.state.replicas.push(c);
    w.servers.push(server("c"));
    w.volumes.push(volume("c"));
    // Deleting: server and volume already gone.
    w.state
        .replicas
        .push(replica("d", Role::Surge, Phase::Deleting, 6004));
    let r = w.report();
    assert!(r.agrees(), "{:?}", r.disagreements);
    assert_eq!(r.replicas[4].server.label(), "MISSING");
}

#[test]
fn on_a_node_but_not_desired() {
    let mut w = World::agreeing();
    w.state
        .replicas
        .push(replica("c", Role::Surge, Phase::CatchingUp, 6003));
    w.servers.push(server("c"));
    w.volumes.push(volume("c"));
    w.node(0)
        .push(on_node("pgsurge-c-c", 6003, AdminState::Maint));
    w.node(0)
        .push(on_node("pgsurge-c-ghost", 6009, AdminState::Ready));
    assert_eq!(
        said(&w.report()),
        vec![
            (
                "c".into(),
                Kind::NotDesired,
                "on haproxy1 but not in the desired set (phase catching-up)".into()
            ),
            (
                "ghost".into(),
                Kind::NotDesired,
                "pgsurge-c-ghost on haproxy1 but not in the desired set (unknown to state)".into()
            ),
        ]
    );
}

#[test]
fn wrong_state_address_and_health_on_a_node() {
    let mut w = World::agreeing();
    w.node(0)[1].admin = AdminState::Drain;
    w.node(1)[1].port = 7001;
    w.node(1)[2].oper = OperState::Down;
    assert_eq!(
        said(&w.report()),
        vec![
            (
                "a".into(),
                Kind::WrongStateOnNode,
                "serving in state but drain on haproxy1 (the desired set says ready)".into()
            ),
            (
                "a".into(),
                Kind::WrongAddressOnNode,
                "haproxy2 sends it to 127.0.0.1:7001, the state says 127.0.0.1:6001".into()
            ),
            (
                "b".into(),
                Kind::DownOnNode,
                "serving in state but its health check is down on haproxy2".into()
            ),
        ]
    );
}

#[test]
fn a_server_in_error() {
    let mut w = World::agreeing();
    w.servers[1].status = Status::Error;
    assert_eq!(
        said(&w.report()),
        one(
            "a",
            Kind::ServerUnhealthy,
            "serving in state but server pgsurge-c-a is in error in cloud"
        )
    );
}

#[test]
fn snapshots_missing_and_orphaned() {
    let mut w = World::agreeing();
    w.snapshots[0].id = "snap-2".into();
    let r = w.report();
    assert_eq!(
        said(&r),
        vec![
            (
                "snap-1".into(),
                Kind::SnapshotMissing,
                "snapshot in state but missing in cloud".into()
            ),
            (
                "snap-2".into(),
                Kind::SnapshotOrphan,
                "snapshot pgsurge-c-snap-op1 in cloud, unknown to state (orphan)".into()
            ),
        ]
    );
    assert_eq!(r.snapshots.len(), 2);
}

#[test]
fn an_unreachable_node_is_one_disagreement_and_a_cell_per_row() {
    let mut w = World::agreeing();
    w.nodes[1].servers = Err("node haproxy2 unavailable: connection refused".into());
    let r = w.report();
    assert_eq!(
        said(&r),
        one(
            "haproxy2",
            Kind::NodeUnreachable,
            "unreachable: node haproxy2 unavailable: connection refused"
        )
    );
    for row in &r.replicas {
        assert!(matches!(
            row.haproxy["haproxy2"],
            NodeCell::Unreachable { .. }
        ));
    }
}

#[test]
fn static_servers_are_the_operators() {
    let mut w = World::agreeing();
    // The seed missing from one node's haproxy.cfg, and a static server pgsurge does
    // not know: never a disagreement (apply never touches them); the latter is listed.
    w.node(1).retain(|s| s.name != "seed");
    w.node(0).push(on_node("legacy", 6100, AdminState::Ready));
    let r = w.report();
    assert!(r.agrees(), "{:?}", r.disagreements);
    assert_eq!(r.replicas[0].haproxy["haproxy2"], NodeCell::Absent);
    assert_eq!(r.unmanaged["haproxy1"], ["legacy"]);
    // A base replica under the managed prefix would be removed by apply: say so.
    w.node(1)
        .push(on_node("pgsurge-c-seed", 6000, AdminState::Ready));
    assert_eq!(
        said(&w.report()),
        one(
            "seed",
            Kind::NotDesired,
            "on haproxy2 but not in the desired set (a base replica belongs in haproxy.cfg, not under pgsurge-c-*)"
        )
    );
}

#[test]
fn operations_and_leases_are_reported() {
    let mut w = World::agreeing();
    w.state.operations.push(Operation {
        id: "op1".into(),
        kind: OpKind::ScaleUp,
        count: 2,
        replicas: vec!["a".into(), "b".into()],
        started_at: OffsetDateTime::UNIX_EPOCH,
        alarm_id: Some("al".into()),
        extra: Default::default(),
    });
    let lease = |mins| Lease {
        holder: "1-x".into(),
        until: OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(mins),
    };
    w.state.leases.insert("create".into(), lease(30));
    w.state.leases.insert("remove".into(), lease(90));
    let r = w.report();
    assert!(r.agrees());
    assert_eq!(r.operations.len(), 1);
    let leases: Vec<(&str, bool)> = r
        .leases
        .iter()
        .map(|l| (l.kind.as_str(), l.expired))
        .collect();
    assert_eq!(leases, [("create", true), ("remove", false)]);
}

#[test]
fn the_report_round_trips_as_json() {
    let r = World::agreeing().report();
    let text = serde_json::to_string(&r).unwrap();
    let back: StatusReport = serde_json::from_str(&text).unwrap();
    assert_eq!(back, r);
}

#[test]
fn a_replica_refused_on_every_run_is_stuck() {
    // Issue 19: scale-down killed after the server's PostgreSQL stopped; every run
    // refuses the same way. `deleting` is work in progress, but not one that never moves.
    let mut w = World::agreeing();
    let mut d = replica("d", Role::Surge, Phase::Deleting, 6004);
    let t = OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(10);
    let why = "pgsurge-c-d: cannot prove it is a standby, not deleting: cannot connect";
    for i in 0..STUCK_AFTER_REFUSALS - 1 {
        d.note_refusal(why, t + time::Duration::minutes(i as i64));
    }
    w.state.replicas.push(d);
    w.servers.push(server("d"));
    w.volumes.push(volume("d"));
    assert!(w.report().agrees(), "{:?}", w.report().disagreements);

    w.state.replicas[3].note_refusal(why, t + time::Duration::minutes(5));
    assert_eq!(
        said(&w.report()),
        one(
            "d",
            Kind::Stuck,
            &format!(
                "deleting in state, and reconcile cannot move it: refused 3 times in a row \
                 since 1970-01-01T00:10:00Z: {why}"
            )
        )
    );
    assert_eq!(w.report().replicas[3].disagreements.len(), 1);
}

#[test]
fn an_operation_past_its_deadline_with_work_left_is_overdue() {
    let mut w = World::agreeing();
    let op = |id: &str, kind, replicas: Vec<String>, mins| Operation {
        id: id.into(),
        kind,
        count: replicas.len().max(1) as u32,
        replicas,
        started_at: OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(mins),
        alarm_id: None,
        extra: Default::default(),
    };
    // Finished long ago (its replicas serve): not overdue. Working, within its deadline:
    // not overdue.
    w.state
        .operations
        .push(op("up1", OpKind::ScaleUp, vec!["a".into(), "b".into()], 0));
    w.state
        .replicas
        .push(replica("e", Role::Surge, Phase::Deleting, 6005));
    w.servers.push(server("e"));
    w.volumes.push(volume("e"));
    w.state
        .operations
        .push(op("down1", OpKind::ScaleDown, vec!["e".into()], 40));
    assert!(w.report().agrees(), "{:?}", w.report().disagreements);
    // The same scale-down, 35 minutes old with a deadline of 30.
    w.state.operations[1].started_at = OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(25);
    assert_eq!(
        said(&w.report()),
        one(
            "down1",
            Kind::OperationOverdue,
            "scale-down operation started 1970-01-01T00:25:00Z is not finished after 1800s \
             (e deleting)"
        )
    );
}

#[test]
fn an_absent_document_beside_labelled_resources_is_said_first() {
    let mut w = World::agreeing();
    w.state = ClusterState::new(C);
    w.absent = true;
    w.nodes.clear();
    let r = w.report();
    assert_eq!(r.disagreements[0].kind, Kind::StateAbsent, "{r:?}");
    assert_eq!(
        r.disagreements[0].message,
        "no state document, but the cloud holds 3 server(s) and 3 volume(s) labelled \
         pgsurge_cluster=c: reconcile refuses to converge HAProxy or delete orphans until \
         the document is restored"
    );
    // An empty cloud with no document is a new cluster, not a disagreement.
    w.servers.clear();
    w.volumes.clear();
    w.snapshots.clear();
    assert!(w.report().agrees(), "{:?}", w.report().disagreements);
}
