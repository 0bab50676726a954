//! OpenStack Aodh alarm action (`alarm_actions = http://...`).
//!
//! Aodh POSTs `alarm_name`, `alarm_id`, `severity`, `previous`, `current`, `reason` and
//! `reason_data`. It sends no timestamp, so the occurrence id is built from the alarm id,
//! the transition and the most recent sample, which repeats for a re-sent action.
//! `insufficient data` is treated as resolved: never scale on missing data.
//!
//! The body names no metric: `reason_data.type` is the *rule* type (`threshold`,
//! `composite`, ...), so it is kept as the `alarm_type` dimension, not as the metric.
//!
//! An *event* alarm (`reason_data.type = "event"`) fired for one event Ceilometer made
//! from a service's notification; `reason_data.event` is that event. When it is a
//! server's deletion (Nova's `compute.instance.delete.end`, or the versioned
//! `instance.delete.end`) it is what `instance-deleted` takes: an instance event for the
//! server its `instance_id` trait names, at the event's `generated` time. Any other event
//! alarm is an alarm like the rest.

use super::{
    malformed, num_field, opt_str_field, params_from_map, str_field, text_pairs, Alarm, AlarmState,
    Event, EventError, InstanceEvent, InstanceKind, Source,
};
use serde_json::Value;

const NAME: &str = "aodh";

/// Ceilometer event types of a server's deletion (legacy and versioned notifications).
const SERVER_DELETED: &[&str] = &["compute.instance.delete.end", "instance.delete.end"];

/// A server-deletion event alarm as an instance event; `None` for any other body.
fn server_deleted(
    data: &Value,
    cluster: Option<String>,
) -> Result<Option<InstanceEvent>, EventError> {
    if data.get("type").and_then(Value::as_str) != Some("event") {
        return Ok(None);
    }
    let event = data.get("event").unwrap_or(&Value::Null);
    let kind = event
        .get("event_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !SERVER_DELETED.contains(&kind) {
        return Ok(None);
    }
    // Ceilometer's traits: [name, type, value] triples.
    let trait_value = |name: &str| {
        event
            .get("traits")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .find(|t| t.first().and_then(Value::as_str) == Some(name))
            .and_then(|t| t.get(2))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let server_id = trait_value("instance_id").ok_or_else(|| {
        malformed(
            NAME,
            format!("event alarm for {kind} without an `instance_id` trait"),
        )
    })?;
    Ok(Some(InstanceEvent {
        source: Source::Aodh,
        kind: InstanceKind::Deleted,
        server_id: Some(server_id),
        replica_id: None,
        at: event
            .get("generated")
            .and_then(Value::as_str)
            .map(str::to_string),
        cluster,
    }))
}

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
    if let Some(deleted) = server_deleted(&data, params.cluster.clone())? {
        return Ok(Event::Instance(deleted));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What aodh-notifier posts for an event alarm that Ceilometer's event for Nova's
    /// `compute.instance.delete.end` fired (aodh 15 `evaluator/event.py`).
    fn deleted_body(event_type: &str) -> Value {
        json!({
            "alarm_name": "server-deleted pgsurge.cluster=main",
            "alarm_id": "0c5d4a1e-3f1b-4d8e-9b0a-6f7e8d9c0b1a",
            "severity": "low", "previous": "insufficient data", "current": "alarm",
            "reason": "Event <id=5e1c,event_type=compute.instance.delete.end> hits the query <query=[]>.",
            "reason_data": {"type": "event", "event": {
                "message_id": "5e1c", "event_type": event_type,
                "generated": "2026-12-06T23:40:01.123456",
                "traits": [["tenant_id", 1, "9b6d"], ["instance_id", 1, "3f1e2d4c-5b6a-4798-8a9b-0c1d2e3f4a5b"],
                           ["state", 1, "deleted"]],
                "raw": {}}}
        })
    }

    #[test]
    fn a_server_deletion_event_alarm_is_an_instance_deleted_event() {
        for t in SERVER_DELETED {
            let Event::Instance(e) = parse(deleted_body(t)).unwrap() else {
                panic!("not an instance event for {t}");
            };
            assert_eq!(e.kind, InstanceKind::Deleted);
            assert_eq!(
                e.server_id.as_deref(),
                Some("3f1e2d4c-5b6a-4798-8a9b-0c1d2e3f4a5b")
            );
            assert_eq!(e.cluster.as_deref(), Some("main"));
            assert_eq!(e.at.as_deref(), Some("2026-12-06T23:40:01.123456"));
            assert_eq!(e.source, Source::Aodh);
        }
    }

    #[test]
    fn other_event_alarms_stay_alarms_and_a_deletion_without_server_is_refused() {
        let other = parse(deleted_body("compute.instance.create.end")).unwrap();
        assert!(matches!(other, Event::Alarms { .. }), "{other:?}");
        let mut no_id = deleted_body("compute.instance.delete.end");
        no_id["reason_data"]["event"]["traits"] = json!([["state", 1, "deleted"]]);
        let e = parse(no_id).unwrap_err().to_string();
        assert!(e.contains("instance_id"), "{e}");
    }
}
