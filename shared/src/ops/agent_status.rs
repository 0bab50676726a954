//! The agent's view of its node, written beside the state as `<cluster>/agents/<node>.json`.
//!
//! One object per node and one writer per object (its agent), so agents never contend
//! with each other or with the functions' compare-and-swap on the state document.
//! Readers: `pgsurge status` (last convergence and lag per agent) and instance-ready
//! with agent-only nodes (is the replica on every node?).

use crate::balancer::AdminState;
use crate::state::{StateError, StateStore, Version};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// What one agent last saw and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub cluster: String,
    /// The state document's revision the node was last converged to (`None`: none read yet).
    pub revision: Option<u64>,
    /// When that revision was written (the document's `updated_at`).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revision_written_at: Option<OffsetDateTime>,
    /// The last interval that ended with the node matching the desired set.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub converged_at: Option<OffsetDateTime>,
    /// When this object was written (a heartbeat even when nothing changed).
    #[serde(with = "time::serde::rfc3339")]
    pub reported_at: OffsetDateTime,
    /// The managed servers on the node and their admin state.
    pub servers: BTreeMap<String, AdminState>,
    /// Sessions still open on the managed servers the node holds out of rotation
    /// (`drain` / `maint`): scale-down deletes a server once these are gone or its drain
    /// deadline passed. Absent in objects written before it existed: none known.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub draining_sessions: BTreeMap<String, u64>,
    /// Why the last interval did not converge (state store down, HAProxy refused, ...).
    pub error: Option<String>,
    /// The HAProxy process last seen, and how many reloads the agent restored.
    pub haproxy_pid: Option<u32>,
    pub reloads: u64,
}

impl NodeStatus {
    /// Same content apart from the timestamps: nothing new to write before the heartbeat.
    pub fn same_view(&self, other: &NodeStatus) -> bool {
        self.revision == other.revision
            && self.servers == other.servers
            && self.draining_sessions == other.draining_sessions
            && self.error == other.error
            && self.haproxy_pid == other.haproxy_pid
            && (self.converged_at.is_some() == other.converged_at.is_some())
    }

    /// Seconds since the node last matched the state (`None`: never).
    pub fn lag_secs(&self, now: OffsetDateTime) -> Option<i64> {
        self.converged_at.map(|c| (now - c).whole_seconds().max(0))
    }
}

/// The nodes only their agent reaches (`mode = "agent"`): the functions never connect to
/// them, so they learn what those nodes hold from the agents' reports.
pub fn agent_only_nodes(h: &crate::balancer::HaproxyConfig) -> Vec<String> {
    h.nodes
        .iter()
        .filter(|n| n.mode == crate::balancer::mode::NodeMode::Agent)
        .map(|n| n.name.clone())
        .collect()
}

/// Where `node`'s status object lives.
pub fn key(cluster: &str, node: &str) -> String {
    format!("{cluster}/agents/{node}.json")
}

/// Read one node's status (`None`: its agent never reported).
pub async fn read(
    store: &dyn StateStore,
    cluster: &str,
    node: &str,
) -> Result<Option<NodeStatus>, StateError> {
    let key = key(cluster, node);
    let Some(stored) = store.load(&key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&stored.bytes)
        .map(Some)
        .map_err(|e| {
            StateError::Document(crate::model::DocumentError::Corrupt {
                key,
                message: e.to_string(),
            })
        })
}

/// Do the agents of `nodes` all report `server` as `want` wants it (`None`: absent),
/// having followed the state at least to `revision`? An agent that never reported
/// counts as no. The functions' way to know "on every node" without reaching the nodes.
pub async fn every_agent(
    store: &dyn StateStore,
    cluster: &str,
    nodes: &[String],
    revision: u64,
    server: &str,
    want: impl Fn(Option<AdminState>) -> bool,
) -> Result<bool, StateError> {
    for n in nodes {
        match read(store, cluster, n).await? {
            Some(s)
                if s.revision.unwrap_or(0) >= revision
                    && s.converged_at.is_some()
                    && want(s.servers.get(server).copied()) => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Writes one node's status; remembers the version so each write is one request.
pub struct StatusWriter {
    key: String,
    version: Option<Version>,
}

impl StatusWriter {
    pub fn new(cluster: &str, node: &str) -> Self {
        StatusWriter {
            key: key(cluster, node),
            version: None,
        }
    }

    /// Compare-and-swap against the version this writer last wrote; when that is stale
    /// (first write after a restart, or someone deleted the object) read it and retry once.
    pub async fn write(
        &mut self,
        store: &dyn StateStore,
        status: &NodeStatus,
    ) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(status).expect("status serialises");
        match store
            .compare_and_swap(&self.key, self.version.as_ref(), bytes.clone())
            .await
        {
            Ok(v) => {
                self.version = Some(v);
                Ok(())
            }
            Err(StateError::Conflict { .. }) | Err(StateError::Indeterminate { .. }) => {
                self.version = store.load(&self.key).await?.map(|s| s.version);
                let v = store
                    .compare_and_swap(&self.key, self.version.as_ref(), bytes)
                    .await?;
                self.version = Some(v);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    fn status(rev: u64) -> NodeStatus {
        NodeStatus {
            node: "h1".into(),
            cluster: "c".into(),
            revision: Some(rev),
            revision_written_at: None,
            converged_at: Some(OffsetDateTime::UNIX_EPOCH),
            reported_at: OffsetDateTime::UNIX_EPOCH,
            servers: [("pgsurge-c-a".to_string(), AdminState::Ready)].into(),
            draining_sessions: BTreeMap::new(),
            error: None,
            haproxy_pid: Some(7),
            reloads: 0,
        }
    }

    #[tokio::test]
    async fn a_writer_overwrites_its_own_object_and_recovers_a_stale_version() {
        let store = MemoryStore::new();
        let mut w = StatusWriter::new("c", "h1");
        w.write(&store, &status(1)).await.unwrap();
        w.write(&store, &status(2)).await.unwrap();
        // A restarted agent does not know the version: it still writes.
        let mut again = StatusWriter::new("c", "h1");
        again.write(&store, &status(3)).await.unwrap();
        let got = read(&store, "c", "h1").await.unwrap().unwrap();
        assert_eq!(got.revision, Some(3));
        assert!(read(&store, "c", "h2").await.unwrap().is_none());
        assert_eq!(
            got.lag_secs(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(5)),
            Some(5)
        );
    }
}
