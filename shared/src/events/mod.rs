//! Incoming webhooks → one normalised [`Event`].
//!
//! Every source (Alertmanager/vmalert, OpenStack Aodh, Cloud Eye through an SMN
//! subscription or a FunctionGraph SMN trigger, and pgsurge's own generic JSON) is
//! recognised by its shape, authenticated, and turned into [`Alarm`]s or an
//! [`InstanceEvent`]. Auto Scaling lifecycle hooks are recognised and refused (see
//! `lifecycle.rs`). [`scope`] then keeps the alarms that name this cluster.
//!
//! [`parse`] is pure (and fuzzed). [`Receiver::receive`] is the whole front door: body
//! size limit, authentication (token / HMAC in [`auth`], a new server's credential in
//! [`callback`], SMN signatures in
//! [`smn_verify`] — the only part that does I/O, to fetch the signing certificate),
//! parsing, and validation of per-alarm parameters against the configured limits
//! ([`params`]). A rejected event is a precise error and changes nothing.

mod config;
pub use config::{AuthConfig, ClusterConfig};
mod alertmanager;
mod aodh;
pub mod auth;
pub mod callback;
mod generic;
mod lifecycle;
pub mod params;
mod receive;
pub mod scope;
mod smn;
pub mod smn_verify;
pub mod x509;

pub use auth::{authenticate, authenticate_at, hmac_signature};
pub use callback::{CallbackClaim, CallbackError, CallbackMint, CALLBACK_HEADER};
pub use params::validate_params;
pub use receive::{Authenticated, Confirmation, Receiver};
pub use scope::{ClusterScope, Scoped};
pub use smn_verify::{FetchError, HttpsFetcher, SmnConfig, SmnFetcher, SmnVerifier};
// The normalised alarm is part of the shared model (policy decides on it); events makes it.
pub use crate::model::{Alarm, AlarmParams, AlarmState, Direction, ParamLimits, Source};

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// Why an event was refused. Messages never include secrets.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("unrecognised event: {0}")]
    Unrecognised(String),
    #[error("{source_name} event is malformed: {message}")]
    Malformed {
        source_name: &'static str,
        message: String,
    },
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A signed request whose timestamp is outside the replay window.
    #[error("unauthenticated: the request was signed {age_secs}s ago (negative: in the future); the accepted window is ±{window_secs}s")]
    StaleTimestamp { age_secs: i64, window_secs: u64 },
    /// An HMAC or SMN signature that is malformed or does not verify.
    #[error("unauthenticated: bad signature: {0}")]
    BadSignature(String),
    #[error("body is {size} bytes, more than the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    /// An alarm asked for parameters outside the configured limits.
    #[error("alarm {alarm:?} has invalid parameters: {message}")]
    InvalidParams { alarm: String, message: String },
    /// Authentication needed a service that did not answer (the SMN certificate host).
    #[error("cannot authenticate now: {0}")]
    Unavailable(String),
    /// A recognised format pgsurge deliberately does not act on; the message says why
    /// and what to use instead.
    #[error("unsupported event: {0}")]
    Unsupported(String),
}

/// The raw webhook as the function received it: headers (lower-cased), query
/// parameters and body.
///
/// Deserialises from either an API-gateway envelope (`httpMethod`, `headers`,
/// `queryStringParameters`, `body`, `isBase64Encoded` — what the HTTP host, FunctionGraph
/// APIG triggers and Lambda proxy integrations deliver) or any other JSON, which is taken
/// as the body itself (CLI, direct invocation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub headers: BTreeMap<String, String>,
    /// The request URL's query parameters (may carry the token: `auth.token_query_param`).
    pub query: BTreeMap<String, String>,
    /// The body as text. For a direct event a host decoded, the text of [`Self::document`]
    /// (what it parsed), kept for whoever reads it; the receiver reads the document.
    pub body: String,
    /// True when it came through an HTTP envelope, i.e. from the network.
    pub via_http: bool,
    /// A direct event as its host decoded it: the event *is* the JSON document the host
    /// read and parsed, once; the receiver takes it as it is. `None`: the body is text
    /// the receiver parses, once (an HTTP body, after authentication; a webhook built
    /// in code).
    parsed: Option<serde_json::Value>,
    /// Decoded by a host, which measured what it read against `runtime.max_body_bytes`
    /// (the runtime's one size check): the receiver does not measure it again. A webhook
    /// built in code is measured by the receiver.
    measured: bool,
}

impl Webhook {
    /// A webhook that arrived as a bare JSON document (no HTTP envelope).
    pub fn direct(body: impl Into<String>) -> Self {
        Webhook {
            headers: BTreeMap::new(),
            query: BTreeMap::new(),
            body: body.into(),
            via_http: false,
            parsed: None,
            measured: false,
        }
    }

    /// A webhook that arrived over HTTP with these headers (names any case) and body.
    pub fn http(headers: &[(&str, &str)], body: impl Into<String>) -> Self {
        Webhook {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
            query: BTreeMap::new(),
            body: body.into(),
            via_http: true,
            parsed: None,
            measured: false,
        }
    }

    /// The document a host decoded, when it did (a direct event: see the field).
    pub fn document(&self) -> Option<&serde_json::Value> {
        self.parsed.as_ref()
    }

    /// Whether a host measured it as it read it (see the field).
    pub fn measured(&self) -> bool {
        self.measured
    }

    /// The body's JSON document: the host's, or `body` parsed now.
    pub fn json(&self) -> Result<serde_json::Value, EventError> {
        match &self.parsed {
            Some(v) => Ok(v.clone()),
            None => {
                serde_json::from_str(&self.body).map_err(|e| EventError::NotJson(e.to_string()))
            }
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

impl<'de> Deserialize<'de> for Webhook {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        let is_envelope = value.get("httpMethod").is_some() && value.get("body").is_some();
        if !is_envelope {
            // The event itself: kept parsed, so it is never parsed again.
            return Ok(Webhook {
                body: value.to_string(),
                parsed: Some(value),
                measured: true,
                ..Webhook::direct(String::new())
            });
        }
        let headers = value
            .get("headers")
            .and_then(|h| h.as_object())
            .map(|h| {
                h.iter()
                    .filter_map(|(k, v)| {
                        v.as_str().map(|v| (k.to_ascii_lowercase(), v.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        // A JSON null when there is no query string (API Gateway); strings only.
        let query = value
            .get("queryStringParameters")
            .and_then(|q| q.as_object())
            .map(|q| {
                q.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let raw = match value.get("body") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let body = if value
            .get("isBase64Encoded")
            .and_then(|b| b.as_bool())
            .unwrap_or(false)
        {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(raw.as_bytes())
                .map_err(|e| {
                    serde::de::Error::custom(format!("isBase64Encoded body is not base64: {e}"))
                })?;
            String::from_utf8(bytes).map_err(|_| serde::de::Error::custom("body is not UTF-8"))?
        } else {
            raw
        };
        Ok(Webhook {
            headers,
            query,
            body,
            via_http: true,
            parsed: None,
            measured: true,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceKind {
    /// The server says it booted and PostgreSQL is up (still to be verified).
    Ready,
    /// The server is gone (or going).
    Deleted,
    /// A server is being launched (generic form; read as `ready`).
    Launching,
    /// A server is being terminated (generic form; read as `deleted`).
    Terminating,
}

/// Something happened to one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceEvent {
    pub source: Source,
    pub kind: InstanceKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// The cluster the sender says the server belongs to; another cluster's is ignored
    /// (one without is read against this cluster's state, which knows its own servers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// An SMN subscription handshake: the subscriber must visit `subscribe_url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionConfirmation {
    pub topic_urn: String,
    pub subscribe_url: String,
    /// An `UnsubscribeConfirmation`: informational, never auto-confirmed (visiting the
    /// link would subscribe again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsubscribe: bool,
}

/// Every event pgsurge understands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Event {
    /// One or more alarms (Alertmanager groups several; each counts).
    Alarms {
        alarms: Vec<Alarm>,
    },
    Instance(InstanceEvent),
    SubscriptionConfirmation(SubscriptionConfirmation),
    /// A timer fired: reconcile / check pending replicas.
    Tick,
}

/// Recognise the body's format and normalise it. Does not authenticate: see [`authenticate`].
pub fn parse(body: &str) -> Result<Event, EventError> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| EventError::NotJson(e.to_string()))?;
    parse_value(value)
}

/// The top-level keys by which [`parse_value`] recognises a format other than an SMN
/// message. Keep in step with it: an SMN-signed body carrying any of them is refused
/// (`smn::parse_signed`), since the signature does not cover them.
pub(crate) const FORMAT_MARKERS: &[&str] = &[
    "pgsurge",
    "alerts",
    "version",
    "alarm_id",
    "current",
    "record",
    "lifecycle_action_key",
    "lifecycle_hook_name",
    "trigger_type",
];

/// [`parse`] for an already decoded JSON document.
pub fn parse_value(value: serde_json::Value) -> Result<Event, EventError> {
    let obj = value
        .as_object()
        .ok_or_else(|| EventError::Unrecognised("expected a JSON object".into()))?;
    if obj.contains_key("pgsurge") {
        generic::parse(value)
    } else if obj.contains_key("alerts") && obj.contains_key("version") {
        alertmanager::parse(value)
    } else if obj.contains_key("alarm_id") && obj.contains_key("current") {
        aodh::parse(value)
    } else if obj.contains_key("topic_urn") && obj.contains_key("type") {
        smn::parse(value)
    } else if obj.get("record").is_some_and(|r| r.is_array()) {
        smn::parse_trigger(&value)
    } else if obj.contains_key("lifecycle_action_key") || obj.contains_key("lifecycle_hook_name") {
        Err(lifecycle::refuse())
    } else if obj.get("type").and_then(|t| t.as_str()) == Some("Timer")
        || obj.contains_key("trigger_type")
    {
        Ok(Event::Tick)
    } else {
        Err(EventError::Unrecognised(
            "not Alertmanager (alerts+version), Aodh (alarm_id+current), SMN (type+topic_urn), \
             a FunctionGraph SMN trigger (record), or pgsurge generic (pgsurge)"
                .into(),
        ))
    }
}

/// Where a parameter was written, for error messages: `label`, `annotation`, `alarm
/// description`, ... A parameter given in two places with different values is refused
/// naming both, so the operator knows which one to fix.
pub(crate) type Origin = &'static str;

/// Read `pgsurge.*` parameters from a flat string map (labels, annotations, or
/// `key=value` pairs found in an alarm description), each pair with where it was
/// written. Unknown `pgsurge.*` keys are errors so a typo does not silently scale by the
/// default. A parameter given more than once (a label and an annotation, `pgsurge.x` and
/// `pgsurge_x`, twice in a description) must say the same thing each time: which one
/// wins would otherwise be an accident of order.
pub(crate) fn params_from_map<'a>(
    source_name: &'static str,
    pairs: impl Iterator<Item = (Origin, &'a str, &'a str)>,
) -> Result<AlarmParams, EventError> {
    let mut p = AlarmParams::default();
    // Parameter name → (where, the key as written, its value as written), for the
    // conflict error.
    let mut seen: BTreeMap<&'static str, (Origin, &'a str, &'a str)> = BTreeMap::new();
    for (origin, k, v) in pairs {
        let before = p.clone();
        let Some(key) = k
            .strip_prefix("pgsurge.")
            .or_else(|| k.strip_prefix("pgsurge_"))
        else {
            continue;
        };
        let bad = |what: &str| EventError::Malformed {
            source_name,
            message: format!("{} {k}={v:?}: {what}", origin),
        };
        match key {
            "replicas" => {
                p.replicas = Some(strict_u32(v).ok_or_else(|| bad("expected a positive integer"))?)
            }
            "multiplier" => {
                // `x3` reads as "times three"; one `x`, no more (`xxx2` is a typo, not 2).
                let digits = v.trim().strip_prefix('x').unwrap_or(v.trim());
                p.multiplier = Some(strict_u32(digits).ok_or_else(|| {
                    bad("expected a positive integer, optionally prefixed by one `x`")
                })?)
            }
            "flavor" => p.flavor = Some(v.to_string()),
            "az" => p.az = Some(v.to_string()),
            "cluster" => {
                if v.trim().is_empty() {
                    return Err(bad("expected a cluster name"));
                }
                p.cluster = Some(v.trim().to_string())
            }
            "action" => {
                p.action = Some(match v.trim() {
                    "scale-up" | "scale_up" | "up" => Direction::ScaleUp,
                    "scale-down" | "scale_down" | "down" => Direction::ScaleDown,
                    _ => return Err(bad("expected scale-up or scale-down")),
                })
            }
            _ => {
                return Err(bad(
                    "unknown pgsurge parameter (replicas, multiplier, flavor, az, action, cluster)",
                ))
            }
        }
        // Compare the parsed values: `x2` and `2` are the same multiplier.
        let (name, same) = match key {
            "replicas" => ("replicas", before.replicas == p.replicas),
            "multiplier" => ("multiplier", before.multiplier == p.multiplier),
            "flavor" => ("flavor", before.flavor == p.flavor),
            "az" => ("az", before.az == p.az),
            "cluster" => ("cluster", before.cluster == p.cluster),
            _ => ("action", before.action == p.action),
        };
        match seen.get(name) {
            Some((o0, k0, v0)) if !same => {
                return Err(EventError::Malformed {
                    source_name,
                    message: format!(
                        "parameter `{name}` is given twice with different values: \
                         {o0} {k0}={v0:?} and {origin} {k}={v:?}"
                    ),
                })
            }
            Some(_) => {}
            None => {
                seen.insert(name, (origin, k, v));
            }
        }
    }
    Ok(p)
}

/// A count written as decimal digits only: `u32::from_str` alone would also take `+2`,
/// and the old `trim_start_matches('x')` took `xxx2` as 2.
fn strict_u32(v: &str) -> Option<u32> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// The `pgsurge.key=value` words of a free text, each tagged with where it was written.
pub(crate) fn text_pairs(origin: Origin, text: &str) -> Vec<(Origin, &str, &str)> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| k.starts_with("pgsurge.") || k.starts_with("pgsurge_"))
        .map(|(k, v)| (origin, k, v))
        .collect()
}

pub(crate) fn malformed(source_name: &'static str, message: impl Into<String>) -> EventError {
    EventError::Malformed {
        source_name,
        message: message.into(),
    }
}

pub(crate) fn str_field<'a>(
    source_name: &'static str,
    v: &'a serde_json::Value,
    key: &str,
) -> Result<&'a str, EventError> {
    match opt_str_field(source_name, v, key)? {
        Some("") => Err(malformed(source_name, format!("`{key}` is empty"))),
        Some(s) => Ok(s),
        None => Err(malformed(
            source_name,
            format!("missing string field `{key}`"),
        )),
    }
}

/// An optional string field: absent or `null` is `None`; any other non-string is an
/// error that says so (a number where a string belongs is not "missing").
pub(crate) fn opt_str_field<'a>(
    source_name: &'static str,
    v: &'a serde_json::Value,
    key: &str,
) -> Result<Option<&'a str>, EventError> {
    match v.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(malformed(
            source_name,
            format!("`{key}` must be a string, not {}", json_type(other)),
        )),
    }
}

/// The JSON type of a value, for messages.
pub(crate) fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

pub(crate) fn num_field(v: &serde_json::Value, key: &str) -> Option<f64> {
    match v.get(key)? {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_and_direct_bodies() {
        let env: Webhook = serde_json::from_str(
            r#"{"httpMethod":"POST","headers":{"X-Pgsurge-Token":"t"},"body":"eyJhIjoxfQ==","isBase64Encoded":true}"#,
        )
        .unwrap();
        assert_eq!(env.body, r#"{"a":1}"#);
        assert_eq!(env.header("x-pgsurge-token"), Some("t"));
        assert!(env.via_http);
        let direct: Webhook = serde_json::from_str(r#"{"a":1}"#).unwrap();
        assert_eq!(direct.body, r#"{"a":1}"#);
        assert!(!direct.via_http);
        assert_eq!(direct.document(), Some(&serde_json::json!({"a": 1})));
        // An envelope's body is text the receiver parses after authentication.
        assert_eq!(env.document(), None);
    }

    fn params_from_text(text: &str) -> Result<AlarmParams, EventError> {
        params_from_map("t", text_pairs("description", text).into_iter())
    }

    #[test]
    fn params_are_validated() {
        let ok = params_from_text("CPU high. pgsurge.replicas=3 pgsurge.action=scale-up").unwrap();
        assert_eq!(ok.replicas, Some(3));
        assert_eq!(ok.action, Some(Direction::ScaleUp));
        assert_eq!(
            params_from_text("pgsurge.multiplier=x3")
                .unwrap()
                .multiplier,
            Some(3)
        );
        assert!(params_from_text("pgsurge.replica=3").is_err());
        assert!(params_from_text("pgsurge.replicas=-1").is_err());
        assert_eq!(
            params_from_text("pgsurge.cluster=billing")
                .unwrap()
                .cluster
                .as_deref(),
            Some("billing")
        );
    }

    /// Counts are digits only: `xxx2` was read as 2 (leading `x`s were all stripped),
    /// and `+2` or `2x` are typos too. The multiplier takes one `x` prefix, no more.
    #[test]
    fn counts_are_parsed_strictly() {
        for bad in [
            "pgsurge.replicas=xxx2",
            "pgsurge.replicas=x2",
            "pgsurge.replicas=+2",
            "pgsurge.replicas=2x",
            "pgsurge.replicas=",
            "pgsurge.multiplier=xx2",
            "pgsurge.multiplier=xxx2",
            "pgsurge.multiplier=x",
            "pgsurge.multiplier=+3",
        ] {
            let err = params_from_text(bad).unwrap_err().to_string();
            assert!(err.contains("expected a positive integer"), "{bad}: {err}");
            assert!(err.contains(bad.split_once('=').unwrap().0), "{bad}: {err}");
        }
        assert_eq!(strict_u32(" 2 "), Some(2));
        assert_eq!(
            params_from_text("pgsurge.multiplier=x2")
                .unwrap()
                .multiplier,
            Some(2)
        );
        assert_eq!(
            params_from_text("pgsurge.multiplier=2").unwrap().multiplier,
            Some(2)
        );
    }

    /// The old message was "missing string field" for a field that is there with the
    /// wrong type.
    #[test]
    fn a_number_where_a_string_belongs_says_so() {
        let v = serde_json::json!({"a": 5, "b": "", "c": "x", "d": null});
        let msg = |k| str_field("t", &v, k).unwrap_err().to_string();
        assert_eq!(
            msg("a"),
            "t event is malformed: `a` must be a string, not a number"
        );
        assert_eq!(msg("b"), "t event is malformed: `b` is empty");
        assert_eq!(msg("d"), "t event is malformed: missing string field `d`");
        assert_eq!(msg("z"), "t event is malformed: missing string field `z`");
        assert_eq!(str_field("t", &v, "c").unwrap(), "x");
    }

    #[test]
    fn unknown_shapes_are_refused() {
        assert!(matches!(parse("[]"), Err(EventError::Unrecognised(_))));
        assert!(matches!(parse("{"), Err(EventError::NotJson(_))));
        assert!(matches!(
            parse(r#"{"hello":1}"#),
            Err(EventError::Unrecognised(_))
        ));
    }
}
