//! The `[policy]` configuration section (documented in `config/pgsurge.example.toml`).

use super::schedule::Cron;
use crate::check::{at_most, in_range, invalid, non_empty, Checked};
use crate::model::ParamLimits;
use serde::Deserialize;

/// How a scale-up alarm sizes the read tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Add `step` replicas (remove `scale_down_step`).
    Step,
    /// Grow to `multiplier` × the serving count (shrink to capacity / multiplier).
    Multiplier,
    /// desired = ceil(serving × metric / target_value), like Aurora's target tracking.
    TargetTracking,
}

/// A scheduled pre-scale window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleWindow {
    pub name: String,
    /// When the window opens: five-field cron, UTC (parsed while the config loads, so a
    /// bad expression is an error naming `policy.schedule[i].cron`).
    pub cron: Cron,
    pub duration_mins: u32,
    /// Minimum replica count while the window is open.
    pub min_replicas: u32,
}

impl ScheduleWindow {
    pub fn is_open(&self, now: time::OffsetDateTime) -> bool {
        self.cron.window_open(now, self.duration_mins)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    pub mode: Mode,
    pub step: u32,
    pub multiplier: u32,
    /// Target tracking: the per-replica metric value to aim at.
    pub target_value: Option<f64>,
    /// Replicas (base + surge, serving or on the way) never fewer / never more than this.
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub scale_up_cooldown_secs: u64,
    pub scale_down_cooldown_secs: u64,
    pub scale_down_step: u32,
    /// Let a resolved scale-up alarm scale down. Off: scale-down needs its own alarm.
    pub scale_down_on_resolved: bool,
    /// Per-alarm parameter limits.
    pub max_step: u32,
    pub max_multiplier: u32,
    /// Flavors an alarm may ask for besides the configured one. Empty: only the
    /// configured flavor (`configured_flavor`), never any.
    pub allowed_flavors: Vec<String>,
    pub allowed_azs: Vec<String>,
    pub schedule: Vec<ScheduleWindow>,
    /// The flavor servers boot with when an alarm names none (`openstack.flavor`; `None`
    /// on the local provider, which has no sizes). Not a key of `[policy]`: filled in by
    /// `config::Config` when it loads, so the alarm limits can allow it.
    #[serde(skip)]
    pub configured_flavor: Option<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            mode: Mode::Multiplier,
            step: 1,
            multiplier: 2,
            target_value: None,
            min_replicas: 1,
            max_replicas: 10,
            scale_up_cooldown_secs: 300,
            scale_down_cooldown_secs: 900,
            scale_down_step: 1,
            scale_down_on_resolved: false,
            max_step: 10,
            max_multiplier: 3,
            allowed_flavors: Vec::new(),
            allowed_azs: Vec::new(),
            schedule: Vec::new(),
            configured_flavor: None,
        }
    }
}

impl PolicyConfig {
    /// Limits alarms' own parameters are validated against. Flavors: `allowed_flavors`
    /// plus the configured flavor (asking for the size servers get anyway grants nothing),
    /// so an empty `allowed_flavors` allows only the configured one — and none at all
    /// where the provider configures none.
    pub fn limits(&self) -> ParamLimits {
        let mut flavors = self.allowed_flavors.clone();
        if let Some(f) = self.configured_flavor.as_ref().filter(|f| !f.is_empty()) {
            if !flavors.contains(f) {
                flavors.push(f.clone());
            }
        }
        ParamLimits {
            max_step: self.max_step,
            max_multiplier: self.max_multiplier,
            allowed_flavors: flavors,
            allowed_azs: self.allowed_azs.clone(),
        }
    }
}

impl PolicyConfig {
    /// Checks for `[policy]` that types alone cannot express (keys relative to it).
    pub fn validate(&self) -> Checked {
        let p = self;
        in_range("max_replicas", p.max_replicas, 1..=1000)?;
        if p.min_replicas > p.max_replicas {
            return Err(invalid(
                "min_replicas",
                format!(
                    "{} is above max_replicas {}",
                    p.min_replicas, p.max_replicas
                ),
            ));
        }
        in_range("max_step", p.max_step, 1..=100)?;
        in_range("max_multiplier", p.max_multiplier, 2..=10)?;
        for (key, v, lo, hi, bound) in [
            ("step", p.step, 1, p.max_step, "max_step"),
            (
                "scale_down_step",
                p.scale_down_step,
                1,
                p.max_step,
                "max_step",
            ),
            (
                "multiplier",
                p.multiplier,
                2,
                p.max_multiplier,
                "max_multiplier",
            ),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(invalid(
                    key,
                    format!("{v} is outside {lo}..={bound} ({hi})"),
                ));
            }
        }
        match p.target_value {
            Some(t) if !(t.is_finite() && t > 0.0) => {
                return Err(invalid(
                    "target_value",
                    format!("{t} must be a positive number"),
                ))
            }
            None if p.mode == Mode::TargetTracking => {
                return Err(invalid(
                    "target_value",
                    "is required with mode = \"target-tracking\"",
                ))
            }
            _ => {}
        }
        const DAY: (u64, &str) = (86_400, "86400 (one day)");
        at_most(
            "scale_up_cooldown_secs",
            p.scale_up_cooldown_secs,
            DAY.0,
            DAY.1,
        )?;
        at_most(
            "scale_down_cooldown_secs",
            p.scale_down_cooldown_secs,
            DAY.0,
            DAY.1,
        )?;
        let max = p.max_replicas;
        for (i, w) in p.schedule.iter().enumerate() {
            let key = |k: &str| format!("schedule[{i}].{k}");
            non_empty(&key("name"), &w.name)?;
            in_range(&key("duration_mins"), w.duration_mins, 1..=1440)?;
            if w.min_replicas > max {
                return Err(invalid(
                    key("min_replicas"),
                    format!("{} is above policy.max_replicas {max}", w.min_replicas),
                ));
            }
        }
        Ok(())
    }
}
