//! The `Balancer` port: put PostgreSQL replicas into an HAProxy backend, move them
//! between ready / drain / maint, remove them, and see what every node is doing.
//!
//! Two adapters speak to one HAProxy node each:
//! * [`runtime_api::RuntimeApi`] — the admin socket (unix or TCP), with dynamic servers
//!   (`add server` / `del server`). Changes live in the process: a reload forgets them,
//!   so the desired set is re-applied with [`Balancer::apply`] (reconcile does this).
//! * [`dataplane::DataPlane`] — the HAProxy Data Plane API, v2 or v3 (detected through
//!   `/info`): configuration servers with `version` / transactions, state changes
//!   through the runtime endpoints (no reload).
//!
//! [`fanout::FanOut`] applies one change to every node and reports per node; a node
//! that is down is marked for repair and converged by a later call. [`drain`] is the
//! scale-down sequence: drain, wait for sessions to end or a deadline, maint, remove.
//!
//! Pure decisions ([`plan`], [`ServerSpec::validate`], the drain step) are separate from
//! the I/O, so they are unit-tested without HAProxy; the adapters are tested against a
//! real HAProxy 2.6 (runtime API) and the official Data Plane API specs (contract tests).

mod config;
pub use config::{HaproxyConfig, HaproxyNodeConfig};
pub mod dataplane;
pub mod drain;
pub mod fanout;
pub mod mode;
pub mod runtime_api;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The largest weight HAProxy accepts.
pub const MAX_WEIGHT: u16 = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BalancerError {
    /// Bad input: nothing was sent to HAProxy.
    #[error("invalid server spec: {0}")]
    InvalidSpec(String),
    #[error("no server {server} in backend {backend}")]
    NotFound { backend: String, server: String },
    #[error("no backend {0}")]
    NoBackend(String),
    /// The server exists with settings that cannot be changed in place (address, port,
    /// health check); remove it first. Or a configuration version conflict that did
    /// not resolve after re-reading.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The server still carries sessions or is not in maintenance: try again later,
    /// or end the sessions ([`Balancer::kill_sessions`]).
    #[error("busy: {0}")]
    Busy(String),
    /// The HAProxy setup cannot do what was asked (static load-balancing algorithm,
    /// an HAProxy without dynamic servers, ...). Fix the configuration.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The node did not answer (connection refused, timeout, 5xx). Retry later; a
    /// [`fanout::FanOut`] marks the node for repair.
    #[error("node {node} unavailable: {message}")]
    Unavailable { node: String, message: String },
    #[error("authentication refused by {0}")]
    Auth(String),
    /// HAProxy or the API refused the command with a message we do not classify.
    #[error("rejected by HAProxy: {0}")]
    Rejected(String),
    /// An answer we cannot read.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl BalancerError {
    /// Worth trying again later without changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BalancerError::Unavailable { .. } | BalancerError::Busy(_)
        )
    }
}

pub type Result<T> = std::result::Result<T, BalancerError>;

/// One server as pgsurge wants it in the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSpec {
    /// HAProxy server name: the replica's name (`pgsurge-<cluster>-<replica>`).
    pub name: String,
    /// IPv4 or IPv6 address literal (no host name: see [`ServerSpec::validate`]).
    pub address: String,
    pub port: u16,
    /// 0..=256.
    pub weight: u16,
    /// Health check on (the backend's check: `option pgsql-check`).
    pub check: bool,
    /// Ramp the weight up over this many milliseconds after the server comes up
    /// (0 = none). HAProxy does not report it back, so it is applied on creation and
    /// not compared afterwards.
    pub slowstart_ms: u64,
}

impl ServerSpec {
    /// A replica's server with the configured defaults (weight, check, slowstart).
    pub fn from_config(cfg: &HaproxyConfig, name: &str, address: &str, port: u16) -> ServerSpec {
        ServerSpec {
            name: name.to_string(),
            address: address.to_string(),
            port,
            weight: cfg.weight,
            check: cfg.check,
            slowstart_ms: cfg.slowstart_secs * 1000,
        }
    }

    /// Checks made before anything is sent: a bad spec never reaches HAProxy.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BalancerError::InvalidSpec(m));
        validate_name(&self.name)?;
        // An IP literal only: HAProxy reports a server by its *resolved* address
        // (`show servers state`), so a host name would never match what we put, and
        // every second put would be a conflict instead of a no-op. The cloud gives IPs.
        if self.address.parse::<std::net::IpAddr>().is_err() {
            return bad(format!(
                "{}: address {:?} is not an IP address (host names are not accepted: \
                 HAProxy reports the resolved address, so the server could never be \
                 recognised as unchanged)",
                self.name, self.address
            ));
        }
        if self.port == 0 {
            return bad(format!("{}: port 0", self.name));
        }
        if self.weight > MAX_WEIGHT {
            return bad(format!(
                "{}: weight {} is outside 0..={MAX_WEIGHT}",
                self.name, self.weight
            ));
        }
        if self.slowstart_ms > 24 * 3600 * 1000 {
            return bad(format!(
                "{}: slowstart {} ms is over a day",
                self.name, self.slowstart_ms
            ));
        }
        Ok(())
    }
}

/// A server name is spliced into admin-socket commands and URL paths: only
/// `A-Z a-z 0-9 - _ .` (1-64 chars), so no `;`, space or newline can smuggle in a command.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(BalancerError::InvalidSpec(format!(
            "name {name:?} must be 1-64 chars of A-Z a-z 0-9 - _ ."
        )))
    }
}

/// The administrative state pgsurge sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// Takes new sessions (once its health check says up).
    Ready,
    /// Keeps its sessions, takes no new ones.
    Drain,
    /// Out of rotation.
    Maint,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
}

/// What HAProxy's checks say about the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperState {
    Up,
    /// Up and ramping its weight (slowstart).
    Starting,
    Stopping,
    Down,
}

/// One server as a node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub weight: u16,
    pub check: bool,
    pub admin: AdminState,
    pub oper: OperState,
    /// Sessions open right now (`scur`).
    pub sessions: u64,
    /// Sessions since the server was created (`stot`).
    pub total_sessions: u64,
}

impl ServerStatus {
    /// Does the running server already have these settings (slowstart aside)?
    pub fn matches(&self, spec: &ServerSpec) -> bool {
        same_address(&self.address, &spec.address)
            && self.port == spec.port
            && self.weight == spec.weight
            && self.check == spec.check
    }

    /// Only the weight differs: changed in place, no re-creation.
    pub fn only_weight_differs(&self, spec: &ServerSpec) -> bool {
        same_address(&self.address, &spec.address)
            && self.port == spec.port
            && self.check == spec.check
            && self.weight != spec.weight
    }
}

/// Addresses compared as IPs when both parse (`fd00:0::7` is `fd00::7`), else as text.
fn same_address(reported: &str, wanted: &str) -> bool {
    match (
        reported.parse::<std::net::IpAddr>(),
        wanted.parse::<std::net::IpAddr>(),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => reported == wanted,
    }
}

/// What `put_server` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PutOutcome {
    /// Added (in maintenance: not routable until set ready).
    Created,
    /// Existed; its weight was changed.
    Updated,
    /// Existed with the same settings: nothing sent.
    Unchanged,
}

/// One server and the state it should be in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredServer {
    pub spec: ServerSpec,
    pub state: AdminState,
}

/// The servers pgsurge manages in one backend, as every node should have them.
///
/// Servers whose name starts with `managed_prefix` and that are not in `servers` are
/// removed by [`Balancer::apply`]; other servers (the base replicas declared in
/// haproxy.cfg) are never touched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredSet {
    pub managed_prefix: String,
    pub servers: BTreeMap<String, DesiredServer>,
}

impl DesiredSet {
    /// The desired set of one cluster: it manages the servers named
    /// `pgsurge-<cluster>-*` (see [`crate::model::resource_name`]).
    pub fn for_cluster(cluster: &str) -> Self {
        DesiredSet::new(crate::model::resource_name(cluster, ""))
    }

    pub fn new(managed_prefix: impl Into<String>) -> Self {
        DesiredSet {
            managed_prefix: managed_prefix.into(),
            servers: BTreeMap::new(),
        }
    }

    pub fn insert(&mut self, spec: ServerSpec, state: AdminState) {
        self.servers
            .insert(spec.name.clone(), DesiredServer { spec, state });
    }

    pub fn is_managed(&self, name: &str) -> bool {
        !self.managed_prefix.is_empty() && name.starts_with(&self.managed_prefix)
    }
}

/// One step that brings a node to its desired set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Put { spec: ServerSpec },
    SetState { name: String, state: AdminState },
    Remove { name: String },
}

/// Pure: the actions that turn `current` into `desired`, in a safe order (puts and
/// state changes first, removals last, each server's put before its state).
pub fn plan(desired: &DesiredSet, current: &[ServerStatus]) -> Vec<Action> {
    let by_name: BTreeMap<&str, &ServerStatus> =
        current.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut actions = Vec::new();
    for d in desired.servers.values() {
        match by_name.get(d.spec.name.as_str()) {
            None => {
                actions.push(Action::Put {
                    spec: d.spec.clone(),
                });
                // A new server starts in maint: only ask for a change.
                if d.state != AdminState::Maint {
                    actions.push(Action::SetState {
                        name: d.spec.name.clone(),
                        state: d.state,
                    });
                }
            }
            Some(cur) => {
                if !cur.matches(&d.spec) {
                    actions.push(Action::Put {
                        spec: d.spec.clone(),
                    });
                }
                if cur.admin != d.state {
                    actions.push(Action::SetState {
                        name: d.spec.name.clone(),
                        state: d.state,
                    });
                }
            }
        }
    }
    for s in current {
        if desired.is_managed(&s.name) && !desired.servers.contains_key(&s.name) {
            actions.push(Action::Remove {
                name: s.name.clone(),
            });
        }
    }
    actions
}

/// One HAProxy node's backend, seen through one API.
#[async_trait]
pub trait Balancer: Send + Sync {
    /// The node's name, for reports and logs.
    fn node(&self) -> &str;

    /// Add the server, or leave it as it is when it already has these settings.
    /// A new server starts in maintenance with its health check running, so no session
    /// reaches it before [`Balancer::set_state`] makes it ready; leaving maintenance
    /// waits for HAProxy's own health check to have passed. A different weight is changed in place; a
    /// different address, port or check is a [`BalancerError::Conflict`].
    async fn put_server(&self, spec: &ServerSpec) -> Result<PutOutcome>;

    async fn set_state(&self, name: &str, state: AdminState) -> Result<()>;

    /// Put the server in maintenance and delete it. `Ok(false)` when it was already
    /// absent. [`BalancerError::Busy`] while it still carries sessions (drain first).
    async fn remove_server(&self, name: &str) -> Result<bool>;

    /// End the sessions the server still carries (a drain that hit its deadline).
    async fn kill_sessions(&self, name: &str) -> Result<()>;

    /// Every server in the backend with its settings, states and session counters.
    async fn list_servers(&self) -> Result<Vec<ServerStatus>>;

    /// Bring the node to `desired` (re-apply after a reload, repair after an outage):
    /// list, [`plan`], execute. Returns the actions taken.
    async fn apply(&self, desired: &DesiredSet) -> Result<Vec<Action>> {
        for d in desired.servers.values() {
            d.spec.validate()?;
        }
        let current = self.list_servers().await?;
        let actions = plan(desired, &current);
        execute(self, &actions).await?;
        Ok(actions)
    }
}

/// Run [`plan`]'s actions in order on one node, stopping at the first error.
pub async fn execute<B: Balancer + ?Sized>(node: &B, actions: &[Action]) -> Result<()> {
    for a in actions {
        match a {
            Action::Put { spec } => {
                node.put_server(spec).await?;
            }
            Action::SetState { name, state } => node.set_state(name, *state).await?,
            Action::Remove { name } => {
                node.remove_server(name).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, port: u16) -> ServerSpec {
        ServerSpec {
            name: name.into(),
            address: "127.0.0.1".into(),
            port,
            weight: 100,
            check: true,
            slowstart_ms: 0,
        }
    }

    fn status(s: &ServerSpec, admin: AdminState) -> ServerStatus {
        ServerStatus {
            name: s.name.clone(),
            address: s.address.clone(),
            port: s.port,
            weight: s.weight,
            check: s.check,
            admin,
            oper: OperState::Up,
            sessions: 0,
            total_sessions: 0,
        }
    }

    #[test]
    fn specs_are_validated_before_anything_is_sent() {
        spec("pgsurge-c-r1", 5432).validate().unwrap();
        ServerSpec {
            address: "fd00::7".into(),
            ..spec("pgsurge-c-r1", 5432)
        }
        .validate()
        .unwrap();
        let cases = [
            (
                ServerSpec {
                    name: "".into(),
                    ..spec("x", 1)
                },
                "name",
            ),
            (
                ServerSpec {
                    name: "a b".into(),
                    ..spec("x", 1)
                },
                "name",
            ),
            (
                ServerSpec {
                    name: "a;del".into(),
                    ..spec("x", 1)
                },
                "name",
            ),
            (
                ServerSpec {
                    address: "1.2.3.4 check".into(),
                    ..spec("x", 1)
                },
                "address",
            ),
            (
                ServerSpec {
                    address: "db1.example.net".into(),
                    ..spec("x", 1)
                },
                "\"db1.example.net\" is not an IP address",
            ),
            (
                ServerSpec {
                    address: "localhost".into(),
                    ..spec("x", 1)
                },
                "\"localhost\" is not an IP address",
            ),
            (spec("x", 0), "port 0"),
            (
                ServerSpec {
                    weight: 257,
                    ..spec("x", 1)
                },
                "weight 257",
            ),
        ];
        for (s, needle) in cases {
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{s:?}: {e}");
        }
    }

    #[test]
    fn plan_adds_missing_and_sets_state() {
        let mut d = DesiredSet::new("pgsurge-");
        d.insert(spec("pgsurge-c-r1", 1), AdminState::Ready);
        d.insert(spec("pgsurge-c-r2", 2), AdminState::Maint);
        let a = plan(&d, &[]);
        assert_eq!(
            a,
            vec![
                Action::Put {
                    spec: spec("pgsurge-c-r1", 1)
                },
                Action::SetState {
                    name: "pgsurge-c-r1".into(),
                    state: AdminState::Ready
                },
                Action::Put {
                    spec: spec("pgsurge-c-r2", 2)
                },
            ]
        );
    }

    #[test]
    fn plan_is_empty_when_converged_and_removes_only_managed_strays() {
        let mut d = DesiredSet::new("pgsurge-");
        let r1 = spec("pgsurge-c-r1", 1);
        d.insert(r1.clone(), AdminState::Drain);
        let current = vec![
            status(&r1, AdminState::Drain),
            status(&spec("base-1", 9), AdminState::Ready),
            status(&spec("pgsurge-c-old", 3), AdminState::Ready),
        ];
        assert_eq!(
            plan(&d, &current),
            vec![Action::Remove {
                name: "pgsurge-c-old".into()
            }]
        );
        let current = vec![status(&r1, AdminState::Drain)];
        assert!(plan(&d, &current).is_empty());
    }

    #[test]
    fn plan_reputs_changed_settings_and_fixes_state() {
        let mut d = DesiredSet::new("pgsurge-");
        let r1 = spec("pgsurge-c-r1", 1);
        d.insert(
            ServerSpec {
                weight: 10,
                ..r1.clone()
            },
            AdminState::Ready,
        );
        let current = vec![status(&r1, AdminState::Maint)];
        assert_eq!(
            plan(&d, &current),
            vec![
                Action::Put {
                    spec: ServerSpec {
                        weight: 10,
                        ..r1.clone()
                    }
                },
                Action::SetState {
                    name: r1.name.clone(),
                    state: AdminState::Ready
                },
            ]
        );
        let s = status(&r1, AdminState::Ready);
        assert!(s.matches(&r1));
        assert!(s.only_weight_differs(&ServerSpec {
            weight: 5,
            ..r1.clone()
        }));
        assert!(!s.only_weight_differs(&ServerSpec {
            port: 5,
            weight: 5,
            ..r1
        }));
    }

    #[test]
    fn addresses_match_as_ips() {
        let v6 = ServerSpec {
            address: "fd00::7".into(),
            ..spec("pgsurge-c-r1", 1)
        };
        let reported = ServerStatus {
            address: "fd00:0:0::7".into(),
            ..status(&v6, AdminState::Ready)
        };
        assert!(reported.matches(&v6));
        assert!(!reported.matches(&spec("pgsurge-c-r1", 1)));
    }

    #[test]
    fn empty_prefix_manages_nothing() {
        let d = DesiredSet::new("");
        assert!(!d.is_managed("anything"));
        assert!(plan(&d, &[status(&spec("x", 1), AdminState::Ready)]).is_empty());
    }
}
