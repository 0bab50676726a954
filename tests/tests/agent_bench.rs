//! `./just bench-agent`: the agent's idle cost. One agent follows a state document on the
//! real Ceph RGW with two managed servers on a real HAProxy for `SECS` (default 300) and
//! nothing changes; its CPU time (utime + stime from /proc) and RSS are sampled and the
//! CPU extrapolated per hour. A benchmark, not a test: `#[ignore]`, run by the recipe.
//! `BENCH_AGENT_BIN` picks the binary (the recipe passes the release build). Not a
//! `PGSURGE_` name: the agent inherits this environment and reads every `PGSURGE_*`
//! variable as configuration (an unknown one is an error, as it should be).

use pgsurge::model::Phase;
use pgsurge_tests::agent::*;
use pgsurge_tests::haproxy::{BackendSpec, HaproxyNode, StaticServer};
use pgsurge_tests::pg::Scratch;
use pgsurge_tests::rgw::rgw;
use std::time::{Duration, Instant};

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("agent alive");
    // Fields after the command name (which may hold spaces): utime is the 14th, stime the 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by `./just bench-agent`"]
async fn idle_agent_resource_use() {
    let secs: u64 = std::env::var("SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let r = rgw();
    let root = Scratch::new("agent-bench");
    // No PostgreSQL: health checks are off for this run ([haproxy] check = false below),
    // so the servers are made ready without one; nothing connects through HAProxy.
    let h1 = HaproxyNode::start(
        &root.0,
        "h1",
        BackendSpec::new(
            BE,
            vec![StaticServer {
                name: "base-1".into(),
                port: 9,
            }],
        ),
    );
    let prefix = unique("bench");
    let repo = open_repo(&state_config(&r, &r.endpoint, &prefix)).await;
    set_replicas(
        &repo,
        vec![
            replica("ra", 19001, Phase::Serving),
            replica("rb", 19002, Phase::Serving),
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
        2000,
    )
    .replace(
        "ready_wait_secs = 15\n",
        "ready_wait_secs = 15\ncheck = false\n",
    );
    let cfg = root.0.join("agent.toml");
    std::fs::write(&cfg, &text).unwrap();
    let bin = std::env::var("BENCH_AGENT_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| pgsurge_tests::bin("pgsurge-agent"));
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(["--config", cfg.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let agent = pgsurge_tests::Proc::spawn_cmd(&mut cmd);
    let pid = agent.id();
    wait_for("agent converges", Duration::from_secs(30), || async {
        ready(&h1).await.len() == 2
    })
    .await;
    let (cpu0, t0) = (cpu_secs(pid), Instant::now());
    let mut rss_max = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        rss_max = rss_max.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let cpu = cpu_secs(pid) - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    let (_, m) = get(&format!("http://127.0.0.1:{listen}/metrics")).await;
    let intervals = metric(&m, "pgsurge_agent_converge_seconds_count");
    println!("| binary | idle run | intervals | CPU (s) | CPU per idle hour (s) | CPU share | RSS (MiB, max) |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {wall:.0} s | {intervals} | {cpu:.2} | {:.1} | {:.3} % | {:.1} |",
        bin.display(),
        cpu * 3600.0 / wall,
        cpu * 100.0 / wall,
        rss_max as f64 / 1024.0
    );
    assert_eq!(ready(&h1).await.len(), 2, "the idle node drifted");
    assert_eq!(
        metric(&m, "pgsurge_agent_drift_total"),
        2.0 + 2.0,
        "only the first convergence changes anything: {m}"
    );
}
