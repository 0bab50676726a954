//! Auto Scaling lifecycle hook notifications (instance launching / terminating).
//!
//! Delivered through an SMN topic (or posted directly). The hook suspends the instance
//! until someone calls back with `lifecycle_action_key`; we keep the key so the
//! orchestration can answer CONTINUE / ABANDON.

use super::{malformed, Event, EventError, InstanceEvent, InstanceKind, Source};

const NAME: &str = "as-lifecycle";

pub(super) fn parse(m: &serde_json::Value) -> Result<Event, EventError> {
    let s = |k: &str| {
        m.get(k)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let action = s("lifecycle_hook_type")
        .or_else(|| s("lifecycle_action"))
        .or_else(|| s("instance_lifecycle_status"))
        .ok_or_else(|| {
            malformed(
                NAME,
                "missing `lifecycle_hook_type` (INSTANCE_LAUNCHING / INSTANCE_TERMINATING)",
            )
        })?;
    let kind = match action.to_ascii_uppercase().as_str() {
        "INSTANCE_LAUNCHING" | "PENDING_WAIT" => InstanceKind::Launching,
        "INSTANCE_TERMINATING" | "REMOVING_WAIT" => InstanceKind::Terminating,
        other => {
            return Err(malformed(
                NAME,
                format!("unknown lifecycle action {other:?}"),
            ))
        }
    };
    let server_id = s("instance_id").ok_or_else(|| malformed(NAME, "missing `instance_id`"))?;
    Ok(Event::Instance(InstanceEvent {
        source: Source::AsLifecycle,
        kind,
        server_id: Some(server_id),
        replica_id: None,
        at: s("timestamp").or_else(|| s("time")),
        lifecycle_action_key: s("lifecycle_action_key"),
    }))
}
