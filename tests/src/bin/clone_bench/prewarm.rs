//! `--mode prewarm`: the first minute of a new replica's read latency through HAProxy,
//! slowstart alone vs slowstart + `[ops.prewarm]`.
//!
//! One HAProxy node balances a backend holding the seed (a warm base replica). Readers
//! run through it the whole time at a fixed rate: each query a new connection (as a
//! pooler's reconnects or `pgbench -C` do), an index lookup of a random row in one of
//! the hot tables, tagged with the port of the server that answered. Each run drops the
//! OS page cache, makes a replica (snapshot, clone, boot, caught up), pre-warms it or
//! not — with the product's own `pg_prewarm` call and the relations list a config would
//! give — registers it the way the product does (created in maintenance, health check
//! on, `slowstart`, then ready) and keeps the latencies of the queries the NEW replica
//! served in the next `watch` seconds. The variants alternate run by run.

use super::{range, secs, Bench};
use pgsurge::balancer::runtime_api::RuntimeApi;
use pgsurge::balancer::{AdminState, Balancer, ServerSpec};
use pgsurge::cloud::Cloud;
use pgsurge::postgres::{Postgres, PrewarmTarget};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One query through HAProxy.
#[derive(Clone, Copy)]
pub struct Sample {
    at: Instant,
    port: u16,
    connect_ms: f64,
    query_ms: f64,
}

/// The readers' shared record, and the switch that stops them.
pub struct Readers {
    samples: Arc<Mutex<Vec<Sample>>>,
    errors: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// `clients` loops that together issue `rate` queries/s through HAProxy at `port`.
pub fn start_readers(port: u16, rate: u32, clients: u32, hot: u32, rows: u32) -> Readers {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let period = Duration::from_secs_f64(clients as f64 / rate as f64);
    let conn = format!("host=127.0.0.1 port={port} user=postgres dbname=catalog connect_timeout=5");
    let tasks = (0..clients)
        .map(|c| {
            let (samples, errors, stop, conn) =
                (samples.clone(), errors.clone(), stop.clone(), conn.clone());
            tokio::spawn(async move {
                // xorshift: the lookups only need to be spread, not unpredictable.
                let mut x: u64 =
                    0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
                let mut next = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let table = next() % hot as u64 + 1;
                    let id = (next() % rows as u64 + 1) as i64;
                    match one_query(&conn, table, id).await {
                        Ok(s) => samples.lock().unwrap().push(s),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    Readers {
        samples,
        errors,
        stop,
        tasks,
    }
}

async fn one_query(conn: &str, table: u64, id: i64) -> Result<Sample, tokio_postgres::Error> {
    let at = Instant::now();
    let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let connect_ms = at.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let row = client
        .query_one(
            &format!("select inet_server_port(), sku from catalog.item_{table:05} where id = $1"),
            &[&id],
        )
        .await?;
    let query_ms = t.elapsed().as_secs_f64() * 1000.0;
    Ok(Sample {
        at,
        port: row.get::<_, i32>(0) as u16,
        connect_ms,
        query_ms,
    })
}

impl Readers {
    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("a reader panicked");
        }
        self.errors.load(Ordering::Relaxed)
    }
}

/// The relations a `[ops.prewarm]` list would name for the hot tables, through the
/// product's parser: each table's primary-key index first (every lookup walks it), then
/// the tables.
pub fn targets(hot: u32) -> Vec<PrewarmTarget> {
    let name = |t: u32, suffix: &str| format!("catalog.catalog.item_{t:05}{suffix}");
    (1..=hot)
        .map(|t| name(t, "_pkey"))
        .chain((1..=hot).map(|t| name(t, "")))
        .map(|r| pgsurge::ops::prewarm::parse_target(&r).expect("a valid relation name"))
        .collect()
}

pub struct Opts {
    pub targets: Vec<PrewarmTarget>,
    pub budget: Duration,
    pub slowstart_secs: u64,
    pub watch: Duration,
}

/// One replica's first `watch` seconds.
pub struct PrewarmRun {
    pub variant: &'static str,
    pub run: usize,
    /// Drop caches → caught up.
    pub ready_s: f64,
    pub prewarm_s: f64,
    pub blocks: i64,
    /// (seconds since registration, query ms, connect + query ms) of the queries the
    /// new replica served.
    pub served: Vec<(f64, f64, f64)>,
    /// Queries through HAProxy in the window, to all servers.
    pub all: usize,
}

pub const COLD: &str = "slowstart";
pub const WARM: &str = "slowstart + prewarm";

/// `sync; echo 3 > /proc/sys/vm/drop_caches`: every variant starts from a cold OS cache.
fn drop_caches() {
    let ok = std::process::Command::new("sync")
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "sync failed");
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap_or_else(|e| {
        panic!("dropping the page cache needs root (/proc/sys/vm/drop_caches: {e})")
    });
}

impl Bench<'_> {
    pub async fn prewarm_run(
        &self,
        round: usize,
        prewarm: bool,
        opts: &Opts,
        rt: &RuntimeApi,
        readers: &Readers,
    ) -> PrewarmRun {
        // A reader that died would lower the rate unnoticed: stop the bench instead.
        assert!(
            readers.tasks.iter().all(|t| !t.is_finished()),
            "a reader stopped (see its panic above)"
        );
        drop_caches();
        let name = format!(
            "pgsurge-bench-pw-{round}-{}",
            if prewarm { "warm" } else { "cold" }
        );
        let t = Instant::now();
        let (snap, _) = self.snapshot(&name).await;
        let (vol, _) = self.clone_volume(&snap.id, &name).await;
        self.cloud.delete_snapshot(&snap.id).await.unwrap();
        let (server, start, _) = self.boot(&vol.id, &name).await;
        self.catch_up(&server, start).await;
        let ready_s = secs(t);
        let at = server.endpoint.clone().expect("an endpoint");
        let (mut prewarm_s, mut blocks) = (0.0, 0);
        if prewarm {
            let t = Instant::now();
            let done = self
                .client
                .prewarm(&at, &opts.targets, opts.budget)
                .await
                .unwrap_or_else(|e| panic!("prewarm: {e}"));
            // As the product does: a replica whose pre-warm stopped early (the budget) is
            // registered as far as it got; say so, the run still counts.
            if let Some(why) = &done.stopped {
                eprintln!("  prewarm stopped early ({why}): registered partly warm");
            }
            (prewarm_s, blocks) = (secs(t), done.blocks);
        }
        // As the product registers a replica (balancer::ServerSpec::from_config).
        let spec = ServerSpec {
            name: name.clone(),
            address: at.host.clone(),
            port: at.port,
            weight: 100,
            check: true,
            slowstart_ms: opts.slowstart_secs * 1000,
        };
        rt.put_server(&spec).await.unwrap();
        rt.set_state(&name, AdminState::Ready).await.unwrap();
        let registered = Instant::now();
        tokio::time::sleep(opts.watch).await;
        let end = registered + opts.watch;
        let (served, all) = {
            let mut s = readers.samples.lock().unwrap();
            let window: Vec<Sample> = s
                .iter()
                .filter(|x| x.at >= registered && x.at < end)
                .copied()
                .collect();
            s.clear();
            let served = window
                .iter()
                .filter(|x| x.port == at.port)
                .map(|x| {
                    (
                        (x.at - registered).as_secs_f64(),
                        x.query_ms,
                        x.connect_ms + x.query_ms,
                    )
                })
                .collect();
            (served, window.len())
        };
        rt.set_state(&name, AdminState::Maint).await.unwrap();
        // Each query is its own short session: the last ones end within moments.
        let until = Instant::now() + Duration::from_secs(30);
        while let Err(e) = rt.remove_server(&name).await {
            assert!(
                e.is_retryable() && Instant::now() < until,
                "remove {name}: {e}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.remove(&server.id, &vol.id).await;
        PrewarmRun {
            variant: if prewarm { WARM } else { COLD },
            run: round + 1,
            ready_s,
            prewarm_s,
            blocks,
            served,
            all,
        }
    }
}

/// Nearest-rank percentile of `v` (sorted in place).
fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Query-latency percentiles (p50, p95, p99) of the served queries in [from, to) s.
fn window(r: &PrewarmRun, from: f64, to: f64, total: bool) -> (usize, f64, f64, f64) {
    let mut v: Vec<f64> = r
        .served
        .iter()
        .filter(|s| s.0 >= from && s.0 < to)
        .map(|s| if total { s.2 } else { s.1 })
        .collect();
    (
        v.len(),
        pct(&mut v, 50.0),
        pct(&mut v, 95.0),
        pct(&mut v, 99.0),
    )
}

/// Per run, variant and 10 s bucket (and `all`): queries the new replica served and
/// their query-latency percentiles, ms.
pub fn write_csv(runs: &[PrewarmRun], watch: Duration, path: &Path) {
    let mut out = String::from(
        "variant,run,bucket_s,queries,p50_ms,p95_ms,p99_ms,prewarm_s,ready_s,total_p95_ms\n",
    );
    let w = watch.as_secs_f64();
    for r in runs {
        let mut buckets: Vec<(String, f64, f64)> = (0..(w / 10.0).ceil() as usize)
            .map(|b| {
                (
                    format!("{}", b * 10),
                    b as f64 * 10.0,
                    (b as f64 + 1.0) * 10.0,
                )
            })
            .collect();
        buckets.push(("all".into(), 0.0, w));
        for (label, from, to) in buckets {
            let (n, p50, p95, p99) = window(r, from, to, false);
            let (_, _, tp95, _) = window(r, from, to, true);
            out.push_str(&format!(
                "{},{},{label},{n},{p50:.3},{p95:.3},{p99:.3},{:.3},{:.3},{tp95:.3}\n",
                r.variant, r.run, r.prewarm_s, r.ready_s
            ));
        }
    }
    super::write_file(path, &out);
}

pub fn print_table(runs: &[PrewarmRun], opts: &Opts, hot_mb: f64, read_rate: u32, errors: u64) {
    let w = opts.watch.as_secs_f64();
    let n = runs.iter().filter(|r| r.variant == COLD).count();
    println!(
        "\nReads: {read_rate} queries/s through HAProxy (a new connection each, an index lookup \
         in one of {} hot tables, {hot_mb:.0} MiB of tables + indexes), slowstart {} s, OS page \
         cache dropped before each replica; the NEW replica's queries in its first {w:.0} s; \
         medians of {n} runs per variant (min–max); query latency in ms ({errors} failed \
         queries in all).\n",
        opts.targets.len() / 2,
        opts.slowstart_secs
    );
    println!(
        "| variant | caught up, s | pre-warm, s (MiB) | queries served (share) | first 10 s p50 / p95 / p99 | first {w:.0} s p50 | **p95** (min–max) | p99 (min–max) | connect + query p95 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for variant in [COLD, WARM] {
        let rs: Vec<&PrewarmRun> = runs.iter().filter(|r| r.variant == variant).collect();
        let med = |f: &dyn Fn(&PrewarmRun) -> f64| super::median(rs.iter().map(|r| f(r)).collect());
        let mm = |f: &dyn Fn(&PrewarmRun) -> f64| {
            let v: Vec<f64> = rs.iter().map(|r| f(r)).collect();
            let (lo, hi) = range(&v);
            format!("{:.2} ({lo:.2}–{hi:.2})", super::median(v))
        };
        println!(
            "| {variant} | {:.1} | {:.1} ({:.0}) | {:.0} ({:.0}%) | {:.2} / {:.2} / {:.2} | {:.2} | **{}** | {} | {:.2} |",
            med(&|r| r.ready_s),
            med(&|r| r.prewarm_s),
            med(&|r| r.blocks as f64 * 8.0 / 1024.0),
            med(&|r| r.served.len() as f64),
            med(&|r| 100.0 * r.served.len() as f64 / r.all.max(1) as f64),
            med(&|r| window(r, 0.0, 10.0, false).1),
            med(&|r| window(r, 0.0, 10.0, false).2),
            med(&|r| window(r, 0.0, 10.0, false).3),
            med(&|r| window(r, 0.0, w, false).1),
            mm(&|r| window(r, 0.0, w, false).2),
            mm(&|r| window(r, 0.0, w, false).3),
            med(&|r| window(r, 0.0, w, true).2),
        );
    }
}
