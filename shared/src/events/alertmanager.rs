//! Prometheus Alertmanager webhook, version 4 (vmalert → Alertmanager uses it too).
//!
//! A notification groups several alerts; each one counts as an [`Alarm`]. The alarm id
//! is `fingerprint@startsAt`: stable across re-notifications of the same firing, new
//! for the next one. Parameters come from labels (`pgsurge_replicas`) or annotations
//! (`pgsurge.replicas`); the cluster an alert is for, from the `pgsurge_cluster` label
//! (or the `pgsurge.cluster` annotation) — not from `cluster`, which Prometheus setups
//! commonly use as an external label naming the *Prometheus* or Kubernetes cluster.

use super::{
    json_type, malformed, opt_str_field, params_from_map, str_field, Alarm, AlarmState, Event,
    EventError, Source,
};
use std::collections::BTreeMap;

const NAME: &str = "alertmanager";

pub(super) fn parse(v: serde_json::Value) -> Result<Event, EventError> {
    let version = str_field(NAME, &v, "version")?;
    if version != "4" {
        return Err(malformed(
            NAME,
            format!("webhook version {version:?} is not supported (expected \"4\")"),
        ));
    }
    let alerts = v
        .get("alerts")
        .and_then(|a| a.as_array())
        .ok_or_else(|| malformed(NAME, "`alerts` is not an array"))?;
    if alerts.is_empty() {
        return Err(malformed(NAME, "`alerts` is empty"));
    }
    let alarms = alerts.iter().map(alert).collect::<Result<Vec<_>, _>>()?;
    Ok(Event::Alarms { alarms })
}

fn string_map(v: &serde_json::Value, key: &str) -> Result<BTreeMap<String, String>, EventError> {
    match v.get(key) {
        None | Some(serde_json::Value::Null) => Ok(BTreeMap::new()),
        Some(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => Ok((k.clone(), s.to_string())),
                None => Err(malformed(
                    NAME,
                    format!("`{key}.{k}` must be a string, not {}", json_type(v)),
                )),
            })
            .collect(),
        Some(other) => Err(malformed(
            NAME,
            format!("`{key}` must be an object, not {}", json_type(other)),
        )),
    }
}

fn alert(a: &serde_json::Value) -> Result<Alarm, EventError> {
    let state = match str_field(NAME, a, "status")? {
        "firing" => AlarmState::Firing,
        "resolved" => AlarmState::Resolved,
        other => {
            return Err(malformed(
                NAME,
                format!("alert status {other:?} is neither firing nor resolved"),
            ))
        }
    };
    let labels = string_map(a, "labels")?;
    let annotations = string_map(a, "annotations")?;
    let name = labels
        .get("alertname")
        .cloned()
        .ok_or_else(|| malformed(NAME, "alert has no `alertname` label"))?;
    let starts_at = str_field(NAME, a, "startsAt")?;
    let fingerprint = opt_str_field(NAME, a, "fingerprint")?.unwrap_or(&name);
    let params = params_from_map(
        NAME,
        labels
            .iter()
            .map(|(k, v)| ("label", k.as_str(), v.as_str()))
            .chain(
                annotations
                    .iter()
                    .map(|(k, v)| ("annotation", k.as_str(), v.as_str())),
            ),
    )?;
    let number = |k: &str| {
        annotations
            .get(k)
            .or_else(|| labels.get(k))
            .and_then(|s| s.trim().parse().ok())
    };
    Ok(Alarm {
        source: Source::Alertmanager,
        id: format!("{fingerprint}@{starts_at}"),
        name,
        state,
        metric: labels
            .get("metric")
            .or_else(|| annotations.get("metric"))
            .cloned(),
        value: number("value"),
        threshold: number("threshold"),
        resource: labels
            .into_iter()
            .filter(|(k, _)| !k.starts_with("pgsurge"))
            .collect(),
        at: Some(starts_at.to_string()),
        params,
    })
}
