//! `pgsurge-agent` under test: a configuration on the real Ceph RGW, the real binary,
//! and the state written the way the functions write it.

use crate::haproxy::HaproxyNode;
use crate::rgw::Rgw;
use pgsurge::balancer::runtime_api::{RuntimeApi, SocketAddr};
use pgsurge::balancer::{AdminState, Balancer, OperState};
use pgsurge::model::{ClusterState, Phase, Replica, Role};
use pgsurge::secret::Secret;
use pgsurge::state::{self, Concurrency, S3Config, StateBackend, StateConfig, StateRepo};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const CLUSTER: &str = "ag";
pub const BE: &str = "pg_read";

/// The state section for a fresh prefix on RGW, reached at `endpoint` (the gateway
/// itself, or a proxy in front of it).
pub fn state_config(r: &Rgw, endpoint: &str, prefix: &str) -> StateConfig {
    StateConfig {
        backend: StateBackend::S3,
        concurrency: Concurrency::ConditionalWrites,
        s3: S3Config {
            endpoint: endpoint.into(),
            region: "us-east-1".into(),
            bucket: r.bucket.clone(),
            prefix: prefix.into(),
            path_style: true,
            allow_http: true,
            access_key_id: Some(r.access_key.clone()),
            secret_access_key: Some(Secret::new(r.secret_key.clone())),
            session_token: None,
            timeout_secs: 5,
        },
        ..StateConfig::default()
    }
}

pub fn unique(label: &str) -> String {
    format!("it-agent-{label}-{}", uuid::Uuid::new_v4().simple())
}

/// A node as the configuration lists it: (node, mode).
pub struct NodeEntry<'a>(pub &'a HaproxyNode, pub &'a str);

/// The whole configuration file of an agent (and of the functions, which share it).
pub fn config_text(
    r: &Rgw,
    endpoint: &str,
    prefix: &str,
    nodes: &[NodeEntry],
    agent_node: &str,
    listen_port: u16,
    interval_ms: u64,
) -> String {
    let mut t = format!(
        r#"[cluster]
name = "{CLUSTER}"
[state]
backend = "s3"
[state.s3]
endpoint = "{endpoint}"
region = "us-east-1"
bucket = "{bucket}"
prefix = "{prefix}"
path_style = true
allow_http = true
access_key_id = "{ak}"
secret_access_key = "{sk}"
timeout_secs = 5
[haproxy]
backend = "{BE}"
slowstart_secs = 1
drain_deadline_secs = 10
ready_wait_secs = 15
[agent]
node = "{agent_node}"
interval_ms = {interval_ms}
listen = "127.0.0.1:{listen_port}"
status_every_secs = 5
"#,
        bucket = r.bucket,
        ak = r.access_key,
        sk = r.secret_key,
    );
    for NodeEntry(n, mode) in nodes {
        t.push_str(&format!(
            "[[haproxy.nodes]]\nname = \"{}\"\nruntime_api = \"{}\"\nmode = \"{mode}\"\n",
            n.name,
            n.socket.display()
        ));
    }
    t
}

/// Write the configuration and start `pgsurge-agent` on it (killed on drop). Its log
/// goes to `<dir>/agent-<name>.log`.
pub fn spawn_agent(dir: &Path, name: &str, config: &str) -> (crate::Proc, PathBuf) {
    let cfg = dir.join(format!("agent-{name}.toml"));
    std::fs::write(&cfg, config).unwrap();
    let log = dir.join(format!("agent-{name}.log"));
    let mut cmd = crate::command(
        "pgsurge-agent",
        &["--config", cfg.to_str().unwrap()],
        &[("RUST_LOG", "info".into())],
    );
    // The log goes to stderr (tracing); stdout carries nothing.
    cmd.stderr(std::fs::File::create(&log).unwrap());
    cmd.stdout(std::process::Stdio::null());
    (crate::Proc::spawn_cmd(&mut cmd), log)
}

/// A surge replica as instance-ready leaves it (`serving`) or scale-down (`draining`).
pub fn replica(id: &str, port: u16, phase: Phase) -> Replica {
    Replica {
        id: id.into(),
        role: Role::Surge,
        phase,
        server_id: Some(format!("srv-{id}")),
        volume_id: None,
        az: None,
        address: Some(format!("127.0.0.1:{port}")),
        created_at: time::OffsetDateTime::now_utc(),
        op_id: None,
        since: Default::default(),
        extra: Default::default(),
    }
}

/// Replace the surge replicas in the state (by compare-and-swap, as the functions do).
pub async fn set_replicas(repo: &StateRepo, replicas: Vec<Replica>) -> ClusterState {
    repo.update(time::OffsetDateTime::now_utc(), |s| {
        s.replicas = replicas.clone();
        Ok::<_, ()>(())
    })
    .await
    .expect("state update")
    .1
    .state
}

pub async fn open_repo(cfg: &StateConfig) -> StateRepo {
    state::open(cfg, CLUSTER, None).await.expect("open state")
}

/// The node through the library adapter, for assertions.
pub fn runtime(node: &HaproxyNode) -> RuntimeApi {
    RuntimeApi::new(&node.name, SocketAddr::Unix(node.socket.clone()), BE)
}

/// Managed servers on the node: name → (admin, oper).
pub async fn managed(node: &HaproxyNode) -> BTreeMap<String, (AdminState, OperState)> {
    managed_in(node, CLUSTER).await
}

/// [`managed`] for another cluster's servers.
pub async fn managed_in(
    node: &HaproxyNode,
    cluster: &str,
) -> BTreeMap<String, (AdminState, OperState)> {
    runtime(node)
        .list_servers()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.name.starts_with(&format!("pgsurge-{cluster}-")))
        .map(|s| (s.name, (s.admin, s.oper)))
        .collect()
}

/// The managed servers that are ready (taking new sessions).
pub async fn ready(node: &HaproxyNode) -> Vec<String> {
    ready_in(node, CLUSTER).await
}

/// [`ready`] for another cluster's servers.
pub async fn ready_in(node: &HaproxyNode, cluster: &str) -> Vec<String> {
    managed_in(node, cluster)
        .await
        .into_iter()
        .filter(|(_, (a, _))| *a == AdminState::Ready)
        .map(|(n, _)| n)
        .collect()
}

/// Poll until `f` holds (every 50 ms); the time it took, or a panic naming `what`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    loop {
        if f().await {
            return t.elapsed();
        }
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub use crate::pg::{pgbench, pgbench_result};

/// `GET url` → body (panics on a transport error).
pub async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    (r.status().as_u16(), r.text().await.unwrap())
}

/// One metric's value from a Prometheus text (summed over labels).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// A TCP proxy on loopback in front of a service, that can be stopped (the service
/// looks down: connections refused, open ones cut) and started again on the same port.
pub struct Proxy {
    pub port: u16,
    target: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(target: &str) -> Proxy {
        let mut p = Proxy {
            port: crate::free_port(),
            target: target.to_string(),
            task: None,
        };
        p.resume().await;
        p
    }

    /// Listen again on the same port.
    pub async fn resume(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("proxy port");
        let target = self.target.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropped with the accept loop when the proxy stops: open connections end too.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let target = target.clone();
                conns.spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        }));
    }

    /// Stop listening and cut every open connection.
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
