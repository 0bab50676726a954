//! The functions end to end on the local provider: real PostgreSQL, two real HAProxy
//! nodes, the local state store, the real function binaries invoked with webhooks.
//!
//! Alarm → two surge replicas cloned from a snapshot of the seed, verified and serving
//! on both HAProxy nodes → scale-down alarm → back to the seed alone, nothing left in
//! the pool, the state or HAProxy; `pgbench -S -C` through HAProxy throughout.

use pgsurge::cloud::local::LocalCloud;
use pgsurge::cloud::{
    resource_name, Cloud, Filter, Metadata, ServerRequest, META_CLUSTER, META_REPLICA, META_ROLE,
};
use pgsurge::config::Config;
use pgsurge::postgres::bootstrap::UserData;
use pgsurge::state::{ClusterState, Phase, Replica, Role};
use pgsurge_tests::haproxy::{BackendSpec, HaproxyNode, StaticServer};
use pgsurge_tests::pg::{pg_cmd, Pg, Scratch};
use pgsurge_tests::{command, workspace_root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const CLUSTER: &str = "e2e";

fn config_text(root: &Path, primary: &Pg, port_first: u16, nodes: &[&HaproxyNode]) -> String {
    let mut t = format!(
        r#"
[cluster]
name = "{CLUSTER}"
[cloud]
provider = "local"
[local]
pool_dir = "{pool}"
port_first = {port_first}
port_last = {port_last}
bootstrap_script = "{script}"
[postgres]
primary_port = {pport}
replication_user = "postgres"
sslmode = "disable"
max_replay_lag_bytes = 16777216
max_replay_lag_secs = 30
[state]
backend = "local"
local_dir = "{state}"
[policy]
mode = "step"
step = 2
min_replicas = 1
max_replicas = 5
scale_up_cooldown_secs = 0
scale_down_cooldown_secs = 0
scale_down_step = 2
[ops]
ready_wait_secs = 0
[haproxy]
backend = "pg_read"
slowstart_secs = 1
drain_deadline_secs = 10
"#,
        pool = root.join("pool").display(),
        port_last = port_first + 20,
        script = workspace_root()
            .join("infra/image/bootstrap-replica.sh")
            .display(),
        pport = primary.port,
        state = root.join("state").display(),
    );
    for n in nodes {
        t.push_str(&format!(
            "[[haproxy.nodes]]\nname = \"{}\"\nruntime_api = \"{}\"\n",
            n.name,
            n.socket.display()
        ));
    }
    t
}

/// Invoke a function binary with an event and the config; return its JSON answer.
fn invoke(function: &str, cfg: &Path, event: &Value) -> Value {
    let file = cfg.with_file_name(format!("event-{function}.json"));
    std::fs::write(&file, event.to_string()).unwrap();
    let out = command(
        function,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "invoke",
            "--event",
            file.to_str().unwrap(),
        ],
        &[],
    )
    .output()
    .unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{function}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success(),
        "{function} failed: {answer}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    answer
}

fn managed_servers(node: &HaproxyNode) -> Vec<String> {
    node.servers_state()
        .keys()
        .filter(|n| n.starts_with("pgsurge-e2e-"))
        .cloned()
        .collect()
}

/// The state document as the functions see it (through the configured store).
fn load_state(cfg: &Path) -> ClusterState {
    let config = Config::load(Some(cfg)).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let repo = pgsurge::state::open(&config.state, CLUSTER, None)
            .await
            .unwrap();
        repo.load().await.unwrap().state
    })
}

/// A primary with pgbench tables, a seed replica on a pool volume (a base replica in the
/// state and declared statically in haproxy.cfg), two HAProxy nodes, the config file.
struct Env {
    cloud: LocalCloud,
    rt: tokio::runtime::Runtime,
    h1: HaproxyNode,
    h2: HaproxyNode,
    cfg_path: std::path::PathBuf,
    seed_srv: pgsurge::cloud::Server,
    seed_vol: pgsurge::cloud::Volume,
    _primary: Pg,
    _root: Scratch,
}

impl Drop for Env {
    fn drop(&mut self) {
        // Stop every server the test made (surge ones a failing test left, and the seed).
        self.rt.block_on(async {
            for s in self
                .cloud
                .list_servers(&Filter::default())
                .await
                .unwrap_or_default()
            {
                let _ = self.cloud.delete_server(&s.id).await;
            }
        });
    }
}

/// `port_first` starts this test's own block of 20 replica ports: the tests of one binary
/// run in parallel and must never race for the same port.
fn setup(label: &str, port_first: u16) -> Env {
    let root = Scratch::new(label);
    let primary = Pg::primary(&root.0, "primary");
    primary.psql("postgres", "alter system set checkpoint_timeout = '30s'");
    primary.psql("postgres", "select pg_reload_conf()");
    pg_cmd(
        "pgbench",
        &[
            "-i",
            "-s",
            "2",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &primary.port.to_string(),
            "-U",
            "postgres",
            "postgres",
        ],
    );

    // The seed: a base replica on a pool volume, made the way an operator would.
    let cfg_path = root.0.join("pgsurge.toml");
    std::fs::write(&cfg_path, config_text(&root.0, &primary, port_first, &[])).unwrap();
    let config = Config::load(Some(&cfg_path)).unwrap();
    let cloud = LocalCloud::new(&config.local, &config.postgres).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seed_name = resource_name(CLUSTER, "seed");
    let meta: Metadata = [
        (META_CLUSTER.to_string(), CLUSTER.to_string()),
        (META_ROLE.to_string(), "base".to_string()),
        (META_REPLICA.to_string(), "seed".to_string()),
    ]
    .into();
    let (seed_vol, seed_srv) = rt.block_on(async {
        let vol = cloud.create_empty_volume(&seed_name, &meta).await.unwrap();
        pg_cmd(
            "pg_basebackup",
            &[
                "-d",
                &primary.conninfo("postgres"),
                "-D",
                cloud.data_dir(&vol.id).to_str().unwrap(),
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
        );
        let srv = cloud
            .create_server(&ServerRequest {
                name: seed_name.clone(),
                volume_id: vol.id.clone(),
                flavor: None,
                az: None,
                metadata: meta.clone(),
                user_data: Some(
                    UserData::for_replica(&config.postgres, &seed_name)
                        .unwrap()
                        .render(),
                ),
            })
            .await
            .unwrap();
        (vol, srv)
    });
    let seed_port = seed_srv.endpoint.clone().unwrap().port;

    // Two HAProxy nodes with the seed declared statically (a base replica pgsurge never touches).
    let backend = BackendSpec::new(
        "pg_read",
        vec![StaticServer {
            name: "seed".into(),
            port: seed_port,
        }],
    );
    let h1 = HaproxyNode::start(&root.0, "haproxy1", backend.clone());
    let h2 = HaproxyNode::start(&root.0, "haproxy2", backend);
    std::fs::write(
        &cfg_path,
        config_text(&root.0, &primary, port_first, &[&h1, &h2]),
    )
    .unwrap();

    // The state knows the seed as a serving base replica.
    let seed = Replica {
        id: "seed".into(),
        role: Role::Base,
        phase: Phase::Serving,
        server_id: Some(seed_srv.id.clone()),
        volume_id: Some(seed_vol.id.clone()),
        az: None,
        address: Some(format!("127.0.0.1:{seed_port}")),
        created_at: time::OffsetDateTime::now_utc(),
        op_id: None,
        extra: BTreeMap::new(),
    };
    rt.block_on(async {
        let repo = pgsurge::state::open(&config.state, CLUSTER, None)
            .await
            .unwrap();
        repo.update(
            time::OffsetDateTime::now_utc(),
            |s| -> Result<(), std::convert::Infallible> {
                s.replicas = vec![seed.clone()];
                Ok(())
            },
        )
        .await
        .unwrap();
    });

    Env {
        cloud,
        rt,
        h1,
        h2,
        cfg_path,
        seed_srv,
        seed_vol,
        _primary: primary,
        _root: root,
    }
}

/// Surge servers and volumes in the pool (by metadata), and managed servers per node.
fn surge_everywhere(env: &Env) -> (usize, usize, Vec<String>, Vec<String>) {
    let f = Filter {
        name: None,
        metadata: [(META_ROLE.to_string(), "surge".to_string())].into(),
    };
    let (servers, volumes) = env.rt.block_on(async {
        (
            env.cloud.list_servers(&f).await.unwrap().len(),
            env.cloud.list_volumes(&f).await.unwrap().len(),
        )
    });
    (
        servers,
        volumes,
        managed_servers(&env.h1),
        managed_servers(&env.h2),
    )
}

/// instance-ready ticks until `n` surge replicas serve.
fn tick_until_serving(cfg: &Path, n: usize) {
    let tick = serde_json::json!({"pgsurge": 1, "kind": "tick"});
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        invoke("instance-ready", cfg, &tick);
        let serving = load_state(cfg)
            .replicas
            .iter()
            .filter(|r| r.role == Role::Surge && r.phase == Phase::Serving)
            .count();
        if serving == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas not serving: {:?}",
            load_state(cfg).replicas
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn alarm_to_serving_replicas_on_both_haproxy_nodes_and_back() {
    let env = setup("e2e", 20400);
    let (cfg_path, h1, h2) = (&env.cfg_path, &env.h1, &env.h2);
    // Reads through both nodes, new connection per transaction, the whole time.
    let load: Vec<_> = [&h1, &h2]
        .iter()
        .map(|h| {
            pgsurge_tests::Proc::spawn_cmd(
                std::process::Command::new("pgbench")
                    .args([
                        "-S",
                        "-C",
                        "-n",
                        "-c",
                        "2",
                        "-R",
                        "20",
                        "-T",
                        "75",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &h.port.to_string(),
                        "-U",
                        "postgres",
                        "postgres",
                    ])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped()),
            )
        })
        .collect();

    // Scale up through the real webhook path (generic alarm form).
    let alarm = serde_json::json!({"pgsurge": 1, "kind": "alarm", "id": "e2e-1", "name": "read-load", "state": "firing"});
    let up = invoke("scale-up", cfg_path, &alarm);
    assert_eq!(up["status"], "accepted", "{up}");
    assert_eq!(up["decision"]["action"]["action"], "scale-up", "{up}");
    assert_eq!(up["decision"]["action"]["add"], 2, "{up}");
    // A duplicate delivery of the same alarm decides nothing new.
    let dup = invoke("scale-up", cfg_path, &alarm);
    assert_ne!(dup["decision"]["action"]["action"], "scale-up", "{dup}");
    let surge: Vec<Replica> = load_state(cfg_path)
        .replicas
        .into_iter()
        .filter(|r| r.role == Role::Surge)
        .collect();
    assert_eq!(surge.len(), 2);

    // instance-ready ticks until both are verified and registered on both nodes.
    tick_until_serving(cfg_path, 2);
    let expected: Vec<String> = {
        let mut v: Vec<String> = surge
            .iter()
            .map(|r| resource_name(CLUSTER, &r.id))
            .collect();
        v.sort();
        v
    };
    assert_eq!(managed_servers(h1), expected);
    assert_eq!(managed_servers(h2), expected);
    // Each new replica has the primary's rows.
    for r in &load_state(cfg_path).replicas {
        let port: u16 = r
            .address
            .as_deref()
            .unwrap()
            .rsplit_once(':')
            .unwrap()
            .1
            .parse()
            .unwrap();
        let rows =
            pgsurge_tests::pg::psql_at(port, "postgres", "select count(*) from pgbench_accounts");
        assert_eq!(rows, "200000", "replica {}", r.id);
    }
    std::thread::sleep(Duration::from_secs(5));

    // Scale down: drained, removed from both nodes, servers and volumes deleted.
    let down_alarm = serde_json::json!({"pgsurge": 1, "kind": "alarm", "id": "e2e-2", "name": "read-load-low", "state": "firing"});
    let down = invoke("scale-down", cfg_path, &down_alarm);
    assert_eq!(down["decision"]["action"]["action"], "scale-down", "{down}");
    let state = load_state(cfg_path);
    assert_eq!(
        state
            .replicas
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        vec!["seed"],
        "{down}"
    );
    assert!(managed_servers(h1).is_empty() && managed_servers(h2).is_empty());
    let (servers, volumes, _, _) = surge_everywhere(&env);
    assert_eq!(
        (servers, volumes),
        (0, 0),
        "no surge server or volume left in the pool"
    );

    // Zero failed reads through both nodes (the load outlasts the scale-down).
    for p in load {
        let out = p.wait();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        eprintln!("pgbench through HAProxy:\n{text}");
        assert!(
            text.contains("number of failed transactions: 0 "),
            "failed reads:\n{text}"
        );
        assert!(!text.contains("aborted"), "a client aborted:\n{text}");
    }
    env.rt.block_on(async {
        env.cloud.delete_server(&env.seed_srv.id).await.unwrap();
        env.cloud.delete_volume(&env.seed_vol.id).await.unwrap();
    });
}

/// Run a function with a failpoint armed: it must die exactly there.
fn invoke_killed_at(function: &str, cfg: &Path, event: &Value, failpoint: &str) {
    let file = cfg.with_file_name(format!("event-{function}-killed.json"));
    std::fs::write(&file, event.to_string()).unwrap();
    let out = command(
        function,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "invoke",
            "--event",
            file.to_str().unwrap(),
        ],
        &[(pgsurge::failpoint::ENV, failpoint.to_string())],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{function} survived failpoint {failpoint}"
    );
    assert!(
        stderr.contains(&format!("failpoint {failpoint}: aborting")),
        "{function} did not reach {failpoint}:\n{stderr}"
    );
}

/// Crash safety: kill scale-up right after each cloud side effect and scale-down in
/// the middle of its work; a rerun (scale-up retried) or the reconcile timer must
/// converge with no duplicate and no leak in the pool, the state or either HAProxy node.
#[test]
fn killed_after_a_side_effect_a_rerun_or_reconcile_converges_without_duplicates() {
    let env = setup("e2e-crash", 20450);
    let cfg = env.cfg_path.as_path();
    let tick = serde_json::json!({"pgsurge": 1, "kind": "tick"});
    let points = [
        ("scale_up.after_snapshot", "scale_down.after_drain"),
        ("scale_up.after_volume", "scale_down.after_delete_server"),
        ("scale_up.after_server", "scale_down.after_delete_volume"),
    ];
    for (i, (up_point, down_point)) in points.iter().enumerate() {
        let alarm = serde_json::json!({"pgsurge": 1, "kind": "alarm", "id": format!("crash-up-{i}"), "name": "load", "state": "firing"});
        invoke_killed_at("scale-up", cfg, &alarm, up_point);
        // The sender retries the same delivery: the recorded operation is resumed.
        invoke("scale-up", cfg, &alarm);
        tick_until_serving(cfg, 2);
        let (servers, volumes, n1, n2) = surge_everywhere(&env);
        assert_eq!(
            (servers, volumes, n1.len(), n2.len()),
            (2, 2, 2, 2),
            "after a crash at {up_point}"
        );

        let low = serde_json::json!({"pgsurge": 1, "kind": "alarm", "id": format!("crash-down-{i}"), "name": "low", "state": "firing"});
        invoke_killed_at("scale-down", cfg, &low, down_point);
        // The reconcile timer finishes what the killed scale-down started.
        invoke("reconcile", cfg, &tick);
        let (servers, volumes, n1, n2) = surge_everywhere(&env);
        assert_eq!(
            (servers, volumes),
            (0, 0),
            "surge resources left after a crash at {down_point}"
        );
        assert!(
            n1.is_empty() && n2.is_empty(),
            "HAProxy entries left after a crash at {down_point}: {n1:?} {n2:?}"
        );
        let ids: Vec<String> = load_state(cfg).replicas.into_iter().map(|r| r.id).collect();
        assert_eq!(
            ids,
            vec!["seed".to_string()],
            "state after a crash at {down_point}"
        );
    }
}
