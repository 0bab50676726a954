//! The front door for webhooks: limit, authenticate, parse, validate.

use super::smn_verify::{HttpsFetcher, SmnFetcher, SmnVerifier};
use super::{
    auth, params, parse_value, Event, EventError, ParamLimits, SubscriptionConfirmation, Webhook,
};
use crate::config::AuthConfig;
use std::sync::Arc;
use time::OffsetDateTime;

/// Receives webhooks for one function. Build once; `receive` many times (the SMN
/// certificate cache lives here).
pub struct Receiver {
    auth: AuthConfig,
    limits: ParamLimits,
    max_body_bytes: usize,
    smn: SmnVerifier,
}

impl Receiver {
    /// With the real HTTPS fetcher for SMN certificates.
    pub fn new(
        auth: &AuthConfig,
        limits: ParamLimits,
        max_body_bytes: usize,
    ) -> Result<Self, EventError> {
        let fetcher = HttpsFetcher::new(&auth.smn).map_err(EventError::Unavailable)?;
        Ok(Self::with_fetcher(
            auth,
            limits,
            max_body_bytes,
            Arc::new(fetcher),
        ))
    }

    /// With a given fetcher (tests serve their own certificate).
    pub fn with_fetcher(
        auth: &AuthConfig,
        limits: ParamLimits,
        max_body_bytes: usize,
        fetcher: Arc<dyn SmnFetcher>,
    ) -> Self {
        Receiver {
            auth: auth.clone(),
            limits,
            max_body_bytes,
            smn: SmnVerifier::new(auth.smn.clone(), fetcher),
        }
    }

    /// Size limit → authentication → parse → per-alarm parameter limits.
    ///
    /// HTTP webhooks whose body is an SMN message (`type`, `topic_urn`, `signature`) are
    /// authenticated by their SMN signature when `auth.smn.verify_signature` is on (SMN
    /// cannot send our token); every other HTTP webhook by the token or HMAC.
    pub async fn receive(&self, w: &Webhook, now: OffsetDateTime) -> Result<Event, EventError> {
        if w.body.len() > self.max_body_bytes {
            return Err(EventError::TooLarge {
                size: w.body.len(),
                limit: self.max_body_bytes,
            });
        }
        let value: serde_json::Value =
            serde_json::from_str(&w.body).map_err(|e| EventError::NotJson(e.to_string()))?;
        if w.via_http {
            let smn_shaped = ["type", "topic_urn", "signature"]
                .iter()
                .all(|k| value.get(k).is_some_and(|v| v.is_string()));
            if smn_shaped && self.auth.smn.verify_signature {
                self.smn.verify(&value, now).await?;
            } else {
                auth::authenticate_at(w, &self.auth, now)?;
            }
        }
        let event = parse_value(value)?;
        if let Event::Alarms { alarms } = &event {
            for a in alarms {
                params::validate_params(a, &self.limits)?;
            }
        }
        Ok(event)
    }

    /// Visit an SMN subscription link (only for `SubscriptionConfirmation`, and only when
    /// `auth.smn.auto_confirm`). Returns whether it was confirmed.
    pub async fn confirm(&self, c: &SubscriptionConfirmation) -> Result<bool, EventError> {
        if c.unsubscribe || !self.auth.smn.auto_confirm {
            return Ok(false);
        }
        self.smn.confirm(c).await.map(|()| true)
    }
}
