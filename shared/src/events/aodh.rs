//! OpenStack Aodh alarm action (`alarm_actions = http://...`).
//!
//! Aodh POSTs `alarm_name`, `alarm_id`, `severity`, `previous`, `current`, `reason` and
//! `reason_data`. It sends no timestamp, so the occurrence id is built from the alarm id,
//! the transition and the most recent sample, which repeats for a re-sent action.
//! `insufficient data` is treated as resolved: never scale on missing data.
//!
//! The body names no metric: `reason_data.type` is the *rule* type (`threshold`,
//! `composite`, ...), so it is kept as the `alarm_type` dimension, not as the metric.

use super::{
    malformed, num_field, opt_str_field, params_from_map, str_field, text_pairs, Alarm, AlarmState,
    Event, EventError, Source,
};

const NAME: &str = "aodh";

pub(super) fn parse(v: serde_json::Value) -> Result<Event, EventError> {
    let alarm_id = str_field(NAME, &v, "alarm_id")?;
    let current = str_field(NAME, &v, "current")?;
    let state = match current {
        "alarm" => AlarmState::Firing,
        "ok" | "insufficient data" => AlarmState::Resolved,
        other => {
            return Err(malformed(
                NAME,
                format!("`current` {other:?} is not alarm / ok / insufficient data"),
            ))
        }
    };
    let name = opt_str_field(NAME, &v, "alarm_name")?
        .unwrap_or(alarm_id)
        .to_string();
    let previous = opt_str_field(NAME, &v, "previous")?.unwrap_or("");
    let reason = opt_str_field(NAME, &v, "reason")?.unwrap_or("");
    // Aodh has no labels and its body carries no description: parameters, the cluster
    // among them, live in the alarm name (`pg-read-cpu pgsurge.cluster=catalog`) or the
    // reason text.
    let params = params_from_map(
        NAME,
        text_pairs("alarm name", &name)
            .into_iter()
            .chain(text_pairs("reason", reason)),
    )?;
    let data = v.get("reason_data").cloned().unwrap_or_default();
    let most_recent = num_field(&data, "most_recent");
    let id = match most_recent {
        Some(m) => format!("{alarm_id}:{previous}->{current}:{m}"),
        None => format!("{alarm_id}:{previous}->{current}"),
    };
    Ok(Event::Alarms {
        alarms: vec![Alarm {
            source: Source::Aodh,
            id,
            name: name.clone(),
            state,
            metric: None,
            value: most_recent,
            threshold: num_field(&data, "threshold"),
            resource: [
                Some(("alarm_id".to_string(), alarm_id.to_string())),
                data.get("type")
                    .and_then(|t| t.as_str())
                    .map(|t| ("alarm_type".to_string(), t.to_string())),
                v.get("severity")
                    .and_then(|t| t.as_str())
                    .map(|t| ("severity".to_string(), t.to_string())),
            ]
            .into_iter()
            .flatten()
            .collect(),
            at: None,
            params,
        }],
    })
}
