//! Per-alarm parameters: validated against the operator's limits when the event arrives.
//!
//! An alarm may carry its own sizing — `pgsurge.replicas=3`, `pgsurge.multiplier=x2`,
//! `pgsurge.flavor=...`, `pgsurge.az=...`, `pgsurge.action=scale-up|scale-down` — in
//! Alertmanager labels or annotations, an Aodh alarm's name or reason, a Cloud Eye alarm
//! description, or the generic form's `params`. Whoever can edit an alarm rule can thus
//! size a scale-up; these limits bound what they can ask for. A violation is a precise
//! error and the event changes nothing.

use super::{Alarm, AlarmParams, EventError, ParamLimits};

/// Check one alarm's parameters.
pub fn validate_params(alarm: &Alarm, limits: &ParamLimits) -> Result<(), EventError> {
    let bad = |message: String| EventError::InvalidParams {
        alarm: alarm.name.clone(),
        message,
    };
    let p: &AlarmParams = &alarm.params;
    let valid_name = |what: &str, v: &str| {
        if v.is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
            Err(bad(format!("{what} {v:?} is not a valid name")))
        } else {
            Ok(())
        }
    };
    if p.replicas.is_some() && p.multiplier.is_some() {
        return Err(bad("give either replicas or multiplier, not both".into()));
    }
    if let Some(r) = p.replicas {
        if r == 0 || r > limits.max_step {
            return Err(bad(format!(
                "replicas={r} is outside 1..={} (policy.max_step)",
                limits.max_step
            )));
        }
    }
    if let Some(m) = p.multiplier {
        if m < 2 || m > limits.max_multiplier {
            return Err(bad(format!(
                "multiplier={m} is outside 2..={} (policy.max_multiplier)",
                limits.max_multiplier
            )));
        }
    }
    if let Some(v) = &p.flavor {
        valid_name("flavor", v)?;
        if !limits.allowed_flavors.iter().any(|a| a == v) {
            return Err(bad(if limits.allowed_flavors.is_empty() {
                format!(
                    "flavor {v:?} is not allowed: policy.allowed_flavors is empty, which \
                     allows only the configured flavor, and this provider configures none"
                )
            } else {
                format!(
                    "flavor {v:?} is not in policy.allowed_flavors or the configured flavor ({})",
                    limits.allowed_flavors.join(", ")
                )
            }));
        }
    }
    if let Some(v) = &p.az {
        valid_name("az", v)?;
        if !limits.allowed_azs.is_empty() && !limits.allowed_azs.iter().any(|a| a == v) {
            return Err(bad(format!(
                "az {v:?} is not in policy.allowed_azs ({})",
                limits.allowed_azs.join(", ")
            )));
        }
    }
    Ok(())
}
