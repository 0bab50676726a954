//! `status`: the cluster as the state, the cloud and every HAProxy node see it, with
//! every disagreement named in plain words.
//!
//! [`compare`] is pure: it takes the three views (plus the desired set derived from the
//! state) and returns a [`StatusReport`]. [`gather`] does the reads — and only reads: no
//! lease, no state write, nothing sent to a node but listing commands.
//!
//! The rules follow what the orchestration would do about each view, so "agree" means
//! "reconcile has nothing to fix":
//! * HAProxy is compared with [`desired_set`](super::desired_set): serving surge replicas
//!   `ready`, draining ones `drain`, and no other server under the managed prefix
//!   `pgsurge-<cluster>-`. Servers outside the prefix are the operator's (base replicas
//!   declared in haproxy.cfg): shown when their short name is a non-surge replica of the
//!   state, never a disagreement — [`crate::balancer::Balancer::apply`] never touches them.
//! * The cloud is compared with the ids the state records; resources tagged with the
//!   cluster that the state does not know are orphans (reconcile deletes them after a
//!   grace period). Consequences of one fault are not repeated: a replica whose server is
//!   gone is one disagreement, not also "health check down" and "volume without server".

mod gather;

pub use gather::gather;

use crate::balancer::{AdminState, DesiredSet, OperState, ServerStatus};
use crate::cloud::{self, Server, Volume, META_REPLICA};
use crate::model::{resource_name, rfc3339};
use crate::model::{ClusterState, Operation, Phase, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// One HAProxy node's backend, or why it could not be read.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub node: String,
    pub servers: Result<Vec<ServerStatus>, String>,
}

/// Everything [`compare`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Views<'a> {
    pub cluster: &'a str,
    pub state: &'a ClusterState,
    /// Servers of this cluster (tagged `pgsurge_cluster`, plus any the state records).
    pub servers: &'a [Server],
    pub volumes: &'a [Volume],
    pub snapshots: &'a [cloud::Snapshot],
    /// In the configured order of `[[haproxy.nodes]]`.
    pub nodes: &'a [NodeView],
    /// [`super::desired_set`] of `state`.
    pub desired: &'a DesiredSet,
    pub now: OffsetDateTime,
    /// No state document is stored (`state` is the empty one read in its place).
    pub state_absent: bool,
    /// An operation still working after this long is overdue (`ops.creating_deadline_secs`).
    pub operation_deadline: time::Duration,
}

/// A replica refused this many runs in a row for the same reason is one reconcile cannot
/// move: a disagreement. Fewer may be a passing condition (a node still busy draining).
pub const STUCK_AFTER_REFUSALS: u32 = 3;

/// What the cloud has for one replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "is", rename_all = "lowercase")]
pub enum CloudCell {
    Present {
        id: String,
        status: cloud::Status,
    },
    /// The state records this id; the cloud has no such resource.
    Missing {
        id: String,
    },
    /// Neither recorded nor found.
    None,
}

impl CloudCell {
    pub fn label(&self) -> String {
        match self {
            CloudCell::Present { status, .. } => match status {
                cloud::Status::Pending => "pending".into(),
                cloud::Status::Ready => "ready".into(),
                cloud::Status::Deleting => "deleting".into(),
                cloud::Status::Error => "error".into(),
                cloud::Status::Other(s) => s.clone(),
            },
            CloudCell::Missing { .. } => "MISSING".into(),
            CloudCell::None => "-".into(),
        }
    }
}

/// What one HAProxy node has for one replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "is", rename_all = "lowercase")]
pub enum NodeCell {
    Present {
        /// The server's name in the backend (`pgsurge-<cluster>-<id>`, or the short name
        /// of a base replica declared in haproxy.cfg).
        server: String,
        admin: AdminState,
        oper: OperState,
        address: String,
        port: u16,
        sessions: u64,
    },
    Absent,
    Unreachable {
        error: String,
    },
}

impl NodeCell {
    pub fn label(&self) -> String {
        match self {
            NodeCell::Present { admin, oper, .. } => {
                let oper = match oper {
                    OperState::Up => "up",
                    OperState::Starting => "starting",
                    OperState::Stopping => "stopping",
                    OperState::Down => "down",
                };
                format!("{}/{oper}", admin.as_str())
            }
            NodeCell::Absent => "absent".into(),
            NodeCell::Unreachable { .. } => "unreachable".into(),
        }
    }
}

/// One replica as every source sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaRow {
    /// Replica id (`seed`, `s<op>-1`), or the resource name when nothing names one.
    pub id: String,
    /// `None`: unknown to the state.
    pub role: Option<String>,
    pub phase: Option<String>,
    pub server: CloudCell,
    pub volume: CloudCell,
    /// What the state says clients reach it at (else the cloud's endpoint).
    pub address: Option<String>,
    /// Node name → its view, for every configured node.
    pub haproxy: BTreeMap<String, NodeCell>,
    /// This row's disagreements, in plain words.
    pub disagreements: Vec<String>,
}

/// What kind of disagreement (stable names, for scripts and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// In the desired set, not on the node.
    AbsentFromNode,
    /// On the node in another admin state than the desired set says.
    WrongStateOnNode,
    /// On the node with another address or port than the state records.
    WrongAddressOnNode,
    /// Ready on the node, but HAProxy's health check says down.
    DownOnNode,
    /// A managed server on the node that the desired set does not hold.
    NotDesired,
    /// A server in the cloud the state does not know (or not as this replica's).
    OrphanServer,
    /// A volume in the cloud the state does not know.
    OrphanVolume,
    /// The state records a server the cloud does not have.
    ServerMissing,
    /// The state records a volume the cloud does not have.
    VolumeMissing,
    /// A volume whose replica should have a server by now and has none.
    VolumeWithoutServer,
    /// The server exists but is in error / being deleted while the state relies on it.
    ServerUnhealthy,
    /// The state records a snapshot the cloud does not have.
    SnapshotMissing,
    /// A snapshot of this cluster in the cloud that the state does not know.
    SnapshotOrphan,
    /// A node could not be read: agreement cannot be claimed.
    NodeUnreachable,
    /// Refused on every run: reconcile cannot move this replica.
    Stuck,
    /// An operation still working past its deadline.
    OperationOverdue,
    /// No state document, while the cloud holds resources labelled with the cluster:
    /// reconcile refuses its destructive steps.
    StateAbsent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disagreement {
    /// A replica id, a snapshot, or a node.
    pub subject: String,
    pub kind: Kind,
    pub message: String,
}

impl std::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.subject, self.message)
    }
}

/// A snapshot as the state and the cloud see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRow {
    pub id: String,
    pub name: Option<String>,
    pub in_state: bool,
    pub cloud: CloudCell,
}

/// A work lease from the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRow {
    pub kind: String,
    pub holder: String,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    /// Past `until`: void, the next invocation of that kind takes over.
    pub expired: bool,
}

/// The whole picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub cluster: String,
    /// The state document's revision that was read.
    pub revision: u64,
    /// HAProxy nodes, in configured order.
    pub nodes: Vec<String>,
    pub replicas: Vec<ReplicaRow>,
    pub disagreements: Vec<Disagreement>,
    /// Operations the state has in flight.
    pub operations: Vec<Operation>,
    pub leases: Vec<LeaseRow>,
    pub snapshots: Vec<SnapshotRow>,
    /// Servers outside the managed prefix that match no replica, per node (the
    /// operator's own; listed, never compared).
    pub unmanaged: BTreeMap<String, Vec<String>>,
}

impl StatusReport {
    pub fn agrees(&self) -> bool {
        self.disagreements.is_empty()
    }
}

/// Builds one row while the sources are folded in.
struct RowBuild<'a> {
    id: String,
    state: Option<&'a crate::model::Replica>,
    servers: Vec<&'a Server>,
    volumes: Vec<&'a Volume>,
    nodes: BTreeMap<String, NodeCell>,
}

/// Pure: compare the views and name every disagreement.
pub fn compare(v: &Views) -> StatusReport {
    let prefix = resource_name(v.cluster, "");
    let short = |name: &str| name.strip_prefix(&prefix).map(str::to_string);
    let mut rows: Vec<RowBuild> = v
        .state
        .replicas
        .iter()
        .map(|r| RowBuild {
            id: r.id.clone(),
            state: Some(r),
            servers: Vec::new(),
            volumes: Vec::new(),
            nodes: BTreeMap::new(),
        })
        .collect();
    fn row_for<'a, 'b>(rows: &'b mut Vec<RowBuild<'a>>, id: &str) -> &'b mut RowBuild<'a> {
        let i = match rows.iter().position(|r| r.id == id) {
            Some(i) => i,
            None => {
                rows.push(RowBuild {
                    id: id.to_string(),
                    state: None,
                    servers: Vec::new(),
                    volumes: Vec::new(),
                    nodes: BTreeMap::new(),
                });
                rows.len() - 1
            }
        };
        &mut rows[i]
    }
    // The replica a cloud resource belongs to: the one recording its id, else its
    // metadata, else its name, else the name itself.
    type Recorded = fn(&crate::model::Replica) -> Option<&str>;
    let owner = |id: &str, name: &str, meta: &cloud::Metadata, recorded: Recorded| {
        v.state
            .replicas
            .iter()
            .find(|r| recorded(r) == Some(id))
            .map(|r| r.id.clone())
            .or_else(|| meta.get(META_REPLICA).cloned())
            .or_else(|| short(name))
            .unwrap_or_else(|| name.to_string())
    };
    for s in v.servers {
        let id = owner(&s.id, &s.name, &s.metadata, |r| r.server_id.as_deref());
        row_for(&mut rows, &id).servers.push(s);
    }
    for vol in v.volumes {
        let id = owner(&vol.id, &vol.name, &vol.metadata, |r| {
            r.volume_id.as_deref()
        });
        row_for(&mut rows, &id).volumes.push(vol);
    }

    // HAProxy: managed names by id; other names only as a non-surge replica's short name.
    let mut disagreements = Vec::new();
    let mut unmanaged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in v.nodes {
        let servers = match &n.servers {
            Ok(s) => s,
            Err(e) => {
                disagreements.push(Disagreement {
                    subject: n.node.clone(),
                    kind: Kind::NodeUnreachable,
                    message: format!("unreachable: {e}"),
                });
                continue;
            }
        };
        for s in servers {
            let id = match short(&s.name) {
                Some(id) => id,
                None => {
                    let base = v
                        .state
                        .replicas
                        .iter()
                        .any(|r| r.id == s.name && r.role != Role::Surge);
                    if !base {
                        unmanaged
                            .entry(n.node.clone())
                            .or_default()
                            .push(s.name.clone());
                        continue;
                    }
                    s.name.clone()
                }
            };
            let row = row_for(&mut rows, &id);
            // A managed entry wins over a static one of the same replica.
            if short(&s.name).is_some() || !row.nodes.contains_key(&n.node) {
                row.nodes.insert(
                    n.node.clone(),
                    NodeCell::Present {
                        server: s.name.clone(),
                        admin: s.admin,
                        oper: s.oper,
                        address: s.address.clone(),
                        port: s.port,
                        sessions: s.sessions,
                    },
                );
            }
        }
    }
    // Rows unknown to the state after the state's own, in a stable order.
    let known = v.state.replicas.len();
    rows[known..].sort_by(|a, b| a.id.cmp(&b.id));

    let mut out_rows = Vec::new();
    for mut row in rows {
        for n in v.nodes {
            let cell = match &n.servers {
                Err(e) => NodeCell::Unreachable { error: e.clone() },
                Ok(_) => row.nodes.remove(&n.node).unwrap_or(NodeCell::Absent),
            };
            row.nodes.insert(n.node.clone(), cell);
        }
        let found = row_disagreements(v, &row, &prefix);
        let (server, volume) = cloud_cells(&row);
        let address = row.state.and_then(|r| r.address.clone()).or_else(|| {
            row.servers
                .iter()
                .find_map(|s| s.endpoint.as_ref())
                .map(|e| format!("{}:{}", e.host, e.port))
        });
        out_rows.push(ReplicaRow {
            id: row.id.clone(),
            role: row.state.map(|r| r.role.as_str().to_string()),
            phase: row.state.map(|r| r.phase.as_str().to_string()),
            server,
            volume,
            address,
            haproxy: row.nodes,
            disagreements: found.iter().map(|d| d.message.clone()).collect(),
        });
        disagreements.extend(found);
    }

    let snapshots = snapshot_rows(v, &mut disagreements);
    overdue_operations(v, &mut disagreements);
    if v.state_absent && !(v.servers.is_empty() && v.volumes.is_empty()) {
        disagreements.insert(
            0,
            Disagreement {
                subject: "state".into(),
                kind: Kind::StateAbsent,
                message: format!(
                    "no state document, but the cloud holds {} server(s) and {} volume(s) \
                     labelled {}={}: reconcile refuses to converge HAProxy or delete \
                     orphans until the document is restored",
                    v.servers.len(),
                    v.volumes.len(),
                    cloud::META_CLUSTER,
                    v.cluster
                ),
            },
        );
    }
    let leases = v
        .state
        .leases
        .iter()
        .map(|(kind, l)| LeaseRow {
            kind: kind.clone(),
            holder: l.holder.clone(),
            until: l.until,
            expired: l.until <= v.now,
        })
        .collect();
    StatusReport {
        cluster: v.cluster.to_string(),
        revision: v.state.revision,
        nodes: v.nodes.iter().map(|n| n.node.clone()).collect(),
        replicas: out_rows,
        disagreements,
        operations: v.state.operations.clone(),
        leases,
        snapshots,
        unmanaged,
    }
}

fn cloud_cells(row: &RowBuild) -> (CloudCell, CloudCell) {
    let cell = |recorded: Option<&str>, found: Vec<(&str, &cloud::Status)>| {
        let pick = recorded
            .and_then(|id| found.iter().find(|(f, _)| *f == id))
            .or(found.first());
        match (pick, recorded) {
            (Some((id, status)), _) => CloudCell::Present {
                id: id.to_string(),
                status: (*status).clone(),
            },
            (None, Some(id)) => CloudCell::Missing { id: id.to_string() },
            (None, None) => CloudCell::None,
        }
    };
    let st = row.state;
    (
        cell(
            st.and_then(|r| r.server_id.as_deref()),
            row.servers
                .iter()
                .map(|s| (s.id.as_str(), &s.status))
                .collect(),
        ),
        cell(
            st.and_then(|r| r.volume_id.as_deref()),
            row.volumes
                .iter()
                .map(|s| (s.id.as_str(), &s.status))
                .collect(),
        ),
    )
}

fn row_disagreements(v: &Views, row: &RowBuild, prefix: &str) -> Vec<Disagreement> {
    let mut out = Vec::new();
    let mut say = |kind: Kind, message: String| {
        out.push(Disagreement {
            subject: row.id.clone(),
            kind,
            message,
        })
    };
    let name = format!("{prefix}{}", row.id);
    let desired = v.desired.servers.get(&name);

    let Some(r) = row.state else {
        for s in &row.servers {
            say(
                Kind::OrphanServer,
                format!("server {} in cloud, unknown to state (orphan)", s.name),
            );
        }
        for vol in &row.volumes {
            let what = if row.servers.is_empty() {
                "volume without server"
            } else {
                "volume"
            };
            say(
                Kind::OrphanVolume,
                format!("{what} {} in cloud, unknown to state (orphan)", vol.name),
            );
        }
        for (node, cell) in &row.nodes {
            if let NodeCell::Present { server, .. } = cell {
                say(
                    Kind::NotDesired,
                    format!("{server} on {node} but not in the desired set (unknown to state)"),
                );
            }
        }
        return out;
    };

    let phase = r.phase.as_str();
    if let Some(refusal) = r.refusal().filter(|x| x.count >= STUCK_AFTER_REFUSALS) {
        say(
            Kind::Stuck,
            format!(
                "{phase} in state, and reconcile cannot move it: refused {} times in a row \
                 since {}: {}",
                refusal.count,
                rfc3339(refusal.first_at),
                refusal.reason
            ),
        );
    }
    // Deleting: server and volume going away is the plan, not a disagreement (unless it
    // never gets there: a repeated refusal, above).
    let settled = !matches!(r.phase, Phase::Deleting);
    let server_here = |id: &str| row.servers.iter().find(|s| s.id == id);
    let server_gone = match r.server_id.as_deref() {
        Some(id) => match server_here(id) {
            None => {
                if settled {
                    say(
                        Kind::ServerMissing,
                        format!("{phase} in state but server missing in cloud"),
                    );
                }
                true
            }
            Some(s) => {
                let relies = !matches!(r.phase, Phase::Deleting | Phase::Failed);
                let bad = match s.status {
                    cloud::Status::Error => Some("in error"),
                    cloud::Status::Deleting => Some("being deleted"),
                    _ => None,
                };
                if let (true, Some(bad)) = (relies, bad) {
                    say(
                        Kind::ServerUnhealthy,
                        format!("{phase} in state but server {} is {bad} in cloud", s.name),
                    );
                }
                false
            }
        },
        None => row.servers.is_empty(),
    };
    for s in &row.servers {
        if Some(s.id.as_str()) == r.server_id.as_deref() {
            continue;
        }
        // Creating: the server may exist before its id is recorded (the next run adopts it).
        if r.server_id.is_none() && r.phase == Phase::Creating {
            continue;
        }
        let why = match &r.server_id {
            Some(id) => format!("state records server {id} for it"),
            None => "state records no server for it".into(),
        };
        say(
            Kind::OrphanServer,
            format!("server {} ({}) in cloud, but {why}", s.name, s.id),
        );
    }
    match r.volume_id.as_deref() {
        Some(id) if settled && !row.volumes.iter().any(|x| x.id == id) => say(
            Kind::VolumeMissing,
            format!("{phase} in state but volume missing in cloud"),
        ),
        _ => {}
    }
    for vol in &row.volumes {
        if Some(vol.id.as_str()) == r.volume_id.as_deref() {
            continue;
        }
        if r.volume_id.is_none() && r.phase == Phase::Creating {
            continue;
        }
        say(
            Kind::OrphanVolume,
            format!(
                "volume {} ({}) in cloud, but state records {}",
                vol.name,
                vol.id,
                r.volume_id.as_deref().unwrap_or("no volume for it")
            ),
        );
    }
    // A volume should have a server once the replica is past creating; when the state
    // recorded a server that vanished, that is already said above.
    let expects_server = !matches!(r.phase, Phase::Creating | Phase::Deleting | Phase::Failed);
    if expects_server && r.server_id.is_none() && row.servers.is_empty() && !row.volumes.is_empty()
    {
        say(
            Kind::VolumeWithoutServer,
            format!("{phase} in state, volume without server"),
        );
    }

    for (node, cell) in &row.nodes {
        match (desired, cell) {
            (_, NodeCell::Unreachable { .. }) => {}
            (Some(_), NodeCell::Absent) => say(
                Kind::AbsentFromNode,
                format!("{phase} in state but absent from {node}"),
            ),
            (
                Some(d),
                NodeCell::Present {
                    admin,
                    oper,
                    address,
                    port,
                    ..
                },
            ) => {
                if *admin != d.state {
                    say(
                        Kind::WrongStateOnNode,
                        format!(
                            "{phase} in state but {} on {node} (the desired set says {})",
                            admin.as_str(),
                            d.state.as_str()
                        ),
                    );
                }
                if *address != d.spec.address || *port != d.spec.port {
                    say(
                        Kind::WrongAddressOnNode,
                        format!(
                            "{node} sends it to {address}:{port}, the state says {}:{}",
                            d.spec.address, d.spec.port
                        ),
                    );
                }
                if *admin == AdminState::Ready && *oper == OperState::Down && !server_gone {
                    say(
                        Kind::DownOnNode,
                        format!("{phase} in state but its health check is down on {node}"),
                    );
                }
            }
            (None, NodeCell::Present { server, .. }) if server.starts_with(prefix) => {
                let why = if r.role == Role::Surge {
                    format!("phase {phase}")
                } else {
                    format!(
                        "a {} replica belongs in haproxy.cfg, not under {prefix}*",
                        r.role.as_str()
                    )
                };
                say(
                    Kind::NotDesired,
                    format!("on {node} but not in the desired set ({why})"),
                )
            }
            // Absent and not desired; or the operator's static server of a base replica.
            (None, _) => {}
        }
    }
    out
}

/// Operations past their deadline with work left: a replica of theirs not serving yet
/// (scale-up) or not gone yet (scale-down), or nothing recorded for them at all.
fn overdue_operations(v: &Views, disagreements: &mut Vec<Disagreement>) {
    for o in &v.state.operations {
        if v.now - o.started_at <= v.operation_deadline {
            continue;
        }
        let unfinished: Vec<String> = v
            .state
            .replicas
            .iter()
            .filter(|r| o.replicas.contains(&r.id) && r.phase != Phase::Serving)
            .map(|r| format!("{} {}", r.id, r.phase.as_str()))
            .collect();
        if unfinished.is_empty() && !o.replicas.is_empty() {
            continue;
        }
        let left = if unfinished.is_empty() {
            "none of its replicas recorded".to_string()
        } else {
            unfinished.join(", ")
        };
        disagreements.push(Disagreement {
            subject: o.id.clone(),
            kind: Kind::OperationOverdue,
            message: format!(
                "{} operation started {} is not finished after {}s ({left})",
                o.kind.as_str(),
                rfc3339(o.started_at),
                v.operation_deadline.whole_seconds()
            ),
        });
    }
}

fn snapshot_rows(v: &Views, disagreements: &mut Vec<Disagreement>) -> Vec<SnapshotRow> {
    let mut rows = Vec::new();
    for s in &v.state.snapshots {
        let found = v.snapshots.iter().find(|c| c.id == s.id);
        let cloud = match found {
            Some(c) => CloudCell::Present {
                id: c.id.clone(),
                status: c.status.clone(),
            },
            None => {
                disagreements.push(Disagreement {
                    subject: s.id.clone(),
                    kind: Kind::SnapshotMissing,
                    message: "snapshot in state but missing in cloud".into(),
                });
                CloudCell::Missing { id: s.id.clone() }
            }
        };
        rows.push(SnapshotRow {
            id: s.id.clone(),
            name: found.map(|c| c.name.clone()),
            in_state: true,
            cloud,
        });
    }
    let mut orphans: Vec<&cloud::Snapshot> = v
        .snapshots
        .iter()
        .filter(|c| !v.state.snapshots.iter().any(|s| s.id == c.id))
        .collect();
    orphans.sort_by(|a, b| a.name.cmp(&b.name));
    for c in orphans {
        disagreements.push(Disagreement {
            subject: c.id.clone(),
            kind: Kind::SnapshotOrphan,
            message: format!("snapshot {} in cloud, unknown to state (orphan)", c.name),
        });
        rows.push(SnapshotRow {
            id: c.id.clone(),
            name: Some(c.name.clone()),
            in_state: false,
            cloud: CloudCell::Present {
                id: c.id.clone(),
                status: c.status.clone(),
            },
        });
    }
    rows
}

#[cfg(test)]
mod tests;
