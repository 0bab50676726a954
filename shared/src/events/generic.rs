//! pgsurge's own JSON form, for anything else and for the CLI (documented, with every
//! field, in README "The generic JSON form").
//!
//! ```json
//! {"pgsurge": 1, "kind": "alarm", "id": "manual-1", "name": "read-load", "state": "firing",
//!  "metric": "cpu", "value": 91.5, "threshold": 80, "params": {"replicas": 2, "cluster": "main"}}
//! {"pgsurge": 1, "kind": "instance", "event": "ready", "replica_id": "r3", "server_id": "..."}
//! {"pgsurge": 1, "kind": "tick"}
//! ```

use super::{
    malformed, Alarm, AlarmParams, AlarmState, Event, EventError, InstanceEvent, InstanceKind,
    Source,
};
use serde::Deserialize;
use std::collections::BTreeMap;

const NAME: &str = "generic";

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum Generic {
    Alarm {
        pgsurge: u32,
        id: String,
        name: String,
        state: AlarmState,
        metric: Option<String>,
        value: Option<f64>,
        threshold: Option<f64>,
        #[serde(default)]
        resource: BTreeMap<String, String>,
        at: Option<String>,
        /// Deserialised on its own so that an error names `params` (unknown keys are
        /// refused: `AlarmParams` denies them).
        #[serde(default)]
        params: Option<serde_json::Value>,
    },
    Instance {
        pgsurge: u32,
        event: InstanceKind,
        server_id: Option<String>,
        replica_id: Option<String>,
        at: Option<String>,
        /// The cluster the server belongs to (optional; another cluster's is ignored).
        cluster: Option<String>,
    },
    Tick {
        pgsurge: u32,
    },
}

pub(super) fn parse(v: serde_json::Value) -> Result<Event, EventError> {
    let g: Generic = serde_json::from_value(v).map_err(|e| malformed(NAME, e.to_string()))?;
    let version = match &g {
        Generic::Alarm { pgsurge, .. }
        | Generic::Instance { pgsurge, .. }
        | Generic::Tick { pgsurge } => *pgsurge,
    };
    if version != 1 {
        return Err(malformed(
            NAME,
            format!("`pgsurge` version {version} is not supported (expected 1)"),
        ));
    }
    Ok(match g {
        Generic::Alarm {
            id,
            name,
            state,
            metric,
            value,
            threshold,
            resource,
            at,
            params,
            ..
        } => {
            if id.is_empty() || name.is_empty() {
                return Err(malformed(NAME, "`id` and `name` must not be empty"));
            }
            let params: AlarmParams = match params {
                None | Some(serde_json::Value::Null) => AlarmParams::default(),
                Some(p) => serde_json::from_value(p)
                    .map_err(|e| malformed(NAME, format!("`params`: {e}")))?,
            };
            Event::Alarms {
                alarms: vec![Alarm {
                    source: Source::Generic,
                    id,
                    name,
                    state,
                    metric,
                    value,
                    threshold,
                    resource,
                    at,
                    params,
                }],
            }
        }
        Generic::Instance {
            event,
            server_id,
            replica_id,
            at,
            cluster,
            ..
        } => {
            if server_id.is_none() && replica_id.is_none() {
                return Err(malformed(
                    NAME,
                    "an instance event needs `server_id` or `replica_id`",
                ));
            }
            Event::Instance(InstanceEvent {
                source: Source::Generic,
                kind: event,
                server_id,
                replica_id,
                at,
                cluster,
            })
        }
        Generic::Tick { .. } => Event::Tick,
    })
}
