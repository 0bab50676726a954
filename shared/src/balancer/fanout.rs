//! Fan-out: every HAProxy node gets the same change.
//!
//! Reads are balanced by HAProxy pairs in several data centres; a replica must be in
//! all of them or in none. A change is applied to every node concurrently and reported
//! per node. A node that fails (down, restarting, refusing) does not hold the others
//! back: it is marked for repair, and the next call that reaches it converges it to the
//! whole desired set ([`super::Balancer::apply`]) instead of replaying one step. That is
//! level-triggered, so it also heals a node that reloaded and forgot its dynamic servers.
//!
//! The desired set and the repair marks live in memory, for one invocation: the
//! orchestration (`ops`) builds a fresh fan-out per step with the desired set derived
//! from the cluster state, and does **not** persist the marks. It does not need to:
//! every reconcile converges *all* nodes ([`FanOut::converge_all`]), so a node that one
//! invocation could not reach is converged by the next reconcile whatever it missed.
//! [`FanOut::needs_repair`] and the per-node [`Report`] say which nodes were missed
//! (logged, and in the operation's report); [`FanOut::with_needs_repair`] seeds marks
//! for a caller that keeps one fan-out across calls or persists them itself.

use super::dataplane::{ApiVersion, DataPlane, DataPlaneConfig};
use super::runtime_api::{RuntimeApi, SocketAddr};
use super::{AdminState, Balancer, BalancerError, DesiredSet, Result, ServerSpec, ServerStatus};
use crate::balancer::HaproxyConfig;
use futures::future::join_all;
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What happened on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeReport {
    pub node: String,
    /// `Ok(detail)` or the node's error.
    #[serde(serialize_with = "ser_result")]
    pub result: std::result::Result<String, BalancerError>,
    /// The node was converged to the whole desired set (it was marked for repair).
    pub repaired: bool,
}

fn ser_result<S: serde::Serializer>(
    r: &std::result::Result<String, BalancerError>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match r {
        Ok(d) => s.serialize_str(&format!("ok: {d}")),
        Err(e) => s.serialize_str(&format!("error: {e}")),
    }
}

/// One fan-out call: per node, and which nodes are left to repair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub op: String,
    pub nodes: Vec<NodeReport>,
    pub needs_repair: Vec<String>,
}

impl Report {
    pub fn all_ok(&self) -> bool {
        self.nodes.iter().all(|n| n.result.is_ok())
    }

    pub fn failed(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| n.result.is_err())
            .map(|n| n.node.as_str())
            .collect()
    }

    pub fn succeeded(&self) -> usize {
        self.nodes.iter().filter(|n| n.result.is_ok()).count()
    }
}

struct Memory {
    desired: DesiredSet,
    needs_repair: BTreeSet<String>,
}

/// Several HAProxy nodes (runtime API or Data Plane API, mixed) kept identical.
pub struct FanOut {
    nodes: Vec<Arc<dyn Balancer>>,
    memory: Mutex<Memory>,
}

#[derive(Clone)]
enum Op {
    Put(ServerSpec, AdminState),
    State(String, AdminState),
    Remove(String),
    Kill(String),
    Repair,
}

impl FanOut {
    /// One adapter per configured node (`[haproxy]`, already validated).
    pub fn from_config(cfg: &HaproxyConfig, desired: DesiredSet) -> Result<FanOut> {
        let timeout = Duration::from_secs(cfg.timeout_secs);
        let ready_wait = Duration::from_secs(cfg.ready_wait_secs);
        let mut nodes: Vec<Arc<dyn Balancer>> = Vec::new();
        // Agent-only nodes are never connected to: their agent converges them.
        for n in cfg.nodes.iter().filter(|n| n.mode.pushed()) {
            let bad =
                |m: String| BalancerError::InvalidSpec(format!("haproxy node {}: {m}", n.name));
            match (&n.runtime_api, &n.dataplane_url) {
                (Some(addr), None) => {
                    let addr = SocketAddr::parse(addr).map_err(|e| bad(e.to_string()))?;
                    nodes.push(Arc::new(
                        RuntimeApi::new(&n.name, addr, &cfg.backend)
                            .with_timeout(timeout)
                            .with_ready_wait(ready_wait),
                    ));
                }
                (None, Some(url)) => {
                    let version = match n.dataplane_version.as_deref() {
                        None | Some("auto") => None,
                        Some("v2") => Some(ApiVersion::V2),
                        Some("v3") => Some(ApiVersion::V3),
                        Some(other) => return Err(bad(format!("unknown version {other}"))),
                    };
                    let password = n
                        .dataplane_password
                        .clone()
                        .or_else(|| cfg.dataplane_password.clone())
                        .ok_or_else(|| bad("no Data Plane API password".into()))?;
                    nodes.push(Arc::new(DataPlane::new(DataPlaneConfig {
                        node: n.name.clone(),
                        url: url.clone(),
                        user: n
                            .dataplane_user
                            .clone()
                            .unwrap_or_else(|| cfg.dataplane_user.clone()),
                        password,
                        backend: cfg.backend.clone(),
                        version,
                        timeout,
                        conflict_retries: 5,
                        ready_wait,
                        ca_file: n
                            .dataplane_ca_file
                            .clone()
                            .or_else(|| cfg.dataplane_ca_file.clone()),
                    })?));
                }
                _ => {
                    return Err(bad(
                        "set exactly one of runtime_api and dataplane_url".into()
                    ))
                }
            }
        }
        Ok(FanOut::new(nodes, desired))
    }

    /// `desired`: what every node should hold (from the cluster state; empty at first).
    pub fn new(nodes: Vec<Arc<dyn Balancer>>, desired: DesiredSet) -> Self {
        FanOut {
            nodes,
            memory: Mutex::new(Memory {
                desired,
                needs_repair: BTreeSet::new(),
            }),
        }
    }

    /// The node adapters, to build another fan-out with a different desired set.
    pub fn into_nodes(self) -> Vec<Arc<dyn Balancer>> {
        self.nodes
    }

    /// Mark `nodes` for repair before the first call (marks a caller kept from an
    /// earlier fan-out): their next call converges them to the whole desired set.
    pub fn with_needs_repair(self, nodes: impl IntoIterator<Item = String>) -> Self {
        self.memory.lock().unwrap().needs_repair.extend(nodes);
        self
    }

    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.node())
    }

    pub fn desired(&self) -> DesiredSet {
        self.memory.lock().unwrap().desired.clone()
    }

    pub fn needs_repair(&self) -> Vec<String> {
        self.memory
            .lock()
            .unwrap()
            .needs_repair
            .iter()
            .cloned()
            .collect()
    }

    /// Put the server on every node and set it to `state` (usually `Ready` once the
    /// replica is verified; HAProxy still waits for its health check to pass).
    pub async fn put_server(&self, spec: &ServerSpec, state: AdminState) -> Result<Report> {
        spec.validate()?;
        self.memory
            .lock()
            .unwrap()
            .desired
            .insert(spec.clone(), state);
        Ok(self
            .run(
                &format!("put {} {}", spec.name, state.as_str()),
                Op::Put(spec.clone(), state),
            )
            .await)
    }

    pub async fn set_state(&self, name: &str, state: AdminState) -> Report {
        if let Some(d) = self.memory.lock().unwrap().desired.servers.get_mut(name) {
            d.state = state;
        }
        self.run(
            &format!("set {name} {}", state.as_str()),
            Op::State(name.to_string(), state),
        )
        .await
    }

    pub async fn remove_server(&self, name: &str) -> Report {
        self.memory.lock().unwrap().desired.servers.remove(name);
        self.run(&format!("remove {name}"), Op::Remove(name.to_string()))
            .await
    }

    pub async fn kill_sessions(&self, name: &str) -> Report {
        self.run(&format!("kill sessions {name}"), Op::Kill(name.to_string()))
            .await
    }

    /// Converge the nodes marked for repair to the desired set.
    pub async fn repair(&self) -> Report {
        self.run("repair", Op::Repair).await
    }

    /// Converge every node to the desired set (reconcile after a reload).
    pub async fn converge_all(&self) -> Report {
        {
            let mut m = self.memory.lock().unwrap();
            let all: Vec<String> = self.nodes.iter().map(|n| n.node().to_string()).collect();
            m.needs_repair.extend(all);
        }
        self.run("converge", Op::Repair).await
    }

    /// Every node's view of the backend.
    pub async fn list(&self) -> Vec<(String, Result<Vec<ServerStatus>>)> {
        join_all(
            self.nodes
                .iter()
                .map(|n| async move { (n.node().to_string(), n.list_servers().await) }),
        )
        .await
    }

    async fn run(&self, op_name: &str, op: Op) -> Report {
        let (desired, marked) = {
            let m = self.memory.lock().unwrap();
            (m.desired.clone(), m.needs_repair.clone())
        };
        let results = join_all(self.nodes.iter().map(|n| {
            let repair = marked.contains(n.node());
            let (desired, op) = (&desired, op.clone());
            async move {
                let result = if repair {
                    n.apply(desired)
                        .await
                        .map(|a| format!("converged with {} action(s)", a.len()))
                } else {
                    one(n.as_ref(), op).await
                };
                (n.node().to_string(), repair, result)
            }
        }))
        .await;
        let mut m = self.memory.lock().unwrap();
        let mut nodes = Vec::new();
        for (node, repaired, result) in results {
            match &result {
                Ok(_) if repaired => {
                    m.needs_repair.remove(&node);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(node, op = op_name, error = %e, "haproxy node left for repair");
                    m.needs_repair.insert(node.clone());
                }
            }
            nodes.push(NodeReport {
                node,
                result,
                repaired,
            });
        }
        let report = Report {
            op: op_name.to_string(),
            nodes,
            needs_repair: m.needs_repair.iter().cloned().collect(),
        };
        tracing::info!(
            op = op_name,
            ok = report.succeeded(),
            nodes = report.nodes.len(),
            needs_repair = ?report.needs_repair,
            "haproxy fan-out"
        );
        report
    }
}

async fn one(n: &dyn Balancer, op: Op) -> std::result::Result<String, BalancerError> {
    match op {
        Op::Put(spec, state) => {
            let outcome = n.put_server(&spec).await?;
            n.set_state(&spec.name, state).await?;
            Ok(format!("{outcome:?}, {}", state.as_str()))
        }
        Op::State(name, state) => n.set_state(&name, state).await.map(|_| "done".into()),
        Op::Remove(name) => n
            .remove_server(&name)
            .await
            .map(|gone| if gone { "removed" } else { "was absent" }.into()),
        Op::Kill(name) => match n.kill_sessions(&name).await {
            Ok(()) => Ok("done".into()),
            // Not an outage: the node just cannot do it (Data Plane API). Nothing to repair.
            Err(BalancerError::Unsupported(m)) => Ok(format!("skipped: {m}")),
            Err(e) => Err(e),
        },
        Op::Repair => Ok("not marked".into()),
    }
}

#[cfg(test)]
mod tests {
    //! The repair bookkeeping, with an in-memory node (pure logic; the real thing is
    //! tested against two HAProxy processes in tests/tests/haproxy_fanout.rs).
    use super::*;
    use crate::balancer::{plan, Action, OperState, PutOutcome};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Mem {
        name: String,
        down: AtomicBool,
        servers: Mutex<Vec<ServerStatus>>,
    }

    impl Mem {
        fn new(name: &str) -> Arc<Mem> {
            Arc::new(Mem {
                name: name.into(),
                down: AtomicBool::new(false),
                servers: Mutex::new(Vec::new()),
            })
        }
        fn check(&self) -> Result<()> {
            if self.down.load(Ordering::SeqCst) {
                Err(BalancerError::Unavailable {
                    node: self.name.clone(),
                    message: "down".into(),
                })
            } else {
                Ok(())
            }
        }
        fn names(&self) -> Vec<(String, AdminState)> {
            self.servers
                .lock()
                .unwrap()
                .iter()
                .map(|s| (s.name.clone(), s.admin))
                .collect()
        }
    }

    #[async_trait]
    impl Balancer for Mem {
        fn node(&self) -> &str {
            &self.name
        }
        async fn put_server(&self, spec: &ServerSpec) -> Result<PutOutcome> {
            self.check()?;
            let mut s = self.servers.lock().unwrap();
            if s.iter().any(|x| x.name == spec.name) {
                return Ok(PutOutcome::Unchanged);
            }
            s.push(ServerStatus {
                name: spec.name.clone(),
                address: spec.address.clone(),
                port: spec.port,
                weight: spec.weight,
                check: spec.check,
                admin: AdminState::Maint,
                oper: OperState::Up,
                sessions: 0,
                total_sessions: 0,
            });
            Ok(PutOutcome::Created)
        }
        async fn set_state(&self, name: &str, state: AdminState) -> Result<()> {
            self.check()?;
            let mut s = self.servers.lock().unwrap();
            let srv = s
                .iter_mut()
                .find(|x| x.name == name)
                .ok_or(BalancerError::NotFound {
                    backend: "b".into(),
                    server: name.into(),
                })?;
            srv.admin = state;
            Ok(())
        }
        async fn remove_server(&self, name: &str) -> Result<bool> {
            self.check()?;
            let mut s = self.servers.lock().unwrap();
            let before = s.len();
            s.retain(|x| x.name != name);
            Ok(s.len() < before)
        }
        async fn kill_sessions(&self, _name: &str) -> Result<()> {
            self.check()
        }
        async fn list_servers(&self) -> Result<Vec<ServerStatus>> {
            self.check()?;
            Ok(self.servers.lock().unwrap().clone())
        }
    }

    fn spec(name: &str) -> ServerSpec {
        ServerSpec {
            name: name.into(),
            address: "10.0.0.1".into(),
            port: 5432,
            weight: 1,
            check: true,
            slowstart_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_down_node_is_marked_and_converged_by_the_next_call() {
        let (a, b) = (Mem::new("a"), Mem::new("b"));
        let fan = FanOut::new(vec![a.clone(), b.clone()], DesiredSet::new("pgsurge-"));
        b.down.store(true, Ordering::SeqCst);
        let r = fan
            .put_server(&spec("pgsurge-c-1"), AdminState::Ready)
            .await
            .unwrap();
        assert_eq!(r.failed(), vec!["b"]);
        assert_eq!(fan.needs_repair(), vec!["b".to_string()]);
        assert_eq!(a.names(), vec![("pgsurge-c-1".into(), AdminState::Ready)]);

        // Still down: the next change reaches a, b stays marked.
        let r = fan
            .put_server(&spec("pgsurge-c-2"), AdminState::Ready)
            .await
            .unwrap();
        assert_eq!(
            (r.succeeded(), r.needs_repair.clone()),
            (1, vec!["b".to_string()])
        );
        let r = fan.remove_server("pgsurge-c-1").await;
        assert_eq!(r.failed(), vec!["b"]);

        // Back: the next call (any call) converges b to the whole desired set.
        b.down.store(false, Ordering::SeqCst);
        let r = fan.set_state("pgsurge-c-2", AdminState::Drain).await;
        assert!(r.all_ok() && r.needs_repair.is_empty(), "{r:?}");
        assert!(r.nodes.iter().any(|n| n.node == "b" && n.repaired));
        assert_eq!(a.names(), b.names());
        assert_eq!(b.names(), vec![("pgsurge-c-2".into(), AdminState::Drain)]);
        assert_eq!(fan.desired().servers.len(), 1);
    }

    #[tokio::test]
    async fn marks_survive_invocations_through_with_needs_repair() {
        let a = Mem::new("a");
        a.servers.lock().unwrap().push(ServerStatus {
            name: "pgsurge-c-old".into(),
            address: "10.0.0.9".into(),
            port: 5432,
            weight: 1,
            check: true,
            admin: AdminState::Ready,
            oper: OperState::Up,
            sessions: 0,
            total_sessions: 0,
        });
        let mut desired = DesiredSet::new("pgsurge-c-");
        desired.insert(spec("pgsurge-c-1"), AdminState::Ready);
        let fan = FanOut::new(vec![a.clone()], desired).with_needs_repair(["a".to_string()]);
        let r = fan.repair().await;
        assert!(r.all_ok() && r.needs_repair.is_empty());
        assert_eq!(a.names(), vec![("pgsurge-c-1".into(), AdminState::Ready)]);
        // Converged: a plan against it is empty.
        let current = a.list_servers().await.unwrap();
        assert_eq!(plan(&fan.desired(), &current), Vec::<Action>::new());
    }

    #[tokio::test]
    async fn an_invalid_spec_touches_no_node() {
        let a = Mem::new("a");
        let fan = FanOut::new(vec![a.clone()], DesiredSet::new("pgsurge-"));
        let bad = ServerSpec {
            name: "a;b".into(),
            ..spec("x")
        };
        assert!(matches!(
            fan.put_server(&bad, AdminState::Ready).await,
            Err(BalancerError::InvalidSpec(_))
        ));
        assert!(a.names().is_empty() && fan.desired().servers.is_empty());
    }
}
