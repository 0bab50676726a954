//! Why the orchestration refuses to act: each refusal a variant with its facts.
//!
//! A refusal is not a failure of a dependency: the state, the cloud's labels or the
//! event say the step must not be taken (deleting a base replica, a resource whose
//! labels do not prove it ours, a primary). Inside a flow it is recorded on the replica
//! and reported as pending; one that ends an invocation is answered 409 (the request
//! conflicts with what the state or the cloud says) or 422 (the request itself cannot be
//! carried out as configured) — see [`Refusal::is_conflict`].

use crate::model::Role;

/// A cloud label that does not prove a resource is the surge replica it is taken for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelMismatch {
    #[error("labelled {key}={found:?}, not {want:?}")]
    Differs {
        key: &'static str,
        found: String,
        want: String,
    },
    #[error("has no {key} label (expected {want:?})")]
    Missing { key: &'static str, want: String },
}

/// Why a replica could not be proven a standby before its server is deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unproven {
    /// Nothing to reach: stopped, or never up.
    #[error("{name}: no address to verify it is a standby")]
    NoAddress { name: String },
    /// PostgreSQL did not answer.
    #[error("{name}: cannot prove it is a standby, not deleting: {error}")]
    Unreachable { name: String, error: String },
    /// PostgreSQL answered and is not in recovery: a primary. Never deleted.
    #[error("{name} is NOT in recovery (a primary?): refusing to delete it")]
    NotStandby { name: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Scale-down removes only the replicas it added.
    #[error("{replica} is a {} replica; only surge replicas are removed", role.as_str())]
    NotSurgeToRemove { replica: String, role: Role },
    /// An instance-deleted event for a base replica.
    #[error("{replica} is a base replica: clean it up by hand")]
    BaseReplicaGone { replica: String },
    #[error("{name}: a {} replica is never rolled back, only surge replicas: fix it by hand", role.as_str())]
    NotSurgeToRollBack { name: String, role: Role },
    /// A server in error whose roll-back was refused.
    #[error("its server {server_id} is in error ({fault}), but {refusal}")]
    InErrorNotRolledBack {
        server_id: String,
        fault: String,
        refusal: Box<Refusal>,
    },
    /// An HAProxy node that answered still routes to the replica.
    #[error("{name}: not deleting the replica: {why}; left draining for the next run")]
    StillRouted { name: String, why: String },
    #[error("{name}: server {server_id} is not labelled as surge replica {replica} of cluster {cluster} in the cloud ({label}): refusing to delete it")]
    ServerNotOurs {
        name: String,
        server_id: String,
        replica: String,
        cluster: String,
        label: LabelMismatch,
    },
    #[error("volume {volume_id} ({volume_name}) {label}: refusing to delete it as surge replica {replica}'s")]
    VolumeNotOurs {
        volume_id: String,
        volume_name: String,
        replica: String,
        label: LabelMismatch,
    },
    #[error("{name}: {kind} {id} {label}: not rolling back what the cloud does not say is this surge replica")]
    RollBackNotOurs {
        name: String,
        kind: &'static str,
        id: String,
        label: LabelMismatch,
    },
    #[error(transparent)]
    NotProvenStandby(#[from] Unproven),
    #[error("no HAProxy node took {name}: {failed}")]
    NoNodeTook { name: String, failed: String },
    #[error("{name}: {error}")]
    Register { name: String, error: String },
    #[error("no serving replica with a volume to snapshot")]
    NoSnapshotSource,
    #[error("bootstrap parameters: {0}")]
    Bootstrap(String),
    #[error("haproxy: {0}")]
    Haproxy(String),
}

impl Refusal {
    /// A conflict with what the state or the cloud says (409), rather than a request
    /// that cannot be carried out as configured (422).
    pub fn is_conflict(&self) -> bool {
        !matches!(
            self,
            Refusal::BaseReplicaGone { .. } | Refusal::Bootstrap(_) | Refusal::Haproxy(_)
        )
    }
}

impl Unproven {
    /// Nothing answered (as opposed to a PostgreSQL that answered "not a standby").
    pub fn unreachable(&self) -> bool {
        !matches!(self, Unproven::NotStandby { .. })
    }
}
