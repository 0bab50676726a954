//! Who may send us a webhook: a shared token or an HMAC-SHA256 signature.
//!
//! Only webhooks that arrived over HTTP (the HTTP host or an API-gateway envelope) are
//! checked here: a direct invocation was authorised by the platform (IAM decides who may
//! invoke a function), and the CLI is the operator on the box. SMN messages carry their
//! own signature instead (see [`super::smn_verify`]); [`super::Receiver`] picks which
//! check applies.
//!
//! * **Token**: `auth.token` in `auth.token_header`, `Authorization: Bearer <token>`, or
//!   as the password of `Authorization: Basic` (Aodh sends the userinfo of its action
//!   URL that way). Both sides are hashed and compared in constant time, so not even the
//!   length leaks.
//! * **HMAC**: `x-pgsurge-timestamp: <Unix seconds>` and
//!   `x-pgsurge-signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` with
//!   `auth.hmac_secret`. The timestamp must be within `auth.replay_window_secs` of now
//!   (either way), so a captured request cannot be replayed later; within the window a
//!   replay is a duplicate alarm, which the policy decides only once. Compared in
//!   constant time.
//!
//! A request that presents an HMAC signature is judged by it alone (no fallback to the
//! token). With no method configured, HTTP webhooks are refused unless the operator
//! opted out explicitly (`auth.allow_unauthenticated`).

use super::{EventError, Webhook};
use crate::config::AuthConfig;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

/// Authenticate with the current time (see [`authenticate_at`]).
pub fn authenticate(w: &Webhook, cfg: &AuthConfig) -> Result<(), EventError> {
    authenticate_at(w, cfg, OffsetDateTime::now_utc())
}

/// Check the shared-secret authentication of a webhook at time `now`.
pub fn authenticate_at(
    w: &Webhook,
    cfg: &AuthConfig,
    now: OffsetDateTime,
) -> Result<(), EventError> {
    if !w.via_http {
        return Ok(());
    }
    if let Some(secret) = &cfg.hmac_secret {
        if let Some(sig) = w.header(&cfg.signature_header) {
            return verify_hmac(w, cfg, secret.expose().as_bytes(), sig, now);
        }
    }
    if let Some(token) = &cfg.token {
        if let Some(p) = presented_token(w, &cfg.token_header) {
            return if constant_time_eq(p.as_bytes(), token.expose().as_bytes()) {
                Ok(())
            } else {
                Err(EventError::Unauthenticated(format!(
                    "the `{}` token does not match",
                    cfg.token_header
                )))
            };
        }
    }
    match (&cfg.token, &cfg.hmac_secret) {
        (None, None) if cfg.allow_unauthenticated => Ok(()),
        (None, None) => Err(EventError::Unauthenticated(
            "no webhook authentication is configured (set auth.token or auth.hmac_secret, \
             or auth.allow_unauthenticated = true for a lab)"
                .into(),
        )),
        (Some(_), None) => Err(EventError::Unauthenticated(format!(
            "missing `{}` header (or Authorization: Bearer / Basic)",
            cfg.token_header
        ))),
        (None, Some(_)) => Err(EventError::Unauthenticated(format!(
            "missing `{}` header (HMAC-SHA256 signature)",
            cfg.signature_header
        ))),
        (Some(_), Some(_)) => Err(EventError::Unauthenticated(format!(
            "missing `{}` (HMAC-SHA256 signature) or `{}` (token) header",
            cfg.signature_header, cfg.token_header
        ))),
    }
}

fn presented_token<'a>(w: &'a Webhook, header: &str) -> Option<std::borrow::Cow<'a, str>> {
    if let Some(t) = w.header(header) {
        return Some(t.into());
    }
    let auth = w.header("authorization")?;
    if let Some(t) = auth.strip_prefix("Bearer ") {
        return Some(t.trim().into());
    }
    let basic = auth.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_string().into())
}

fn verify_hmac(
    w: &Webhook,
    cfg: &AuthConfig,
    secret: &[u8],
    signature: &str,
    now: OffsetDateTime,
) -> Result<(), EventError> {
    let ts_raw = w.header(&cfg.timestamp_header).ok_or_else(|| {
        EventError::Unauthenticated(format!(
            "missing `{}` header: an HMAC-signed request carries the Unix time it was signed at",
            cfg.timestamp_header
        ))
    })?;
    let ts: i64 = ts_raw.trim().parse().map_err(|_| {
        EventError::Unauthenticated(format!(
            "`{}` {:?} is not a Unix time in seconds",
            cfg.timestamp_header,
            truncate(ts_raw)
        ))
    })?;
    let age = now.unix_timestamp().saturating_sub(ts);
    let window = i64::try_from(cfg.replay_window_secs).unwrap_or(i64::MAX);
    if age > window || age < -window {
        return Err(EventError::StaleTimestamp {
            age_secs: age,
            window_secs: cfg.replay_window_secs,
        });
    }
    let hex_sig = signature.trim();
    let hex_sig = hex_sig.strip_prefix("sha256=").unwrap_or(hex_sig);
    let given = match hex::decode(hex_sig) {
        Ok(b) if b.len() == 32 => b,
        _ => {
            return Err(EventError::BadSignature(format!(
                "`{}` is not `sha256=<64 hex digits>`",
                cfg.signature_header
            )))
        }
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(w.body.as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&given).map_err(|_| {
        EventError::BadSignature(format!(
            "`{}` does not match the body and timestamp (HMAC-SHA256 of \"<timestamp>.<body>\" with auth.hmac_secret)",
            cfg.signature_header
        ))
    })
}

/// `sha256=<hex>` for `body` signed at `timestamp`: what a sender computes.
pub fn hmac_signature(secret: &[u8], timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    ha.ct_eq(&hb).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn http(headers: &[(&str, &str)]) -> Webhook {
        Webhook {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: "{}".into(),
            via_http: true,
        }
    }

    fn cfg() -> AuthConfig {
        AuthConfig {
            token: Some(Secret::new("0123456789abcdef")),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn token_checks() {
        assert!(authenticate(&http(&[("x-pgsurge-token", "0123456789abcdef")]), &cfg()).is_ok());
        assert!(authenticate(
            &http(&[("authorization", "Bearer 0123456789abcdef")]),
            &cfg()
        )
        .is_ok());
        let basic = base64::engine::general_purpose::STANDARD.encode("aodh:0123456789abcdef");
        assert!(authenticate(
            &http(&[("authorization", &format!("Basic {basic}"))]),
            &cfg()
        )
        .is_ok());
        let wrong = authenticate(&http(&[("x-pgsurge-token", "nope")]), &cfg()).unwrap_err();
        assert!(!wrong.to_string().contains("0123456789abcdef"));
        assert!(authenticate(&http(&[]), &cfg()).is_err());
    }

    #[test]
    fn http_without_any_method_is_refused_unless_opted_out() {
        assert!(authenticate(&http(&[]), &AuthConfig::default()).is_err());
        let open = AuthConfig {
            allow_unauthenticated: true,
            ..AuthConfig::default()
        };
        assert!(authenticate(&http(&[]), &open).is_ok());
        assert!(authenticate(&Webhook::direct("{}"), &AuthConfig::default()).is_ok());
    }
}
