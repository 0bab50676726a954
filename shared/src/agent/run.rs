//! The loop: every interval, read the state (conditional GET), notice a reload, converge
//! the local HAProxy, report.

use super::converge::{self, Step};
use super::health::{
    Health, CONVERGE_SECONDS, DRIFT_TOTAL, HAPROXY_ERRORS_TOTAL, RELOADS_TOTAL, STATE_ERRORS_TOTAL,
};
use super::reload::{self, Process};
use super::AgentError;
use crate::balancer::runtime_api::{RuntimeApi, SocketAddr};
use crate::balancer::HaproxyConfig;
use crate::balancer::{Action, AdminState, Balancer};
use crate::config::Config;
use crate::ops::agent_status::{NodeStatus, StatusWriter};
use crate::ops::desired::desired_set;
use crate::state::{Fetched, StateRepo, Versioned};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// One agent: its node, the state it follows, and what it remembers between intervals.
pub struct Agent {
    cluster: String,
    node_name: String,
    node: RuntimeApi,
    repo: StateRepo,
    haproxy: HaproxyConfig,
    interval: Duration,
    status_every: Duration,
    health: Arc<Health>,
    /// The last document read: kept through store outages, absences and foreign documents.
    known: Option<Versioned>,
    process: Option<Process>,
    /// When each server that left the desired set was first seen out of it.
    drain_started: BTreeMap<String, Instant>,
    status: StatusWriter,
    last_status: Option<(NodeStatus, Instant)>,
    converged_at: Option<OffsetDateTime>,
    reloads: u64,
}

/// What one interval did (for the tests and the log).
#[derive(Debug, Clone, Default)]
pub struct Tick {
    pub reloaded: bool,
    pub steps: Vec<Step>,
    pub errors: Vec<String>,
    pub converged: bool,
}

impl Agent {
    /// Build the agent of `config.agent.node` from the whole configuration: its node
    /// must be a runtime-API node whose mode includes the agent. Opens the state store
    /// (for S3, the start-up probe of conditional writes).
    pub async fn build(config: &Config) -> Result<Agent, AgentError> {
        let a = &config.agent;
        if a.node.is_empty() {
            return Err(AgentError::Config(
                "`agent.node`: name the [[haproxy.nodes]] entry this agent converges".into(),
            ));
        }
        let entry = config
            .haproxy
            .nodes
            .iter()
            .find(|n| n.name == a.node)
            .ok_or_else(|| {
                AgentError::Config(format!(
                    "`agent.node`: no [[haproxy.nodes]] entry is named {:?}",
                    a.node
                ))
            })?;
        if !entry.mode.has_agent() {
            return Err(AgentError::Config(format!(
                "`haproxy.nodes` {:?} has mode \"push\": set mode = \"agent\" or \"both\" so the \
                 functions know an agent converges it",
                a.node
            )));
        }
        let addr = entry.runtime_api.as_deref().ok_or_else(|| {
            AgentError::Config(format!(
                "`haproxy.nodes` {:?}: the agent needs its runtime_api (the local admin socket)",
                a.node
            ))
        })?;
        let addr = SocketAddr::parse(addr)
            .map_err(|e| AgentError::Config(format!("`haproxy.nodes` {:?}: {e}", a.node)))?;
        let h = &config.haproxy;
        let node = RuntimeApi::new(&a.node, addr, &h.backend)
            .with_timeout(Duration::from_secs(h.timeout_secs))
            .with_ready_wait(Duration::from_secs(h.ready_wait_secs));
        let repo = crate::state::open(&config.state, &config.cluster.name, None).await?;
        Ok(Agent::new(config, node, repo))
    }

    /// An agent with its parts given (tests build the node and the repo themselves).
    pub fn new(config: &Config, node: RuntimeApi, repo: StateRepo) -> Agent {
        let interval = Duration::from_millis(config.agent.interval_ms);
        Agent {
            cluster: config.cluster.name.clone(),
            node_name: node.node().to_string(),
            status: StatusWriter::new(&config.cluster.name, node.node()),
            node,
            repo,
            haproxy: config.haproxy.clone(),
            interval,
            status_every: Duration::from_secs(config.agent.status_every_secs),
            health: Health::new(interval),
            known: None,
            process: None,
            drain_started: BTreeMap::new(),
            last_status: None,
            converged_at: None,
            reloads: 0,
        }
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Run intervals until `shutdown` resolves. An interval that overruns (a slow
    /// health check while restoring) delays the next one rather than stacking them.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tracing::info!(node = %self.node_name, cluster = %self.cluster, interval = ?self.interval,
            store = %self.repo.describe(), "pgsurge-agent started");
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Between intervals, a `show info` (one cheap local command) four times as often:
        // a reload is then restored a quarter interval after it, not up to a whole one.
        let mut watch = tokio::time::interval(self.interval / 4);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = ticker.tick() => { self.tick().await; }
                _ = watch.tick() => {
                    if self.process_changed().await {
                        self.tick().await;
                        ticker.reset();
                    }
                }
                _ = &mut shutdown => break,
            }
        }
        tracing::info!(node = %self.node_name, "pgsurge-agent stopped");
    }

    /// A different HAProxy process answers than the last interval saw.
    async fn process_changed(&self) -> bool {
        match self.node.command("show info").await {
            Ok(text) => reload::parse_show_info(&text)
                .is_some_and(|p| reload::reloaded(self.process.as_ref(), &p)),
            Err(_) => false,
        }
    }

    /// One interval.
    pub async fn tick(&mut self) -> Tick {
        let started = Instant::now();
        let mut t = Tick::default();
        let health = self.health.clone();
        let reg = &health.registry;

        // 1. Which HAProxy process runs: a new one has forgotten every dynamic server.
        let process = match self.node.command("show info").await {
            Ok(text) => reload::parse_show_info(&text)
                .ok_or_else(|| format!("haproxy: `show info` without Pid/Uptime_sec: {text:?}")),
            Err(e) => Err(format!("haproxy: {e}")),
        };
        let haproxy_ok = process.is_ok();
        match process {
            Ok(p) => {
                if reload::reloaded(self.process.as_ref(), &p) {
                    t.reloaded = true;
                    self.reloads += 1;
                    reg.inc(
                        RELOADS_TOTAL,
                        "HAProxy reloads or restarts noticed.",
                        &[],
                        1.0,
                    );
                    tracing::warn!(node = %self.node_name, old = ?self.process, new = ?p,
                        "HAProxy reloaded or restarted: restoring the managed servers");
                    self.drain_started.clear();
                }
                self.process = Some(p);
            }
            Err(e) => {
                reg.inc(
                    HAPROXY_ERRORS_TOTAL,
                    "Local HAProxy errors.",
                    &[("op", "show_info")],
                    1.0,
                );
                t.errors.push(e);
            }
        }

        // 2. The desired set: the last known document, refreshed when it changed.
        let state_ok = match self.fetch().await {
            Ok(()) => true,
            Err((kind, e)) => {
                reg.inc(
                    STATE_ERRORS_TOTAL,
                    "State store errors (the last known set is kept).",
                    &[("kind", kind)],
                    1.0,
                );
                tracing::warn!(node = %self.node_name, kind, error = %e,
                    known_revision = ?self.known.as_ref().map(|k| k.state.revision),
                    "state not refreshed: keeping the last known set");
                t.errors.push(e);
                kind != "unreachable"
            }
        };

        // 3. Converge. Nothing is touched before a document was ever read.
        let mut servers = None;
        let mut draining_sessions = BTreeMap::new();
        if let (true, Some(known)) = (haproxy_ok, &self.known) {
            let desired = desired_set(&known.state, &self.cluster, &self.haproxy);
            let in_flight = converge::in_flight(&known.state, &self.cluster);
            match self.node.list_servers().await {
                Err(e) => {
                    reg.inc(
                        HAPROXY_ERRORS_TOTAL,
                        "Local HAProxy errors.",
                        &[("op", "list")],
                        1.0,
                    );
                    t.errors.push(format!("haproxy: {e}"));
                }
                Ok(current) => {
                    let out = converge::draining(&desired, &current);
                    self.drain_started.retain(|n, _| out.contains(n));
                    let now = Instant::now();
                    for n in out {
                        self.drain_started.entry(n).or_insert(now);
                    }
                    let ages = self
                        .drain_started
                        .iter()
                        .map(|(n, s)| (n.clone(), now - *s))
                        .collect();
                    let deadline = Duration::from_secs(self.haproxy.drain_deadline_secs);
                    let d = converge::decide(&desired, &current, &in_flight, &ages, deadline);
                    let mut now_on_node = current;
                    if !d.steps.is_empty() {
                        tracing::info!(node = %self.node_name, steps = ?d.steps, "drift: converging");
                        for s in &d.steps {
                            reg.inc(
                                DRIFT_TOTAL,
                                "Changes the agent made to its node.",
                                &[("step", step_kind(s))],
                                1.0,
                            );
                        }
                        let (_, r) = converge::execute(&self.node, &d.steps).await;
                        if let Err(e) = r {
                            reg.inc(
                                HAPROXY_ERRORS_TOTAL,
                                "Local HAProxy errors.",
                                &[("op", "converge")],
                                1.0,
                            );
                            t.errors.push(format!("haproxy: {e}"));
                        }
                        match self.node.list_servers().await {
                            Ok(l) => now_on_node = l,
                            Err(e) => t.errors.push(format!("haproxy: {e}")),
                        }
                    }
                    if !d.waiting.is_empty() {
                        tracing::info!(node = %self.node_name, waiting = ?d.waiting, "draining: waiting for sessions to end");
                    }
                    servers = Some(
                        now_on_node
                            .iter()
                            .filter(|s| desired.is_managed(&s.name))
                            .map(|s| (s.name.clone(), s.admin))
                            .collect::<BTreeMap<_, _>>(),
                    );
                    draining_sessions = now_on_node
                        .iter()
                        .filter(|s| desired.is_managed(&s.name) && s.admin != AdminState::Ready)
                        .filter(|s| s.sessions > 0)
                        .map(|s| (s.name.clone(), s.sessions))
                        .collect();
                    t.steps = d.steps;
                }
            }
        }
        // Converged: the node matches the last known set (a store outage does not stop
        // that; it is reported as the error).
        t.converged = servers.is_some() && t.errors.iter().all(|e| !e.starts_with("haproxy:"));
        let now = OffsetDateTime::now_utc();
        if t.converged {
            self.converged_at = Some(now);
        }
        reg.observe(
            CONVERGE_SECONDS,
            "Duration of one agent interval.",
            &[],
            started.elapsed(),
        );
        let managed = servers.as_ref().map(|s| s.len()).unwrap_or(0);
        self.report(servers.map(|s| (s, draining_sessions)), &t, now)
            .await;
        self.health.update(|g| {
            g.last_tick = Some(Instant::now());
            g.haproxy_reachable = haproxy_ok;
            g.state_reachable = state_ok;
            g.revision = self.known.as_ref().map(|k| k.state.revision);
            g.servers = managed;
            if t.converged {
                g.last_success = Some(now);
            }
        });
        t
    }

    /// Refresh `known` from the store. Errors keep it as it is: `("unreachable", _)` when
    /// the store did not answer, `("absent" | "other_cluster" | "invalid", _)` when it
    /// answered with nothing usable.
    async fn fetch(&mut self) -> Result<(), (&'static str, String)> {
        let known = self.known.as_ref().and_then(|k| k.version.clone());
        // Bounded by the interval (at least 1 s): a store that hangs must not hold the
        // node's convergence (a reload during an outage is still restored).
        let limit = self.interval.max(Duration::from_secs(1));
        let got = tokio::time::timeout(limit, self.repo.load_if_changed(known.as_ref())).await;
        match got {
            Err(_) => Err((
                "unreachable",
                format!("state store did not answer within {limit:?}"),
            )),
            Ok(Ok(Fetched::Unchanged)) => Ok(()),
            Ok(Ok(Fetched::Changed(v))) => {
                tracing::info!(node = %self.node_name, revision = v.state.revision, "state changed");
                self.known = Some(*v);
                Ok(())
            }
            Ok(Ok(Fetched::Absent)) => Err((
                "absent",
                format!("state document {} is absent", self.repo.key()),
            )),
            Ok(Err(e @ crate::state::StateError::WrongCluster { .. })) => {
                Err(("other_cluster", e.to_string()))
            }
            Ok(Err(e @ crate::state::StateError::Document(_))) => Err(("invalid", e.to_string())),
            Ok(Err(e)) => Err(("unreachable", e.to_string())),
        }
    }

    /// Write the status object when the view changed or the heartbeat is due.
    /// `view`: the managed servers and the sessions on those out of rotation, when
    /// HAProxy answered this interval (otherwise the last report's view stands).
    async fn report(
        &mut self,
        view: Option<(BTreeMap<String, AdminState>, BTreeMap<String, u64>)>,
        t: &Tick,
        now: OffsetDateTime,
    ) {
        let (servers, draining_sessions) = view.unwrap_or_else(|| {
            self.last_status
                .as_ref()
                .map(|(s, _)| (s.servers.clone(), s.draining_sessions.clone()))
                .unwrap_or_default()
        });
        let status = NodeStatus {
            node: self.node_name.clone(),
            cluster: self.cluster.clone(),
            revision: self.known.as_ref().map(|k| k.state.revision),
            revision_written_at: self.known.as_ref().and_then(|k| k.state.updated_at),
            converged_at: self.converged_at,
            reported_at: now,
            servers,
            draining_sessions,
            error: (!t.errors.is_empty()).then(|| t.errors.join("; ")),
            haproxy_pid: self.process.map(|p| p.pid),
            reloads: self.reloads,
        };
        let due = match &self.last_status {
            None => true,
            Some((last, at)) => !last.same_view(&status) || at.elapsed() >= self.status_every,
        };
        if !due {
            return;
        }
        let limit = self.interval.max(Duration::from_secs(1));
        let store = self.repo.store().clone();
        let written = tokio::time::timeout(limit, self.status.write(store.as_ref(), &status)).await;
        match written {
            Ok(Ok(())) => self.last_status = Some((status, Instant::now())),
            Ok(Err(e)) => self.status_failed(e.to_string()),
            Err(_) => self.status_failed(format!("no answer within {limit:?}")),
        }
    }

    fn status_failed(&self, e: String) {
        self.health.registry.inc(
            STATE_ERRORS_TOTAL,
            "State store errors (the last known set is kept).",
            &[("kind", "status_write")],
            1.0,
        );
        tracing::warn!(node = %self.node_name, error = %e, "could not write the node status");
    }
}

fn step_kind(s: &Step) -> &'static str {
    match s {
        Step::Apply(Action::Put { .. }) => "put",
        Step::Apply(Action::SetState { .. }) => "set_state",
        Step::Apply(Action::Remove { .. }) => "remove",
        Step::Kill { .. } => "kill_sessions",
    }
}

/// Serve `/metrics` and `/healthz` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, health: Arc<Health>) -> std::io::Result<()> {
    axum::serve(listener, super::health::router(health)).await
}
