//! `[ops]`: the orchestration's waits and housekeeping.

use crate::check::{at_least, at_most, in_range, invalid, Checked};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// Reuse a snapshot younger than this instead of taking a new one (WAL to replay
    /// grows with the snapshot's age).
    pub snapshot_max_age_secs: u64,
    /// Reconcile snapshots a serving base replica per availability zone when the zone's
    /// newest snapshot is this old, so scale-up only clones (`ops::snapshot_ahead`).
    /// 0 (the default): off — every snapshot is billed storage, a choice per cluster.
    pub snapshot_interval_secs: u64,
    /// The most WAL (MiB) written on the primary since a recorded snapshot for a
    /// scale-up to still clone it (else it takes a fresh one): a clone streams that WAL
    /// from the primary, which keeps only so much. Unset (the default): half of the
    /// primary's `wal_keep_size`, read at scale-up. Set it when the replicas restore WAL
    /// from an archive or the primary keeps more by other means.
    pub snapshot_max_wal_mb: Option<u64>,
    /// Snapshots of ours kept by rotation (newest first).
    pub snapshot_keep: usize,
    /// Longest wait for a snapshot / volume to become available within one run.
    pub resource_wait_secs: u64,
    /// How long instance-ready keeps polling a catching-up replica in one run.
    pub ready_wait_secs: u64,
    /// A replica still `creating` after this long is rolled back by reconcile.
    pub creating_deadline_secs: u64,
    /// Surge resources labelled as ours but unknown to the state are deleted this long
    /// after reconcile first saw them unknown (`ClusterState::unknown_since`).
    pub orphan_grace_secs: u64,
    /// Length of a work lease (see ops::lease): how long a killed invocation's work
    /// waits before another takes it over. Renewed every third of it while working.
    pub lease_secs: u64,
    /// `[ops.prewarm]`: load the hottest relations before registering a replica.
    pub prewarm: super::prewarm::PrewarmConfig,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            snapshot_max_age_secs: 3600,
            snapshot_interval_secs: 0,
            snapshot_max_wal_mb: None,
            snapshot_keep: 2,
            resource_wait_secs: 120,
            ready_wait_secs: 20,
            creating_deadline_secs: 1800,
            orphan_grace_secs: 600,
            lease_secs: 30,
            prewarm: Default::default(),
        }
    }
}

impl OpsConfig {
    /// Checks for `[ops]` that types alone cannot express (keys relative to it).
    pub fn validate(&self) -> Checked {
        at_least("snapshot_keep", self.snapshot_keep, 1)?;
        if let Some(mb) = self.snapshot_max_wal_mb {
            at_least("snapshot_max_wal_mb", mb, 1)?;
        }
        in_range("resource_wait_secs", self.resource_wait_secs, 1..=3600)?;
        at_most("ready_wait_secs", self.ready_wait_secs, 900, "900")?;
        at_least("creating_deadline_secs", self.creating_deadline_secs, 60)?;
        in_range("lease_secs", self.lease_secs, 2..=600)?;
        if self.snapshot_interval_secs > self.snapshot_max_age_secs {
            return Err(invalid(
                "snapshot_interval_secs",
                format!(
                    "{} is above ops.snapshot_max_age_secs ({}): a snapshot taken ahead would go \
                     stale before the next one, and scale-up would take its own",
                    self.snapshot_interval_secs, self.snapshot_max_age_secs
                ),
            ));
        }
        super::prewarm::validate_prewarm(&self.prewarm)
    }
}
