//! Simple Message Notification (SMN) HTTP(S) subscription messages.
//!
//! Cloud Eye alarms (and Auto Scaling lifecycle hooks, refused) reach an HTTP endpoint through an
//! SMN topic. SMN wraps them: `type` (`SubscriptionConfirmation`, `Notification`,
//! `UnsubscribeConfirmation`), `topic_urn`, `message_id`, `message` (the payload as a
//! string), `timestamp`, `signature`, `signing_cert_url`, `subscribe_url`.
//! A `Notification`'s `message` is parsed as a Cloud Eye alarm; a lifecycle hook is
//! refused (`lifecycle.rs` says why).
//! (Some documentation pretty-prints `message` as an object; both forms are accepted.)
//!
//! A FunctionGraph SMN trigger delivers the same messages differently:
//! `{"record": [{"event_source": "smn", "smn": {"message": "...", "type": "notification",
//! ...}}], ...}` — one record per message; each is parsed the same way.

use super::{
    lifecycle, malformed, num_field, opt_str_field, params_from_map, str_field, text_pairs, Alarm,
    AlarmState, Event, EventError, Source, SubscriptionConfirmation,
};
use std::collections::BTreeMap;

const NAME: &str = "smn";
const CLOUD_EYE: &str = "cloud-eye";

pub(super) fn parse(v: serde_json::Value) -> Result<Event, EventError> {
    let topic_urn = str_field(NAME, &v, "topic_urn")?;
    match str_field(NAME, &v, "type")? {
        kind @ ("SubscriptionConfirmation" | "UnsubscribeConfirmation") => {
            Ok(Event::SubscriptionConfirmation(SubscriptionConfirmation {
                topic_urn: topic_urn.to_string(),
                subscribe_url: str_field(NAME, &v, "subscribe_url")?.to_string(),
                unsubscribe: kind == "UnsubscribeConfirmation",
            }))
        }
        "Notification" => notification(v.get("message")),
        other => Err(malformed(NAME, format!("unknown message type {other:?}"))),
    }
}

/// An SMN message whose signature was verified: parsed as SMN only, and refused when it
/// also carries keys by which [`super::parse_value`] recognises another format. Those keys
/// are not covered by the SMN signature, so their presence means the body was altered
/// after signing (or is not what it claims to be); ignoring them silently would hide it.
pub(super) fn parse_signed(v: serde_json::Value) -> Result<Event, EventError> {
    let foreign: Vec<&str> = super::FORMAT_MARKERS
        .iter()
        .copied()
        .filter(|k| v.get(k).is_some())
        .collect();
    if !foreign.is_empty() {
        return Err(EventError::Unauthenticated(format!(
            "an SMN-signed message carries keys of another event format ({}) that its \
             signature does not cover; refused",
            foreign.join(", ")
        )));
    }
    parse(v)
}

/// A FunctionGraph SMN trigger event: one or more records, each an SMN notification.
pub(super) fn parse_trigger(v: &serde_json::Value) -> Result<Event, EventError> {
    const TRIGGER: &str = "functiongraph-smn";
    let records = v
        .get("record")
        .and_then(|r| r.as_array())
        .ok_or_else(|| malformed(TRIGGER, "`record` is not an array"))?;
    if records.is_empty() {
        return Err(malformed(TRIGGER, "`record` is empty"));
    }
    let mut alarms = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let source = r.get("event_source").and_then(|s| s.as_str()).unwrap_or("");
        if !source.eq_ignore_ascii_case("smn") {
            return Err(malformed(
                TRIGGER,
                format!("record[{i}].event_source is {source:?}, not \"smn\""),
            ));
        }
        let smn = r
            .get("smn")
            .ok_or_else(|| malformed(TRIGGER, format!("record[{i}] has no `smn` object")))?;
        match notification(smn.get("message"))? {
            Event::Alarms { alarms: more } => alarms.extend(more),
            other => {
                return Err(malformed(
                    TRIGGER,
                    format!("record[{i}] is not an alarm ({other:?})"),
                ))
            }
        }
    }
    Ok(Event::Alarms { alarms })
}

/// The payload of an SMN notification: a Cloud Eye alarm (a lifecycle hook is refused).
fn notification(message: Option<&serde_json::Value>) -> Result<Event, EventError> {
    let owned;
    let inner: &serde_json::Value = match message {
        Some(serde_json::Value::String(text)) => {
            owned = serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
                malformed(
                    NAME,
                    format!("`message` is not JSON (use the JSON message template): {e}"),
                )
            })?;
            &owned
        }
        Some(obj @ serde_json::Value::Object(_)) => obj,
        None | Some(serde_json::Value::Null) => return Err(malformed(NAME, "missing `message`")),
        Some(other) => {
            return Err(malformed(
                NAME,
                format!(
                    "`message` must be a string (or an object), not {}",
                    super::json_type(other)
                ),
            ))
        }
    };
    if inner.get("alarm_id").is_some() {
        cloud_eye(inner)
    } else if inner.get("lifecycle_action_key").is_some()
        || inner.get("lifecycle_hook_name").is_some()
    {
        Err(lifecycle::refuse())
    } else {
        Err(malformed(
            NAME,
            "`message` is neither a Cloud Eye alarm (alarm_id) nor a lifecycle hook",
        ))
    }
}

/// A Cloud Eye alarm notification (JSON template).
fn cloud_eye(m: &serde_json::Value) -> Result<Event, EventError> {
    let alarm_id = str_field(CLOUD_EYE, m, "alarm_id")?;
    let status = match opt_str_field(CLOUD_EYE, m, "alarm_status")? {
        Some(s) => s,
        None => opt_str_field(CLOUD_EYE, m, "alarm_state")?
            .ok_or_else(|| malformed(CLOUD_EYE, "missing `alarm_status`"))?,
    };
    let state = match status.to_ascii_lowercase().as_str() {
        "alarm" | "firing" => AlarmState::Firing,
        "ok" | "resolved" | "insufficient_data" | "invalid" => AlarmState::Resolved,
        other => {
            return Err(malformed(
                CLOUD_EYE,
                format!("`alarm_status` {other:?} is not alarm / ok"),
            ))
        }
    };
    let name = opt_str_field(CLOUD_EYE, m, "alarm_name")?
        .unwrap_or(alarm_id)
        .to_string();
    // `time` is milliseconds since the epoch; kept verbatim in the id, as RFC 3339 in `at`.
    let time = m.get("time").map(|t| match t {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let at = time.as_deref().map(|t| {
        t.parse::<i64>()
            .ok()
            .and_then(|ms| {
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
            })
            .and_then(|d| {
                d.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| t.to_string())
    });
    let mut resource = BTreeMap::new();
    if let Some(ns) = opt_str_field(CLOUD_EYE, m, "namespace")? {
        resource.insert("namespace".to_string(), ns.to_string());
    }
    // Dimensions come as "name:value" (several joined by ',').
    if let Some(dims) = opt_str_field(CLOUD_EYE, m, "dimension")? {
        for d in dims.split(',') {
            if let Some((k, v)) = d.split_once(':').or_else(|| d.split_once('=')) {
                resource.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    let description = opt_str_field(CLOUD_EYE, m, "alarm_description")?.unwrap_or("");
    // Parameters are words of the description; the cluster may also be a dimension
    // `pgsurge_cluster` (custom metrics can carry one; SYS.* metrics cannot), and both
    // must agree when both are given.
    let cluster_dim = resource.get("pgsurge_cluster").cloned();
    let params = params_from_map(
        CLOUD_EYE,
        text_pairs("alarm description", description)
            .into_iter()
            .chain(
                cluster_dim
                    .as_deref()
                    .map(|c| ("dimension", "pgsurge_cluster", c)),
            ),
    )?;
    let value = m
        .get("alarmValue")
        .and_then(|a| a.as_array())
        .and_then(|a| a.last())
        .and_then(|last| num_field(last, "value"))
        .or_else(|| num_field(m, "current_value"));
    Ok(Event::Alarms {
        alarms: vec![Alarm {
            source: Source::CloudEye,
            id: match &time {
                Some(t) => format!("{alarm_id}@{t}"),
                None => alarm_id.to_string(),
            },
            name,
            state,
            metric: opt_str_field(CLOUD_EYE, m, "metric_name")?.map(str::to_string),
            value,
            threshold: num_field(m, "value"),
            resource,
            at,
            params,
        }],
    })
}
