//! The state store unreachable for 30 s (a loopback proxy in front of the real Ceph
//! RGW is stopped; the shared gateway itself keeps running): the agent removes no
//! server, still restores a reload from the last known set, says so in its metrics and
//! health, and follows the state again when the store returns. Before any document
//! exists, and with a document of another cluster, it changes nothing.

use pgsurge::model::{ClusterState, Phase};
use pgsurge_tests::agent::*;
use pgsurge_tests::haproxy::{BackendSpec, HaproxyNode};
use pgsurge_tests::pg::{Pg, Scratch};
use pgsurge_tests::rgw::rgw;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(1000);
const OUTAGE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_store_outage_removes_nothing_and_the_agent_recovers() {
    let r = rgw();
    let root = Scratch::new("agent-store-down");
    // One PostgreSQL serves every server of the backend: what is tested is which
    // servers HAProxy holds, and the health checks need a real PostgreSQL behind them.
    let pg = Pg::primary(&root.0, "primary");
    let mut h1 = HaproxyNode::start(&root.0, "h1", BackendSpec::with_base(BE, pg.port));
    let rgw_addr = r.endpoint.trim_start_matches("http://").to_string();
    let mut proxy = Proxy::start(&rgw_addr).await;
    let through_proxy = format!("http://127.0.0.1:{}", proxy.port);
    let prefix = unique("down");
    let direct = open_repo(&state_config(&r, &r.endpoint, &prefix)).await;

    // No document yet: a managed server someone left on the node is not touched.
    h1.cli(&format!(
        "add server {BE}/pgsurge-{CLUSTER}-stray 127.0.0.1:{} weight 1",
        pg.port
    ));
    let listen = pgsurge_tests::free_port();
    let text = config_text(
        &r,
        &through_proxy,
        &prefix,
        &[NodeEntry(&h1, "agent")],
        "h1",
        listen,
        INTERVAL.as_millis() as u64,
    );
    let (_agent, _log) = spawn_agent(&root.0, "h1", &text);
    let metrics = format!("http://127.0.0.1:{listen}/metrics");
    pgsurge_tests::wait_http_ok(&format!("http://127.0.0.1:{listen}/healthz"), 30).await;
    tokio::time::sleep(INTERVAL * 3).await;
    assert!(
        managed(&h1).await.contains_key("pgsurge-ag-stray"),
        "the agent changed the node before any state document existed"
    );
    let (_, m) = get(&metrics).await;
    assert!(m.contains("kind=\"absent\""), "{m}");

    let both = || vec!["pgsurge-ag-ra".to_string(), "pgsurge-ag-rb".to_string()];
    set_replicas(
        &direct,
        vec![
            replica("ra", pg.port, Phase::Serving),
            replica("rb", pg.port, Phase::Serving),
        ],
    )
    .await;
    wait_for(
        "agent converges to ra, rb",
        Duration::from_secs(30),
        || async {
            ready(&h1).await == both() && !managed(&h1).await.contains_key("pgsurge-ag-stray")
        },
    )
    .await;

    // The outage. Meanwhile the state changes (rb is scaled down): the agent cannot
    // know, and must keep what it last knew rather than guess.
    proxy.stop().await;
    set_replicas(&direct, vec![replica("ra", pg.port, Phase::Serving)]).await;
    let t0 = Instant::now();
    let mut reloaded = false;
    while t0.elapsed() < OUTAGE {
        let now = managed(&h1).await;
        assert!(
            now.contains_key("pgsurge-ag-ra") && now.contains_key("pgsurge-ag-rb"),
            "a server was removed {:?} into the outage: {now:?}",
            t0.elapsed()
        );
        if !reloaded && t0.elapsed() > Duration::from_secs(10) {
            // A reload during the outage is restored from the last known set.
            h1.reload();
            reloaded = true;
            wait_for(
                "reload restored during the outage",
                INTERVAL * 2 + Duration::from_secs(3),
                || async { ready(&h1).await == both() },
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, m) = get(&metrics).await;
    assert_eq!(metric(&m, "pgsurge_agent_state_reachable"), 0.0, "{m}");
    assert!(
        metric(&m, "pgsurge_agent_state_errors_total") >= 10.0,
        "{m}"
    );
    let (code, health) = get(&format!("http://127.0.0.1:{listen}/healthz")).await;
    assert_eq!(code, 200, "{health}");
    assert!(health.contains("keeping the last known set"), "{health}");
    assert!(
        std::fs::read_to_string(root.0.join("agent-h1.log"))
            .unwrap()
            .contains("keeping the last known set"),
        "the log does not say the state was not refreshed"
    );

    // The store returns: the agent follows the state again (rb drained and removed).
    proxy.resume().await;
    let back = wait_for(
        "agent follows the state after the outage",
        Duration::from_secs(30),
        || async {
            ready(&h1).await == vec!["pgsurge-ag-ra".to_string()]
                && !managed(&h1).await.contains_key("pgsurge-ag-rb")
        },
    )
    .await;
    eprintln!("followed the state {back:?} after the store returned");
    let (_, m) = get(&metrics).await;
    assert_eq!(metric(&m, "pgsurge_agent_state_reachable"), 1.0, "{m}");

    // A document of another cluster under this key changes nothing.
    let store = direct.store().clone();
    let current = store.load(direct.key()).await.unwrap().unwrap();
    let foreign = serde_json::to_vec(&ClusterState::new("someone-else")).unwrap();
    store
        .compare_and_swap(direct.key(), Some(&current.version), foreign)
        .await
        .unwrap();
    tokio::time::sleep(INTERVAL * 3).await;
    assert_eq!(ready(&h1).await, vec!["pgsurge-ag-ra".to_string()]);
    let (_, m) = get(&metrics).await;
    assert!(m.contains("kind=\"other_cluster\""), "{m}");
}
