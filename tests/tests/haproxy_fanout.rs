//! Two real HAProxy nodes in front of real PostgreSQL replicas, kept identical by the
//! fan-out: add and remove reach both; a node stopped during a change is left marked
//! for repair while the other is updated, and a repair call converges it once it is
//! back (asserted through `show servers state` / `show stat`).

use pgsurge::balancer::dataplane::{DataPlane, DataPlaneConfig};
use pgsurge::balancer::drain::{drain_and_remove, DrainOptions};
use pgsurge::balancer::fanout::FanOut;
use pgsurge::balancer::runtime_api::{RuntimeApi, SocketAddr};
use pgsurge::balancer::{AdminState, Balancer, BalancerError, DesiredSet, OperState, ServerSpec};
use pgsurge::secret::Secret;
use pgsurge_tests::dataplane_api::{spec_path, FakeDataPlane};
use pgsurge_tests::haproxy::{ports_served, wait_oper, BackendSpec, HaproxyNode};
use pgsurge_tests::openapi::Spec;
use pgsurge_tests::pg::{Pg, Scratch};
use std::sync::Arc;
use std::time::Duration;

const BE: &str = "pg_read";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_follow_every_change_and_a_stopped_node_is_repaired() {
    let root = Scratch::new("i5-fanout");
    let primary = Pg::primary(&root.0, "primary");
    let r_base = Pg::replica_of(&primary, &root.0, "r_base");
    let r_new = Pg::replica_of(&primary, &root.0, "r_new");
    let be = || BackendSpec::with_base(BE, r_base.port);
    let h1 = HaproxyNode::start(&root.0, "h1", be());
    let mut h2 = HaproxyNode::start(&root.0, "h2", be());
    // One node through its unix socket, the other through the TCP admin socket.
    let n1: Arc<dyn Balancer> = Arc::new(RuntimeApi::new(
        "h1",
        SocketAddr::Unix(h1.socket.clone()),
        BE,
    ));
    let n2: Arc<dyn Balancer> = Arc::new(RuntimeApi::new(
        "h2",
        SocketAddr::Tcp(format!("127.0.0.1:{}", h2.admin_port)),
        BE,
    ));
    let fan = FanOut::new(vec![n1.clone(), n2.clone()], DesiredSet::new("pgsurge-"));
    let spec = ServerSpec {
        name: "pgsurge-t-r1".into(),
        address: "127.0.0.1".into(),
        port: r_new.port,
        weight: 100,
        check: true,
        slowstart_ms: 2000,
    };

    // Add: both nodes route to it.
    let report = fan.put_server(&spec, AdminState::Ready).await.unwrap();
    assert!(report.all_ok(), "{report:?}");
    for (h, n) in [(&h1, &n1), (&h2, &n2)] {
        wait_oper(n.as_ref(), &spec.name, OperState::Up, 20).await;
        let served = ports_served(h.port, 12);
        assert!(
            served.contains(&r_new.port),
            "{} never routed to r_new: {served:?}",
            h.name
        );
        assert!(h.stat()[&spec.name].2 > 0, "{}: stot of r_new", h.name);
        assert_eq!(h.servers_state()[&spec.name].0, 0, "{}: ready", h.name);
    }

    // Remove (drain, sessions 0, maint, remove): both stop routing to it.
    let drained = drain_and_remove(
        &fan,
        &spec.name,
        DrainOptions {
            deadline: Duration::from_secs(10),
            poll: Duration::from_millis(100),
        },
    )
    .await;
    assert!(drained.complete() && !drained.forced, "{drained:?}");
    for h in [&h1, &h2] {
        assert!(
            !h.servers_state().contains_key(&spec.name),
            "{} still has it",
            h.name
        );
        assert_eq!(ports_served(h.port, 6), [r_base.port].into(), "{}", h.name);
    }

    // h2 is down during the next add: h1 is updated, h2 is marked for repair.
    h2.stop();
    let report = fan.put_server(&spec, AdminState::Ready).await.unwrap();
    assert_eq!(report.failed(), vec!["h2"], "{report:?}");
    let h2_err = &report.nodes.iter().find(|n| n.node == "h2").unwrap().result;
    assert!(
        matches!(h2_err, Err(BalancerError::Unavailable { .. })),
        "{h2_err:?}"
    );
    assert_eq!(report.needs_repair, vec!["h2".to_string()]);
    wait_oper(n1.as_ref(), &spec.name, OperState::Up, 20).await;
    assert!(ports_served(h1.port, 12).contains(&r_new.port));
    assert_eq!(h1.servers_state()[&spec.name].0, 0);

    // Back up (a fresh process: only haproxy.cfg's servers). A repair converges it.
    h2.restart();
    assert!(!h2.servers_state().contains_key(&spec.name));
    let report = fan.repair().await;
    assert!(
        report.all_ok() && report.needs_repair.is_empty(),
        "{report:?}"
    );
    assert!(report.nodes.iter().any(|n| n.node == "h2" && n.repaired));
    assert_eq!(h2.servers_state()[&spec.name].0, 0, "h2 has r1, ready");
    wait_oper(n2.as_ref(), &spec.name, OperState::Up, 20).await;
    assert!(
        ports_served(h2.port, 12).contains(&r_new.port),
        "h2 routes to r1 again"
    );
    assert!(h2.stat()[&spec.name].2 > 0);
    // A second repair has nothing to do.
    assert!(fan.repair().await.nodes.iter().all(|n| !n.repaired));

    // A removal while h2 is down: h1 drops it now, h2 on its repair. A stray managed
    // server on h2 (left by a crashed run) goes too; the base server stays.
    h2.stop();
    let report = fan.remove_server(&spec.name).await;
    assert_eq!(report.failed(), vec!["h2"]);
    assert!(!h1.servers_state().contains_key(&spec.name));
    h2.restart();
    n2.put_server(&spec).await.unwrap();
    n2.put_server(&ServerSpec {
        name: "pgsurge-t-stray".into(),
        ..spec.clone()
    })
    .await
    .unwrap();
    let report = fan.remove_server("pgsurge-t-none").await;
    assert!(
        report.all_ok() && report.needs_repair.is_empty(),
        "{report:?}"
    );
    let state = h2.servers_state();
    assert_eq!(
        state.keys().collect::<Vec<_>>(),
        vec!["base-1"],
        "{state:?}"
    );
}

/// One node through its Runtime API, the other through a Data Plane API (v3, the
/// spec-checked server in front of a real HAProxy): the same fan-out keeps them
/// identical, and the Data Plane node, down during a change, is repaired when back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_node_and_a_dataplane_node_are_kept_identical() {
    let root = Scratch::new("i5-fanout-mixed");
    let primary = Pg::primary(&root.0, "primary");
    let r_base = Pg::replica_of(&primary, &root.0, "r_base");
    let r_new = Pg::replica_of(&primary, &root.0, "r_new");
    let be = || BackendSpec::with_base(BE, r_base.port);
    let h1 = HaproxyNode::start(&root.0, "h1", be());
    let h2 = HaproxyNode::start(&root.0, "h2", be());
    let specs = [
        Arc::new(Spec::load(&spec_path(2))),
        Arc::new(Spec::load(&spec_path(3))),
    ];
    let password = "dpa-fanout-password-41c9";
    let mut api = FakeDataPlane::start(3, &h2, "admin", password, specs).await;
    let n1: Arc<dyn Balancer> = Arc::new(RuntimeApi::new(
        "h1",
        SocketAddr::Unix(h1.socket.clone()),
        BE,
    ));
    let n2: Arc<dyn Balancer> = Arc::new(
        DataPlane::new(DataPlaneConfig {
            node: "h2-dpa".into(),
            url: api.url.clone(),
            user: "admin".into(),
            password: Secret::new(password),
            backend: BE.into(),
            version: None,
            timeout: Duration::from_secs(5),
            conflict_retries: 5,
            ready_wait: Duration::from_secs(15),
            ca_file: None,
        })
        .unwrap(),
    );
    let fan = FanOut::new(vec![n1.clone(), n2.clone()], DesiredSet::new("pgsurge-"));
    let spec = ServerSpec {
        name: "pgsurge-t-r1".into(),
        address: "127.0.0.1".into(),
        port: r_new.port,
        weight: 100,
        check: true,
        slowstart_ms: 1000,
    };
    let both_route_to_it = |want: bool| {
        for h in [&h1, &h2] {
            let served = ports_served(h.port, 12);
            assert_eq!(
                served.contains(&r_new.port),
                want,
                "{} routes to r_new: {served:?}",
                h.name
            );
        }
    };

    // Add: both nodes, each through its own API, route to it.
    let report = fan.put_server(&spec, AdminState::Ready).await.unwrap();
    assert!(report.all_ok(), "{report:?}");
    for n in [&n1, &n2] {
        wait_oper(n.as_ref(), &spec.name, OperState::Up, 20).await;
    }
    both_route_to_it(true);
    assert_eq!(h2.servers_state()[&spec.name].0, 0, "h2: ready");

    // Drain and remove on both (the Data Plane node cannot kill sessions: not needed).
    let drained = drain_and_remove(
        &fan,
        &spec.name,
        DrainOptions {
            deadline: Duration::from_secs(10),
            poll: Duration::from_millis(100),
        },
    )
    .await;
    assert!(drained.complete() && !drained.forced, "{drained:?}");
    both_route_to_it(false);
    assert!(!api.state.lock().unwrap().servers.contains_key(&spec.name));

    // The Data Plane API is down during the next add: h1 is updated, h2 marked.
    api.stop().await;
    let report = fan.put_server(&spec, AdminState::Ready).await.unwrap();
    assert_eq!(report.failed(), vec!["h2-dpa"], "{report:?}");
    let err = &report.nodes[1].result;
    assert!(
        matches!(err, Err(BalancerError::Unavailable { .. })),
        "{err:?}"
    );
    wait_oper(n1.as_ref(), &spec.name, OperState::Up, 20).await;
    assert!(!h2.servers_state().contains_key(&spec.name));

    // Back: the repair converges h2 through the Data Plane API.
    api.resume().await;
    let report = fan.repair().await;
    assert!(
        report.all_ok() && report.needs_repair.is_empty(),
        "{report:?}"
    );
    assert!(report
        .nodes
        .iter()
        .any(|n| n.node == "h2-dpa" && n.repaired));
    wait_oper(n2.as_ref(), &spec.name, OperState::Up, 20).await;
    both_route_to_it(true);

    // A removal while the Data Plane API is down: h1 now, h2 on its repair.
    api.stop().await;
    let report = fan.remove_server(&spec.name).await;
    assert_eq!(report.failed(), vec!["h2-dpa"], "{report:?}");
    assert!(!h1.servers_state().contains_key(&spec.name));
    api.resume().await;
    let report = fan.repair().await;
    assert!(report.all_ok(), "{report:?}");
    both_route_to_it(false);
    for h in [&h1, &h2] {
        assert_eq!(
            h.servers_state().into_keys().collect::<Vec<_>>(),
            ["base-1"],
            "{}",
            h.name
        );
    }
    let st = api.state.lock().unwrap();
    assert!(
        st.violations.is_empty(),
        "contract violations:\n{}",
        st.violations.join("\n")
    );
}
