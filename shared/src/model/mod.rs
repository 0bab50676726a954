//! The data model every layer shares: the cluster state document and its parts, the
//! normalised alarm, where a server's PostgreSQL listens, and how pgsurge names what it
//! creates.
//!
//! Plain data and pure functions only: no I/O, no configuration, and no imports from the
//! rest of the crate, so `policy` (pure decisions) and every adapter can depend on it
//! without depending on each other.

mod alarm;
mod document;
mod labels;

pub use alarm::{Alarm, AlarmParams, AlarmState, Direction, ParamLimits, Source};
pub use document::{
    ClusterState, DecidedAlarm, DeleteProof, DocumentError, Lease, OpKind, Operation, Phase,
    PhaseTimes, Refusal, Replica, Role, Snapshot, Timestamp, DECIDED_ALARMS_KEPT, SCHEMA_VERSION,
};

pub use labels::{META_AZ, META_CLUSTER, META_CREATED, META_OP, META_REPLICA, META_ROLE};

use serde::{Deserialize, Serialize};

/// Where a server's PostgreSQL listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// An instant as RFC 3339, as the state document and the cloud labels write it.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// `pgsurge-<cluster>-<suffix>`: the name of every resource pgsurge creates.
pub fn resource_name(cluster: &str, suffix: &str) -> String {
    format!("pgsurge-{cluster}-{suffix}")
}
