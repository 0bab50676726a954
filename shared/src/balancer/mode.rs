//! Who converges an HAProxy node: the functions (push), its local agent, or both.

use serde::{Deserialize, Serialize};

/// `haproxy.nodes[].mode`. The default is today's behaviour: the functions push.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeMode {
    /// The functions reach the node's admin API and change it (fan-out).
    #[default]
    Push,
    /// Only the node's `pgsurge-agent` changes it: the functions never connect to it
    /// (a node behind a firewall that refuses inbound admin access).
    Agent,
    /// Push as the fast path, the agent as the guarantee (reloads, missed pushes).
    Both,
}

impl NodeMode {
    /// The functions connect to this node.
    pub fn pushed(self) -> bool {
        matches!(self, NodeMode::Push | NodeMode::Both)
    }

    /// A `pgsurge-agent` runs beside this node and reports its status.
    pub fn has_agent(self) -> bool {
        matches!(self, NodeMode::Agent | NodeMode::Both)
    }
}
