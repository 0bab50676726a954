//! `[agent]`: the pull-mode agent beside one HAProxy node (`pgsurge-agent`).

use crate::check::{in_range, invalid, Checked};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// The `[[haproxy.nodes]]` entry this agent converges (by name): its `runtime_api`
    /// is the local admin socket, and the name keys the agent's status object.
    /// Required to run the agent; the functions ignore it.
    pub node: String,
    /// How often the state is read and the node converged (milliseconds).
    pub interval_ms: u64,
    /// `/metrics` and `/healthz`. Loopback by default: a scraper on the host or a
    /// tunnel, never an open admin port.
    pub listen: String,
    /// The status object is written when the node's view changes and at least this
    /// often otherwise, so `pgsurge status` can tell a live agent from a dead one.
    pub status_every_secs: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            node: String::new(),
            interval_ms: 2000,
            listen: "127.0.0.1:9187".into(),
            status_every_secs: 10,
        }
    }
}

impl AgentConfig {
    /// The checks that hold whether or not this process is an agent (keys relative to `[agent]`).
    pub fn validate(&self) -> Checked {
        in_range("interval_ms", self.interval_ms, 100..=60_000)?;
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "listen",
                format!("{:?} is not an ip:port address", self.listen),
            ));
        }
        in_range("status_every_secs", self.status_every_secs, 1..=3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        AgentConfig::default().validate().unwrap();
        let d = AgentConfig::default;
        for (cfg, key) in [
            (
                AgentConfig {
                    interval_ms: 0,
                    ..d()
                },
                "agent.interval_ms",
            ),
            (
                AgentConfig {
                    listen: "localhost".into(),
                    ..d()
                },
                "agent.listen",
            ),
            (
                AgentConfig {
                    status_every_secs: 0,
                    ..d()
                },
                "agent.status_every_secs",
            ),
        ] {
            let e = cfg.validate().unwrap_err().within("agent").to_string();
            assert!(e.contains(key), "{e}");
        }
    }
}
