//! Bench: a new replica from a snapshot clone vs. from `pg_basebackup`, side by side.
//!
//! Run by `infra/bench/clone_vs_basebackup.sh` (which makes the XFS pool); see there.
//! For each database size: one primary with the catalog dataset, a rate-limited write
//! load, and for each pool (plain directory, XFS with reflink) a seed replica in the pool
//! and `runs` rounds of
//!
//! - (a) snapshot of the seed (backup mode) + clone a volume + boot (the bootstrap
//!   script, until PostgreSQL accepts connections) + caught up (readiness);
//! - (b) `pg_basebackup` from the primary into an empty volume + boot (the same script)
//!   + caught up (the same readiness),
//!
//! alternating which goes first. Prints a Markdown table of medians (min–max of the
//! totals), and the ratios: (b) against (a), and against (a′) = (a) without its snapshot
//! phase — a snapshot taken ahead of time by reconcile (`ops.snapshot_interval_secs`),
//! so scale-up only clones, boots and catches up; then an extrapolation to 300 GB.
//! Every run's phases go to `target/bench/clone_vs_basebackup.csv` (`bench-plot` draws it).
//!
//! Two more modes share the setup (primary, dataset, write load, XFS pool, seed):
//! `--mode catchup` (catch-up vs snapshot age, [`catchup`]) and `--mode prewarm` (a new
//! replica's first-minute read latency through HAProxy, with and without pre-warm,
//! [`prewarm`]); run by `infra/bench/catchup_vs_age.sh` and `infra/bench/prewarm_latency.sh`.

mod catchup;
mod prewarm;

use pgsurge::balancer::runtime_api::{RuntimeApi, SocketAddr};
use pgsurge::cloud::local::CloneMode;
use pgsurge::cloud::local::LocalCloud;
use pgsurge::cloud::local::LocalConfig;
use pgsurge::cloud::{
    Cloud, Metadata, Server, ServerRequest, Snapshot, SnapshotRequest, Volume, VolumeRequest,
};
use pgsurge::postgres::bootstrap::UserData;
use pgsurge::postgres::PostgresConfig;
use pgsurge::postgres::{self, LagBounds, Lsn, PgClient};
use pgsurge_tests::haproxy::{BackendSpec, HaproxyNode};
use pgsurge_tests::pg::{chown_postgres, pg_cmd, Pg};
use pgsurge_tests::workspace_root;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Compare,
    Catchup,
    Prewarm,
}

struct Args {
    mode: Mode,
    sizes_mb: Vec<u32>,
    tables: u32,
    runs: usize,
    rate: u32,
    work: PathBuf,
    xfs_pool: Option<PathBuf>,
    /// The plain-directory pool (copies): off for sizes where copying every byte twice
    /// only measures the disk, and where the box lacks room for it.
    plain: bool,
    port_first: u16,
    /// `--mode catchup`: snapshot ages to clone at, seconds.
    ages: Vec<u64>,
    /// `--mode prewarm`: tables item_00001.. read (and pre-warmed), and the readers.
    hot_tables: u32,
    read_rate: u32,
    watch_secs: u64,
    slowstart_secs: u64,
    prewarm_budget_secs: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        mode: Mode::Compare,
        ages: vec![0, 30, 120, 300],
        hot_tables: 1500,
        read_rate: 100,
        watch_secs: 60,
        slowstart_secs: 30,
        prewarm_budget_secs: 120,
        sizes_mb: vec![1024, 4096],
        tables: 4500,
        runs: 3,
        rate: 200,
        work: std::env::temp_dir().join("pgsurge-bench"),
        xfs_pool: None,
        plain: true,
        port_first: 20500,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let num = |v: &str| -> u64 { v.parse().unwrap_or_else(|_| usage(&format!("{flag}: {v}"))) };
        match flag.as_str() {
            "--sizes-mb" => a.sizes_mb = v.split(',').map(|s| num(s) as u32).collect(),
            "--tables" => a.tables = num(v) as u32,
            "--runs" => a.runs = num(v) as usize,
            "--rate" => a.rate = num(v) as u32,
            "--work" => a.work = PathBuf::from(v),
            "--xfs-pool" => a.xfs_pool = Some(PathBuf::from(v)),
            "--port-first" => a.port_first = num(v) as u16,
            "--ages" => a.ages = v.split(',').map(num).collect(),
            "--hot-tables" => a.hot_tables = num(v) as u32,
            "--read-rate" => a.read_rate = num(v) as u32,
            "--watch-secs" => a.watch_secs = num(v),
            "--slowstart-secs" => a.slowstart_secs = num(v),
            "--prewarm-budget" => a.prewarm_budget_secs = num(v),
            "--mode" => {
                a.mode = match v.as_str() {
                    "compare" => Mode::Compare,
                    "catchup" => Mode::Catchup,
                    "prewarm" => Mode::Prewarm,
                    _ => usage(&format!("--mode: compare, catchup or prewarm, not {v}")),
                }
            }
            "--plain" => {
                a.plain = match v.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => usage(&format!("--plain: on or off, not {v}")),
                }
            }
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    if a.mode != Mode::Compare {
        // Both are about the copy-on-write path only; a plain pool would double the time.
        a.plain = false;
        if a.xfs_pool.is_none() {
            usage("--mode catchup and prewarm need --xfs-pool");
        }
    }
    if a.ages.windows(2).any(|w| w[0] >= w[1]) {
        usage("--ages: increasing, e.g. 0,30,120");
    }
    if a.mode == Mode::Prewarm && (a.hot_tables == 0 || a.hot_tables > a.tables) {
        usage("--hot-tables: 1..=--tables");
    }
    if a.read_rate == 0 || a.watch_secs < 10 {
        usage("--read-rate ≥ 1 and --watch-secs ≥ 10");
    }
    a
}

fn usage(why: &str) -> ! {
    eprintln!(
        "clone-bench: {why}\nusage: clone-bench [--sizes-mb 1024,4096] [--tables 4500] [--runs 3] \
         [--rate 200] [--work DIR] [--xfs-pool DIR] [--plain on|off] [--port-first 20500]\n  \
         [--mode compare|catchup|prewarm] [--ages 0,30,120,300] [--hot-tables 1500] \
         [--read-rate 100] [--watch-secs 60] [--slowstart-secs 30] [--prewarm-budget 120]"
    );
    std::process::exit(2)
}

/// One measured replica creation: phase durations (seconds) and WAL it replayed.
#[derive(Default, Clone)]
struct Run {
    phases: Vec<f64>,
    wal_mb: f64,
}

impl Run {
    fn total(&self) -> f64 {
        self.phases.iter().sum()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn meta(role: &str, replica: &str) -> Metadata {
    [
        ("pgsurge_cluster".to_string(), "bench".to_string()),
        ("pgsurge_role".to_string(), role.to_string()),
        ("pgsurge_replica".to_string(), replica.to_string()),
    ]
    .into()
}

struct Bench<'a> {
    cloud: LocalCloud,
    pgc: &'a PostgresConfig,
    client: PgClient,
    primary: &'a Pg,
    seed_volume: String,
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn lsn_of(s: &str) -> Lsn {
    s.parse().expect("an LSN")
}

/// `START WAL LOCATION: 0/9000028 (file ...)` from a backup_label.
fn label_start(data: &Path) -> Lsn {
    let label = std::fs::read_to_string(data.join("backup_label")).expect("backup_label");
    let line = label
        .lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
        .expect("START WAL LOCATION");
    lsn_of(line.split_whitespace().next().unwrap())
}

impl Bench<'_> {
    async fn ready(&self, server: &pgsurge::cloud::Server) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        postgres::wait_ready(
            &self.client,
            server.endpoint.as_ref().unwrap(),
            &LagBounds::from(self.pgc),
            deadline,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }

    fn server_request(&self, volume_id: &str, name: &str) -> ServerRequest {
        ServerRequest {
            name: name.to_string(),
            volume_id: volume_id.to_string(),
            flavor: None,
            az: None,
            metadata: meta("surge", name),
            user_data: Some(UserData::for_replica(self.pgc, name).unwrap().render()),
        }
    }

    /// A snapshot of the seed (backup mode on the local provider), and its seconds.
    async fn snapshot(&self, name: &str) -> (Snapshot, f64) {
        let t = Instant::now();
        let snap = self
            .cloud
            .create_snapshot(&SnapshotRequest {
                name: format!("{name}-snap"),
                volume_id: self.seed_volume.clone(),
                metadata: meta("surge", name),
                force: true,
            })
            .await
            .unwrap();
        (snap, secs(t))
    }

    /// A volume cloned from `snapshot_id`, and its seconds.
    async fn clone_volume(&self, snapshot_id: &str, name: &str) -> (Volume, f64) {
        let t = Instant::now();
        let vol = self
            .cloud
            .create_volume(&VolumeRequest {
                name: name.to_string(),
                snapshot_id: snapshot_id.to_string(),
                size_gb: None,
                az: None,
                metadata: meta("surge", name),
            })
            .await
            .unwrap();
        (vol, secs(t))
    }

    /// (a) snapshot + clone + boot + caught up.
    async fn clone_path(&self, n: usize) -> Run {
        let name = format!("pgsurge-bench-clone-{n}");
        let (snap, snapshot) = self.snapshot(&name).await;
        let (vol, clone) = self.clone_volume(&snap.id, &name).await;
        let (boot, catch_up, wal_mb) = self.boot_and_catch_up(&vol.id, &name).await;
        self.cloud.delete_snapshot(&snap.id).await.unwrap();
        Run {
            phases: vec![snapshot, clone, boot, catch_up],
            wal_mb,
        }
    }

    /// (b) pg_basebackup + boot + caught up.
    async fn basebackup_path(&self, n: usize) -> Run {
        let name = format!("pgsurge-bench-basebackup-{n}");
        let t = Instant::now();
        let vol = self
            .cloud
            .create_empty_volume(&name, &meta("surge", &name))
            .await
            .unwrap();
        let data = self.cloud.data_dir(&vol.id);
        // fsync on (the default), as the clone path syncs its copies too.
        pg_cmd(
            "pg_basebackup",
            &[
                "-d",
                &self.primary.conninfo("postgres"),
                "-D",
                data.to_str().unwrap(),
                "-X",
                "stream",
                "--checkpoint=fast",
            ],
        );
        let basebackup = secs(t);
        let (boot, catch_up, wal_mb) = self.boot_and_catch_up(&vol.id, &name).await;
        Run {
            phases: vec![basebackup, boot, catch_up],
            wal_mb,
        }
    }

    /// A server on the filled volume, started by the bootstrap script (until PostgreSQL
    /// accepts connections): the server, where its replay starts (its backup label) and
    /// the seconds it took.
    async fn boot(&self, volume_id: &str, name: &str) -> (Server, Lsn, f64) {
        let start = label_start(&self.cloud.data_dir(volume_id));
        let t = Instant::now();
        let server = self
            .cloud
            .create_server(&self.server_request(volume_id, name))
            .await
            .unwrap();
        (server, start, secs(t))
    }

    /// Until the server is caught up by the product's own definition (readiness):
    /// seconds, and the WAL it replayed (MiB, from `start` to the primary's LSN then).
    async fn catch_up(&self, server: &Server, start: Lsn) -> (f64, f64) {
        let t = Instant::now();
        self.ready(server).await;
        let catch_up = secs(t);
        let end = lsn_of(&self.primary.current_lsn());
        (catch_up, start.bytes_until(end) as f64 / 1048576.0)
    }

    async fn remove(&self, server_id: &str, volume_id: &str) {
        self.cloud.delete_server(server_id).await.unwrap();
        self.cloud.delete_volume(volume_id).await.unwrap();
    }

    /// The part both paths share: boot, caught up (seconds each) and the WAL replayed;
    /// then server and volume are deleted.
    async fn boot_and_catch_up(&self, volume_id: &str, name: &str) -> (f64, f64, f64) {
        let (server, start, boot) = self.boot(volume_id, name).await;
        let (catch_up, wal_mb) = self.catch_up(&server, start).await;
        self.remove(&server.id, volume_id).await;
        (boot, catch_up, wal_mb)
    }
}

fn pg_config(primary: &Pg) -> PostgresConfig {
    PostgresConfig {
        primary_host: "127.0.0.1".into(),
        primary_port: primary.port,
        replication_user: "postgres".into(),
        sslmode: "disable".into(),
        ..PostgresConfig::default()
    }
}

/// Medians for one (size, pool) cell.
struct Row {
    db_mb: u64,
    pool: String,
    clone: Vec<Run>,
    basebackup: Vec<Run>,
}

/// Min and max of the runs' totals.
fn range(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        })
}

/// (a′): the clone path without its snapshot phase (a snapshot taken ahead of time).
fn ahead_total(r: &Run) -> f64 {
    r.phases[1..].iter().sum()
}

/// One line per run and path: the CSV `bench-plot` reads.
fn write_csv(rows: &[Row], path: &Path) {
    let mut out =
        String::from("db_mb,pool,path,run,phase1_s,clone_s,boot_s,catch_up_s,total_s,wal_mb\n");
    for r in rows {
        for (path, runs) in [("clone", &r.clone), ("basebackup", &r.basebackup)] {
            for (n, run) in runs.iter().enumerate() {
                // basebackup has no clone phase: its phases are (basebackup, boot, catch-up).
                let p = &run.phases;
                let (first, clone, boot, catch) = if p.len() == 4 {
                    (p[0], p[1], p[2], p[3])
                } else {
                    (p[0], 0.0, p[1], p[2])
                };
                out.push_str(&format!(
                    "{},{},{path},{},{first:.3},{clone:.3},{boot:.3},{catch:.3},{:.3},{:.1}\n",
                    r.db_mb,
                    r.pool.split(',').next().unwrap_or_default(),
                    n + 1,
                    run.total(),
                    run.wal_mb
                ));
            }
        }
    }
    write_file(path, &out);
}

fn write_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    eprintln!("wrote {}", path.display());
}

/// 300 GB from the largest measured size: pg_basebackup's copy and the clone path's
/// (a′) phases scaled by what they depend on (see the printed assumptions).
fn print_extrapolation(rows: &[Row]) {
    let Some(r) = rows
        .iter()
        .filter(|r| r.pool.starts_with("XFS"))
        .max_by_key(|r| r.db_mb)
    else {
        return;
    };
    let ph = |runs: &[Run], i: usize| median(runs.iter().map(|r| r.phases[i]).collect());
    let gb = r.db_mb as f64 / 1024.0;
    let copy_rate = gb / ph(&r.basebackup, 0); // GB/s of pg_basebackup
    let bb_300 = 300.0 / copy_rate + ph(&r.basebackup, 1) + ph(&r.basebackup, 2);
    // A reflink clone copies metadata: linear in files, not bytes; take it per GB
    // measured (an upper bound: 4,500 tables' files do not grow with row count).
    let clone_300 = ph(&r.clone, 1) * (300.0 / gb);
    let ahead_300 = clone_300 + ph(&r.clone, 2) + ph(&r.clone, 3);
    println!(
        "\nExtrapolation to 300 GB from {gb:.2} GiB (XFS reflink): pg_basebackup ≈ {bb_300:.0} s \
         ({:.0} MB/s copy, boot and catch-up as measured); clone with a fresh snapshot ≈ \
         {ahead_300:.0} s (clone time scaled linearly with size — an upper bound, reflink \
         cost follows extents, not bytes —, boot and catch-up as measured: they depend on \
         the WAL written since the snapshot, not the size); ratio ≈ {:.0}x. On a cloud the \
         clone is the provider's copy-on-write volume from a snapshot (seconds to a minute, \
         size-independent on EVS/Cinder-Ceph) and boot is a VM boot (30–60 s).",
        copy_rate * 1024.0,
        bb_300 / ahead_300
    );
}

fn print_table(rows: &[Row], runs: usize, tables: u32, rate: u32) {
    println!(
        "\n{tables} tables, write load {rate} tx/s (10 rows each) during every run; medians of {runs} runs; seconds.\n"
    );
    println!(
        "| database | pool | (a) snapshot | clone | boot | catch-up | **(a) total** (min–max) | **(a′) fresh snapshot** (min–max) | (b) pg_basebackup | boot | catch-up | **(b) total** (min–max) | (b)/(a) | (b)/(a′) | WAL replayed (a) / (b), MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let ph = |runs: &[Run], i: usize| median(runs.iter().map(|r| r.phases[i]).collect());
        let tot = |runs: &[Run]| median(runs.iter().map(Run::total).collect());
        let wal = |runs: &[Run]| median(runs.iter().map(|r| r.wal_mb).collect());
        let (a, b) = (tot(&r.clone), tot(&r.basebackup));
        let a2 = median(r.clone.iter().map(ahead_total).collect());
        let totals = |runs: &[Run], f: fn(&Run) -> f64| {
            let (lo, hi) = range(&runs.iter().map(f).collect::<Vec<_>>());
            format!("{lo:.1}–{hi:.1}")
        };
        println!(
            "| {:.2} GiB | {} | {:.1} | {:.1} | {:.1} | {:.1} | **{:.1}** ({}) | **{:.1}** ({}) | {:.1} | {:.1} | {:.1} | **{:.1}** ({}) | {:.1}x | {:.1}x | {:.0} / {:.0} |",
            r.db_mb as f64 / 1024.0,
            r.pool,
            ph(&r.clone, 0),
            ph(&r.clone, 1),
            ph(&r.clone, 2),
            ph(&r.clone, 3),
            a,
            totals(&r.clone, Run::total),
            a2,
            totals(&r.clone, ahead_total),
            ph(&r.basebackup, 0),
            ph(&r.basebackup, 1),
            ph(&r.basebackup, 2),
            b,
            totals(&r.basebackup, Run::total),
            b / a,
            b / a2,
            wal(&r.clone),
            wal(&r.basebackup),
        );
    }
}

/// `cp -a --reflink=always FROM/. TO` (ownership and modes kept; shares extents).
fn reflink_copy(from: &Path, to: &Path) {
    let out = std::process::Command::new("cp")
        .args(["-a", "--reflink=always"])
        .arg(from.join("."))
        .arg(to)
        .output()
        .expect("run cp");
    assert!(
        out.status.success(),
        "cp --reflink {} → {}: {}",
        from.display(),
        to.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["postmaster.opts", "server.log"] {
        let _ = std::fs::remove_file(to.join(f));
    }
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    std::fs::create_dir_all(&args.work).unwrap();
    chown_postgres(&args.work);
    let mut pools: Vec<(String, PathBuf, CloneMode)> = Vec::new();
    if args.plain {
        pools.push((
            "plain dir (ext4), copy".into(),
            args.work.join("pool"),
            CloneMode::Copy,
        ));
    }
    if let Some(x) = &args.xfs_pool {
        pools.push((
            "XFS reflink=1, copy-on-write".into(),
            x.clone(),
            CloneMode::Reflink,
        ));
    }
    if pools.is_empty() {
        usage("no pool to measure: --plain off needs --xfs-pool");
    }
    let mut rows = Vec::new();
    for (i, &size_mb) in args.sizes_mb.iter().enumerate() {
        // With an XFS pool the primary lives on that filesystem too, so the XFS cell's
        // seed can share its extents (below): at 16 GB a primary, a seed and one
        // pg_basebackup copy as three full copies do not fit a 60 GB disk.
        let root = match &args.xfs_pool {
            Some(x) => x
                .parent()
                .unwrap_or(&args.work)
                .join(format!("size-{size_mb}")),
            None => args.work.join(format!("size-{size_mb}")),
        };
        std::fs::create_dir_all(&root).unwrap();
        chown_postgres(&root);
        let primary = Pg::primary(&root, "primary");
        let t = Instant::now();
        let summary = primary.generate_catalog(args.tables, size_mb);
        let db_mb: u64 = primary
            .psql("catalog", "select pg_database_size('catalog') / 1048576")
            .parse()
            .unwrap();
        eprintln!("size {size_mb} MiB: {summary} ({:.0} s)", secs(t));
        if args.mode == Mode::Prewarm {
            // What `[ops.prewarm]` asks of the primary (it replicates to every standby).
            primary.psql("catalog", "create extension if not exists pg_prewarm");
        }
        let pgc = pg_config(&primary);
        for (p, (label, dir, mode)) in pools.iter().enumerate() {
            let local = LocalConfig {
                pool_dir: dir.clone(),
                port_first: args.port_first + (i * 20 + p * 10) as u16,
                port_last: args.port_first + (i * 20 + p * 10 + 9) as u16,
                bootstrap_script: workspace_root().join("infra/image/bootstrap-replica.sh"),
                clone: *mode,
                start_timeout_secs: 3600,
                ..LocalConfig::default()
            };
            let cloud = LocalCloud::new(&local, &pgc).unwrap();
            let seed = cloud
                .create_empty_volume("pgsurge-bench-seed", &meta("base", "seed"))
                .await
                .unwrap();
            let seed_dir = cloud.data_dir(&seed.id);
            if *mode == CloneMode::Reflink && args.xfs_pool.is_some() {
                // A copy of the cleanly stopped primary is a valid base for a standby
                // (same system identifier, a shutdown checkpoint to start from, the WAL
                // after it streams), and a reflink copy costs no disk. Not measured: the
                // seed exists before any run, as a base replica does in production.
                primary.stop();
                reflink_copy(&primary.datadir, &seed_dir);
                primary.start();
            } else {
                pg_cmd(
                    "pg_basebackup",
                    &[
                        "-d",
                        &primary.conninfo("postgres"),
                        "-D",
                        seed_dir.to_str().unwrap(),
                        "-X",
                        "stream",
                        "--checkpoint=fast",
                    ],
                );
            }
            let bench = Bench {
                client: PgClient::new(&pgc),
                cloud,
                pgc: &pgc,
                primary: &primary,
                seed_volume: seed.id.clone(),
            };
            let seed_server = bench
                .cloud
                .create_server(&bench.server_request(&seed.id, "pgsurge-bench-seed"))
                .await
                .unwrap();
            bench.ready(&seed_server).await;
            let load = primary.start_write_load_at(4, 10, args.rate);
            // Let the load settle (and the primary checkpoint at least once with it).
            tokio::time::sleep(Duration::from_secs(10)).await;
            let mut row = Row {
                db_mb,
                pool: label.clone(),
                clone: Vec::new(),
                basebackup: Vec::new(),
            };
            let seed_port = seed_server.endpoint.as_ref().expect("an endpoint").port;
            match args.mode {
                Mode::Compare => {}
                Mode::Catchup => {
                    let (runs, wal) = bench.catchup_rounds(&args.ages, args.runs).await;
                    catchup::write_csv(
                        &runs,
                        &workspace_root().join("target/bench/catchup_vs_age.csv"),
                    );
                    catchup::print_table(&runs, &args.ages, db_mb, args.rate, &wal);
                }
                Mode::Prewarm => prewarm_mode(&bench, &args, &root, seed_port).await,
            }
            let compare_runs = if args.mode == Mode::Compare {
                args.runs
            } else {
                0
            };
            for n in 0..compare_runs {
                // Alternate the order so neither path always runs on a warmer cache.
                if n % 2 == 0 {
                    row.clone.push(bench.clone_path(n).await);
                    row.basebackup.push(bench.basebackup_path(n).await);
                } else {
                    row.basebackup.push(bench.basebackup_path(n).await);
                    row.clone.push(bench.clone_path(n).await);
                }
                let (a, b) = (row.clone.last().unwrap(), row.basebackup.last().unwrap());
                eprintln!(
                    "  {label}, {size_mb} MiB, run {}: clone {:.1} s {:?}, basebackup {:.1} s {:?}",
                    n + 1,
                    a.total(),
                    a.phases
                        .iter()
                        .map(|p| (p * 10.0).round() / 10.0)
                        .collect::<Vec<_>>(),
                    b.total(),
                    b.phases
                        .iter()
                        .map(|p| (p * 10.0).round() / 10.0)
                        .collect::<Vec<_>>(),
                );
            }
            let out = load.stop();
            let err = String::from_utf8_lossy(&out.stderr);
            if let Some(last) = err.lines().rev().find(|l| l.starts_with("progress")) {
                eprintln!("  write load, last: {last}");
            }
            bench.cloud.delete_server(&seed_server.id).await.unwrap();
            bench.cloud.delete_volume(&seed.id).await.unwrap();
            if args.mode != Mode::Compare {
                continue;
            }
            rows.push(row);
            // After each cell, so a long run interrupted later still leaves its figures.
            write_csv(
                &rows,
                &workspace_root().join("target/bench/clone_vs_basebackup.csv"),
            );
        }
        drop(primary);
        let _ = std::fs::remove_dir_all(&root);
    }
    if args.mode == Mode::Compare {
        print_table(&rows, args.runs, args.tables, args.rate);
        print_extrapolation(&rows);
    }
}

/// `--mode prewarm`: one HAProxy node in front of the seed, readers through it from
/// start to end, then the replicas one by one, the variants alternating.
async fn prewarm_mode(bench: &Bench<'_>, args: &Args, root: &Path, seed_port: u16) {
    let hot = args.hot_tables;
    let rows: u32 = bench
        .primary
        .psql(
            "catalog",
            "select rows_per_table from catalog.dataset limit 1",
        )
        .parse()
        .expect("catalog.dataset.rows_per_table");
    let hot_mb: f64 = bench
        .primary
        .psql(
            "catalog",
            &format!(
                "select sum(pg_total_relation_size(format('catalog.%I', catalog.item_table(t))::regclass)) \
                 / 1048576.0 from generate_series(1, {hot}) t"
            ),
        )
        .parse()
        .expect("a size");
    let node = HaproxyNode::start(
        root,
        "haproxy",
        BackendSpec::with_base("pg_read", seed_port),
    );
    let rt = RuntimeApi::new("haproxy", SocketAddr::Unix(node.socket.clone()), "pg_read");
    let opts = prewarm::Opts {
        targets: prewarm::targets(hot),
        budget: Duration::from_secs(args.prewarm_budget_secs),
        slowstart_secs: args.slowstart_secs,
        watch: Duration::from_secs(args.watch_secs),
    };
    let readers = prewarm::start_readers(node.port, args.read_rate, 8, hot, rows);
    // The seed serves alone first, so its cache is as warm as a base replica's.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let csv = workspace_root().join("target/bench/prewarm_latency.csv");
    let mut runs = Vec::new();
    for round in 0..args.runs {
        // Alternate which variant goes first, so neither always follows the other.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for warm in order {
            let r = bench.prewarm_run(round, warm, &opts, &rt, &readers).await;
            eprintln!(
                "  round {}, {}: caught up {:.1} s, prewarm {:.1} s ({} blocks), {} of {} queries on the new replica",
                round + 1,
                r.variant,
                r.ready_s,
                r.prewarm_s,
                r.blocks,
                r.served.len(),
                r.all
            );
            runs.push(r);
            prewarm::write_csv(&runs, opts.watch, &csv);
        }
    }
    let errors = readers.stop().await;
    prewarm::print_table(&runs, &opts, hot_mb, args.read_rate, errors);
}
