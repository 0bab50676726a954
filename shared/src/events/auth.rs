//! Who may send us a webhook.
//!
//! Only webhooks that arrived over HTTP (the HTTP host or an API-gateway envelope) are
//! checked here: a direct invocation was authorised by the platform (IAM decides who may
//! invoke a function), and the CLI is the operator on the box.
//!
//! A shared token is compared in constant time — both sides are hashed first so not even
//! the length leaks. With no method configured, HTTP webhooks are refused unless the
//! operator opted out explicitly (`auth.allow_unauthenticated`).

use super::{EventError, Webhook};
use crate::config::AuthConfig;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub fn authenticate(w: &Webhook, cfg: &AuthConfig) -> Result<(), EventError> {
    if !w.via_http {
        return Ok(());
    }
    if let Some(token) = &cfg.token {
        let presented = w.header(&cfg.token_header).or_else(|| {
            w.header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
        });
        return match presented {
            Some(p) if constant_time_eq(p.as_bytes(), token.expose().as_bytes()) => Ok(()),
            Some(_) => Err(EventError::Unauthenticated(format!(
                "the `{}` token does not match",
                cfg.token_header
            ))),
            None => Err(EventError::Unauthenticated(format!(
                "missing `{}` header (or Authorization: Bearer)",
                cfg.token_header
            ))),
        };
    }
    if cfg.allow_unauthenticated {
        return Ok(());
    }
    Err(EventError::Unauthenticated(
        "no webhook authentication is configured (set auth.token, or auth.allow_unauthenticated = true for a lab)".into(),
    ))
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
