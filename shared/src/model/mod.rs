//! The data model every layer shares: the cluster state document and its parts, the
//! normalised alarm, where a server's PostgreSQL listens, and how pgsurge names what it
//! creates.
//!
//! Plain data and pure functions only: no I/O, no configuration, and no imports from the
//! rest of the crate, so `policy` (pure decisions) and every adapter can depend on it
//! without depending on each other.

mod alarm;
mod document;

pub use alarm::{Alarm, AlarmParams, AlarmState, Direction, ParamLimits, Source};
pub use document::{
    ClusterState, DecidedAlarm, DeleteProof, DocumentError, Lease, OpKind, Operation, Phase,
    PhaseTimes, Refusal, Replica, Role, Snapshot, Timestamp, DECIDED_ALARMS_KEPT, SCHEMA_VERSION,
};

use serde::{Deserialize, Serialize};

/// Where a server's PostgreSQL listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// `pgsurge-<cluster>-<suffix>`: the name of every resource pgsurge creates.
pub fn resource_name(cluster: &str, suffix: &str) -> String {
    format!("pgsurge-{cluster}-{suffix}")
}
