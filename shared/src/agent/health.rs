//! `/metrics` and `/healthz` of the agent.
//!
//! Counters and the duration histogram go through [`crate::metrics::Registry`] (one per
//! agent, not the functions' global one); the gauges (last success, state reachable,
//! revision) are the agent's own and rendered after them.

use crate::metrics::Registry;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// The latest facts, shared between the loop and the HTTP listener.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    pub last_success: Option<OffsetDateTime>,
    /// The last read of the state store worked (or answered "unchanged").
    pub state_reachable: bool,
    pub haproxy_reachable: bool,
    pub revision: Option<u64>,
    /// Managed servers on the node.
    pub servers: usize,
    /// When the loop last finished an interval (a stuck loop is unhealthy).
    pub last_tick: Option<Instant>,
}

/// Everything the listener serves.
pub struct Health {
    pub registry: Registry,
    pub gauges: Mutex<Gauges>,
    pub interval: Duration,
}

pub const CONVERGE_SECONDS: &str = "pgsurge_agent_converge_seconds";
pub const DRIFT_TOTAL: &str = "pgsurge_agent_drift_total";
pub const STATE_ERRORS_TOTAL: &str = "pgsurge_agent_state_errors_total";
pub const HAPROXY_ERRORS_TOTAL: &str = "pgsurge_agent_haproxy_errors_total";
pub const RELOADS_TOTAL: &str = "pgsurge_agent_reloads_total";

impl Health {
    pub fn new(interval: Duration) -> Arc<Health> {
        Arc::new(Health {
            registry: Registry::default(),
            gauges: Mutex::new(Gauges::default()),
            interval,
        })
    }

    pub fn update(&self, f: impl FnOnce(&mut Gauges)) {
        f(&mut self.gauges.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn gauges(&self) -> Gauges {
        self.gauges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The Prometheus text: counters, histogram, then the gauges.
    pub fn render(&self) -> String {
        let g = self.gauges();
        let mut out = self.registry.render();
        let mut gauge = |name: &str, help: &str, v: f64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
            ));
        };
        gauge(
            "pgsurge_agent_last_success_timestamp_seconds",
            "Unix time of the last interval that converged the node (0: never).",
            g.last_success
                .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
                .unwrap_or(0.0),
        );
        gauge(
            "pgsurge_agent_state_reachable",
            "1 when the last read of the state store worked; 0 while the agent keeps the last known set.",
            f64::from(u8::from(g.state_reachable)),
        );
        gauge(
            "pgsurge_agent_haproxy_reachable",
            "1 when the local HAProxy answered on its admin socket in the last interval.",
            f64::from(u8::from(g.haproxy_reachable)),
        );
        gauge(
            "pgsurge_agent_state_revision",
            "The state document revision the node follows (-1: none read yet).",
            g.revision.map(|r| r as f64).unwrap_or(-1.0),
        );
        gauge(
            "pgsurge_agent_managed_servers",
            "pgsurge servers on the local HAProxy.",
            g.servers as f64,
        );
        out
    }

    /// Healthy: the loop finished an interval recently and HAProxy answered. A state
    /// store outage is not unhealthy (the node keeps serving the last known set) but is
    /// said in the body and in the metrics.
    pub fn check(&self) -> (bool, String) {
        let g = self.gauges();
        let stale = self.interval * 3 + Duration::from_secs(5);
        let ticking = g.last_tick.is_some_and(|t| t.elapsed() < stale);
        let ok = ticking && g.haproxy_reachable;
        let body = format!(
            "{}\nloop: {}\nhaproxy: {}\nstate store: {}\n",
            if ok { "ok" } else { "unhealthy" },
            if ticking { "running" } else { "stalled" },
            if g.haproxy_reachable {
                "reachable"
            } else {
                "unreachable"
            },
            if g.state_reachable {
                "reachable"
            } else {
                "unreachable (keeping the last known set)"
            },
        );
        (ok, body)
    }
}

/// The listener's routes: `GET /metrics`, `GET /healthz`.
pub fn router(health: Arc<Health>) -> Router {
    let m = health.clone();
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || async move {
                ([("content-type", "text/plain; version=0.0.4")], m.render())
            }),
        )
        .route(
            "/healthz",
            axum::routing::get(move || async move {
                let (ok, body) = health.check();
                let code = if ok {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (code, body).into_response()
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_and_health_follow_the_loop() {
        let h = Health::new(Duration::from_secs(2));
        assert!(!h.check().0, "never ticked: unhealthy");
        h.update(|g| {
            g.last_tick = Some(Instant::now());
            g.haproxy_reachable = true;
            g.state_reachable = false;
            g.revision = Some(4);
        });
        let (ok, body) = h.check();
        assert!(ok && body.contains("keeping the last known set"), "{body}");
        h.registry
            .inc(STATE_ERRORS_TOTAL, "State store errors.", &[], 1.0);
        let text = h.render();
        assert!(
            text.contains("pgsurge_agent_state_errors_total 1"),
            "{text}"
        );
        assert!(text.contains("pgsurge_agent_state_reachable 0"), "{text}");
        assert!(text.contains("pgsurge_agent_state_revision 4"), "{text}");
    }
}
