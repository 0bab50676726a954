//! A whole local cluster for end-to-end tests: a primary with pgbench tables, a seed
//! replica on a pool volume (a base replica in the state, declared statically in
//! haproxy.cfg), two real HAProxy nodes, the local state store, and one config file the
//! real function binaries are invoked with.
//!
//! `seed_replica` is also how the local-provider tests make their seed: the way an
//! operator would — `pg_basebackup` into an empty pool volume, then the bootstrap script.

use crate::haproxy::{BackendSpec, HaproxyNode, StaticServer};
use crate::pg::{pg_cmd, Pg, Scratch};
use crate::{command, workspace_root};
use pgsurge::cloud::local::LocalCloud;
use pgsurge::cloud::{
    Cloud, Filter, Metadata, Server, Volume, META_CLUSTER, META_REPLICA, META_ROLE,
};
use pgsurge::config::Config;
use pgsurge::model::resource_name;
use pgsurge::model::{ClusterState, Phase, Replica, Role};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The cluster name every e2e config uses.
pub const CLUSTER: &str = "e2e";

/// A base replica made from the configured primary into a new pool volume of `cloud`
/// (the library's `LocalCloud::create_seed`: `pg_basebackup`, then the bootstrap script).
pub async fn seed_replica(cloud: &LocalCloud, name: &str, meta: &Metadata) -> (Volume, Server) {
    cloud.create_seed(name, meta).await.unwrap()
}

/// The config file of an e2e cluster (extra TOML appended verbatim).
/// The smallest configuration of the `pgsurge` CLI's local tests: cloud `provider`
/// (`local`: a pool of one port under `root`), the local state store under `root`, the
/// primary on `primary_port`.
pub fn one_port_config(root: &Path, cluster: &str, provider: &str, primary_port: u16) -> String {
    let port_first = crate::free_port();
    format!(
        r#"
[cluster]
name = "{cluster}"
[cloud]
provider = "{provider}"
[local]
pool_dir = "{root}/pool"
port_first = {port_first}
port_last = {port_first}
bootstrap_script = "{script}"
[postgres]
primary_port = {primary_port}
replication_user = "postgres"
sslmode = "disable"
[state]
backend = "local"
local_dir = "{root}/state"
"#,
        root = root.display(),
        script = workspace_root()
            .join("infra/image/bootstrap-replica.sh")
            .display(),
    )
}

pub fn config_text(
    root: &Path,
    primary: &Pg,
    port_first: u16,
    nodes: &[&HaproxyNode],
    extra: &str,
) -> String {
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
    // TOML: a section header in `extra` after [[haproxy.nodes]] is fine; bare keys are not.
    t.push_str(extra);
    t
}

/// A running e2e cluster; dropping it stops every server it made.
pub struct E2e {
    pub cloud: LocalCloud,
    pub rt: tokio::runtime::Runtime,
    pub h1: HaproxyNode,
    pub h2: HaproxyNode,
    pub cfg_path: PathBuf,
    pub seed_srv: Server,
    pub seed_vol: Volume,
    pub primary: Pg,
    pub root: Scratch,
    /// Environment for every invocation (`PGSURGE_<SECTION>__<KEY>` overrides).
    pub env: Vec<(String, String)>,
}

impl Drop for E2e {
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

impl E2e {
    /// Start it. `port_first` begins this test's own block of 20 replica ports: the tests
    /// of one binary run in parallel and must never race for the same port. `extra` is
    /// TOML appended to the config (whole sections only).
    pub fn start(label: &str, port_first: u16, extra: &str) -> E2e {
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

        let cfg_path = root.0.join("pgsurge.toml");
        let write_config = |nodes: &[&HaproxyNode]| {
            std::fs::write(
                &cfg_path,
                config_text(&root.0, &primary, port_first, nodes, extra),
            )
            .unwrap()
        };
        write_config(&[]);
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
        let (seed_vol, seed_srv) = rt.block_on(seed_replica(&cloud, &seed_name, &meta));
        let seed_port = seed_srv.endpoint.clone().unwrap().port;

        // Two HAProxy nodes with the seed declared statically (a base replica pgsurge
        // never touches).
        let backend = BackendSpec::new(
            "pg_read",
            vec![StaticServer {
                name: "seed".into(),
                port: seed_port,
            }],
        );
        let h1 = HaproxyNode::start(&root.0, "haproxy1", backend.clone());
        let h2 = HaproxyNode::start(&root.0, "haproxy2", backend);
        write_config(&[&h1, &h2]);

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
            since: Default::default(),
            extra: BTreeMap::new(),
        };
        let env = E2e {
            cloud,
            rt,
            h1,
            h2,
            cfg_path,
            seed_srv,
            seed_vol,
            primary,
            root,
            env: Vec::new(),
        };
        env.edit_state(|s| s.replicas = vec![seed.clone()]);
        env
    }

    pub fn cfg(&self) -> &Path {
        &self.cfg_path
    }

    /// The state document as the functions see it (through the configured store).
    pub fn state(&self) -> ClusterState {
        let config = Config::load(Some(&self.cfg_path)).unwrap();
        self.rt.block_on(async {
            let repo = pgsurge::state::open(&config.state, CLUSTER, None)
                .await
                .unwrap();
            repo.load().await.unwrap().state
        })
    }

    /// Change the state document behind the functions' backs (CAS, like they do).
    pub fn edit_state(&self, f: impl Fn(&mut ClusterState)) {
        let config = Config::load(Some(&self.cfg_path)).unwrap();
        self.rt.block_on(async {
            let repo = pgsurge::state::open(&config.state, CLUSTER, None)
                .await
                .unwrap();
            repo.update(
                time::OffsetDateTime::now_utc(),
                |s| -> Result<(), std::convert::Infallible> {
                    f(s);
                    Ok(())
                },
            )
            .await
            .unwrap();
        })
    }

    /// Invoke a function binary with an event; return its JSON answer (it must succeed).
    pub fn invoke(&self, function: &str, event: &Value) -> Value {
        let out = self.run(function, event, None);
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

    /// Run a function with a failpoint armed: it must die exactly there.
    pub fn invoke_killed_at(&self, function: &str, event: &Value, failpoint: &str) {
        if let Err(why) = self.try_invoke_killed_at(function, event, failpoint) {
            panic!("{why}");
        }
    }

    /// Like `invoke_killed_at`, but says why the function did not die there.
    pub fn try_invoke_killed_at(
        &self,
        function: &str,
        event: &Value,
        failpoint: &str,
    ) -> Result<(), String> {
        let out = self.run(function, event, Some(failpoint));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains(&format!("failpoint {failpoint}: aborting")) && !out.status.success() {
            Ok(())
        } else {
            // A binary built alone (`cargo build -p <function>`) has no failpoints: say so
            // rather than "never reached".
            let hint = if failpoints_built(function) {
                ""
            } else {
                "; THIS BINARY HAS NO FAILPOINTS: build with `cargo build --workspace --bins`"
            };
            Err(format!(
                "{function} did not die at {failpoint} ({}{hint}): {}\n{stderr}",
                out.status,
                String::from_utf8_lossy(&out.stdout)
            ))
        }
    }

    fn run(&self, function: &str, event: &Value, failpoint: Option<&str>) -> std::process::Output {
        // One file per invocation: tests invoke concurrently.
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let file = self
            .cfg_path
            .with_file_name(format!("event-{function}-{n}.json"));
        std::fs::write(&file, event.to_string()).unwrap();
        let mut env: Vec<(&str, String)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        if let Some(f) = failpoint {
            env.push((pgsurge::failpoint::ENV, f.to_string()));
        }
        command(
            function,
            &[
                "--config",
                self.cfg_path.to_str().unwrap(),
                "invoke",
                "--event",
                file.to_str().unwrap(),
            ],
            &env,
        )
        .output()
        .unwrap()
    }

    /// The surge replicas the state knows, in its order.
    pub fn surge_replicas(&self) -> Vec<Replica> {
        self.state()
            .replicas
            .into_iter()
            .filter(|r| r.role == Role::Surge)
            .collect()
    }

    /// instance-ready ticks until `n` surge replicas serve.
    pub fn tick_until_serving(&self, n: usize) {
        let tick = serde_json::json!({"pgsurge": 1, "kind": "tick"});
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.invoke("instance-ready", &tick);
            let serving = self
                .state()
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
                self.state().replicas
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Surge servers and volumes in the pool (by metadata), the cluster's snapshots, and
    /// managed servers per node.
    pub fn surge_everywhere(&self) -> Everywhere {
        let f = Filter {
            name: None,
            metadata: [(META_ROLE.to_string(), "surge".to_string())].into(),
        };
        // Snapshots carry the cluster label, not a role (they are of a base replica).
        let ours = Filter {
            name: None,
            metadata: [(META_CLUSTER.to_string(), CLUSTER.to_string())].into(),
        };
        let (servers, volumes, snapshots) = self.rt.block_on(async {
            (
                self.cloud.list_servers(&f).await.unwrap(),
                self.cloud.list_volumes(&f).await.unwrap(),
                self.cloud.list_snapshots(&ours).await.unwrap(),
            )
        });
        let mut servers: Vec<String> = servers.into_iter().map(|s| s.name).collect();
        let mut volumes: Vec<String> = volumes.into_iter().map(|v| v.name).collect();
        servers.sort();
        volumes.sort();
        let mut snapshots: Vec<String> = snapshots.into_iter().map(|s| s.id).collect();
        snapshots.sort();
        let doc = self.state();
        let state: Vec<String> = doc
            .replicas
            .iter()
            .filter(|r| r.role == Role::Surge)
            .map(|r| resource_name(CLUSTER, &r.id))
            .collect();
        let mut state_snapshots: Vec<String> = doc.snapshots.into_iter().map(|s| s.id).collect();
        state_snapshots.sort();
        Everywhere {
            servers,
            volumes,
            state,
            snapshots,
            state_snapshots,
            h1: managed_servers(&self.h1),
            h2: managed_servers(&self.h2),
        }
    }

    /// Stop the seed and delete its volume (the end of a passing test).
    pub fn delete_seed(&self) {
        self.rt.block_on(async {
            self.cloud.delete_server(&self.seed_srv.id).await.unwrap();
            self.cloud.delete_volume(&self.seed_vol.id).await.unwrap();
        });
    }
}

/// Whether a function binary was built with the `failpoints` feature (its abort message
/// is in the executable).
pub fn failpoints_built(function: &str) -> bool {
    let exe = std::fs::read(crate::bin(function)).unwrap();
    let marker = b": aborting";
    exe.windows(marker.len()).any(|w| w == marker)
}

/// Surge replicas as each of the three sources of truth see them (names, sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Everywhere {
    pub servers: Vec<String>,
    pub volumes: Vec<String>,
    pub state: Vec<String>,
    /// The cluster's snapshots in the pool, and those the state records (ids, sorted).
    pub snapshots: Vec<String>,
    pub state_snapshots: Vec<String>,
    pub h1: Vec<String>,
    pub h2: Vec<String>,
}

impl Everywhere {
    /// The same `n` surge replicas in the pool (servers and volumes), the state and on
    /// both HAProxy nodes, and no leaked snapshot.
    pub fn agree_on(&self, n: usize) -> bool {
        let mut state = self.state.clone();
        state.sort();
        self.servers.len() == n
            && self.servers == self.volumes
            && self.servers == state
            && self.servers == self.h1
            && self.servers == self.h2
            && self.leaked_snapshots().is_empty()
    }

    /// Snapshots in the pool the state does not record: nothing would ever rotate them
    /// out (reconcile deletes only recorded snapshots), so each is a leak.
    pub fn leaked_snapshots(&self) -> Vec<&str> {
        self.snapshots
            .iter()
            .filter(|s| !self.state_snapshots.contains(s))
            .map(String::as_str)
            .collect()
    }
}

/// Servers pgsurge manages on a node (by name prefix), sorted.
pub fn managed_servers(node: &HaproxyNode) -> Vec<String> {
    let mut v: Vec<String> = node
        .servers_state()
        .keys()
        .filter(|n| n.starts_with(&format!("pgsurge-{CLUSTER}-")))
        .cloned()
        .collect();
    v.sort();
    v
}

/// The loopback port a replica serves on (from its recorded `host:port`).
pub fn replica_port(r: &Replica) -> u16 {
    let address = r.address.as_deref().expect("a replica with an address");
    address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("not host:port: {address}"))
}

#[cfg(test)]
mod tests {
    use super::Everywhere;

    fn seen(snapshots: &[&str], state_snapshots: &[&str]) -> Everywhere {
        let two = vec!["pgsurge-e2e-a".to_string(), "pgsurge-e2e-b".to_string()];
        Everywhere {
            servers: two.clone(),
            volumes: two.clone(),
            state: two.clone(),
            snapshots: snapshots.iter().map(|s| s.to_string()).collect(),
            state_snapshots: state_snapshots.iter().map(|s| s.to_string()).collect(),
            h1: two.clone(),
            h2: two,
        }
    }

    #[test]
    fn a_snapshot_the_state_does_not_record_is_a_leak_and_a_disagreement() {
        assert!(seen(&["s1"], &["s1"]).agree_on(2));
        // Recorded but already gone from the pool: rotation copes, nothing leaks.
        assert!(seen(&[], &["s1"]).agree_on(2));
        let leaked = seen(&["s1", "s2"], &["s1"]);
        assert_eq!(leaked.leaked_snapshots(), ["s2"]);
        assert!(!leaked.agree_on(2));
    }
}
