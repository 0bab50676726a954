//! Scale-down without dropping a query: drain, wait for the sessions to end (or a
//! deadline), maint, remove — on every node.
//!
//! `drain` keeps the server's open sessions and sends it no new ones. Pooled clients
//! hold their connections until the pool recycles them, so the wait is bounded by
//! `deadline`; past it the remaining sessions are shut down (the application's pool
//! must then reconnect — see README, "HAProxy", for the pool settings that make a drain
//! finish well before the deadline). The decision of each poll is [`decide`], pure.

use super::fanout::{FanOut, Report};
use super::AdminState;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainOptions {
    /// Longest wait for sessions to end before they are shut down.
    pub deadline: Duration,
    /// How often sessions are counted.
    pub poll: Duration,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            deadline: Duration::from_secs(120),
            poll: Duration::from_millis(500),
        }
    }
}

impl DrainOptions {
    /// `haproxy.drain_deadline_secs`, polling twice a second.
    pub fn from_config(cfg: &crate::balancer::HaproxyConfig) -> Self {
        DrainOptions {
            deadline: Duration::from_secs(cfg.drain_deadline_secs),
            poll: Duration::from_millis(500),
        }
    }
}

/// What to do after one count of the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Sessions remain and there is time: look again after `poll`.
    Wait,
    /// No session left on any node that answered: maint and remove.
    Remove,
    /// The deadline passed with sessions left: shut them down, then remove.
    Force,
}

/// Pure: `sessions` is the sum over the nodes that answered.
pub fn decide(sessions: u64, elapsed: Duration, deadline: Duration) -> Step {
    if sessions == 0 {
        Step::Remove
    } else if elapsed >= deadline {
        Step::Force
    } else {
        Step::Wait
    }
}

/// The whole drain of one server, for the log and the state journal.
#[derive(Debug, Clone, Serialize)]
pub struct DrainReport {
    pub server: String,
    pub drain: Report,
    /// Sessions counted at the last poll (0 unless forced).
    pub sessions_left: u64,
    pub forced: bool,
    pub waited_ms: u64,
    pub maint: Report,
    pub remove: Report,
}

impl DrainReport {
    /// Every node drained, went to maint and lost the server.
    pub fn complete(&self) -> bool {
        self.drain.all_ok() && self.maint.all_ok() && self.remove.all_ok()
    }
}

/// Count the server's current sessions over every node that answers.
pub async fn sessions(fan: &FanOut, name: &str) -> u64 {
    fan.list()
        .await
        .into_iter()
        .filter_map(|(_, r)| r.ok())
        .flatten()
        .filter(|s| s.name == name)
        .map(|s| s.sessions)
        .sum()
}

/// Drain `name` on every node, wait until its sessions reach 0 or `opts.deadline`,
/// then maint (shutting down what is left if forced) and remove. Nodes that fail a
/// step stay marked for repair in `fan`; the desired set no longer holds the server,
/// so their repair removes it.
pub async fn drain_and_remove(fan: &FanOut, name: &str, opts: DrainOptions) -> DrainReport {
    let started = Instant::now();
    let drain = fan.set_state(name, AdminState::Drain).await;
    let (left, forced) = loop {
        let n = sessions(fan, name).await;
        match decide(n, started.elapsed(), opts.deadline) {
            Step::Wait => tokio::time::sleep(opts.poll).await,
            Step::Remove => break (0, false),
            Step::Force => break (n, true),
        }
    };
    let maint = fan.set_state(name, AdminState::Maint).await;
    if forced {
        tracing::warn!(
            server = name,
            sessions = left,
            "drain deadline reached: shutting sessions down"
        );
        fan.kill_sessions(name).await;
        // Closing takes a moment; `del server` refuses while connections are attached.
        let until = Instant::now() + Duration::from_secs(5);
        while sessions(fan, name).await > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let remove = fan.remove_server(name).await;
    let report = DrainReport {
        server: name.to_string(),
        drain,
        sessions_left: left,
        forced,
        waited_ms: started.elapsed().as_millis() as u64,
        maint,
        remove,
    };
    tracing::info!(
        server = name,
        forced,
        waited_ms = report.waited_ms,
        complete = report.complete(),
        "drain finished"
    );
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_decisions() {
        let d = Duration::from_secs(10);
        assert_eq!(decide(0, Duration::ZERO, d), Step::Remove);
        assert_eq!(decide(0, Duration::from_secs(99), d), Step::Remove);
        assert_eq!(decide(3, Duration::from_secs(1), d), Step::Wait);
        assert_eq!(decide(3, d, d), Step::Force);
    }
}
