//! The Runtime API adapter against a real HAProxy 2.6 in front of real PostgreSQL
//! replicas: put / idempotency / conflicts / states / remove, the typed errors, and the
//! re-apply of the desired set after a `-sf` reload.

use pgsurge::balancer::runtime_api::{RuntimeApi, SocketAddr};
use pgsurge::balancer::{
    Action, AdminState, Balancer, BalancerError, DesiredSet, OperState, PutOutcome, ServerSpec,
};
use pgsurge_tests::haproxy::{ports_served, wait_oper, BackendSpec, HaproxyNode, StaticServer};
use pgsurge_tests::pg::{Pg, Scratch};

const BE: &str = "pg_read";

fn spec(name: &str, port: u16) -> ServerSpec {
    ServerSpec {
        name: name.into(),
        address: "127.0.0.1".into(),
        port,
        weight: 100,
        check: true,
        slowstart_ms: 0,
    }
}

fn base(pg: &Pg) -> Vec<StaticServer> {
    vec![StaticServer {
        name: "base-1".into(),
        port: pg.port,
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_api_puts_sets_states_and_removes_on_real_haproxy() {
    let root = Scratch::new("i5-rt");
    let primary = Pg::primary(&root.0, "primary");
    let r_base = Pg::replica_of(&primary, &root.0, "r_base");
    let r_new = Pg::replica_of(&primary, &root.0, "r_new");
    let node = HaproxyNode::start(&root.0, "h1", BackendSpec::new(BE, base(&r_base)));
    let rt = RuntimeApi::new("h1", SocketAddr::Unix(node.socket.clone()), BE);
    let name = "pgsurge-t-r1";

    // A bad spec is refused before anything reaches HAProxy.
    let bad = ServerSpec {
        name: "bad name".into(),
        ..spec(name, r_new.port)
    };
    assert!(matches!(
        rt.put_server(&bad).await,
        Err(BalancerError::InvalidSpec(_))
    ));
    assert_eq!(node.servers_state().len(), 1, "nothing was added");
    // A host name: HAProxy would report it resolved (127.0.0.1), so it could never be
    // recognised as unchanged. Refused, naming the value.
    let host = ServerSpec {
        address: "localhost".into(),
        ..spec(name, r_new.port)
    };
    let e = rt.put_server(&host).await.unwrap_err();
    assert!(
        matches!(&e, BalancerError::InvalidSpec(m) if m.contains("\"localhost\" is not an IP address")),
        "{e}"
    );
    assert_eq!(node.servers_state().len(), 1, "nothing was added");

    // Put: created in maintenance, health check on and marked down.
    assert_eq!(
        rt.put_server(&spec(name, r_new.port)).await.unwrap(),
        PutOutcome::Created
    );
    let (admin, _, port) = node.servers_state()[name];
    assert_eq!(
        (admin & 1, port),
        (1, r_new.port),
        "in maintenance, right port"
    );
    assert!(node.cli(&format!("show servers state {BE}")).contains(name));
    // Same settings: no-op. Weight: in place. Address/port: conflict, nothing changed.
    assert_eq!(
        rt.put_server(&spec(name, r_new.port)).await.unwrap(),
        PutOutcome::Unchanged
    );
    let w50 = ServerSpec {
        weight: 50,
        ..spec(name, r_new.port)
    };
    assert_eq!(rt.put_server(&w50).await.unwrap(), PutOutcome::Updated);
    assert_eq!(rt.put_server(&w50).await.unwrap(), PutOutcome::Unchanged);
    let moved = spec(name, r_base.port);
    assert!(matches!(
        rt.put_server(&moved).await,
        Err(BalancerError::Conflict(_))
    ));
    assert_eq!(node.servers_state()[name].2, r_new.port);

    // Ready: the health check (pgsql-check) brings it up and it takes connections.
    rt.set_state(name, AdminState::Ready).await.unwrap();
    wait_oper(&rt, name, OperState::Up, 20).await;
    let served = ports_served(node.port, 12);
    assert!(
        served.contains(&r_new.port),
        "never routed to the new replica: {served:?}"
    );
    let listed = rt.list_servers().await.unwrap();
    let me = listed.iter().find(|s| s.name == name).unwrap();
    assert_eq!(
        (me.admin, me.weight, me.check),
        (AdminState::Ready, 50, true)
    );
    assert!(me.total_sessions > 0, "{me:?}");
    // "UP" or "UP 1/3" (up, health still climbing after leaving maintenance).
    assert!(node.stat()[name].0.starts_with("UP"), "{:?}", node.stat());

    // The TCP admin socket sees the same.
    let tcp = RuntimeApi::new(
        "h1-tcp",
        SocketAddr::Tcp(format!("127.0.0.1:{}", node.admin_port)),
        BE,
    );
    let names = |l: Vec<pgsurge::balancer::ServerStatus>| {
        l.into_iter()
            .map(|s| (s.name, s.admin, s.port))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(tcp.list_servers().await.unwrap()),
        names(rt.list_servers().await.unwrap())
    );
    assert!(tcp
        .list_servers()
        .await
        .unwrap()
        .iter()
        .any(|s| s.name == name));

    // Drain then remove; nothing reaches it afterwards; removal is idempotent.
    rt.set_state(name, AdminState::Drain).await.unwrap();
    assert_eq!(node.servers_state()[name].0 & 0x08, 0x08, "drain flag");
    assert!(rt.remove_server(name).await.unwrap());
    assert!(!node.servers_state().contains_key(name));
    assert!(!rt.remove_server(name).await.unwrap());
    let served = ports_served(node.port, 6);
    assert_eq!(served, [r_base.port].into(), "only the base replica serves");

    // The same node built from the `[haproxy]` configuration, through both sockets.
    let toml = format!(
        "[haproxy]\nbackend = \"{BE}\"\n\
         [[haproxy.nodes]]\nname = \"unix\"\nruntime_api = \"unix:{}\"\n\
         [[haproxy.nodes]]\nname = \"tcp\"\nruntime_api = \"tcp:127.0.0.1:{}\"\n",
        node.socket.display(),
        node.admin_port
    );
    let config = pgsurge::config::Config::from_toml(&toml).unwrap();
    let fan = pgsurge::balancer::fanout::FanOut::from_config(
        &config.haproxy,
        DesiredSet::for_cluster("t"),
    )
    .unwrap();
    let views = fan.list().await;
    assert_eq!(views.len(), 2);
    for (node_name, list) in views {
        let names: Vec<String> = list.unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["base-1".to_string()], "{node_name}");
    }

    // A name cannot smuggle a second admin command in.
    let evil = format!("x; del server {BE}/base-1");
    assert!(matches!(
        rt.set_state(&evil, AdminState::Maint).await,
        Err(BalancerError::InvalidSpec(_))
    ));
    assert!(matches!(
        rt.remove_server(&evil).await,
        Err(BalancerError::InvalidSpec(_))
    ));
    assert!(node.servers_state().contains_key("base-1"));

    // Typed errors.
    assert!(matches!(
        rt.set_state("pgsurge-t-nope", AdminState::Ready).await,
        Err(BalancerError::NotFound { .. })
    ));
    let nob = RuntimeApi::new(
        "h1",
        SocketAddr::Unix(node.socket.clone()),
        "no_such_backend",
    );
    assert!(matches!(
        nob.put_server(&spec(name, 1)).await,
        Err(BalancerError::NoBackend(_))
    ));
    // A replica HAProxy cannot check is never made ready: it stays in maintenance.
    let dead = spec("pgsurge-t-dead", pgsurge_tests::free_port());
    let quick = rt
        .clone()
        .with_ready_wait(std::time::Duration::from_secs(3));
    assert_eq!(quick.put_server(&dead).await.unwrap(), PutOutcome::Created);
    let e = quick
        .set_state(&dead.name, AdminState::Ready)
        .await
        .unwrap_err();
    assert!(matches!(e, BalancerError::Busy(_)), "{e}");
    assert_eq!(
        node.servers_state()[&dead.name].0 & 1,
        1,
        "still in maintenance"
    );
    assert!(quick.remove_server(&dead.name).await.unwrap());
    let gone = RuntimeApi::new("h9", SocketAddr::Unix(root.0.join("nowhere.sock")), BE);
    let e = gone.list_servers().await.unwrap_err();
    assert!(
        matches!(e, BalancerError::Unavailable { .. }) && e.is_retryable(),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_algorithm_backend_is_a_clear_unsupported_error() {
    let root = Scratch::new("i5-rt-static");
    let mut be = BackendSpec::with_base(BE, 1);
    be.balance = "static-rr".into();
    let node = HaproxyNode::start(&root.0, "h1", be);
    let rt = RuntimeApi::new("h1", SocketAddr::Unix(node.socket.clone()), BE);
    let e = rt.put_server(&spec("pgsurge-t-r1", 2)).await.unwrap_err();
    assert!(matches!(e, BalancerError::Unsupported(_)), "{e}");
    assert!(e.to_string().contains("leastconn"), "{e}");
    assert_eq!(node.servers_state().len(), 1, "no partial state");
}

/// `server-template` slots and servers other config lines point to are the operator's:
/// HAProxy 2.6 would delete a slot on `del server`, so the adapter must not ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_slots_and_referenced_servers_are_never_deleted_or_filled() {
    let root = Scratch::new("i5-rt-slots");
    let mut be = BackendSpec::with_base(BE, 1);
    be.extra = vec![
        "server-template pgsurge-t 1-2 127.0.0.1:1 disabled".into(),
        // Makes base-1 referenced: HAProxy refuses to delete it at runtime.
        "server base-2 127.0.0.1:2 track base-1".into(),
    ];
    let node = HaproxyNode::start(&root.0, "h1", be);
    let rt = RuntimeApi::new("h1", SocketAddr::Unix(node.socket.clone()), BE);
    let names = || node.servers_state().into_keys().collect::<Vec<_>>();
    let all = ["base-1", "base-2", "pgsurge-t1", "pgsurge-t2"];
    assert_eq!(names(), all);
    let slot_admin = node.servers_state()["pgsurge-t1"].0;

    // Putting a slot's name, even with the slot's own settings: a clear conflict.
    let slot = ServerSpec {
        weight: 1,
        check: false,
        ..spec("pgsurge-t1", 1)
    };
    let e = rt.put_server(&slot).await.unwrap_err();
    assert!(
        matches!(&e, BalancerError::Conflict(m) if m.contains("server-template slot")),
        "{e}"
    );
    // Removing one: refused, the slot stays as it was.
    let e = rt.remove_server("pgsurge-t2").await.unwrap_err();
    assert!(matches!(e, BalancerError::Conflict(_)), "{e}");
    assert_eq!(node.servers_state()["pgsurge-t1"].0, slot_admin);

    // apply with a prefix that matches the slots: adds ours, leaves the slots alone.
    let mut desired = DesiredSet::new("pgsurge-");
    let ours = ServerSpec {
        check: false,
        ..spec("pgsurge-c-r1", 3)
    };
    desired.insert(ours.clone(), AdminState::Maint);
    assert_eq!(
        rt.apply(&desired).await.unwrap(),
        vec![Action::Put { spec: ours }]
    );
    assert!(rt.apply(&desired).await.unwrap().is_empty(), "converged");
    assert_eq!(
        names(),
        [
            "base-1",
            "base-2",
            "pgsurge-c-r1",
            "pgsurge-t1",
            "pgsurge-t2"
        ]
    );
    // The slots are still listed (status shows them), just never planned for.
    let listed: Vec<String> = rt
        .list_servers()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(listed.contains(&"pgsurge-t1".to_string()), "{listed:?}");
    // A desired server named like a slot: apply fails with the conflict, nothing changed.
    desired.insert(slot, AdminState::Ready);
    let e = rt.apply(&desired).await.unwrap_err();
    assert!(matches!(e, BalancerError::Conflict(_)), "{e}");
    assert_eq!(node.servers_state()["pgsurge-t1"].0, slot_admin);

    // A server that other configuration points to: HAProxy's refusal is a Conflict.
    let e = rt.remove_server("base-1").await.unwrap_err();
    assert!(
        matches!(&e, BalancerError::Conflict(m) if m.contains("referenced")),
        "{e}"
    );
    assert!(node.servers_state().contains_key("base-1"));
    // And HAProxy's refusal of a keyword on a dynamic server is Unsupported.
    let answer = rt
        .command(&format!(
            "add server {BE}/pgsurge-c-x 127.0.0.1:4 init-addr none"
        ))
        .await
        .unwrap();
    let e = pgsurge::balancer::runtime_api::classify(BE, "pgsurge-c-x", &answer);
    assert!(
        matches!(&e, BalancerError::Unsupported(m) if m.contains("init-addr")),
        "{answer:?} -> {e}"
    );
    assert!(!node.servers_state().contains_key("pgsurge-c-x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_forgets_dynamic_servers_and_apply_restores_the_desired_set() {
    let root = Scratch::new("i5-reload");
    let primary = Pg::primary(&root.0, "primary");
    let r_base = Pg::replica_of(&primary, &root.0, "r_base");
    let r1 = Pg::replica_of(&primary, &root.0, "r1");
    let mut node = HaproxyNode::start(&root.0, "h1", BackendSpec::new(BE, base(&r_base)));
    let rt = RuntimeApi::new("h1", SocketAddr::Unix(node.socket.clone()), BE);

    let mut desired = DesiredSet::new("pgsurge-");
    desired.insert(spec("pgsurge-t-r1", r1.port), AdminState::Ready);
    desired.insert(spec("pgsurge-t-r2", r_base.port), AdminState::Drain);
    let actions = rt.apply(&desired).await.unwrap();
    assert_eq!(actions.len(), 4, "{actions:?}");
    assert!(
        rt.apply(&desired).await.unwrap().is_empty(),
        "second apply is a no-op"
    );
    wait_oper(&rt, "pgsurge-t-r1", OperState::Up, 20).await;

    let old_pid = node.pid();
    node.reload();
    assert_ne!(node.pid(), old_pid);
    let after = node.servers_state();
    assert!(
        !after.contains_key("pgsurge-t-r1") && !after.contains_key("pgsurge-t-r2"),
        "a reload forgets dynamic servers: {after:?}"
    );

    let actions = rt.apply(&desired).await.unwrap();
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Put { spec } if spec.name == "pgsurge-t-r1")));
    let state = node.servers_state();
    assert_eq!(state["pgsurge-t-r1"].0, 0, "r1 ready again");
    assert_eq!(state["pgsurge-t-r2"].0 & 0x08, 0x08, "r2 draining again");
    wait_oper(&rt, "pgsurge-t-r1", OperState::Up, 20).await;
    let served = ports_served(node.port, 12);
    assert!(
        served.contains(&r1.port),
        "r1 serves after the reload: {served:?}"
    );
    assert!(rt.apply(&desired).await.unwrap().is_empty());

    // A managed server that is no longer desired is removed; base servers are kept.
    desired.servers.remove("pgsurge-t-r2");
    let actions = rt.apply(&desired).await.unwrap();
    assert_eq!(
        actions,
        vec![Action::Remove {
            name: "pgsurge-t-r2".into()
        }]
    );
    let state = node.servers_state();
    assert!(state.contains_key("base-1") && !state.contains_key("pgsurge-t-r2"));
}

#[test]
fn example_config_is_valid_haproxy() {
    pgsurge_tests::haproxy::require_haproxy();
    let path = pgsurge_tests::workspace_root().join("infra/haproxy/haproxy.cfg");
    let out = std::process::Command::new(pgsurge_tests::haproxy::HAPROXY)
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} is not valid: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
