//! The local provider and readiness against real PostgreSQL 15.
//!
//! Each test starts its own primary (tests/src/pg.rs), fills it with the project's
//! dataset generator, makes a seed replica in a volume pool through the provider
//! (`pg_basebackup` into an empty volume, then the bootstrap script), and clones from
//! there while pgbench writes on the primary. The replication role is a non-superuser
//! with a password (scram-sha-256): the same grants an operator would give pgsurge.
//!
//! The tests run one at a time (a lock): each runs a primary, replicas and pgbench, and
//! the CI box has two cores.

use futures::future::join_all;
use pgsurge::cloud::local::clone::Method;
use pgsurge::cloud::local::pool::Consistency;
use pgsurge::cloud::local::CloneMode;
use pgsurge::cloud::local::LocalCloud;
use pgsurge::cloud::local::LocalConfig;
use pgsurge::cloud::{
    ensure_server, ensure_snapshot, ensure_volume, Cloud, CloudError, Filter, Metadata,
    ServerRequest, SnapshotRequest, Status, VolumeRequest, META_CLUSTER, META_REPLICA, META_ROLE,
};
use pgsurge::model::{resource_name, Endpoint};
use pgsurge::postgres::bootstrap::UserData;
use pgsurge::postgres::PostgresConfig;
use pgsurge::postgres::{self, Condition, LagBounds, PgClient, Verdict};
use pgsurge::secret::Secret;
use pgsurge_tests::pg::{self, processes_in, psql_at, Pg, Scratch};
use pgsurge_tests::{workspace_root, Proc};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::time::Instant;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The provider's log lines (which copy method, how long) go through the test harness:
/// shown for a failing test, quiet otherwise.
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
}

/// A password with every character that needs quoting somewhere on its way into
/// primary_conninfo.
const PASSWORD: &str = "it's a \\ \"secret\" $HOME `x`";

fn meta(cluster: &str, role: &str, replica: &str) -> Metadata {
    [
        (META_CLUSTER.to_string(), cluster.to_string()),
        (META_ROLE.to_string(), role.to_string()),
        (META_REPLICA.to_string(), replica.to_string()),
    ]
    .into()
}

/// Deletes every server in the pool when dropped (also when a test fails), so no
/// postgres outlives the test. Runs on its own thread and runtime: Drop may happen
/// while unwinding out of an async block.
struct StopServers(Arc<LocalCloud>);

impl Drop for StopServers {
    fn drop(&mut self) {
        let cloud = self.0.clone();
        let _ = std::thread::spawn(move || {
            Runtime::new().unwrap().block_on(async {
                for s in cloud
                    .list_servers(&Filter::default())
                    .await
                    .unwrap_or_default()
                {
                    let _ = cloud.delete_server(&s.id).await;
                }
            })
        })
        .join();
    }
}

/// Fields drop in order: servers first, then the load, the primary, the scratch dir.
struct Env {
    _stop: StopServers,
    load: Option<Proc>,
    cluster: String,
    cloud: Arc<LocalCloud>,
    pgc: PostgresConfig,
    client: PgClient,
    seed_volume: String,
    seed_server: String,
    primary: Pg,
    _root: Scratch,
}

fn pg_config(primary: &Pg) -> PostgresConfig {
    PostgresConfig {
        primary_host: "127.0.0.1".into(),
        primary_port: primary.port,
        dbname: "postgres".into(),
        replication_user: "pgsurge".into(),
        password: Some(Secret::new(PASSWORD)),
        sslmode: "disable".into(),
        connect_timeout_secs: 5,
        max_replay_lag_bytes: 16 << 20,
        max_replay_lag_secs: 10,
        ..PostgresConfig::default()
    }
}

/// The role pgsurge uses: REPLICATION + pg_monitor + pg_checkpoint + the two backup
/// functions, never a superuser, and a password that pg_hba.conf insists on.
fn create_pgsurge_role(primary: &Pg) {
    let pw = PASSWORD.replace('\'', "''");
    primary.psql(
        "postgres",
        &format!(
            "create role pgsurge login replication password '{pw}' in role pg_monitor; \
             grant execute on function pg_backup_start(text, boolean) to pgsurge; \
             grant execute on function pg_backup_stop(boolean) to pgsurge; \
             grant pg_checkpoint to pgsurge;"
        ),
    );
    primary.prepend_hba("host all,replication pgsurge 127.0.0.1/32 scram-sha-256");
}

fn local_config(pool: &Path, port_first: u16, clone: CloneMode) -> LocalConfig {
    LocalConfig {
        pool_dir: pool.to_path_buf(),
        port_first,
        port_last: port_first + 29,
        bootstrap_script: workspace_root().join("infra/image/bootstrap-replica.sh"),
        clone,
        ..LocalConfig::default()
    }
}

fn bounds(pgc: &PostgresConfig) -> LagBounds {
    LagBounds::from(pgc)
}

/// Primary + dataset + role, a pool, and a seed replica running from a pool volume.
fn setup(
    rt: &Runtime,
    cluster: &str,
    port_first: u16,
    tables: u32,
    size_mb: u32,
    pool: Option<PathBuf>,
    clone: CloneMode,
) -> Env {
    init_logs();
    let root = Scratch::new(&format!("i4-{cluster}"));
    let primary = Pg::primary(&root.0, "primary");
    create_pgsurge_role(&primary);
    primary.psql("postgres", "create database catalog");
    primary.psql("catalog", "create extension amcheck");
    let summary = primary.generate_catalog(tables, size_mb);
    eprintln!("{cluster}: dataset {summary}");
    let pgc = pg_config(&primary);
    let pool = pool.unwrap_or_else(|| root.0.join("pool"));
    let cloud = Arc::new(LocalCloud::new(&local_config(&pool, port_first, clone), &pgc).unwrap());
    let stop = StopServers(cloud.clone());
    let client = PgClient::new(&pgc);

    let (seed_volume, seed_server) = rt.block_on(async {
        let name = resource_name(cluster, "seed");
        let (vol, server) =
            pgsurge_tests::cluster::seed_replica(&cloud, &name, &meta(cluster, "base", "seed"))
                .await;
        let at = server.endpoint.clone().unwrap();
        let r = postgres::wait_ready(
            &client,
            &at,
            &bounds(&pgc),
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert_eq!(r.verdict(), Verdict::Ready);
        (vol.id, server.id)
    });
    Env {
        _stop: stop,
        load: None,
        cluster: cluster.to_string(),
        cloud,
        pgc,
        client,
        seed_volume,
        seed_server,
        primary,
        _root: root,
    }
}

impl Env {
    fn snapshot_request(&self, n: u32) -> SnapshotRequest {
        SnapshotRequest {
            name: resource_name(&self.cluster, &format!("snap-{n}")),
            volume_id: self.seed_volume.clone(),
            metadata: meta(&self.cluster, "surge", &format!("snap-{n}")),
            force: true,
        }
    }

    fn volume_request(&self, snapshot_id: &str, replica: &str) -> VolumeRequest {
        VolumeRequest {
            name: resource_name(&self.cluster, replica),
            snapshot_id: snapshot_id.to_string(),
            size_gb: None,
            az: None,
            metadata: meta(&self.cluster, "surge", replica),
        }
    }

    fn server_request(&self, volume_id: &str, replica: &str) -> ServerRequest {
        let name = resource_name(&self.cluster, replica);
        ServerRequest {
            user_data: Some(UserData::for_replica(&self.pgc, &name).unwrap().render()),
            name,
            volume_id: volume_id.to_string(),
            flavor: None,
            az: None,
            metadata: meta(&self.cluster, "surge", replica),
        }
    }

    fn stop_load(&mut self) {
        let out = self.load.take().expect("load running").stop();
        let err = String::from_utf8_lossy(&out.stderr);
        let progress: Vec<_> = err.lines().filter(|l| l.starts_with("progress")).collect();
        eprintln!(
            "{}: write load: {} progress lines, last: {}",
            self.cluster,
            progress.len(),
            progress.last().unwrap_or(&"none")
        );
        // The load ran the whole time: pgbench reported progress and no failures.
        assert!(
            !progress.is_empty(),
            "pgbench never reported progress: {err}"
        );
        assert!(!err.contains("ERROR"), "write load failed: {err}");
    }

    /// Every clone equals the primary, table by table, once it has replayed the
    /// primary's final WAL.
    fn assert_same_data(&self, ports: &[u16]) {
        let lsn = self.primary.current_lsn();
        let want_table = self
            .primary
            .psql("catalog", "select * from catalog.table_checksum(1)");
        let want_all = self
            .primary
            .psql("catalog", "select * from catalog.checksum()");
        assert!(
            want_all.starts_with(|c: char| c.is_ascii_digit()),
            "{want_all}"
        );
        for &port in ports {
            pg::wait_replayed(port, &lsn, 120);
            assert_eq!(
                psql_at(port, "catalog", "select * from catalog.table_checksum(1)"),
                want_table,
                "catalog.item_00001 differs on port {port}"
            );
            assert_eq!(
                psql_at(port, "catalog", "select * from catalog.checksum()"),
                want_all,
                "catalog checksum differs on port {port}"
            );
        }
    }
}

fn endpoint(s: &pgsurge::cloud::Server) -> Endpoint {
    s.endpoint.clone().expect("local servers have an endpoint")
}

/// Running (a zombie only waits to be reaped: not running).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        !matches!(state, Some("Z") | Some("X"))
    })
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Clones of a live seed under write load: three in parallel, all ready, all equal to
/// the primary; a re-run adopts instead of duplicating; deleting leaves no process, no
/// port and no directory.
#[test]
fn three_parallel_clones_under_write_load_are_ready_equal_and_leave_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = Runtime::new().unwrap();
    let mut env = setup(&rt, "par", 20100, 150, 40, None, CloneMode::Auto);
    env.load = Some(env.primary.start_write_load(4, 10));
    std::thread::sleep(Duration::from_secs(2));

    let cloud = env.cloud.clone();
    let replicas = ["r1", "r2", "r3"];
    let before: postgres::Lsn = env.primary.current_lsn().parse().unwrap();
    let (snap, servers) = rt.block_on(async {
        let snap = ensure_snapshot(cloud.as_ref(), &env.snapshot_request(1))
            .await
            .unwrap();
        let info = cloud.snapshot_info(&snap.id).unwrap();
        let Consistency::BackupMode { start_lsn, .. } = &info.consistency else {
            panic!("expected a backup-mode snapshot: {info:?}");
        };
        // checkpoint_primary: the snapshot starts at a checkpoint made for it, so a
        // clone replays only what was written since.
        let start: postgres::Lsn = start_lsn.parse().unwrap();
        assert!(
            start >= before,
            "snapshot starts at {start}, before {before}"
        );
        let expected = if cloud.supports_reflink() {
            Method::Reflink
        } else {
            Method::Copy
        };
        assert_eq!(info.method, expected);
        let label = std::fs::read_to_string(
            cloud
                .pool_dir()
                .join("snapshots")
                .join(&snap.id)
                .join("data/backup_label"),
        )
        .unwrap();
        assert!(label.contains("BACKUP FROM: standby"), "{label}");

        let vols: Vec<_> = join_all(replicas.iter().map(|r| {
            let req = env.volume_request(&snap.id, r);
            let cloud = cloud.clone();
            async move { ensure_volume(cloud.as_ref(), &req).await }
        }))
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
        let servers: Vec<_> = join_all(vols.iter().zip(replicas).map(|(v, r)| {
            let req = env.server_request(&v.id, r);
            let cloud = cloud.clone();
            async move { ensure_server(cloud.as_ref(), &req).await }
        }))
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();

        // All three become ready while the load goes on.
        let deadline = Instant::now() + Duration::from_secs(120);
        let b = bounds(&env.pgc);
        let ready = join_all(servers.iter().map(|s| {
            postgres::wait_ready(&env.client, s.endpoint.as_ref().unwrap(), &b, deadline)
        }))
        .await;
        for (s, r) in servers.iter().zip(ready) {
            let r = r.unwrap_or_else(|e| panic!("{} not ready: {e}", s.name));
            assert_eq!(r.verdict(), Verdict::Ready, "{}", s.name);
            assert_eq!(cloud.get_server(&s.id).await.unwrap().status, Status::Ready);
        }
        let ports: Vec<u16> = servers.iter().map(|s| endpoint(s).port).collect();
        let mut unique = ports.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 3, "{ports:?}");

        // A re-run (same names and metadata) adopts what exists.
        assert_eq!(
            ensure_snapshot(cloud.as_ref(), &env.snapshot_request(1))
                .await
                .unwrap()
                .id,
            snap.id
        );
        for (v, r) in vols.iter().zip(replicas) {
            let again = ensure_volume(cloud.as_ref(), &env.volume_request(&snap.id, r)).await;
            assert_eq!(again.unwrap().id, v.id);
        }
        for (s, v) in servers.iter().zip(&vols) {
            let r = s.metadata[META_REPLICA].as_str();
            let again = ensure_server(cloud.as_ref(), &env.server_request(&v.id, r)).await;
            assert_eq!(again.unwrap().id, s.id);
        }
        let surge = Filter {
            name: None,
            metadata: [(META_ROLE.to_string(), "surge".to_string())].into(),
        };
        assert_eq!(cloud.list_servers(&surge).await.unwrap().len(), 3);
        // A volume in use can be neither deleted nor attached to a second server.
        assert!(matches!(
            cloud.delete_volume(&vols[0].id).await,
            Err(CloudError::Conflict(_))
        ));
        let second = env.server_request(&vols[0].id, "other");
        assert!(matches!(
            cloud.create_server(&second).await,
            Err(CloudError::Conflict(_))
        ));
        // Bad user data: a precise error before anything is made.
        let spare = cloud
            .create_volume(&env.volume_request(&snap.id, "spare"))
            .await
            .unwrap();
        let mut bad = env.server_request(&spare.id, "spare");
        bad.user_data = Some("PRIMARY_HOST=127.0.0.1\nSHELL=/bin/sh\n".into());
        let err = cloud.create_server(&bad).await.unwrap_err();
        assert!(
            matches!(&err, CloudError::Fatal(m) if m.contains("unknown key SHELL")),
            "{err}"
        );
        // A server the bootstrap script refuses: its error, and nothing left behind.
        let mut broken = env.server_request(&spare.id, "spare");
        broken.user_data = Some("PRIMARY_HOST=127.0.0.1\nHOT_STANDBY_FEEDBACK=maybe\n".into());
        let err = cloud.create_server(&broken).await.unwrap_err();
        assert!(err.to_string().contains("HOT_STANDBY_FEEDBACK"), "{err}");
        assert!(cloud
            .list_servers(&Filter {
                name: Some(resource_name(&env.cluster, "spare")),
                metadata: Metadata::new(),
            })
            .await
            .unwrap()
            .is_empty());
        assert!(!cloud
            .pool_dir()
            .join("volumes")
            .join(&spare.id)
            .join("attachment")
            .exists());
        let claims = std::fs::read_dir(cloud.pool_dir().join("ports"))
            .unwrap()
            .count();
        assert_eq!(
            claims, 4,
            "port claims: the seed's and the three clones' only"
        );
        cloud.delete_volume(&spare.id).await.unwrap();
        (snap, servers)
    });

    env.stop_load();
    let ports: Vec<u16> = servers.iter().map(|s| endpoint(s).port).collect();
    env.assert_same_data(&ports);

    // Delete: first see the processes, then see them gone.
    let data_dirs: Vec<PathBuf> = servers
        .iter()
        .map(|s| env.cloud.data_dir(&s.volume_ids[0]))
        .collect();
    let before: Vec<Vec<(u32, String)>> = data_dirs.iter().map(|d| processes_in(d)).collect();
    for (d, procs) in data_dirs.iter().zip(&before) {
        assert!(
            procs.len() >= 3,
            "expected a postmaster and its children in {}: {procs:?}",
            d.display()
        );
    }
    rt.block_on(async {
        let deleted = join_all(servers.iter().map(|s| cloud.delete_server(&s.id))).await;
        deleted.into_iter().collect::<Result<Vec<_>, _>>().unwrap();
        for s in &servers {
            cloud.delete_volume(&s.volume_ids[0]).await.unwrap();
            // Deleting again is fine.
            cloud.delete_server(&s.id).await.unwrap();
            cloud.delete_volume(&s.volume_ids[0]).await.unwrap();
            assert!(matches!(
                cloud.get_server(&s.id).await,
                Err(CloudError::NotFound { .. })
            ));
        }
        cloud.delete_snapshot(&snap.id).await.unwrap();
    });
    for ((d, procs), port) in data_dirs.iter().zip(&before).zip(&ports) {
        assert!(
            processes_in(d).is_empty(),
            "processes left in {}: {:?}",
            d.display(),
            processes_in(d)
        );
        for (pid, cmd) in procs {
            assert!(!alive(*pid), "process {pid} ({cmd}) survived");
        }
        assert!(!port_open(*port), "port {port} still listening");
        assert!(!d.exists(), "{} still exists", d.display());
        let vol_dir = d.parent().unwrap();
        assert!(!vol_dir.exists(), "{} still exists", vol_dir.display());
    }
    for s in &servers {
        assert!(!env.cloud.pool_dir().join("servers").join(&s.id).exists());
        assert!(!env
            .cloud
            .pool_dir()
            .join("ports")
            .join(endpoint(s).port.to_string())
            .exists());
    }
    assert!(!env
        .cloud
        .pool_dir()
        .join("snapshots")
        .join(&snap.id)
        .exists());

    // The seed goes the same way; then the pool is empty.
    let seed_dir = env.cloud.data_dir(&env.seed_volume);
    rt.block_on(async {
        cloud.delete_server(&env.seed_server).await.unwrap();
        cloud.delete_volume(&env.seed_volume).await.unwrap();
    });
    assert!(processes_in(env.cloud.pool_dir()).is_empty());
    assert!(!seed_dir.exists());
    for sub in ["volumes", "snapshots", "servers", "ports", "tmp"] {
        let left: Vec<_> = std::fs::read_dir(env.cloud.pool_dir().join(sub))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{sub}/ not empty: {left:?}");
    }
}

/// Snapshots taken again and again while the primary takes heavy writes: every clone
/// starts, becomes ready, ends up equal to the primary, and passes amcheck.
#[test]
fn snapshots_under_heavy_writes_never_yield_a_broken_or_diverging_replica() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = Runtime::new().unwrap();
    let mut env = setup(&rt, "heavy", 20200, 100, 40, None, CloneMode::Auto);
    env.load = Some(env.primary.start_write_load(4, 20));
    std::thread::sleep(Duration::from_secs(2));
    const ROUNDS: u32 = 4;
    let cloud = env.cloud.clone();
    let servers = rt.block_on(async {
        let mut servers = Vec::new();
        for n in 1..=ROUNDS {
            let replica = format!("h{n}");
            let snap = cloud
                .create_snapshot(&env.snapshot_request(n))
                .await
                .unwrap();
            let vol = cloud
                .create_volume(&env.volume_request(&snap.id, &replica))
                .await
                .unwrap();
            // The clone does not depend on its snapshot.
            cloud.delete_snapshot(&snap.id).await.unwrap();
            let server = cloud
                .create_server(&env.server_request(&vol.id, &replica))
                .await
                .unwrap_or_else(|e| panic!("round {n}: clone did not start: {e}"));
            let r = postgres::wait_ready(
                &env.client,
                &endpoint(&server),
                &bounds(&env.pgc),
                Instant::now() + Duration::from_secs(120),
            )
            .await
            .unwrap_or_else(|e| panic!("round {n}: {e}"));
            assert_eq!(r.verdict(), Verdict::Ready);
            servers.push(server);
        }
        servers
    });
    env.stop_load();
    let ports: Vec<u16> = servers.iter().map(|s| endpoint(s).port).collect();
    env.assert_same_data(&ports);
    for (s, port) in servers.iter().zip(&ports) {
        let out = std::process::Command::new(Path::new(pg::PG_BIN).join("pg_amcheck"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .args(["-d", "catalog", "--heapallindexed", "--progress"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: pg_amcheck found corruption: {}{}",
            s.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::read_to_string(env.cloud.server_log(&s.id)).unwrap();
        assert!(!log.contains("PANIC"), "{}: {log}", s.name);
        assert!(
            log.contains("consistent recovery state reached"),
            "{}: {log}",
            s.name
        );
    }
    rt.block_on(async {
        for s in &servers {
            cloud.delete_server(&s.id).await.unwrap();
            cloud.delete_volume(&s.volume_ids[0]).await.unwrap();
        }
    });
    for s in &servers {
        let d = env.cloud.data_dir(&s.volume_ids[0]);
        assert!(!d.exists() && processes_in(&d).is_empty());
    }
}

/// Readiness against real servers: lagging while replay is paused, ready after; a
/// primary, another cluster's replica and a closed port are each named for what they are.
#[test]
fn readiness_reports_lagging_while_replay_is_paused_and_ready_after() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    init_logs();
    let rt = Runtime::new().unwrap();
    let root = Scratch::new("i4-ready");
    let primary = Pg::primary(&root.0, "primary");
    create_pgsurge_role(&primary);
    let replica = Pg::replica_of(&primary, &root.0, "replica");
    let mut pgc = pg_config(&primary);
    pgc.max_replay_lag_bytes = 1 << 20;
    pgc.max_replay_lag_secs = 2;
    let b = bounds(&pgc);
    let client = PgClient::new(&pgc);
    let at = |p: &Pg| Endpoint {
        host: "127.0.0.1".into(),
        port: p.port,
    };
    rt.block_on(async {
        let r = postgres::wait_ready(&client, &at(&replica), &b, Instant::now() + Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(r.verdict(), Verdict::Ready, "{r}");

        replica.psql("postgres", "select pg_wal_replay_pause()");
        primary.psql(
            "postgres",
            "create table filler as select g, repeat('x', 500) as pad from generate_series(1, 20000) g",
        );
        let r = postgres::check(&client, &at(&replica), &b).await.unwrap();
        assert_eq!(r.verdict(), Verdict::Lagging, "{r}");
        let failing: Vec<Condition> = r.failing().map(|c| c.condition).collect();
        assert!(failing.contains(&Condition::ReplayLagBytes), "{r}");
        assert!(r.lag_bytes.unwrap() > 1 << 20, "{r}");
        assert!(r.check(Condition::ReplayLagBytes).unwrap().detail.contains("paused"), "{r}");
        for c in [
            Condition::AcceptsConnections,
            Condition::InRecovery,
            Condition::SameSystemIdentifier,
            Condition::SameTimeline,
        ] {
            assert!(r.check(c).unwrap().ok, "{c:?}: {r}");
        }

        // A bounded wait gives up and says which condition still fails.
        let err = postgres::wait_ready(&client, &at(&replica), &b, Instant::now() + Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(err.reason.starts_with("lagging"), "{err}");
        assert!(err.reason.contains("replay lag in bytes"), "{err}");
        // By now the last replayed commit is older than 2 s too.
        assert!(err.reason.contains("replay lag in seconds"), "{err}");

        replica.psql("postgres", "select pg_wal_replay_resume()");
        let r = postgres::wait_ready(&client, &at(&replica), &b, Instant::now() + Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(r.verdict(), Verdict::Ready, "{r}");
        assert_eq!(r.to_string(), "ready");

        // The primary itself is never a ready replica.
        let r = postgres::check(&client, &at(&primary), &b).await.unwrap();
        assert_eq!(r.verdict(), Verdict::NotInRecovery, "{r}");

        // Nothing listens: unreachable, with the reason.
        let closed = Endpoint {
            host: "127.0.0.1".into(),
            port: pgsurge_tests::free_port(),
        };
        let r = postgres::check(&client, &closed, &b).await.unwrap();
        assert_eq!(r.verdict(), Verdict::Unreachable, "{r}");
    });

    // A replica of another cluster has diverged, whatever its lag.
    let other = Pg::primary(&root.0, "other");
    create_pgsurge_role(&other);
    let stranger = Pg::replica_of(&other, &root.0, "stranger");
    rt.block_on(async {
        let r = postgres::check(&client, &at(&stranger), &b).await.unwrap();
        assert_eq!(r.verdict(), Verdict::Diverged, "{r}");
        assert!(!r.check(Condition::SameSystemIdentifier).unwrap().ok);
    });
    drop(stranger);
    drop(other);
    drop(replica);
}

/// On an XFS pool made by infra/local/pool-xfs.sh, snapshots and clones are
/// copy-on-write: they take (almost) no space, and the clone is a working replica.
#[test]
fn xfs_pool_clones_are_copy_on_write() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = Runtime::new().unwrap();
    let mnt = std::env::temp_dir().join(format!("pgsurge-i4-xfspool-{}", std::process::id()));
    let xfs = XfsPool::up(&mnt);
    let mut env = setup(
        &rt,
        "xfs",
        20300,
        100,
        80,
        Some(mnt.join("pool")),
        CloneMode::Reflink,
    );
    assert!(env.cloud.supports_reflink());
    env.load = Some(env.primary.start_write_load(2, 10));
    let cloud = env.cloud.clone();
    let (server, vol_bytes, used_growth) = rt.block_on(async {
        let snap = cloud
            .create_snapshot(&env.snapshot_request(1))
            .await
            .unwrap();
        let used0 = xfs.used_bytes();
        let vol = cloud
            .create_volume(&env.volume_request(&snap.id, "x1"))
            .await
            .unwrap();
        let used1 = xfs.used_bytes();
        let (si, vi) = (
            cloud.snapshot_info(&snap.id).unwrap(),
            cloud.volume_info(&vol.id).unwrap(),
        );
        assert_eq!(si.method, Method::Reflink);
        assert_eq!(vi.method, Some(Method::Reflink));
        assert_all_extents_shared(&cloud.data_dir(&vol.id).join("base"));
        let server = cloud
            .create_server(&env.server_request(&vol.id, "x1"))
            .await
            .unwrap();
        postgres::wait_ready(
            &env.client,
            &endpoint(&server),
            &bounds(&env.pgc),
            Instant::now() + Duration::from_secs(120),
        )
        .await
        .unwrap();
        cloud.delete_snapshot(&snap.id).await.unwrap();
        (server, vi.bytes, used1.saturating_sub(used0))
    });
    // The proof of sharing is the extent check above; free space is only reported: the
    // seed keeps receiving WAL meanwhile, and XFS preallocates for it.
    eprintln!(
        "xfs: the clone holds {vol_bytes} bytes; the filesystem grew by {used_growth} meanwhile"
    );
    env.stop_load();
    env.assert_same_data(&[endpoint(&server).port]);
    rt.block_on(async {
        cloud.delete_server(&server.id).await.unwrap();
        cloud.delete_volume(&server.volume_ids[0]).await.unwrap();
        cloud.delete_server(&env.seed_server).await.unwrap();
        cloud.delete_volume(&env.seed_volume).await.unwrap();
    });
    assert!(processes_in(&mnt).is_empty());
    drop(env);
    drop(xfs);
    assert!(!mnt.exists(), "{} left behind", mnt.display());
    assert!(!mnt.with_extension("xfs.img").exists());
}

/// Every extent of every data file below `dir` is shared with another file (FIEMAP
/// "shared" flag, read with filefrag): the clone holds no bytes of its own.
fn assert_all_extents_shared(dir: &Path) {
    let mut files = Vec::new();
    for db in std::fs::read_dir(dir).unwrap().flatten() {
        for f in std::fs::read_dir(db.path()).unwrap().flatten() {
            if f.metadata().is_ok_and(|m| m.is_file() && m.len() >= 8192) {
                files.push(f.path());
            }
        }
    }
    assert!(
        files.len() > 100,
        "expected table files in {}",
        dir.display()
    );
    let out = std::process::Command::new("filefrag")
        .arg("-v")
        .args(&files)
        .output()
        .expect("filefrag (e2fsprogs)");
    let text = String::from_utf8_lossy(&out.stdout);
    let extents: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.trim_start()
                .split(':')
                .next()
                .is_some_and(|n| n.trim().parse::<u32>().is_ok())
        })
        .collect();
    assert!(extents.len() >= files.len(), "{text}");
    let private: Vec<&&str> = extents.iter().filter(|l| !l.contains("shared")).collect();
    assert!(private.is_empty(), "extents not shared: {private:?}");
}

/// A loop-mounted XFS pool for one test; `down` on drop.
struct XfsPool(PathBuf);

impl XfsPool {
    fn script() -> PathBuf {
        workspace_root().join("infra/local/pool-xfs.sh")
    }

    fn up(mnt: &Path) -> XfsPool {
        let out = std::process::Command::new("bash")
            .arg(Self::script())
            .arg("up")
            .arg(mnt)
            .arg("4G")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "infra/local/pool-xfs.sh up failed (needs root, xfsprogs and loop devices): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        XfsPool(mnt.to_path_buf())
    }

    fn used_bytes(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["-B1", "--output=used"])
            .arg(&self.0)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df output")
    }
}

impl Drop for XfsPool {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(Self::script())
            .arg("down")
            .arg(&self.0)
            .output();
    }
}

/// The bootstrap script refuses bad parameters before it changes anything.
#[test]
fn bootstrap_script_refuses_bad_parameters_and_changes_nothing() {
    let script = workspace_root().join("infra/image/bootstrap-replica.sh");
    let dir = Scratch::new("i4-boot");
    let data = dir.0.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("PG_VERSION"), "15\n").unwrap();
    std::fs::write(data.join("postmaster.pid"), "999999\n").unwrap();
    let base = format!(
        "PGDATA={}\nPRIMARY_HOST=127.0.0.1\nREPLICATION_USER=pgsurge\nSTART=no\n",
        data.display()
    );
    let cases = [
        ("NOPE=1\n", "unknown key NOPE"),
        ("PORT=70000\n", "PORT=70000 is outside"),
        ("PORT=1\nPORT=2\n", "PORT given twice"),
        ("CLUSTER_NAME=a b\n", "CLUSTER_NAME="),
        ("PG_USER=no-such-user-here\n", "PG_USER=no-such-user-here"),
        ("just words\n", "expected KEY=VALUE"),
        (
            "RECOVERY_INIT_SYNC_METHOD=fdatasync\n",
            "RECOVERY_INIT_SYNC_METHOD=",
        ),
    ];
    for (extra, want) in cases {
        let params = dir.0.join("params.env");
        std::fs::write(&params, format!("{base}{extra}")).unwrap();
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg(&params)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(want), "{extra:?}: {err}");
        // Nothing changed: the stale pidfile is still there, no standby.signal.
        assert!(data.join("postmaster.pid").exists());
        assert!(!data.join("standby.signal").exists());
    }
    // Missing required key, and a directory that is no data directory.
    let params = dir.0.join("params.env");
    std::fs::write(&params, "PRIMARY_HOST=h\nREPLICATION_USER=u\n").unwrap();
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(&params)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("PGDATA is required"));
    std::fs::write(
        &params,
        "PGDATA=/nonexistent\nPRIMARY_HOST=h\nREPLICATION_USER=u\n",
    )
    .unwrap();
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(&params)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a PostgreSQL data directory"));

    // Valid parameters with START=no: stale state gone, settings written, password quoted.
    std::fs::write(
        &params,
        format!("{base}REPLICATION_PASSWORD={PASSWORD}\nPORT=20999\n"),
    )
    .unwrap();
    std::fs::write(
        data.join("postgresql.auto.conf"),
        "port = 5432\nwork_mem = '8MB'\n",
    )
    .unwrap();
    pg::chown_postgres(&dir.0);
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(&params)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("secret"), "password printed: {err}");
    assert!(!data.join("postmaster.pid").exists());
    assert!(data.join("standby.signal").exists());
    let conf = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
    assert!(conf.contains("work_mem = '8MB'"), "{conf}");
    assert!(
        conf.contains("recovery_init_sync_method = syncfs"),
        "{conf}"
    );
    assert!(
        conf.contains("port = 20999") && !conf.contains("port = 5432"),
        "{conf}"
    );
    assert!(
        conf.contains(r#"password=''it\\''s a \\\\ "secret" $HOME `x`'''"#),
        "{conf}"
    );
}
