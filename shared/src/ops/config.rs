//! `[ops]`: the orchestration's waits and housekeeping.

use crate::config::ConfigError;
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

pub fn validate_ops(o: &OpsConfig) -> Result<(), ConfigError> {
    let bad = |key: &str, message: String| ConfigError::Key {
        key: key.to_string(),
        message,
    };
    if o.snapshot_keep == 0 {
        return Err(bad("ops.snapshot_keep", "must be at least 1".into()));
    }
    if o.snapshot_interval_secs > o.snapshot_max_age_secs {
        return Err(bad(
            "ops.snapshot_interval_secs",
            format!(
                "{} is above ops.snapshot_max_age_secs ({}): a snapshot taken ahead would go \
                 stale before the next one, and scale-up would take its own",
                o.snapshot_interval_secs, o.snapshot_max_age_secs
            ),
        ));
    }
    if !(1..=3600).contains(&o.resource_wait_secs) {
        return Err(bad(
            "ops.resource_wait_secs",
            format!("{} is outside 1..=3600", o.resource_wait_secs),
        ));
    }
    if o.ready_wait_secs > 900 {
        return Err(bad(
            "ops.ready_wait_secs",
            format!("{} is above 900", o.ready_wait_secs),
        ));
    }
    if o.creating_deadline_secs < 60 {
        return Err(bad(
            "ops.creating_deadline_secs",
            "must be at least 60".into(),
        ));
    }
    if !(2..=600).contains(&o.lease_secs) {
        return Err(bad(
            "ops.lease_secs",
            format!("{} is outside 2..=600", o.lease_secs),
        ));
    }
    super::prewarm::validate_prewarm(&o.prewarm)
}
