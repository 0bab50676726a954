//! `pgsurge-agent`: a small loop beside one HAProxy node that converges it from the
//! cluster state, so the node follows without the functions reaching it and survives
//! reloads within one interval.
//!
//! Push (the functions' fan-out) stays the fast path; the agent is the guarantee. Each
//! interval ([`run::Agent::tick`]):
//! 1. `show info` on the local admin socket: a new PID or a younger process is a reload
//!    ([`reload`]) — its dynamic servers are gone and this interval restores them;
//! 2. the state document by conditional GET ([`crate::state::StateRepo::load_if_changed`]):
//!    an unchanged document costs one 304. A store that does not answer, an absent
//!    document or one for another cluster changes nothing: the last known set is kept;
//! 3. the desired set from the same [`crate::ops::desired::desired_set`] the functions
//!    use, converged with the push path's plan and drain rule ([`converge`]);
//! 4. its view written to `<cluster>/agents/<node>.json` ([`status`]) for `pgsurge
//!    status` and instance-ready; `/metrics` and `/healthz` ([`health`]).

pub mod config;
pub mod converge;
pub mod health;
pub mod reload;
pub mod run;

pub use config::AgentConfig;
// The per-node status objects and instance-ready's wait for agent-only nodes live in
// `ops` (the functions use them too); re-exported here under the agent's names.
pub use crate::ops::{agent_register as register, agent_status as status};
pub use run::{serve, Agent, Tick};

/// Why the agent cannot start. Once running it never stops on an error: it reports it.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent configuration: {0}")]
    Config(String),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}
