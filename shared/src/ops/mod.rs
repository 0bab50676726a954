//! The orchestration: each function's body, written only against the ports.
//!
//! Every step is idempotent and resumable. The pattern, everywhere:
//! 1. decide and **record the intent** in the state document (compare-and-swap) before
//!    touching the cloud, so a crash leaves a trace that the next run resumes from;
//! 2. do the side effect with a deterministic name (adopt-before-create, see
//!    [`crate::cloud::ensure_volume`]), bracketed by failpoints;
//! 3. record the result.
//!
//! A function therefore never "starts" work it cannot find again: a rerun, a duplicate
//! delivery or the reconcile timer drives whatever is recorded to completion.
//! Long waits (a replica catching up) are not slept through: they stay in the state
//! and the next tick looks again.

pub mod agent_register;
pub mod agent_status;
pub mod agent_unregister;
pub mod base;
pub mod config;
mod creating;
mod decide;
mod deleted;
pub mod desired;
mod draining;
mod lease;
mod meta;
pub mod prewarm;
mod ready;
mod reconcile;
pub mod refusal;
mod replica_steps;
pub mod requeue;
mod scale_down;
mod scale_up;
mod scheduled;
mod snapshot_ahead;
pub mod status;
#[cfg(test)]
mod testing;
mod verifying;

pub use crate::model::META_CREATED;
pub use config::OpsConfig;
pub use decide::op_id;
pub use deleted::instance_deleted;
pub use desired::desired_set;
pub use ready::check_pending;
pub use reconcile::reconcile;
pub use refusal::{LabelMismatch, Refusal, Unproven};
pub use requeue::ReconcileOutcome;
pub use scale_down::scale_down;
pub use scale_up::scale_up;

use crate::balancer::fanout::FanOut;
use crate::balancer::Balancer;
use crate::cloud::{Cloud, CloudError};
use crate::model::ClusterState;
use crate::policy::PolicyConfig;
use crate::postgres::{LagBounds, PgError, Postgres};
use crate::state::{StateError, StateRepo, UpdateError};
use serde::Serialize;
use std::sync::Arc;
use time::OffsetDateTime;

/// Everything the orchestration talks to.
pub struct Ports {
    pub cluster: String,
    pub cloud: Arc<dyn Cloud>,
    pub nodes: Vec<Arc<dyn Balancer>>,
    pub state: StateRepo,
    pub pg: Arc<dyn Postgres>,
    pub policy: PolicyConfig,
    pub ops: OpsConfig,
    pub lag: LagBounds,
    pub haproxy: crate::balancer::HaproxyConfig,
    /// Bootstrap parameters for new servers (user data), without the replica name.
    pub bootstrap: crate::postgres::PostgresConfig,
    /// Callback credentials for new servers (`[node]` + `auth.callback_secret`).
    pub callback: Option<crate::events::CallbackMint>,
}

impl Ports {
    /// A fan-out over every HAProxy node whose desired set is what `state` says.
    pub fn fanout(&self, state: &ClusterState) -> FanOut {
        FanOut::new(
            self.nodes.clone(),
            desired_set(state, &self.cluster, &self.haproxy),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Postgres(#[from] PgError),
    #[error(transparent)]
    Config(#[from] crate::check::ConfigError),
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
}

impl<E: Into<OpsError>> From<UpdateError<E>> for OpsError {
    fn from(e: UpdateError<E>) -> Self {
        match e {
            UpdateError::State(s) => OpsError::State(s),
            UpdateError::Aborted(e) => e.into(),
        }
    }
}

impl From<std::convert::Infallible> for OpsError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

/// What one run of an operation did, for the function's answer and the log.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The decision and its reason, when one was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<crate::policy::Decision>,
    /// Side effects done, one line each ("created volume pgsurge-c-r1", ...).
    pub actions: Vec<String>,
    /// Things left for a later run, with why.
    pub pending: Vec<String>,
}

impl Report {
    fn did(&mut self, what: impl Into<String>) {
        let what = what.into();
        tracing::info!(action = %what, "done");
        self.actions.push(what);
    }

    fn later(&mut self, what: impl Into<String>) {
        let what = what.into();
        tracing::info!(pending = %what, "left for a later run");
        self.pending.push(what);
    }

    fn absorb(&mut self, other: Report) {
        self.actions.extend(other.actions);
        self.pending.extend(other.pending);
    }
}

/// Report a refusal to act on replica `id` and record it on the replica, so a refusal
/// that repeats run after run shows in `status` as a replica reconcile cannot move.
pub(crate) async fn refused(
    ports: &Ports,
    id: &str,
    why: &Refusal,
    now: OffsetDateTime,
    report: &mut Report,
) -> Result<(), OpsError> {
    let why = &why.to_string();
    tracing::warn!(replica = id, reason = why, "refused");
    report.later(format!("{id}: refused: {why}"));
    update_replica(ports, id, now, |x| {
        x.note_refusal(why, now);
    })
    .await?;
    Ok(())
}

/// Change replica `id` in the state (compare-and-swap; nothing when it is gone: a
/// concurrent run forgot it).
pub(crate) async fn update_replica(
    ports: &Ports,
    id: &str,
    now: OffsetDateTime,
    mut change: impl FnMut(&mut crate::model::Replica),
) -> Result<(), OpsError> {
    ports
        .state
        .update(now, |s| -> Result<_, std::convert::Infallible> {
            if let Some(x) = s.replica_mut(id) {
                change(x);
            }
            Ok(())
        })
        .await?;
    Ok(())
}

/// Seconds between two instants, for phase durations.
pub(crate) fn secs_between(a: OffsetDateTime, b: OffsetDateTime) -> f64 {
    (b - a).as_seconds_f64().max(0.0)
}

/// Record a phase duration metric.
pub(crate) fn phase_metric(phase: &str, secs: f64) {
    crate::metrics::global().observe(
        "pgsurge_phase_duration_seconds",
        "Time spent in each phase of a replica's life (snapshot, clone, boot, catch-up, register, drain, delete).",
        &[("phase", phase)],
        std::time::Duration::from_secs_f64(secs),
    );
}
