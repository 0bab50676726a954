//! The production path end to end on the OpenStack test cloud (issue 15): the five real
//! function binaries with `cloud.provider = "openstack"`, state on the real Ceph RGW, two
//! HAProxy nodes, Designate records, and servers that really boot the replica image.
//!
//! The cloud (`tests/openstack/up.sh`): Cinder's RBD driver on the test Ceph (volumes
//! hold bytes; a snapshot is an RBD snapshot, a clone a copy-on-write RBD clone), and
//! Nova's qemu compute (zone `qemu`, our test virt driver: qemu guests with the RBD
//! volumes attached and Nova's own config drive), their NICs on a bridge inside the
//! network namespace `pgsurge-os` (addresses from Neutron, configured in the guest from
//! the config drive's `network_data.json`). The primary and instance-ready's HTTP host
//! stay on loopback; the guests reach them through relays at the subnet's gateway
//! address (`pgsurge_tests::netns`).
//!
//! Flow: a primary with the catalog dataset under a write load; a base replica made as
//! people make one (pg_basebackup onto an RBD volume, a server from the image) and
//! registered with `pgsurge base add`; `pgbench -S -C` through both nodes throughout;
//! Alertmanager alarm → scale-up → two servers boot, catch up, call instance-ready back
//! → serving on both nodes → scale-down alarm → drained, removed, servers, volumes and
//! DNS records deleted → nothing left in Nova, Cinder, Designate, the state or HAProxy;
//! `pgsurge status` agrees after each step.

use pgsurge::cloud::openstack::request::{Request, ServiceType};
use pgsurge::cloud::openstack::{DnsZoneType, OpenStack, OpenStackConfig};
use pgsurge::cloud::{Cloud, Filter, META_CLUSTER, META_ROLE};
use pgsurge::config::Config;
use pgsurge::model::{ClusterState, Phase, Role};
use pgsurge_tests::haproxy::{BackendSpec, HaproxyNode};
use pgsurge_tests::netns::{gateway, loopback, Relay, NETNS};
use pgsurge_tests::os_vm::{self, psql_host};
use pgsurge_tests::pg::{pgbench, Pg, Scratch};
use pgsurge_tests::{command, free_port, rgw, serve_function, vm, Proc};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLUSTER: &str = "e2e-os";
const REPL_PASSWORD: &str = "pgsurge-test-replication"; // baked into the test image
const CALLBACK_SECRET: &str = "e2e-openstack-callback-secret-0123456789";
const TOKEN: &str = "e2e-openstack-token-0123456789";

fn clouds_yaml() -> PathBuf {
    let p = os_vm::os_dir().join("clouds.yaml");
    assert!(
        p.exists(),
        "OpenStack test cloud not found ({} missing): start it as root with \
         `tests/openstack/up.sh` (after infra/s3/rgw-up.sh; `just test` does both)",
        p.display()
    );
    p
}

async fn connect(cloud: &str, image: &str) -> OpenStack {
    let cfg = OpenStackConfig {
        cloud: cloud.into(),
        clouds_yaml: Some(clouds_yaml()),
        flavor: os_vm::FLAVOR.into(),
        image: image.into(),
        network: os_vm::NETWORK.into(),
        security_groups: vec!["pgsurge-pg".into()],
        availability_zone: os_vm::ZONE.into(),
        dns_zone: "db.pgsurge.test.".into(),
        // uploads of the image and Nova's create on a loaded 2-core box
        request_timeout_secs: 600,
        ..OpenStackConfig::default()
    };
    OpenStack::connect(&cfg, None)
        .await
        .unwrap_or_else(|e| panic!("connect to the test cloud as {cloud}: {e}"))
}

/// Reads through both HAProxy nodes, a new connection per transaction, in 15 s rounds
/// until stopped. A round pgbench could not even start (no server up behind a node)
/// counts as a failure, with its message kept for the report.
struct ReadLoad {
    stop: Arc<AtomicBool>,
    totals: Arc<Mutex<(u64, u64, Vec<String>)>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ReadLoad {
    fn start(ports: &[u16]) -> ReadLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let totals = Arc::new(Mutex::new((0, 0, Vec::new())));
        let threads = ports
            .iter()
            .map(|&port| {
                let (stop, totals) = (stop.clone(), totals.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let out = pgbench(port, 10, 15).wait_with_output().unwrap();
                        let text = String::from_utf8_lossy(&out.stdout).to_string();
                        let num = |key: &str| -> Option<u64> {
                            text.lines()
                                .find_map(|l| l.trim().strip_prefix(key))
                                .and_then(|r| r.split_whitespace().next())
                                .and_then(|v| v.parse().ok())
                        };
                        let mut t = totals.lock().unwrap();
                        match (
                            num("number of transactions actually processed: "),
                            num("number of failed transactions: "),
                        ) {
                            (Some(ok), Some(failed)) => {
                                t.0 += ok;
                                t.1 += failed;
                            }
                            _ => {
                                t.1 += 1;
                                t.2.push(String::from_utf8_lossy(&out.stderr).to_string());
                            }
                        }
                    }
                })
            })
            .collect();
        ReadLoad {
            stop,
            totals,
            threads,
        }
    }

    /// (processed, failed, errors of rounds that could not start).
    fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let t = self.totals.lock().unwrap();
        (t.0, t.1, t.2.clone())
    }
}

struct Env {
    rt: tokio::runtime::Runtime,
    cfg: PathBuf,
    os: OpenStack,
    h1: HaproxyNode,
    h2: HaproxyNode,
    root: Scratch,
}

impl Env {
    fn run(&self, function: &str, args: &[&str]) -> std::process::Output {
        let mut all = vec!["--config", self.cfg.to_str().unwrap()];
        all.extend_from_slice(args);
        command(function, &all, &[]).output().unwrap()
    }

    fn event_file(&self, function: &str, event: &Value) -> String {
        let file = self.root.0.join(format!("event-{function}.json"));
        std::fs::write(&file, event.to_string()).unwrap();
        file.to_str().unwrap().to_string()
    }

    /// Invoke a function with a failpoint armed: it must die exactly there.
    fn invoke_killed_at(&self, function: &str, event: &Value, point: &str) {
        let file = self.event_file(function, event);
        let cfg = self.cfg.to_str().unwrap();
        let out = command(
            function,
            &["--config", cfg, "invoke", "--event", &file],
            &[(pgsurge::failpoint::ENV, point.to_string())],
        )
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(&format!("failpoint {point}: aborting")),
            "{function} did not die at {point} ({}): {}\n{stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        eprintln!("killed {function} at {point}");
    }

    /// Invoke a function with an event; its JSON answer (it must succeed).
    fn invoke(&self, function: &str, event: &Value) -> Value {
        let file = self.event_file(function, event);
        let out = self.run(function, &["invoke", "--event", &file]);
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

    fn state(&self) -> ClusterState {
        let config = Config::load(Some(&self.cfg)).unwrap();
        self.rt.block_on(async {
            let repo = pgsurge::state::open(&config.state, CLUSTER, None)
                .await
                .unwrap();
            repo.load().await.unwrap().state
        })
    }

    /// `pgsurge status`: must say state, cloud and both nodes agree; printed for the log.
    fn status_agrees(&self, step: &str) -> String {
        let out = self.run("pgsurge", &["status"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        eprintln!("--- pgsurge status after {step}:\n{text}");
        assert!(
            out.status.success(),
            "pgsurge status disagrees after {step} ({}):\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// This cluster's server names on a node.
    fn on_node(node: &HaproxyNode) -> Vec<String> {
        node.servers_state()
            .into_keys()
            .filter(|n| n.starts_with(&format!("pgsurge-{CLUSTER}-")))
            .collect()
    }

    fn cloud_surge(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let surge = Filter {
            name: None,
            metadata: [
                (META_CLUSTER.to_string(), CLUSTER.to_string()),
                (META_ROLE.to_string(), "surge".to_string()),
            ]
            .into(),
        };
        let ours = Filter {
            name: None,
            metadata: [(META_CLUSTER.to_string(), CLUSTER.to_string())].into(),
        };
        self.rt.block_on(async {
            let names = |v: Vec<String>| {
                let mut v = v;
                v.sort();
                v
            };
            (
                names(
                    self.os
                        .list_servers(&surge)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|s| s.name)
                        .collect(),
                ),
                names(
                    self.os
                        .list_volumes(&surge)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|v| v.name)
                        .collect(),
                ),
                names(
                    self.os
                        .list_snapshots(&ours)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|s| s.name)
                        .collect(),
                ),
            )
        })
    }
}

/// Delete everything labelled with this test's cluster: what an earlier, killed run
/// left, and what this run leaves when it fails. Servers first; then, round after
/// round, snapshots and volumes (RBD keeps a snapshot while clones of it exist and a
/// volume while it has snapshots, so each round frees what the last one unblocked).
/// Labels only: this project's user, this test's cluster.
async fn clean_cluster(os: &OpenStack) {
    let ours = Filter {
        name: None,
        metadata: [(META_CLUSTER.to_string(), CLUSTER.to_string())].into(),
    };
    for s in os.list_servers(&ours).await.unwrap_or_default() {
        let _ = os.delete_server(&s.id).await;
        let _ = os.wait_server_gone(&s.id, Duration::from_secs(120)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let snapshots = os.list_snapshots(&ours).await.unwrap_or_default();
        let volumes = os.list_volumes(&ours).await.unwrap_or_default();
        if (snapshots.is_empty() && volumes.is_empty()) || Instant::now() > deadline {
            break;
        }
        for v in &volumes {
            let _ = os.delete_volume(&v.id).await;
        }
        for s in &snapshots {
            let _ = os.delete_snapshot(&s.id).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// Cleans the cluster's resources when the test ends, passed or failed.
struct Cleanup(Option<tokio::runtime::Runtime>, OpenStack);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.block_on(clean_cluster(&self.1));
        }
    }
}

/// The event alarm a deployment makes for instance-deleted (its name carries the
/// cluster: Aodh's body has no other place for it).
const EVENT_ALARM: &str = "replica-server-deleted pgsurge.cluster=e2e-os";

/// Aodh's API as the project's user (plain HTTP with the session's Keystone token).
struct Aodh {
    base: String,
    token: String,
    rt: tokio::runtime::Handle,
}

impl Aodh {
    fn new(env: &Env) -> Aodh {
        let token = env.os.session_token().expect("a Keystone token");
        Aodh {
            base: "http://127.0.0.1:8042/v2".into(),
            token: token.expose().to_string(),
            rt: env.rt.handle().clone(),
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.rt.block_on(async {
            let mut req = reqwest::Client::new()
                .request(method, format!("{}{path}", self.base))
                .header("X-Auth-Token", &self.token);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let r = req.send().await.unwrap_or_else(|e| {
                panic!("Aodh API {path}: {e} (is aodh-api up? tests/openstack/up.sh)")
            });
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        })
    }

    /// An event alarm on every `compute.instance.delete.end` of the project, repeating
    /// its action for each event; its id.
    fn create_event_alarm(&self, name: &str, action: &str) -> String {
        let (status, v) = self.call(
            reqwest::Method::POST,
            "/alarms",
            Some(json!({
                "name": name, "type": "event", "repeat_actions": true,
                "event_rule": {"event_type": "compute.instance.delete.end", "query": []},
                "alarm_actions": [action]
            })),
        );
        assert_eq!(status, 201, "create the event alarm: {v}");
        v["alarm_id"].as_str().expect("alarm id").to_string()
    }

    fn delete_named(&self, name: &str) {
        let (_, list) = self.call(reqwest::Method::GET, "/alarms", None);
        for a in list.as_array().into_iter().flatten() {
            if a["name"] == name {
                let id = a["alarm_id"].as_str().unwrap();
                self.call(reqwest::Method::DELETE, &format!("/alarms/{id}"), None);
            }
        }
    }

    fn history(&self, id: &str) -> String {
        self.call(reqwest::Method::GET, &format!("/alarms/{id}/history"), None)
            .1
            .to_string()
    }
}

/// While held, the qemu compute fails every spawn (its driver's test fault), so Nova
/// puts new servers in ERROR. Disarmed on drop, also when the test fails.
struct SpawnFault(PathBuf);

impl SpawnFault {
    fn arm() -> SpawnFault {
        let marker = os_vm::os_dir().join("state/nova/fail-spawn");
        std::fs::write(&marker, "e2e_openstack").unwrap();
        SpawnFault(marker)
    }
}

impl Drop for SpawnFault {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reconcile and instance-ready ticks (the timers of a deployment) until every operation
/// has recorded all its replicas (an operation stays in the state while a replica of it
/// lives), every surge replica the state knows serves, and the cloud holds exactly the
/// state's surge servers and volumes; all answers' text. Panics after 15 minutes.
fn converge(env: &Env, after: &str) -> String {
    let tick = json!({"pgsurge": 1, "kind": "tick"});
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut answers = String::new();
    loop {
        answers.push_str(&env.invoke("reconcile", &tick).to_string());
        answers.push_str(&env.invoke("instance-ready", &tick).to_string());
        let s = env.state();
        let surge: Vec<_> = s
            .replicas
            .iter()
            .filter(|r| r.role == Role::Surge)
            .collect();
        let (servers, volumes, _) = env.cloud_surge();
        let mut want: Vec<String> = surge
            .iter()
            .map(|r| pgsurge::model::resource_name(CLUSTER, &r.id))
            .collect();
        want.sort();
        let materialised = s
            .operations
            .iter()
            .all(|o| o.replicas.len() as u32 >= o.count);
        if materialised
            && surge.iter().all(|r| r.phase == Phase::Serving)
            && servers == want
            && volumes == want
        {
            eprintln!(
                "converged after {after}: {} surge replica(s) serving",
                surge.len()
            );
            return answers;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence after {after} within 900 s: state {:?} ops {:?}, cloud servers {servers:?} volumes {volumes:?}",
            surge.iter().map(|r| (&r.id, &r.phase)).collect::<Vec<_>>(),
            s.operations
        );
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// Scale-down to the base replica alone; then nothing of the surge is left anywhere.
fn back_to_base(env: &Env, alarm_name: &str) {
    let down = env.invoke("scale-down", &alarm("firing", alarm_name));
    assert_eq!(down["status"], "accepted", "{down}");
    let tick = json!({"pgsurge": 1, "kind": "tick"});
    let deadline = Instant::now() + Duration::from_secs(600);
    while !env.state().replicas.iter().all(|r| r.role == Role::Base) {
        assert!(
            Instant::now() < deadline,
            "surge replicas left: {:?}",
            env.state().replicas
        );
        env.invoke("reconcile", &tick);
        std::thread::sleep(Duration::from_secs(2));
    }
    // Scale-down forgets a replica once Nova has accepted its server's delete (204) and
    // the detached volume is deleted; Nova drops the server record a little later, after
    // the guest is torn down (seen: still listed right after, in stop 25's own CI run).
    // Wait for that, bounded: a server still there after it is a leak, and fails below.
    let listed = Instant::now();
    while !env.cloud_surge().0.is_empty() && listed.elapsed() < Duration::from_secs(180) {
        std::thread::sleep(Duration::from_secs(2));
    }
    if listed.elapsed() > Duration::from_secs(2) {
        eprintln!(
            "{alarm_name}: Nova listed deleted surge servers for {} s more",
            listed.elapsed().as_secs()
        );
    }
    assert_nothing_left(env, alarm_name);
}

/// No surge server, volume, A record or HAProxy entry; at most the kept snapshot.
fn assert_nothing_left(env: &Env, after: &str) {
    for n in [&env.h1, &env.h2] {
        assert!(
            Env::on_node(n).is_empty(),
            "after {after}: surge left on {}: {:?}",
            n.name,
            n.servers_state()
        );
        assert!(
            n.servers_state().contains_key("b1"),
            "{}: the base is gone",
            n.name
        );
    }
    let (servers, volumes, snapshots) = env.cloud_surge();
    assert!(
        servers.is_empty(),
        "after {after}: surge servers left in Nova: {servers:?}"
    );
    assert!(
        volumes.is_empty(),
        "after {after}: surge volumes left in Cinder: {volumes:?}"
    );
    assert!(
        snapshots.len() <= 1,
        "after {after}: snapshots beyond the kept one: {snapshots:?}"
    );
    let records = surge_records(env);
    assert!(
        records.is_empty(),
        "after {after}: A records left: {records:?}"
    );
}

/// This cluster's A records in the zone (only surge replicas get one).
fn surge_records(env: &Env) -> Vec<String> {
    env.rt.block_on(async {
        // discovers Designate and resolves the zone
        env.os.dns_records("probe").await.unwrap();
        let zone = env
            .os
            .caller()
            .zone_id("db.pgsurge.test.", DnsZoneType::Public)
            .await
            .unwrap();
        let sets = env
            .os
            .caller()
            .send(
                "list A records",
                Request::get(ServiceType::Dns, format!("zones/{zone}/recordsets"))
                    .query("type", "A"),
            )
            .await
            .unwrap()
            .json(Some("recordsets"))
            .unwrap();
        sets.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .filter(|n| n.starts_with(&format!("pgsurge-{CLUSTER}-")))
            .map(str::to_string)
            .collect()
    })
}

fn config_text(
    root: &Path,
    image: &str,
    primary: &Pg,
    rgw: &rgw::Rgw,
    ir_port: u16,
    nodes: &[&HaproxyNode],
) -> String {
    // Each run its own prefix in the shared bucket.
    let prefix = format!(
        "e2e-os-{}-{}",
        std::process::id(),
        root.file_name().unwrap().to_string_lossy()
    );
    let mut t = format!(
        r#"
[cluster]
name = "{CLUSTER}"
[cloud]
provider = "openstack"
[openstack]
cloud = "pgsurge"
clouds_yaml = "{clouds}"
flavor = "{flavor}"
image = "{image}"
network = "{network}"
security_groups = ["pgsurge-pg"]
availability_zone = "{zone}"
dns_zone = "db.pgsurge.test."
request_timeout_secs = 120
[postgres]
primary_host = "{gw}"
primary_port = {pport}
replication_user = "vmrepl"
password = "{REPL_PASSWORD}"
sslmode = "disable"
max_replay_lag_bytes = 16777216
max_replay_lag_secs = 60
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
[policy]
mode = "step"
step = 2
min_replicas = 1
max_replicas = 3
scale_up_cooldown_secs = 0
scale_down_cooldown_secs = 0
scale_down_step = 2
[ops]
ready_wait_secs = 0
resource_wait_secs = 300
# a killed invocation's work is taken over this soon (the fault steps)
lease_secs = 5
[node]
callback_url = "http://{gw}:{ir_port}/"
[auth]
token = "{TOKEN}"
callback_secret = "{CALLBACK_SECRET}"
[haproxy]
backend = "pg_read"
slowstart_secs = 1
drain_deadline_secs = 10
"#,
        clouds = clouds_yaml().display(),
        flavor = os_vm::FLAVOR,
        network = os_vm::NETWORK,
        zone = os_vm::ZONE,
        gw = pgsurge_tests::netns::GATEWAY,
        pport = primary.port,
        endpoint = rgw.endpoint,
        bucket = rgw.bucket,
        prefix = prefix,
        ak = rgw.access_key,
        sk = rgw.secret_key,
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

/// The base replica `b1` is UP on `node` (its health check reaches the guest).
fn wait_base_up(node: &HaproxyNode) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if node
            .stat()
            .get("b1")
            .is_some_and(|(status, _, _)| status.starts_with("UP"))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "base b1 not UP on {}: {:?}",
            node.name,
            node.stat()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn alarm(status: &str, name: &str) -> Value {
    alarm_n(status, name, None)
}

/// Alertmanager's webhook, as Prometheus' rule would send it; `replicas` as the rule's
/// `pgsurge_replicas` label. The alert's name makes its fingerprint: each alarm of the
/// test is a new one (the functions act once per alarm).
fn alarm_n(status: &str, name: &str, replicas: Option<u32>) -> Value {
    let mut labels = json!({"alertname": name, "pgsurge_cluster": CLUSTER});
    if let Some(n) = replicas {
        labels["pgsurge_replicas"] = json!(n.to_string());
    }
    json!({
        "version": "4", "status": status, "receiver": "pgsurge",
        "groupKey": format!("{{}}:{{alertname=\"{name}\"}}"),
        "commonLabels": labels.clone(),
        "alerts": [{"status": status, "labels": labels,
                    "startsAt": "2026-12-06T00:00:00Z", "fingerprint": format!("{name}-fp")}]
    })
}

/// One at a time in this binary: each world boots up to three emulated guests.
static SERIAL: Mutex<()> = Mutex::new(());

/// Everything up to a registered base replica: the replica image in Glance, the primary
/// (catalog dataset, the guests' replication role) with its relay, instance-ready's HTTP
/// host with its relay, two HAProxy nodes, the config, the base replica `b1` booted on
/// the qemu compute and registered with `pgsurge base add`, agreed by `pgsurge status`.
struct World {
    env: Env,
    primary: Pg,
    base: os_vm::BaseReplica,
    cfg: PathBuf,
    t0: Instant,
    _keep: (Relay, Relay, Proc, Cleanup),
}

impl World {
    fn start() -> World {
        let t0 = Instant::now();
        let (img, _) = vm::image(false);
        let rgw = rgw::rgw();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let image = rt.block_on(async {
            let admin = connect("pgsurge-admin", "").await;
            os_vm::ensure_replica_image(&admin, &img).await
        });
        eprintln!(
            "replica image {image} in Glance: {:.0} s",
            t0.elapsed().as_secs_f64()
        );

        // The primary, on loopback; the guests reach it at the gateway address.
        let root = Scratch::new("e2e-os");
        let primary = Pg::primary(&root.0, "primary");
        primary.generate_catalog(4500, 64);
        primary.pgbench_init();
        primary.psql(
            "postgres",
            &format!("create role vmrepl superuser login replication password '{REPL_PASSWORD}'"),
        );
        primary.prepend_hba("host all vmrepl 127.0.0.1/32 scram-sha-256");
        primary.prepend_hba("host replication vmrepl 127.0.0.1/32 scram-sha-256");
        let _primary_relay = Relay::start(NETNS, gateway(primary.port), loopback(primary.port));

        // instance-ready's HTTP host, for the guests' callbacks (through the gateway relay).
        let ir_port = free_port();
        let _ir_relay = Relay::start(NETNS, gateway(ir_port), loopback(ir_port));

        let cfg = root.0.join("pgsurge.toml");
        std::fs::write(
            &cfg,
            config_text(&root.0, &image, &primary, &rgw, ir_port, &[]),
        )
        .unwrap();
        let config = Config::load(Some(&cfg)).unwrap();
        let os = rt.block_on(connect("pgsurge", &image));
        let _cleanup = {
            let rt2 = tokio::runtime::Runtime::new().unwrap();
            let os2 = rt2.block_on(connect("pgsurge", &image));
            rt2.block_on(clean_cluster(&os2));
            Cleanup(Some(rt2), os2)
        };

        // The base replica, made the way an operator would, and declared in haproxy.cfg (base
        // replicas are the operator's: pgsurge never adds or removes them on the nodes).
        let t_base = Instant::now();
        let base = rt.block_on(os_vm::base_replica(
            &os,
            &root.0,
            &primary,
            &config.postgres,
            CLUSTER,
            "b1",
        ));
        eprintln!(
            "base replica {} ({}) at {}: {:.0} s",
            base.server.name,
            base.server.id,
            base.address,
            t_base.elapsed().as_secs_f64()
        );
        let mut backend = BackendSpec::new("pg_read", vec![]);
        // The guests are emulated (TCG) on two cores beside the whole control plane: give a
        // connect and a check the seconds a stalled guest may need, as for a remote network.
        backend.extra.push("timeout connect 5s".into());
        backend.extra.push("timeout check 5s".into());
        backend.extra.push(format!(
            "server b1 {} check inter 2s fall 5 rise 1",
            base.address
        ));
        let h1 = HaproxyNode::start(&root.0, "haproxy1", backend.clone());
        let h2 = HaproxyNode::start(&root.0, "haproxy2", backend);
        std::fs::write(
            &cfg,
            config_text(&root.0, &image, &primary, &rgw, ir_port, &[&h1, &h2]),
        )
        .unwrap();
        let env = Env {
            rt,
            cfg: cfg.clone(),
            os,
            h1,
            h2,
            root,
        };

        let ir_log = env.root.0.join("instance-ready.log");
        let _ir = serve_function("instance-ready", &cfg, ir_port, &ir_log);

        let out = env.run(
            "pgsurge",
            &[
                "base",
                "add",
                "--id",
                "b1",
                "--server",
                &base.server.id,
                "--volume",
                &base.volume.id,
                "--address",
                &base.address,
            ],
        );
        assert!(
            out.status.success(),
            "pgsurge base add: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        env.invoke("reconcile", &json!({"pgsurge": 1, "kind": "tick"}));
        for n in [&env.h1, &env.h2] {
            wait_base_up(n);
            assert!(
                Env::on_node(n).is_empty(),
                "{}: {:?}",
                n.name,
                n.servers_state()
            );
        }
        env.status_agrees("base add");
        World {
            env,
            primary,
            base,
            cfg,
            t0,
            _keep: (_primary_relay, _ir_relay, _ir, _cleanup),
        }
    }

    /// The base replica is the test's to remove (people made it).
    fn remove_base(&self) {
        self.env.rt.block_on(async {
            self.env
                .os
                .delete_server(&self.base.server.id)
                .await
                .unwrap();
            self.env
                .os
                .wait_server_gone(&self.base.server.id, Duration::from_secs(120))
                .await
                .unwrap();
        });
    }
}

#[test]
fn alarm_to_serving_vms_on_both_nodes_and_back_with_nothing_left() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let w = World::start();
    let (env, primary, t0) = (&w.env, &w.primary, w.t0);

    // A steady write load the emulated guests can replay (each is one emulated core,
    // and they share two real ones with the whole cloud): 5 transactions a second.
    let _writes = primary.start_write_load_at(2, 10, 5);
    let reads = ReadLoad::start(&[env.h1.port, env.h2.port]);

    // Alarm → two new servers booting the image → caught up → called back → serving.
    let alarm_at = Instant::now();
    let up = env.invoke("scale-up", &alarm("firing", "PgReadLoadHigh"));
    assert_eq!(up["status"], "accepted", "{up}");
    let answered = alarm_at.elapsed();
    primary.psql(
        "postgres",
        "create table after_alarm(x text); insert into after_alarm values ('written after the snapshot')",
    );
    // instance-ready's timer, as deployed: a guest that called back while still
    // replaying is verified again on the next tick.
    let tick = json!({"pgsurge": 1, "kind": "tick"});
    let mut last_tick = Instant::now();
    let deadline = alarm_at + Duration::from_secs(900);
    let serving = loop {
        if last_tick.elapsed() > Duration::from_secs(10) {
            env.invoke("instance-ready", &tick);
            last_tick = Instant::now();
        }
        let s = env.state();
        let surge: Vec<_> = s
            .replicas
            .iter()
            .filter(|r| r.role == Role::Surge)
            .collect();
        if surge.len() == 2 && surge.iter().all(|r| r.phase == Phase::Serving) {
            break alarm_at.elapsed();
        }
        if Instant::now() > deadline {
            let consoles: Vec<String> = surge
                .iter()
                .filter_map(|r| r.server_id.as_deref())
                .map(|id| format!("{id}:\n{}", os_vm::console_tail(id, 30)))
                .collect();
            panic!(
                "not 2 serving after 900 s: {:?}\ninstance-ready:\n{}\n{}",
                surge.iter().map(|r| (&r.id, &r.phase)).collect::<Vec<_>>(),
                std::fs::read_to_string(env.root.0.join("instance-ready.log")).unwrap_or_default(),
                consoles.join("\n")
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let s = env.state();
    let surge: Vec<_> = s
        .replicas
        .iter()
        .filter(|r| r.role == Role::Surge)
        .cloned()
        .collect();
    for n in [&env.h1, &env.h2] {
        assert_eq!(
            Env::on_node(n).len(),
            2,
            "2 surge on {}: {:?}",
            n.name,
            n.servers_state()
        );
    }
    for r in &surge {
        let addr = r.address.as_deref().unwrap();
        let (host, port) = addr.rsplit_once(':').unwrap();
        // a guest on the Neutron network, holding what was written after the snapshot
        assert!(host.starts_with("198.18.10."), "{addr}");
        assert_eq!(
            psql_host(host, port.parse().unwrap(), "select x from after_alarm").unwrap(),
            "written after the snapshot"
        );
        let id = r.server_id.as_deref().unwrap();
        assert!(
            os_vm::console(id).contains("instance-ready called back"),
            "{id} did not call back:\n{}",
            os_vm::console_tail(id, 30)
        );
        let server = env.rt.block_on(env.os.get_server(id)).unwrap();
        let records = env.rt.block_on(env.os.dns_records(&server.name)).unwrap();
        assert_eq!(
            records.len(),
            1,
            "one A record for {}: {records:?}",
            server.name
        );
    }
    env.status_agrees("scale-up");
    eprintln!(
        "alarm → scale-up answered {:.1} s, → 2 serving on both nodes {:.1} s",
        answered.as_secs_f64(),
        serving.as_secs_f64()
    );

    // Scale-down: drained, removed from both nodes, servers, volumes, records deleted.
    let down_at = Instant::now();
    back_to_base(env, "PgReadLoadLow");
    let down_secs = down_at.elapsed();
    let (ok, failed, errors) = reads.finish();
    env.status_agrees("scale-down");
    assert!(ok > 0, "no reads went through HAProxy");
    assert_eq!(
        failed,
        0,
        "{failed} of {} reads failed; rounds that could not start: {errors:?}",
        ok + failed
    );
    eprintln!(
        "scale-down → only the base: {:.1} s; reads through both nodes: {ok} ok, {failed} failed; total {:.0} s",
        down_secs.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );

    w.remove_base();
}

/// Faults on the real path, each from the base replica alone and back to it (each step
/// boots an emulated guest: ~6 min).
#[test]
fn faults_on_the_real_path_converge_and_leak_nothing() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let w = World::start();
    let (env, cfg) = (&w.env, &w.cfg);
    let _writes = w.primary.start_write_load_at(2, 10, 5);
    // Scale-up killed mid-clone (its volume made, no server asked for) and mid-boot (the
    // server asked for, not recorded yet): the reconcile timer converges, no duplicate,
    // nothing leaked.
    for point in ["scale_up.after_volume", "scale_up.after_server"] {
        let tag = point.replace(['.', '_'], "-");
        env.invoke_killed_at(
            "scale-up",
            &alarm_n("firing", &format!("PgReadLoadHigh-{tag}"), Some(1)),
            point,
        );
        converge(env, point);
        env.status_agrees(point);
        back_to_base(env, &format!("PgReadLoadLow-{tag}"));
    }
    // Nova puts the new server in ERROR (the qemu compute refuses to spawn it): the
    // replica is rolled back, its server and volume deleted.
    {
        let _fault = SpawnFault::arm();
        let up = env.invoke(
            "scale-up",
            &alarm_n("firing", "PgReadLoadHigh-nova-error", Some(1)),
        );
        let answers = converge(env, "a server in ERROR");
        let all = format!("{up}{answers}");
        assert!(
            all.contains("went into error"),
            "no roll-back reported: {all}"
        );
    }
    assert!(env.state().replicas.iter().all(|r| r.role == Role::Base));
    assert_nothing_left(env, "a server in ERROR");
    env.status_agrees("a server in ERROR");

    // A server deleted behind pgsurge's back: Nova's notification → Ceilometer's event →
    // Aodh's event alarm → its action, instance-deleted's webhook → the replica leaves
    // both nodes and the state. Nothing else runs meanwhile (no reconcile, no tick).
    let id_port = free_port();
    let id_log = env.root.0.join("instance-deleted.log");
    let _id = serve_function("instance-deleted", cfg, id_port, &id_log);
    let aodh = Aodh::new(env);
    aodh.delete_named(EVENT_ALARM);
    let alarm_id = aodh.create_event_alarm(
        EVENT_ALARM,
        &format!("http://pgsurge:{TOKEN}@127.0.0.1:{id_port}/"),
    );
    env.invoke(
        "scale-up",
        &alarm_n("firing", "PgReadLoadHigh-deleted-behind", Some(1)),
    );
    converge(env, "a scale-up for the deletion");
    let victim = env
        .state()
        .replicas
        .into_iter()
        .find(|r| r.role == Role::Surge)
        .expect("a serving surge replica");
    let server_id = victim.server_id.clone().unwrap();
    let deleted_at = Instant::now();
    env.rt.block_on(async {
        env.os.delete_server(&server_id).await.unwrap();
    });
    let deadline = deleted_at + Duration::from_secs(300);
    loop {
        let gone_from_state = !env.state().replicas.iter().any(|r| r.id == victim.id);
        let gone_from_nodes = [&env.h1, &env.h2]
            .iter()
            .all(|n| Env::on_node(n).is_empty());
        if gone_from_state && gone_from_nodes {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica {} still known 300 s after its server was deleted (state: {gone_from_state}, \
             nodes: {gone_from_nodes}); instance-deleted:\n{}\naodh alarm history: {}",
            victim.id,
            std::fs::read_to_string(&id_log).unwrap_or_default(),
            aodh.history(&alarm_id)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!(
        "server deleted behind pgsurge's back → out of both nodes and the state via Aodh: {:.1} s",
        deleted_at.elapsed().as_secs_f64()
    );
    assert!(
        std::fs::read_to_string(&id_log)
            .unwrap_or_default()
            .contains(&server_id),
        "instance-deleted never heard of {server_id}"
    );
    aodh.delete_named(EVENT_ALARM);
    // What the deleted server left (its data volume) is reconcile's to remove.
    converge(env, "the deletion");
    assert_nothing_left(env, "a server deleted behind pgsurge's back");
    env.status_agrees("a server deleted behind pgsurge's back");

    w.remove_base();
}
