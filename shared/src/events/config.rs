//! `[cluster]` and `[auth]`: which alarms are this cluster's, and how webhooks prove
//! who sent them.

use super::SmnConfig;
use crate::check::{at_most, header_name, in_range, invalid, is_file, Checked};
use crate::secret::Secret;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Short name used in every resource name (`pgsurge-<name>-<replica>`) and state key,
    /// and the name alarms must carry (`pgsurge_cluster`; `events::scope`).
    pub name: String,
    /// An alarm that names no cluster is ignored (true) or taken as this cluster's
    /// (false: only when nothing else can ever send to this deployment's webhooks).
    pub require_label: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            name: "main".into(),
            require_label: true,
        }
    }
}

impl ClusterConfig {
    /// `[cluster]`: the name goes into resource names and state keys.
    pub fn validate(&self) -> Checked {
        let name = &self.name;
        let name_ok = (1..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err(invalid(
                "name",
                format!("{name:?} must be 1-32 chars of a-z, 0-9, '-', starting with a letter"),
            ));
        }
        Ok(())
    }
}

/// How webhooks that arrive over HTTP (HTTP host, API-gateway envelopes) prove who sent them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Shared token expected in `token_header` (or `Authorization: Bearer <token>`).
    pub token: Option<Secret>,
    /// Header that carries the token.
    pub token_header: String,
    /// Query parameter that may carry the token (`?token=...`, for SMN subscription
    /// URLs: SMN sends no custom header). Empty: not accepted in the URL.
    pub token_query_param: String,
    /// Accept unauthenticated HTTP webhooks. Only for a closed lab network.
    pub allow_unauthenticated: bool,
    /// HMAC-SHA256 key: requests sign "<timestamp>.<body>" (see `events::auth`).
    pub hmac_secret: Option<Secret>,
    /// Header with `sha256=<hex signature>`.
    pub signature_header: String,
    /// Header with the Unix time (seconds) the request was signed at.
    pub timestamp_header: String,
    /// Signed requests older (or newer) than this are refused as replays.
    pub replay_window_secs: u64,
    /// SMN signature verification and subscription handshake.
    pub smn: SmnConfig,
    /// Key of the per-server callback credentials (`events::callback`): scale-up signs,
    /// instance-ready verifies. Unset: no server calls back.
    pub callback_secret: Option<Secret>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token: None,
            token_header: "x-pgsurge-token".into(),
            token_query_param: "token".into(),
            allow_unauthenticated: false,
            hmac_secret: None,
            signature_header: "x-pgsurge-signature".into(),
            timestamp_header: "x-pgsurge-timestamp".into(),
            replay_window_secs: 300,
            smn: SmnConfig::default(),
            callback_secret: None,
        }
    }
}

impl AuthConfig {
    /// Checks for `[auth]` that types alone cannot express (keys relative to it).
    pub fn validate(&self) -> Checked {
        if let Some(t) = &self.token {
            if t.expose().len() < 16 {
                return Err(invalid("token", "must be at least 16 characters"));
            }
        }
        header_name("token_header", &self.token_header)?;
        validate_signing(self)
    }
}

/// The HMAC and SMN keys of `[auth]`.
fn validate_signing(a: &AuthConfig) -> Checked {
    // Both are HMAC keys: a short one can be brute-forced from one signed request (for
    // the callback key: from any server's user data, which carries a credential).
    for (key, secret) in [
        ("hmac_secret", &a.hmac_secret),
        ("callback_secret", &a.callback_secret),
    ] {
        if secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
            return Err(invalid(key, "must be at least 32 characters"));
        }
    }
    header_name("signature_header", &a.signature_header)?;
    header_name("timestamp_header", &a.timestamp_header)?;
    in_range("replay_window_secs", a.replay_window_secs, 1..=3600)?;
    if !a
        .token_query_param
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "token_query_param",
            format!("{:?} must be [A-Za-z0-9_-] (or empty)", a.token_query_param),
        ));
    }
    validate_smn(a)
}

/// `[auth.smn]`: the keys that make an SMN signature mean "our topic, from SMN".
fn validate_smn(a: &AuthConfig) -> Checked {
    let smn = &a.smn;
    if smn.verify_signature && smn.topic_urns.is_empty() {
        return Err(invalid(
            "smn.topic_urns",
            "must list the SMN topics to trust when auth.smn.verify_signature is on \
             (any cloud account can create a topic and sign messages on it)",
        ));
    }
    if let Some(t) = smn.topic_urns.iter().find(|t| {
        let parts: Vec<&str> = t.split(':').collect();
        parts.len() != 5 || parts[..2] != ["urn", "smn"] || parts.iter().any(|p| p.is_empty())
    }) {
        return Err(invalid(
            "smn.topic_urns",
            format!("{t:?} is not urn:smn:<region>:<project id>:<topic name>"),
        ));
    }
    if smn.verify_signature && smn.require_token && a.token.is_none() && a.hmac_secret.is_none() {
        return Err(invalid(
            "smn.require_token",
            "needs auth.token (or auth.hmac_secret) when auth.smn.verify_signature is on; \
             set the token, or require_token = false to trust the signature alone",
        ));
    }
    if smn.verify_signature && smn.domains.is_empty() {
        return Err(invalid(
            "smn.domains",
            "must name at least one domain when auth.smn.verify_signature is on",
        ));
    }
    let host_ok = |h: &str| {
        !h.is_empty()
            && !h.starts_with('.')
            && !h.ends_with('.')
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if let Some(h) = smn.domains.iter().find(|h| !host_ok(h)) {
        return Err(invalid(
            "smn.domains",
            format!("{h:?} is not a domain name (e.g. \"myhuaweicloud.com\")"),
        ));
    }
    if let Some(h) = smn
        .signing_subjects
        .iter()
        .find(|h| h.is_empty() || h.contains(char::is_whitespace))
    {
        return Err(invalid(
            "smn.signing_subjects",
            format!("{h:?} is not a host name"),
        ));
    }
    at_most(
        "smn.max_age_secs",
        smn.max_age_secs,
        7 * 86_400,
        "604800 (a week)",
    )?;
    if let Some(p) = &smn.ca_file {
        is_file("smn.ca_file", p)?;
    }
    Ok(())
}
