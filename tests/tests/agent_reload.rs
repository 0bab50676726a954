//! An HAProxy reload (`-sf`, what systemd does on every config deploy) under
//! `pgbench -S -C`: the agent notices the new process and restores the managed servers
//! within 2 intervals, and no read fails. The state is on the real Ceph RGW.

use pgsurge::model::Phase;
use pgsurge_tests::agent::*;
use pgsurge_tests::haproxy::{BackendSpec, HaproxyNode};
use pgsurge_tests::pg::{Pg, Scratch};
use pgsurge_tests::rgw::rgw;
use std::time::{Duration, Instant};

/// The default interval: the requirement is "back within 2 intervals" of it.
const INTERVAL: Duration = Duration::from_millis(2000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_is_restored_within_two_intervals_with_zero_failed_reads() {
    let r = rgw();
    let root = Scratch::new("agent-reload");
    let primary = Pg::primary(&root.0, "primary");
    primary.pgbench_init();
    let ra = Pg::replica_of(&primary, &root.0, "ra");
    let rb = Pg::replica_of(&primary, &root.0, "rb");
    // The base server (haproxy.cfg) is the primary here: it is what keeps reads
    // flowing while the managed servers are gone.
    let mut h1 = HaproxyNode::start(&root.0, "h1", BackendSpec::with_base(BE, primary.port));
    let prefix = unique("reload");
    let cfg = state_config(&r, &r.endpoint, &prefix);
    let repo = open_repo(&cfg).await;
    set_replicas(
        &repo,
        vec![
            replica("ra", ra.port, Phase::Serving),
            replica("rb", rb.port, Phase::Serving),
        ],
    )
    .await;
    let listen = pgsurge_tests::free_port();
    let text = config_text(
        &r,
        &r.endpoint,
        &prefix,
        &[NodeEntry(&h1, "agent")],
        "h1",
        listen,
        INTERVAL.as_millis() as u64,
    );
    let (_agent, _log) = spawn_agent(&root.0, "h1", &text);
    let both = || vec!["pgsurge-ag-ra".to_string(), "pgsurge-ag-rb".to_string()];
    let first = wait_for(
        "agent registers both replicas",
        Duration::from_secs(40),
        || async { ready(&h1).await == both() },
    )
    .await;
    eprintln!("first convergence: {first:?}");

    let bench = pgbench(h1.port, 50, 20);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let old_pid = h1.pid();
    let t0 = Instant::now();
    h1.reload();
    let reload_took = t0.elapsed();
    assert_ne!(h1.pid(), old_pid);
    // The new process starts without the dynamic servers.
    // Measured from the moment the reload began (the new process starts, takes the
    // listeners over, the old one finishes its sessions and exits).
    let restored = wait_for(
        "managed servers back within 2 intervals of the reload",
        (INTERVAL * 2).saturating_sub(reload_took),
        || async { ready(&h1).await == both() },
    )
    .await;
    eprintln!(
        "reload: new process up and old one gone after {reload_took:?}; managed servers back \
         {restored:?} later (window since the reload began: {:?}; interval {INTERVAL:?})",
        t0.elapsed()
    );
    let (processed, failed) = tokio::task::spawn_blocking(move || pgbench_result(bench))
        .await
        .unwrap();
    eprintln!("pgbench -S -C through the reload: {processed} processed, {failed} failed");
    assert_eq!(failed, 0, "reads failed during the reload");
    assert!(processed > 500, "pgbench ran too little: {processed}");
    // The restored servers take sessions again.
    let stat = h1.stat();
    for s in both() {
        assert!(
            stat[&s].2 > 0,
            "{s} served nothing after the reload: {stat:?}"
        );
    }
    // The agent counted the reload.
    let (_, m) = get(&format!("http://127.0.0.1:{listen}/metrics")).await;
    assert_eq!(metric(&m, "pgsurge_agent_reloads_total"), 1.0, "{m}");
}
