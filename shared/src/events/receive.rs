//! The front door for webhooks: limit, authenticate, parse, validate.

use super::smn_verify::{HttpsFetcher, SmnFetcher, SmnVerifier};
use super::{
    auth, params, parse_value, smn, ClusterScope, Event, EventError, ParamLimits,
    SubscriptionConfirmation, Webhook,
};
use crate::config::AuthConfig;
use std::sync::Arc;
use time::OffsetDateTime;

/// How a received event was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authenticated {
    /// A direct invocation: the platform (IAM) authorised the caller.
    Platform,
    /// The token or the HMAC signature.
    SharedSecret,
    /// A verified SMN message signature.
    SmnSignature,
    /// Nothing, because `auth.allow_unauthenticated` is on.
    Open,
}

/// Receives webhooks for one function. Build once; `receive` many times (the SMN
/// certificate cache lives here).
pub struct Receiver {
    auth: AuthConfig,
    limits: ParamLimits,
    max_body_bytes: usize,
    smn: SmnVerifier,
    /// When set, parameter limits are checked only for alarms of this cluster.
    scope: Option<ClusterScope>,
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
            scope: None,
        }
    }

    /// Check parameter limits only for alarms `scope` admits: another cluster's alarm
    /// is ignored later (`ClusterScope::apply`), and its parameters answer to that
    /// cluster's limits, not ours — refusing the whole delivery over them would drop
    /// this cluster's alarms grouped with it.
    pub fn scoped(mut self, scope: ClusterScope) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Size limit → authentication → parse → per-alarm parameter limits.
    ///
    /// An HTTP webhook that presents a shared secret (token or HMAC headers) is judged by
    /// it. One that presents none and whose body is an SMN message (`type`, `topic_urn`,
    /// `signature`) is authenticated by its SMN signature when `auth.smn.verify_signature`
    /// is on — SMN cannot send our token.
    pub async fn receive(&self, w: &Webhook, now: OffsetDateTime) -> Result<Event, EventError> {
        self.receive_authenticated(w, now).await.map(|(e, _)| e)
    }

    /// [`Receiver::receive`], also saying how the event was authenticated.
    pub async fn receive_authenticated(
        &self,
        w: &Webhook,
        now: OffsetDateTime,
    ) -> Result<(Event, Authenticated), EventError> {
        if w.body.len() > self.max_body_bytes {
            return Err(EventError::TooLarge {
                size: w.body.len(),
                limit: self.max_body_bytes,
            });
        }
        let value: serde_json::Value =
            serde_json::from_str(&w.body).map_err(|e| EventError::NotJson(e.to_string()))?;
        let how = if !w.via_http {
            Authenticated::Platform
        } else {
            let smn_shaped = ["type", "topic_urn", "signature"]
                .iter()
                .all(|k| value.get(k).is_some_and(|v| v.is_string()));
            let presents_secret = [
                self.auth.token_header.as_str(),
                "authorization",
                self.auth.signature_header.as_str(),
            ]
            .iter()
            .any(|h| w.header(h).is_some());
            if smn_shaped && self.auth.smn.verify_signature && !presents_secret {
                self.smn.verify(&value, now).await?;
                Authenticated::SmnSignature
            } else {
                auth::authenticate_at(w, &self.auth, now)?;
                if presents_secret {
                    Authenticated::SharedSecret
                } else {
                    Authenticated::Open
                }
            }
        };
        // A body authenticated by its SMN signature is read only as SMN: the signature
        // covers the SMN fields alone, so keys of another format added next to them
        // (`alerts`, `alarm_id`, ...) are unauthenticated and must never choose the
        // parser — that would let a captured SMN message carry forged alarms.
        let event = if how == Authenticated::SmnSignature {
            smn::parse_signed(value)?
        } else {
            parse_value(value)?
        };
        if let Event::Alarms { alarms } = &event {
            for a in alarms {
                if self.scope.as_ref().is_some_and(|s| s.refuses(a).is_some()) {
                    continue;
                }
                params::validate_params(a, &self.limits)?;
            }
        }
        Ok((event, how))
    }

    /// Visit an SMN subscription link — only for a `SubscriptionConfirmation` whose SMN
    /// signature was verified (`how`), and only when `auth.smn.auto_confirm`: pgsurge
    /// never follows a link it cannot attribute to SMN. Returns whether it confirmed.
    pub async fn confirm(
        &self,
        c: &SubscriptionConfirmation,
        how: Authenticated,
    ) -> Result<bool, EventError> {
        if c.unsubscribe || !self.auth.smn.auto_confirm || how != Authenticated::SmnSignature {
            return Ok(false);
        }
        self.smn.confirm(c).await.map(|()| true)
    }
}
