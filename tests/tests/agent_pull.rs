//! A node the functions cannot reach (`mode = "agent"`: push disabled for it) follows
//! scale-up and scale-down through its agent alone, under `pgbench -S -C` through that
//! node with 0 failed reads. The functions' side is their library calls on the push
//! node (h1): instance-ready's put through the fan-out then `serving`, scale-down's
//! `draining`, drain-and-remove, then forgetting the replica; the state is on the real
//! Ceph RGW and the agent is the real binary.

use pgsurge::agent::status;
use pgsurge::balancer::drain::{drain_and_remove, DrainOptions};
use pgsurge::balancer::fanout::FanOut;
use pgsurge::balancer::{AdminState, DesiredSet, ServerSpec};
use pgsurge::config::Config;
use pgsurge::model::Phase;
use pgsurge_tests::agent::*;
use pgsurge_tests::haproxy::{BackendSpec, HaproxyNode};
use pgsurge_tests::pg::{Pg, Scratch};
use pgsurge_tests::rgw::rgw;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(2000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_only_node_follows_scale_up_and_down_with_zero_failed_reads() {
    let r = rgw();
    let root = Scratch::new("agent-pull");
    let primary = Pg::primary(&root.0, "primary");
    primary.pgbench_init();
    let ra = Pg::replica_of(&primary, &root.0, "ra");
    let rb = Pg::replica_of(&primary, &root.0, "rb");
    let h1 = HaproxyNode::start(&root.0, "h1", BackendSpec::with_base(BE, primary.port));
    let h2 = HaproxyNode::start(&root.0, "h2", BackendSpec::with_base(BE, primary.port));
    let prefix = unique("pull");
    let repo = open_repo(&state_config(&r, &r.endpoint, &prefix)).await;
    set_replicas(&repo, vec![]).await;
    let listen = pgsurge_tests::free_port();
    let text = config_text(
        &r,
        &r.endpoint,
        &prefix,
        &[NodeEntry(&h1, "push"), NodeEntry(&h2, "agent")],
        "h2",
        listen,
        INTERVAL.as_millis() as u64,
    );
    let config = Config::from_toml(&text).expect("config");
    // What the functions build: h2 is not in it.
    let fan = FanOut::from_config(&config.haproxy, DesiredSet::for_cluster(CLUSTER)).unwrap();
    assert_eq!(fan.nodes().collect::<Vec<_>>(), vec!["h1"]);
    let (_agent, _log) = spawn_agent(&root.0, "h2", &text);

    let bench = pgbench(h2.port, 50, 45);
    let t_run = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Scale-up, as instance-ready does it.
    let names = ["pgsurge-ag-ra".to_string(), "pgsurge-ag-rb".to_string()];
    let ports = [ra.port, rb.port];
    set_replicas(
        &repo,
        vec![
            replica("ra", ra.port, Phase::CatchingUp),
            replica("rb", rb.port, Phase::CatchingUp),
        ],
    )
    .await;
    for (n, p) in names.iter().zip(ports) {
        let spec = ServerSpec::from_config(&config.haproxy, n, "127.0.0.1", p);
        let rep = fan.put_server(&spec, AdminState::Ready).await.unwrap();
        assert!(rep.all_ok(), "{rep:?}");
    }
    let t_up = Instant::now();
    let serving = set_replicas(
        &repo,
        vec![
            replica("ra", ra.port, Phase::Serving),
            replica("rb", rb.port, Phase::Serving),
        ],
    )
    .await;
    let up = wait_for(
        "h2 has both new replicas ready",
        Duration::from_secs(30),
        || async { ready(&h2).await == names.to_vec() },
    )
    .await;
    // ... and its agent says so: what instance-ready reads with agent-only nodes.
    let store = repo.store().clone();
    wait_for("the agent reports both replicas", INTERVAL * 3, || async {
        let mut all = true;
        for n in &names {
            all &= status::every_agent(
                store.as_ref(),
                CLUSTER,
                &["h2".into()],
                serving.revision,
                n,
                |s| s == Some(AdminState::Ready),
            )
            .await
            .unwrap();
        }
        all
    })
    .await;
    eprintln!(
        "scale-up: on h2 {up:?} after the state said serving ({:?} after h1)",
        t_up.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    let stat = h2.stat();
    for n in &names {
        assert!(stat[n].2 > 0, "{n} served no session on h2: {stat:?}");
    }

    // Scale-down, as scale-down does it: draining, drain and remove on the push nodes,
    // then the replica is forgotten; its server is deleted only once the agent-only
    // node no longer holds it.
    let draining = set_replicas(
        &repo,
        vec![
            replica("ra", ra.port, Phase::Draining),
            replica("rb", rb.port, Phase::Draining),
        ],
    )
    .await;
    let opts = DrainOptions {
        deadline: Duration::from_secs(10),
        poll: Duration::from_millis(200),
    };
    for n in &names {
        let rep = drain_and_remove(&fan, n, opts).await;
        assert!(rep.complete() && !rep.forced, "{rep:?}");
    }
    wait_for("the agent drained both on h2", INTERVAL * 3, || async {
        let mut all = true;
        for n in &names {
            all &= status::every_agent(
                store.as_ref(),
                CLUSTER,
                &["h2".into()],
                draining.revision,
                n,
                |s| s != Some(AdminState::Ready),
            )
            .await
            .unwrap();
        }
        all
    })
    .await;
    let gone = set_replicas(&repo, vec![]).await;
    let down = wait_for("h2 lost both replicas", Duration::from_secs(30), || async {
        managed(&h2).await.is_empty()
    })
    .await;
    wait_for("the agent reports both gone", INTERVAL * 3, || async {
        let mut all = true;
        for n in &names {
            all &= status::every_agent(
                store.as_ref(),
                CLUSTER,
                &["h2".into()],
                gone.revision,
                n,
                |s| s.is_none(),
            )
            .await
            .unwrap();
        }
        all
    })
    .await;
    eprintln!("scale-down: h2 removed both {down:?} after the replicas were forgotten");
    // "Delete the servers" now: nothing routes to them any more.
    ra.stop();
    rb.stop();
    assert!(
        t_run.elapsed() < Duration::from_secs(40),
        "the whole scale-up and scale-down must fit inside the pgbench run ({:?})",
        t_run.elapsed()
    );
    let (processed, failed) = tokio::task::spawn_blocking(move || pgbench_result(bench))
        .await
        .unwrap();
    eprintln!("pgbench -S -C through the agent-only node: {processed} processed, {failed} failed");
    assert_eq!(failed, 0);
    assert!(processed > 1000, "{processed}");
    assert!(managed(&h1).await.is_empty());
}
