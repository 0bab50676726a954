//! Two agents (`mode = "both"`) and the pushing functions on the same nodes never fight:
//! through a scale-up and a scale-down done by the push path, each agent's own count of
//! the admin changes it made (`pgsurge_agent_drift_total`) stays at most one per server
//! (the drain it may set a moment before scale-down does), nothing flaps back, and once
//! settled no agent changes anything. State on the real Ceph RGW, real HAProxy 2.6 and
//! PostgreSQL 15, the agents are the real binary.

use pgsurge::balancer::drain::{drain_and_remove, DrainOptions};
use pgsurge::balancer::fanout::FanOut;
use pgsurge::balancer::{AdminState, DesiredSet, ServerSpec};
use pgsurge::config::Config;
use pgsurge::model::Phase;
use pgsurge_tests::agent::*;
use pgsurge_tests::haproxy::{BackendSpec, HaproxyNode};
use pgsurge_tests::pg::{Pg, Scratch};
use pgsurge_tests::rgw::rgw;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(1000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_and_a_pushing_function_never_fight() {
    let r = rgw();
    let root = Scratch::new("agent-fight");
    let pg = Pg::primary(&root.0, "primary");
    let h1 = HaproxyNode::start(&root.0, "h1", BackendSpec::with_base(BE, pg.port));
    let h2 = HaproxyNode::start(&root.0, "h2", BackendSpec::with_base(BE, pg.port));
    let prefix = unique("fight");
    let repo = open_repo(&state_config(&r, &r.endpoint, &prefix)).await;
    set_replicas(&repo, vec![]).await;
    let nodes = [NodeEntry(&h1, "both"), NodeEntry(&h2, "both")];
    let (l1, l2) = (pgsurge_tests::free_port(), pgsurge_tests::free_port());
    let ms = INTERVAL.as_millis() as u64;
    let t1 = config_text(&r, &r.endpoint, &prefix, &nodes, "h1", l1, ms);
    let t2 = config_text(&r, &r.endpoint, &prefix, &nodes, "h2", l2, ms);
    let (_a1, _) = spawn_agent(&root.0, "h1", &t1);
    let (_a2, _) = spawn_agent(&root.0, "h2", &t2);
    let config = Config::from_toml(&t1).unwrap();
    let fan = FanOut::from_config(&config.haproxy, DesiredSet::for_cluster(CLUSTER)).unwrap();
    assert_eq!(fan.nodes().count(), 2, "both nodes are pushed to");
    let drift = |port: u16| async move {
        let (_, m) = get(&format!("http://127.0.0.1:{port}/metrics")).await;
        metric(&m, "pgsurge_agent_drift_total")
    };
    pgsurge_tests::wait_http_ok(&format!("http://127.0.0.1:{l1}/healthz"), 30).await;
    pgsurge_tests::wait_http_ok(&format!("http://127.0.0.1:{l2}/healthz"), 30).await;

    // Scale-up by push (instance-ready's order: pending, put, serving).
    let names = ["pgsurge-ag-ra".to_string(), "pgsurge-ag-rb".to_string()];
    set_replicas(
        &repo,
        vec![
            replica("ra", pg.port, Phase::CatchingUp),
            replica("rb", pg.port, Phase::CatchingUp),
        ],
    )
    .await;
    for n in &names {
        let spec = ServerSpec::from_config(&config.haproxy, n, "127.0.0.1", pg.port);
        assert!(fan
            .put_server(&spec, AdminState::Ready)
            .await
            .unwrap()
            .all_ok());
    }
    set_replicas(
        &repo,
        vec![
            replica("ra", pg.port, Phase::Serving),
            replica("rb", pg.port, Phase::Serving),
        ],
    )
    .await;
    tokio::time::sleep(INTERVAL * 4).await;
    assert_eq!(drift(l1).await, 0.0, "agent h1 changed what push had done");
    assert_eq!(drift(l2).await, 0.0, "agent h2 changed what push had done");

    // Scale-down by push (draining, drain and remove, forget).
    set_replicas(
        &repo,
        vec![
            replica("ra", pg.port, Phase::Draining),
            replica("rb", pg.port, Phase::Draining),
        ],
    )
    .await;
    let opts = DrainOptions {
        deadline: Duration::from_secs(10),
        poll: Duration::from_millis(200),
    };
    for n in &names {
        let rep = drain_and_remove(&fan, n, opts).await;
        assert!(rep.complete(), "push drain was disturbed: {rep:?}");
    }
    // The state still says draining while scale-down proves and deletes the server:
    // long enough for every agent to look (an agent that put the removed server back
    // here was the fight this test first caught).
    tokio::time::sleep(INTERVAL * 3).await;
    set_replicas(&repo, vec![]).await;
    tokio::time::sleep(INTERVAL * 4).await;
    let (d1, d2) = (drift(l1).await, drift(l2).await);
    eprintln!("agent admin changes through scale-up and scale-down: h1 {d1}, h2 {d2}");
    assert!(
        d1 <= 2.0 && d2 <= 2.0,
        "more than one change per server: h1 {d1}, h2 {d2}"
    );
    assert!(managed(&h1).await.is_empty() && managed(&h2).await.is_empty());
    // Settled: nothing more.
    tokio::time::sleep(INTERVAL * 5).await;
    assert_eq!(
        (drift(l1).await, drift(l2).await),
        (d1, d2),
        "agents kept changing a settled node"
    );
}
