//! Who may send us a webhook: a shared token or an HMAC-SHA256 signature.
//!
//! Only webhooks that arrived over HTTP (the HTTP host or an API-gateway envelope) are
//! checked here: a direct invocation was authorised by the platform (IAM decides who may
//! invoke a function), and the CLI is the operator on the box. SMN messages carry their
//! own signature instead (see [`super::smn_verify`]); [`super::Receiver`] picks which
//! check applies.
//!
//! * **Token**: `auth.token` in `auth.token_header`, `Authorization: Bearer <token>`, as
//!   the password of `Authorization: Basic` (Aodh sends the userinfo of its action URL
//!   that way), or in the query parameter `auth.token_query_param` (`?token=<token>`:
//!   for SMN, which can send no header but keeps the subscription URL's query string) —
//!   the first of these the request carries is judged. Auth schemes are
//!   case-insensitive (RFC 7235). Both sides are hashed and compared in constant time,
//!   so not even the length leaks; the token is never logged or put in an error.
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
use crate::events::AuthConfig;
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
    // A server's callback credential; the Receiver also checks the event is the one
    // instance-ready event it may send ([`super::callback::admit`]).
    if let Some(h) = w.header(super::CALLBACK_HEADER) {
        return super::callback::verify(h, cfg.callback_secret.as_ref())
            .map(|_| ())
            .map_err(|e| EventError::Unauthenticated(e.to_string()));
    }
    if let Some(secret) = &cfg.hmac_secret {
        if let Some(sig) = w.header(&cfg.signature_header) {
            return verify_hmac(w, cfg, secret.expose().as_bytes(), sig, now);
        }
    }
    if let Some(token) = &cfg.token {
        if let Some((place, p)) = presented_token(w, cfg) {
            return if matches_token(place, &p, token.expose().as_bytes()) {
                Ok(())
            } else {
                Err(EventError::Unauthenticated(format!(
                    "the token in {} does not match auth.token",
                    place.describe(cfg)
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
            "missing token: send it in the `{}` header, Authorization: Bearer / Basic{}",
            cfg.token_header,
            query_hint(cfg)
        ))),
        (None, Some(_)) => Err(EventError::Unauthenticated(format!(
            "missing `{}` header (HMAC-SHA256 signature)",
            cfg.signature_header
        ))),
        (Some(_), Some(_)) => Err(EventError::Unauthenticated(format!(
            "missing `{}` (HMAC-SHA256 signature) or a token (the `{}` header, \
             Authorization: Bearer / Basic{})",
            cfg.signature_header,
            cfg.token_header,
            query_hint(cfg)
        ))),
    }
}

fn query_hint(cfg: &AuthConfig) -> String {
    if cfg.token_query_param.is_empty() {
        String::new()
    } else {
        format!(", or the `{}` query parameter", cfg.token_query_param)
    }
}

/// Where a request carried its token; named in errors (never the token itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Header,
    Bearer,
    Basic,
    Query,
}

impl Place {
    fn describe(self, cfg: &AuthConfig) -> String {
        match self {
            Place::Header => format!("the `{}` header", cfg.token_header),
            Place::Bearer => "`Authorization: Bearer`".into(),
            Place::Basic => "the password of `Authorization: Basic`".into(),
            Place::Query => format!("the `{}` query parameter", cfg.token_query_param),
        }
    }
}

/// `Authorization: <scheme> <credentials>` with the scheme compared case-insensitively.
fn credentials<'a>(authorization: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = authorization.trim_start().split_once([' ', '\t'])?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

fn presented_token<'a>(
    w: &'a Webhook,
    cfg: &AuthConfig,
) -> Option<(Place, std::borrow::Cow<'a, str>)> {
    if let Some(t) = w.header(&cfg.token_header) {
        return Some((Place::Header, t.into()));
    }
    if let Some(auth) = w.header("authorization") {
        if let Some(t) = credentials(auth, "Bearer") {
            return Some((Place::Bearer, t.into()));
        }
        if let Some(basic) = credentials(auth, "Basic") {
            // Undecodable Basic credentials carry no password: a wrong token.
            let password = base64::engine::general_purpose::STANDARD
                .decode(basic)
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .and_then(|text| text.split_once(':').map(|(_, p)| p.to_string()))
                .unwrap_or_default();
            return Some((Place::Basic, password.into()));
        }
    }
    if cfg.token_query_param.is_empty() {
        return None;
    }
    w.query
        .get(&cfg.token_query_param)
        .map(|t| (Place::Query, t.as_str().into()))
}

/// A query value may arrive percent-encoded (the HTTP host passes the raw query) or
/// decoded (API gateways): either form of the right token matches.
fn matches_token(place: Place, presented: &str, token: &[u8]) -> bool {
    let raw = constant_time_eq(presented.as_bytes(), token);
    let decoded = place == Place::Query
        && presented.contains('%')
        && constant_time_eq(&percent_decode(presented), token);
    raw | decoded
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Authenticate an HTTP request before its body is parsed, where the verdict of
/// [`super::Receiver`] is already certain: a request that presents a secret, or any
/// request when SMN signatures are off, is judged by the secret alone. A request with no
/// secret may be an SMN message, signed inside its JSON body: it passes here, and only
/// the Receiver can judge it, after parsing. An HMAC signature covers the body, so a
/// request that carries one is judged once the body has arrived ([`signs_body`]).
pub fn preauthenticate(w: &Webhook, cfg: &AuthConfig) -> Result<(), EventError> {
    if !presents_secret(w, cfg) && cfg.smn.verify_signature {
        return Ok(());
    }
    authenticate(w, cfg)
}

/// Whether the request carries an HMAC signature, which only its body can verify.
pub fn signs_body(w: &Webhook, cfg: &AuthConfig) -> bool {
    w.header(&cfg.signature_header).is_some()
}

/// Whether the request presents any shared secret this configuration knows of (the
/// token's header, `Authorization`, the token query parameter, the HMAC signature).
pub(crate) fn presents_secret(w: &Webhook, cfg: &AuthConfig) -> bool {
    [
        cfg.token_header.as_str(),
        "authorization",
        cfg.signature_header.as_str(),
        super::CALLBACK_HEADER,
    ]
    .iter()
    .any(|h| w.header(h).is_some())
        || (!cfg.token_query_param.is_empty() && w.query.contains_key(&cfg.token_query_param))
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
        Webhook::http(headers, "{}")
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
    fn schemes_are_case_insensitive_and_errors_name_the_place() {
        for scheme in ["bearer", "BEARER", "Bearer", "bEaReR"] {
            let h = format!("{scheme}  0123456789abcdef ");
            assert!(
                authenticate(&http(&[("authorization", &h)]), &cfg()).is_ok(),
                "{h}"
            );
        }
        let basic = base64::engine::general_purpose::STANDARD.encode("aodh:0123456789abcdef");
        assert!(authenticate(
            &http(&[("authorization", &format!("basic {basic}"))]),
            &cfg()
        )
        .is_ok());
        let wrong = |h: &[(&str, &str)]| authenticate(&http(h), &cfg()).unwrap_err().to_string();
        assert!(wrong(&[("authorization", "bearer nope")]).contains("`Authorization: Bearer`"));
        assert!(wrong(&[("x-pgsurge-token", "nope")]).contains("the `x-pgsurge-token` header"));
        assert!(wrong(&[("authorization", "Basic !!")]).contains("`Authorization: Basic`"));
        let mut q = http(&[]);
        q.query.insert("token".into(), "nope".into());
        assert!(authenticate(&q, &cfg())
            .unwrap_err()
            .to_string()
            .contains("the `token` query parameter"));
        q.query.insert("token".into(), "0123456789abcdef".into());
        assert!(authenticate(&q, &cfg()).is_ok());
        // Percent-encoded as the raw query string carries it.
        q.query.insert("token".into(), "0123456789%61bcdef".into());
        assert!(authenticate(&q, &cfg()).is_ok());
        let off = AuthConfig {
            token_query_param: String::new(),
            ..cfg()
        };
        assert!(authenticate(&q, &off)
            .unwrap_err()
            .to_string()
            .contains("missing token"));
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
