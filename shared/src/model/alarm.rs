//! The normalised alarm: what every webhook format becomes (in `events`) and what the
//! scaling policy decides on (in `policy`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Alertmanager,
    Aodh,
    CloudEye,
    Generic,
}

/// Whether the alarm condition holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlarmState {
    Firing,
    Resolved,
}

/// Optional per-alarm parameters (from labels, annotations or the alarm description).
/// Validated against [`ParamLimits`] when the event is received (`events::params`).
///
/// Unknown keys are refused when deserialised (the generic form's `params`): a typo such
/// as `replica` must not silently scale by the default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmParams {
    /// Add (or remove) exactly this many replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Grow the serving count by this factor (2 = x2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flavor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub az: Option<String>,
    /// Explicit direction, when the alarm says which way to scale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Direction>,
    /// The pgsurge cluster (`cluster.name`) the alarm is for. One Alertmanager or SMN
    /// topic commonly serves many clusters: an alarm for another one is ignored, and
    /// one that names none only counts with `cluster.require_label = false`
    /// (`events::scope`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    ScaleUp,
    ScaleDown,
}

/// One alarm, normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    pub source: Source,
    /// Stable id of this alarm *occurrence* (dedup key for retries and duplicates).
    pub id: String,
    pub name: String,
    pub state: AlarmState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Dimensions / labels identifying what the alarm is about.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource: BTreeMap<String, String>,
    /// When the alarm changed state, RFC 3339, as the source reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(default)]
    pub params: AlarmParams,
}

/// What alarm parameters may ask for (from `[policy]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamLimits {
    pub max_step: u32,
    pub max_multiplier: u32,
    /// Exactly these (empty: none). Built by `PolicyConfig::limits` from
    /// `policy.allowed_flavors` plus the provider's configured flavor: an alarm must not
    /// pick a server size the operator never named.
    pub allowed_flavors: Vec<String>,
    /// Empty: any availability zone.
    pub allowed_azs: Vec<String>,
}

impl Default for ParamLimits {
    fn default() -> Self {
        ParamLimits {
            max_step: 10,
            max_multiplier: 3,
            allowed_flavors: Vec::new(),
            allowed_azs: Vec::new(),
        }
    }
}
