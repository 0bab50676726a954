//! Zero failed reads while scaling: `pgbench -S -C` (a new connection per transaction)
//! through two real HAProxy nodes at a fixed rate while two replicas are added and then
//! drained and removed. Every transaction must succeed, and the new replicas must have
//! served sessions on both nodes.

use pgsurge::balancer::drain::{drain_and_remove, DrainOptions};
use pgsurge::balancer::fanout::FanOut;
use pgsurge::balancer::runtime_api::{RuntimeApi, SocketAddr};
use pgsurge::balancer::{AdminState, Balancer, DesiredSet, OperState, ServerSpec};
use pgsurge_tests::haproxy::{wait_oper, BackendSpec, HaproxyNode};
use pgsurge_tests::pg::{pgbench, Pg, Scratch};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BE: &str = "pg_read";
/// Transactions per second per HAProxy node, and the run length. The run is long
/// enough that the whole scale-up and scale-down fit inside it with [`MARGIN`] to
/// spare on a loaded 2-core box (measured beside other builds: removal done at 12.8 s).
const RATE: u32 = 50;
const SECS: u32 = 30;
/// The removal must be over at least this long before pgbench stops, so the load
/// really covers the drain and the transactions that follow it.
const MARGIN: Duration = Duration::from_secs(4);

/// What one pgbench run measured, from its summary.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Measured {
    processed: u64,
    failed: u64,
    /// `tps = ...`: transactions per second over the run, reconnections included.
    tps: f64,
}

fn measured(out: &str) -> Measured {
    let field = |key: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {key:?} in pgbench output:\n{out}"))
            .to_string()
    };
    let int = |key: &str| {
        field(key)
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{key:?} is not a number in pgbench output:\n{out}"))
    };
    Measured {
        processed: int("number of transactions actually processed: "),
        failed: int("number of failed transactions: "),
        tps: field("tps = ")
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("tps is not a number in pgbench output:\n{out}")),
    }
}

#[test]
fn pgbench_summary_is_parsed() {
    let out = "transaction type: <builtin: select only>\n\
               number of transactions actually processed: 1497\n\
               number of failed transactions: 0 (0.000%)\n\
               latency average = 2.1 ms\n\
               tps = 49.893 (including reconnection times)\n";
    assert_eq!(
        measured(out),
        Measured {
            processed: 1497,
            failed: 0,
            tps: 49.893
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_sees_zero_failures_while_two_replicas_come_and_go() {
    let t0 = Instant::now();
    let root = Scratch::new("i5-zero");
    let primary = Pg::primary(&root.0, "primary");
    // pg_basebackup starts with a spread checkpoint: pgbench_init flushes its data so it is quick.
    primary.pgbench_init();
    eprintln!("setup: pgbench -i done at {:?}", t0.elapsed());
    // Replicas cloned after the data exists: they hold pgbench's tables from the start.
    let r_base = Pg::replica_of(&primary, &root.0, "r_base");
    let ra = Pg::replica_of(&primary, &root.0, "ra");
    let rb = Pg::replica_of(&primary, &root.0, "rb");
    let be = || BackendSpec::with_base(BE, r_base.port);
    eprintln!("setup: replicas at {:?}", t0.elapsed());
    let h1 = HaproxyNode::start(&root.0, "h1", be());
    let h2 = HaproxyNode::start(&root.0, "h2", be());
    let nodes: Vec<Arc<dyn Balancer>> = vec![
        Arc::new(RuntimeApi::new(
            "h1",
            SocketAddr::Unix(h1.socket.clone()),
            BE,
        )),
        Arc::new(RuntimeApi::new(
            "h2",
            SocketAddr::Unix(h2.socket.clone()),
            BE,
        )),
    ];
    let fan = FanOut::new(nodes.clone(), DesiredSet::new("pgsurge-"));
    let specs: Vec<ServerSpec> = [("pgsurge-t-ra", ra.port), ("pgsurge-t-rb", rb.port)]
        .into_iter()
        .map(|(name, port)| ServerSpec {
            name: name.into(),
            address: "127.0.0.1".into(),
            port,
            weight: 100,
            check: true,
            slowstart_ms: 1000,
        })
        .collect();

    let started = Instant::now();
    let bench = [pgbench(h1.port, RATE, SECS), pgbench(h2.port, RATE, SECS)];
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Scale up: both replicas on both nodes.
    for s in &specs {
        let r = fan.put_server(s, AdminState::Ready).await.unwrap();
        assert!(r.all_ok(), "{r:?}");
    }
    for n in &nodes {
        for s in &specs {
            wait_oper(n.as_ref(), &s.name, OperState::Up, 20).await;
        }
    }
    let up_at = started.elapsed();
    // Serve for a while, then record what the new replicas served before removing them.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut served = Vec::new();
    for (node, list) in fan.list().await {
        for s in list.unwrap() {
            if s.name.starts_with("pgsurge-") {
                served.push((node.clone(), s.name.clone(), s.total_sessions));
            }
        }
    }

    // Scale down: drain, wait for sessions to end, maint, remove.
    let drain_started = started.elapsed();
    for s in &specs {
        let d = drain_and_remove(
            &fan,
            &s.name,
            DrainOptions {
                deadline: Duration::from_secs(10),
                poll: Duration::from_millis(100),
            },
        )
        .await;
        assert!(d.complete(), "{d:?}");
        assert!(
            !d.forced,
            "short transactions drain before the deadline: {d:?}"
        );
    }
    let removed_at = started.elapsed();
    // The load was still running when the last removal finished, with time to spare:
    // otherwise a slow box could scale down after pgbench stopped and prove nothing.
    let mut bench = bench;
    for (h, b) in [&h1, &h2].iter().zip(bench.iter_mut()) {
        assert!(
            b.try_wait().unwrap().is_none(),
            "pgbench via {} ended before the removal finished at {removed_at:.1?}",
            h.name
        );
    }
    assert!(
        removed_at + MARGIN <= Duration::from_secs(SECS.into()),
        "drain and removal finished at {removed_at:.1?}, less than {MARGIN:?} before the \
         {SECS}s load ends: the scale-down was not covered by the load"
    );
    for h in [&h1, &h2] {
        let state = h.servers_state();
        assert_eq!(
            state.keys().collect::<Vec<_>>(),
            vec!["base-1"],
            "{}: {state:?}",
            h.name
        );
    }

    let mut total = (0, 0);
    let mut per_node = Vec::new();
    for (h, b) in [&h1, &h2].iter().zip(bench) {
        let out = b.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "pgbench via {}: {stderr}\n{stdout}",
            h.name
        );
        assert!(
            !stderr.contains("aborted") && !stderr.contains("error"),
            "pgbench via {}: {stderr}",
            h.name
        );
        let m = measured(&stdout);
        let (ok, failed) = (m.processed, m.failed);
        assert_eq!(failed, 0, "failed transactions via {}:\n{stdout}", h.name);
        per_node.push((h.name.clone(), m));
        // The rate held: at least 80 % of RATE x SECS went through.
        assert!(
            ok >= (RATE * SECS) as u64 * 8 / 10,
            "only {ok} transactions via {}:\n{stdout}",
            h.name
        );
        total.0 += ok;
        total.1 += failed;
    }
    let ended_at = started.elapsed();
    // Both new replicas served sessions on both nodes.
    assert_eq!(served.len(), 4, "{served:?}");
    for (node, name, stot) in &served {
        assert!(
            *stot > 0,
            "{name} served nothing through {node}: {served:?}"
        );
    }
    for (node, m) in &per_node {
        eprintln!(
            "zero-failed-reads: via {node}: {} transactions processed, {} failed, measured {:.1} tps \
             (configured {RATE})",
            m.processed, m.failed, m.tps
        );
    }
    eprintln!(
        "zero-failed-reads: rate {RATE} tps x 2 nodes for {SECS}s (pgbench -S -C -c 4); \
         replicas up at {up_at:.1?}, drain from {drain_started:.1?}, removed at {removed_at:.1?}, \
         pgbench ended at {ended_at:.1?}; transactions ok {} failed {}; \
         sessions served by new replicas (node, server, stot): {served:?}",
        total.0, total.1
    );
}
