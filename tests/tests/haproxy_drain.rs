//! Drain semantics on a real HAProxy: a drain waits for a running query to finish
//! (nothing is dropped), and a session that outlives the deadline is shut down so the
//! removal still completes.

use pgsurge::balancer::drain::{drain_and_remove, DrainOptions};
use pgsurge::balancer::fanout::FanOut;
use pgsurge::balancer::runtime_api::{RuntimeApi, SocketAddr};
use pgsurge::balancer::{AdminState, Balancer, DesiredSet, OperState, ServerSpec};
use pgsurge_tests::haproxy::{wait_oper, BackendSpec, HaproxyNode};
use pgsurge_tests::pg::{Pg, Scratch};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BE: &str = "pg_read";

/// Put the surge server in, and open a session on it running `sql` (the base server is
/// held in maintenance meanwhile so HAProxy has nowhere else to send it).
async fn session_on_surge(
    fan: &FanOut,
    node: &HaproxyNode,
    n: &dyn Balancer,
    spec: &ServerSpec,
    sql: &str,
) -> Child {
    assert!(fan
        .put_server(spec, AdminState::Ready)
        .await
        .unwrap()
        .all_ok());
    wait_oper(n, &spec.name, OperState::Up, 20).await;
    node.cli(&format!("set server {BE}/base-1 state maint"));
    let child = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-d",
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                node.port
            ),
            "-c",
            sql,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while node.stat()[&spec.name].1 == 0 {
        assert!(
            Instant::now() < until,
            "the session never reached {}",
            spec.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.cli(&format!("set server {BE}/base-1 state ready"));
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_running_queries_and_forces_past_the_deadline() {
    let root = Scratch::new("i5-drain");
    let primary = Pg::primary(&root.0, "primary");
    let r_base = Pg::replica_of(&primary, &root.0, "r_base");
    let r_new = Pg::replica_of(&primary, &root.0, "r_new");
    let node = HaproxyNode::start(&root.0, "h1", BackendSpec::with_base(BE, r_base.port));
    let n: Arc<dyn Balancer> = Arc::new(RuntimeApi::new(
        "h1",
        SocketAddr::Unix(node.socket.clone()),
        BE,
    ));
    let fan = FanOut::new(vec![n.clone()], DesiredSet::new("pgsurge-"));
    let spec = ServerSpec {
        name: "pgsurge-t-r1".into(),
        address: "127.0.0.1".into(),
        port: r_new.port,
        weight: 100,
        check: true,
        slowstart_ms: 0,
    };
    let opts = |secs| DrainOptions {
        deadline: Duration::from_secs(secs),
        poll: Duration::from_millis(100),
    };

    // A 3 s query is running on the surge replica: the drain waits for it.
    let q = session_on_surge(
        &fan,
        &node,
        n.as_ref(),
        &spec,
        "select pg_sleep(3), inet_server_port()",
    )
    .await;
    let report = drain_and_remove(&fan, &spec.name, opts(20)).await;
    assert!(report.complete() && !report.forced, "{report:?}");
    assert!(
        report.waited_ms >= 1500,
        "returned before the query ended: {report:?}"
    );
    let out = q.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the query was dropped: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&r_new.port.to_string()),
        "it ran on the surge replica"
    );
    assert!(!node.servers_state().contains_key(&spec.name));

    // A session that outlives the deadline is shut down, and the server removed.
    let mut q = session_on_surge(&fan, &node, n.as_ref(), &spec, "select pg_sleep(60)").await;
    let started = Instant::now();
    let report = drain_and_remove(&fan, &spec.name, opts(2)).await;
    assert!(
        report.complete() && report.forced && report.sessions_left >= 1,
        "{report:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(!node.servers_state().contains_key(&spec.name));
    let until = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = q.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "the session outlived its shutdown");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        !status.success(),
        "the forced session ended with an error for its client"
    );
}
