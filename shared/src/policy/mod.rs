//! The scaling policy: a pure function from what we know to what to do, with why.
//!
//! `decide(state, trigger, now, config) -> Decision`. No I/O, no clock, no randomness:
//! the same inputs always give the same decision, so it can be dry-run (`pgsurge plan`),
//! property-tested, and re-run after a lost compare-and-swap on the fresh state.
//!
//! Rules:
//! * **Capacity** counts replicas serving *and* on their way (creating, booting,
//!   catching up, plus scale-up operations not yet materialised): a second alarm while
//!   the first scale-up is in flight does not add again.
//! * **Modes**: fixed step, multiplier of the serving count (x2, x3), target tracking
//!   (desired = ceil(serving × metric / target)). An alarm's own parameters
//!   (`replicas`, `multiplier`) override the mode; they were validated against
//!   `max_step` / `max_multiplier` when the event was received, and are clamped again here.
//! * **Bounds**: never above `max_replicas`; never below `min_replicas` or an open
//!   scheduled window's minimum.
//! * **Cooldowns**: scale-up waits `scale_up_cooldown_secs` after the last scale-up;
//!   scale-down waits `scale_down_cooldown_secs` after the last scale-up *or* scale-down,
//!   so a fresh surge is not undone at once.
//! * **Scale-down** removes only surge replicas that are serving, newest first; never a
//!   base replica; never while a scale-up is in flight; never below the minimum.
//! * **Resolved** alarms do not scale down unless `scale_down_on_resolved`.
//! * **Duplicates**: an alarm occurrence id already decided decides nothing.
//! * **Ticks** enforce the floor (min / open windows) and the ceiling (max) only. The
//!   reconcile timer acts on the floor (`ops::scheduled`); a trim above the ceiling is
//!   shown by `pgsurge plan` and left to scale-down alarms.

mod config;
mod schedule;
pub mod snapshot_ahead;

pub use config::{Mode, PolicyConfig, ScheduleWindow};
pub use schedule::Cron;

use crate::model::{rfc3339, Alarm, AlarmState, Direction};
use crate::model::{ClusterState, OpKind, Operation, Phase, Role};
use serde::Serialize;
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// What prompted the decision.
#[derive(Debug, Clone, Copy)]
pub enum Trigger<'a> {
    /// An alarm, received by a function that scales in `intent`'s direction
    /// (the alarm's own `action` parameter overrides it).
    Alarm { alarm: &'a Alarm, intent: Direction },
    /// A timer: enforce min / max and scheduled windows.
    Tick,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Add `add` replicas.
    ScaleUp {
        add: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        flavor: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        az: Option<String>,
    },
    /// Remove these surge replicas (newest first).
    ScaleDown {
        remove: Vec<String>,
    },
    Nothing,
}

/// The replica counts a decision was based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capacity {
    /// Serving reads now.
    pub serving: u32,
    /// On their way to serving (incl. scale-up operations not yet materialised).
    pub pending: u32,
    /// serving + pending (+ replicas in phases this build does not know).
    pub total: u32,
    pub base: u32,
    pub surge: u32,
    /// The floor in force: min_replicas or an open window's minimum.
    pub floor: u32,
    pub max: u32,
}

/// A decision and its reason, one log line's worth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub action: Action,
    pub reason: String,
    /// The capacity the cluster should have after this decision.
    pub desired: u32,
    pub capacity: Capacity,
    /// The alarm occurrence to remember as decided (None for ticks and duplicates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm_id: Option<String>,
}

/// Count what the state holds.
pub fn capacity(state: &ClusterState, now: OffsetDateTime, cfg: &PolicyConfig) -> Capacity {
    let mut c = Capacity {
        serving: 0,
        pending: 0,
        total: 0,
        base: 0,
        surge: 0,
        floor: floor(now, cfg).0,
        max: cfg.max_replicas,
    };
    let mut per_op: BTreeMap<&str, u32> = BTreeMap::new();
    for r in &state.replicas {
        if let Some(op) = &r.op_id {
            *per_op.entry(op.as_str()).or_default() += 1;
        }
        if !r.phase.counts_toward_capacity() {
            continue;
        }
        c.total += 1;
        if r.phase == Phase::Serving {
            c.serving += 1;
        } else if r.phase.is_pending() {
            c.pending += 1;
        }
        match r.role {
            Role::Base => c.base += 1,
            Role::Surge => c.surge += 1,
            Role::Other(_) => {}
        }
    }
    // Scale-ups decided but whose replicas are not all recorded yet. An operation that
    // named its replicas (scale-up does, in the decision's own write) is materialised:
    // one of them vanishing later (deleted, rolled back) must not count as pending
    // forever, or no scale-down could ever run again.
    for op in &state.operations {
        if op.kind == OpKind::ScaleUp {
            let recorded = per_op.get(op.id.as_str()).copied().unwrap_or(0);
            let missing = op
                .count
                .saturating_sub(recorded.max(op.replicas.len() as u32));
            c.pending += missing;
            c.total += missing;
        }
    }
    c
}

/// The floor in force at `now`, and why (`min_replicas`, or the open window that raises it).
pub fn floor(now: OffsetDateTime, cfg: &PolicyConfig) -> (u32, String) {
    let mut best = (cfg.min_replicas, "min_replicas".to_string());
    for w in &cfg.schedule {
        if w.min_replicas > best.0 && w.is_open(now) {
            best = (
                w.min_replicas.min(cfg.max_replicas),
                format!(
                    "scheduled window {:?} ({}, {} min)",
                    w.name, w.cron, w.duration_mins
                ),
            );
        }
    }
    best
}

/// Decide. Pure: see the module documentation for the rules.
pub fn decide(
    state: &ClusterState,
    trigger: Trigger<'_>,
    now: OffsetDateTime,
    cfg: &PolicyConfig,
) -> Decision {
    let cap = capacity(state, now, cfg);
    let nothing = |reason: String, alarm_id: Option<String>| Decision {
        action: Action::Nothing,
        reason,
        desired: cap.total,
        capacity: cap,
        alarm_id,
    };
    let (alarm, intent) = match trigger {
        Trigger::Tick => return tick(state, cap, now, cfg),
        Trigger::Alarm { alarm, intent } => (alarm, intent),
    };
    let key = occurrence(alarm);
    if let Some(seen) = state.decided_alarms.iter().find(|a| a.id == key) {
        return nothing(
            format!(
                "alarm occurrence {key:?} was already decided at {}: a duplicate decides nothing",
                rfc3339(seen.at)
            ),
            None,
        );
    }
    let id = Some(key);
    let direction = alarm.params.action.unwrap_or(intent);
    let label = format!("alarm {:?} ({})", alarm.name, state_name(alarm.state));
    match (alarm.state, direction) {
        (AlarmState::Firing, Direction::ScaleUp) => scale_up(state, alarm, cap, now, cfg, &label),
        (AlarmState::Firing, Direction::ScaleDown) => {
            scale_down(state, Some(alarm), id, cap, now, cfg, &label)
        }
        // The resolved alarm was sized for scaling up: its parameters do not size this.
        (AlarmState::Resolved, Direction::ScaleUp) if cfg.scale_down_on_resolved => {
            scale_down(state, None, id, cap, now, cfg, &label)
        }
        (AlarmState::Resolved, Direction::ScaleUp) => nothing(
            format!(
                "{label}: a resolved scale-up alarm does not scale down by itself \
                 (policy.scale_down_on_resolved = false)"
            ),
            id,
        ),
        (AlarmState::Resolved, Direction::ScaleDown) => nothing(
            format!("{label}: a resolved scale-down alarm needs no action"),
            id,
        ),
    }
}

/// The key a decision is recorded under. An alarm's firing and its resolution share the
/// sender's occurrence id (Alertmanager's fingerprint@startsAt, Cloud Eye's alarm id),
/// but they are two decisions: without the suffix the resolution would always look
/// like a duplicate of the firing, and `scale_down_on_resolved` could never act.
pub fn occurrence(alarm: &Alarm) -> String {
    match alarm.state {
        AlarmState::Firing => alarm.id.clone(),
        AlarmState::Resolved => format!("{}#resolved", alarm.id),
    }
}

fn state_name(s: AlarmState) -> &'static str {
    match s {
        AlarmState::Firing => "firing",
        AlarmState::Resolved => "resolved",
    }
}

/// Seconds left in a cooldown that started at `since`, if any.
fn cooldown_left(since: Option<OffsetDateTime>, secs: u64, now: OffsetDateTime) -> Option<i64> {
    let end = since? + time::Duration::seconds(secs as i64);
    (end > now).then(|| (end - now).whole_seconds().max(1))
}

fn target_desired(serving: u32, value: f64, target: f64) -> Option<u32> {
    if !(value.is_finite() && value >= 0.0 && target > 0.0) {
        return None;
    }
    let d = (f64::from(serving.max(1)) * value / target).ceil();
    Some(if d >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        d as u32
    })
}

fn scale_up(
    state: &ClusterState,
    alarm: &Alarm,
    cap: Capacity,
    now: OffsetDateTime,
    cfg: &PolicyConfig,
    label: &str,
) -> Decision {
    let id = Some(alarm.id.clone());
    let nothing = |reason: String| Decision {
        action: Action::Nothing,
        reason,
        desired: cap.total,
        capacity: cap,
        alarm_id: id.clone(),
    };
    if let Some(left) = cooldown_left(state.last_scale_up_at, cfg.scale_up_cooldown_secs, now) {
        return nothing(format!(
            "{label}: scale-up cooldown, {left}s left of {}s since the last scale-up",
            cfg.scale_up_cooldown_secs
        ));
    }
    let serving_base = cap.serving.max(1);
    let (raw, how) = if let Some(k) = alarm.params.replicas {
        let k = k.min(cfg.max_step);
        (
            cap.total.saturating_add(k),
            format!("alarm parameter replicas={k}"),
        )
    } else if let Some(m) = alarm.params.multiplier {
        let m = m.clamp(1, cfg.max_multiplier);
        (
            serving_base.saturating_mul(m),
            format!("alarm parameter multiplier=x{m} of {} serving", cap.serving),
        )
    } else {
        match cfg.mode {
            Mode::Step => (
                cap.total.saturating_add(cfg.step),
                format!("step +{}", cfg.step),
            ),
            Mode::Multiplier => (
                serving_base.saturating_mul(cfg.multiplier),
                format!("multiplier x{} of {} serving", cfg.multiplier, cap.serving),
            ),
            Mode::TargetTracking => {
                let target = cfg.target_value.unwrap_or(f64::NAN);
                match alarm.value.and_then(|v| target_desired(cap.serving, v, target)) {
                    Some(d) => (
                        d,
                        format!(
                            "target tracking: ceil({} serving × {} / {target})",
                            serving_base,
                            alarm.value.unwrap_or_default()
                        ),
                    ),
                    None => {
                        return nothing(format!(
                            "{label}: target tracking needs the alarm's metric value (a non-negative number); none was given"
                        ))
                    }
                }
            }
        }
    };
    let (floor, floor_why) = floor(now, cfg);
    let desired = raw.clamp(floor, cfg.max_replicas);
    let add = desired.saturating_sub(cap.total);
    if add == 0 {
        let why = if raw > cfg.max_replicas && cap.total >= cfg.max_replicas {
            format!("already at max_replicas {}", cfg.max_replicas)
        } else {
            format!(
                "capacity {} ({} serving + {} pending) already meets the desired {desired}",
                cap.total, cap.serving, cap.pending
            )
        };
        return nothing(format!("{label}: {how} → {why}"));
    }
    let capped = if raw > cfg.max_replicas {
        format!(", capped by max_replicas {}", cfg.max_replicas)
    } else if raw < floor {
        format!(", raised to the floor of {floor_why} {floor}")
    } else {
        String::new()
    };
    Decision {
        action: Action::ScaleUp {
            add,
            flavor: alarm.params.flavor.clone(),
            az: alarm.params.az.clone(),
        },
        reason: format!(
            "{label}: {how} → desired {desired}{capped}; capacity {} ({} serving + {} pending): add {add}",
            cap.total, cap.serving, cap.pending
        ),
        desired,
        capacity: cap,
        alarm_id: id,
    }
}

/// Surge replicas that may be removed, newest first.
fn removable(state: &ClusterState) -> Vec<&crate::model::Replica> {
    let mut v: Vec<_> = state
        .replicas
        .iter()
        .filter(|r| r.role == Role::Surge && r.phase == Phase::Serving)
        .collect();
    v.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.id.cmp(&a.id))
    });
    v
}

/// `alarm`: the alarm that sizes the scale-down, if any; `id`: the occurrence to remember.
fn scale_down(
    state: &ClusterState,
    alarm: Option<&Alarm>,
    id: Option<String>,
    cap: Capacity,
    now: OffsetDateTime,
    cfg: &PolicyConfig,
    label: &str,
) -> Decision {
    let nothing = |reason: String| Decision {
        action: Action::Nothing,
        reason,
        desired: cap.total,
        capacity: cap,
        alarm_id: id.clone(),
    };
    let last = state.last_scale_up_at.max(state.last_scale_down_at);
    if let Some(left) = cooldown_left(last, cfg.scale_down_cooldown_secs, now) {
        return nothing(format!(
            "{label}: scale-down cooldown, {left}s left of {}s since the last scaling",
            cfg.scale_down_cooldown_secs
        ));
    }
    if cap.pending > 0 {
        return nothing(format!(
            "{label}: {} replica(s) still coming up; not scaling down during a scale-up",
            cap.pending
        ));
    }
    let params = alarm.map(|a| &a.params);
    let (raw, how) = if let Some(k) = params.and_then(|p| p.replicas) {
        let k = k.min(cfg.max_step);
        (
            cap.total.saturating_sub(k),
            format!("alarm parameter replicas={k}"),
        )
    } else if let Some(m) = params.and_then(|p| p.multiplier) {
        let m = m.clamp(1, cfg.max_multiplier);
        (
            cap.total.div_ceil(m),
            format!("alarm parameter multiplier=/{m}"),
        )
    } else {
        match cfg.mode {
            Mode::Step => (
                cap.total.saturating_sub(cfg.scale_down_step),
                format!("step -{}", cfg.scale_down_step),
            ),
            Mode::Multiplier => (
                cap.total.div_ceil(cfg.multiplier),
                format!("multiplier /{}", cfg.multiplier),
            ),
            Mode::TargetTracking => {
                let target = cfg.target_value.unwrap_or(f64::NAN);
                match alarm
                    .and_then(|a| a.value)
                    .and_then(|v| target_desired(cap.serving, v, target))
                {
                    Some(d) => (d, format!("target tracking (target {target})")),
                    // A resolved alarm without a value: fall back to one step down.
                    None if alarm.is_none() => (
                        cap.total.saturating_sub(cfg.scale_down_step),
                        format!("step -{}", cfg.scale_down_step),
                    ),
                    None => {
                        return nothing(format!(
                        "{label}: target tracking needs the alarm's metric value; none was given"
                    ))
                    }
                }
            }
        }
    };
    let (floor, floor_why) = floor(now, cfg);
    let desired = raw.max(floor).min(cfg.max_replicas.max(floor));
    // Never below the floor counting only what serves now.
    let want = cap
        .total
        .saturating_sub(desired)
        .min(cap.serving.saturating_sub(floor));
    let candidates = removable(state);
    let remove: Vec<String> = candidates
        .iter()
        .take(want as usize)
        .map(|r| r.id.clone())
        .collect();
    if remove.is_empty() {
        let why = if want == 0 {
            format!(
                "the floor ({floor_why}) is {floor} and capacity is {}",
                cap.total
            )
        } else {
            "no serving surge replica to remove (base replicas are never removed)".to_string()
        };
        return nothing(format!("{label}: {how} → desired {desired}; {why}"));
    }
    let n = remove.len() as u32;
    Decision {
        reason: format!(
            "{label}: {how} → desired {desired} (floor {floor} from {floor_why}); capacity {}: \
             remove {n} surge replica(s), newest first: {}",
            cap.total,
            remove.join(", ")
        ),
        action: Action::ScaleDown { remove },
        desired: cap.total - n,
        capacity: cap,
        alarm_id: id,
    }
}

fn tick(state: &ClusterState, cap: Capacity, now: OffsetDateTime, cfg: &PolicyConfig) -> Decision {
    let (floor, floor_why) = floor(now, cfg);
    if cap.total < floor {
        let desired = floor.min(cfg.max_replicas);
        let add = desired - cap.total;
        return Decision {
            action: Action::ScaleUp {
                add,
                flavor: None,
                az: None,
            },
            reason: format!(
                "tick: capacity {} ({} serving + {} pending) is below the floor {floor} of {floor_why}: add {add}",
                cap.total, cap.serving, cap.pending
            ),
            desired,
            capacity: cap,
            alarm_id: None,
        };
    }
    if cap.total > cfg.max_replicas && cap.pending == 0 {
        let want = (cap.total - cfg.max_replicas).min(cap.serving.saturating_sub(floor));
        let remove: Vec<String> = removable(state)
            .iter()
            .take(want as usize)
            .map(|r| r.id.clone())
            .collect();
        if !remove.is_empty() {
            let n = remove.len() as u32;
            return Decision {
                reason: format!(
                    "tick: capacity {} is above max_replicas {}: remove {n} surge replica(s), newest first: {}",
                    cap.total,
                    cfg.max_replicas,
                    remove.join(", ")
                ),
                action: Action::ScaleDown { remove },
                desired: cap.total - n,
                capacity: cap,
                alarm_id: None,
            };
        }
    }
    Decision {
        action: Action::Nothing,
        reason: format!(
            "tick: capacity {} ({} serving + {} pending) is within {floor}..={} ({floor_why})",
            cap.total, cap.serving, cap.pending, cfg.max_replicas
        ),
        desired: cap.total,
        capacity: cap,
        alarm_id: None,
    }
}

/// Record a decision in the state (the bookkeeping half of committing it): remember the
/// alarm occurrence, start the cooldown, register the operation so its replicas count as
/// in flight, and mark replicas chosen for removal as draining. `op_id` names the
/// operation (deterministic ids keep retries idempotent).
pub fn record(state: &mut ClusterState, d: &Decision, now: OffsetDateTime, op_id: &str) {
    if let Some(id) = &d.alarm_id {
        state.remember_alarm(id, now);
    }
    match &d.action {
        Action::Nothing => {}
        Action::ScaleUp { add, .. } => {
            state.last_scale_up_at = Some(now);
            state.operations.push(Operation {
                id: op_id.to_string(),
                kind: OpKind::ScaleUp,
                count: *add,
                replicas: Vec::new(),
                started_at: now,
                alarm_id: d.alarm_id.clone(),
                extra: BTreeMap::new(),
            });
        }
        Action::ScaleDown { remove } => {
            state.last_scale_down_at = Some(now);
            for r in state.replicas.iter_mut() {
                if remove.contains(&r.id) {
                    r.phase = Phase::Draining;
                }
            }
            state.operations.push(Operation {
                id: op_id.to_string(),
                kind: OpKind::ScaleDown,
                count: remove.len() as u32,
                replicas: remove.clone(),
                started_at: now,
                alarm_id: d.alarm_id.clone(),
                extra: BTreeMap::new(),
            });
        }
    }
}

#[cfg(test)]
mod tests;
