//! The front door for webhooks: limit, authenticate, parse, validate.

use super::smn_verify::{HttpsFetcher, SmnFetcher, SmnVerifier};
use super::{
    auth, params, parse_value, smn, ClusterScope, Event, EventError, ParamLimits,
    SubscriptionConfirmation, Webhook,
};
use crate::events::AuthConfig;
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
    /// A new server's callback credential ([`super::callback`]): an instance `ready`
    /// event for the replica it was minted for, nothing else.
    ServerCallback,
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
        let fetcher = HttpsFetcher::new(&auth.smn).map_err(|e| EventError::Unavailable(e.0))?;
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

    /// Size limit → authentication → parse → per-alarm parameter limits. What a host
    /// decoded skips the steps the host did: the size limit, and, for a direct event,
    /// the parse (see [`Webhook::document`]).
    ///
    /// An HTTP webhook whose body is an SMN message (`type`, `topic_urn`, `signature`
    /// strings) is judged by its SMN signature when `auth.smn.verify_signature` is on;
    /// it must then also present the shared secret when `auth.smn.require_token` is on,
    /// and a secret it presents is checked in any case. Every other HTTP webhook is
    /// judged by its shared secret (token in a header, `Authorization`, or the
    /// `auth.token_query_param` query parameter — SMN sends the subscription URL's query
    /// string, so it can carry the token; or the HMAC headers).
    pub async fn receive(&self, w: &Webhook, now: OffsetDateTime) -> Result<Event, EventError> {
        self.receive_authenticated(w, now).await.map(|(e, _)| e)
    }

    /// [`Receiver::receive`], also saying how the event was authenticated.
    pub async fn receive_authenticated(
        &self,
        w: &Webhook,
        now: OffsetDateTime,
    ) -> Result<(Event, Authenticated), EventError> {
        // What a host decoded was measured there, as it was read (the runtime's one check
        // of `runtime.max_body_bytes`); a direct event's document was parsed there too.
        if !w.measured() && w.body.len() > self.max_body_bytes {
            return Err(EventError::TooLarge {
                size: w.body.len(),
                limit: self.max_body_bytes,
            });
        }
        let value = w.json()?;
        if w.via_http {
            if let Some(header) = w.header(super::CALLBACK_HEADER) {
                let event = parse_value(value)?;
                super::callback::admit(header, self.auth.callback_secret.as_ref(), &event)?;
                return Ok((event, Authenticated::ServerCallback));
            }
        }
        let how = if !w.via_http {
            Authenticated::Platform
        } else {
            let smn_shaped = ["type", "topic_urn", "signature"]
                .iter()
                .all(|k| value.get(k).is_some_and(|v| v.is_string()));
            let presents_secret = auth::presents_secret(w, &self.auth);
            if smn_shaped && self.auth.smn.verify_signature {
                self.smn.verify(&value, now).await?;
                if presents_secret || self.auth.smn.require_token {
                    auth::authenticate_at(w, &self.auth, now).map_err(|e| match e {
                        EventError::Unauthenticated(m) if !presents_secret => {
                            EventError::Unauthenticated(format!(
                                "the SMN signature verified, but auth.smn.require_token \
                                 demands the shared secret too (put the token in the \
                                 subscription URL: ?{}=<token>): {m}",
                                self.auth.token_query_param
                            ))
                        }
                        other => other,
                    })?;
                }
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

    /// Visit an SMN subscription link, or say why not. Only for a
    /// `SubscriptionConfirmation` (never an unsubscription) that was authenticated over
    /// HTTP — by its verified SMN signature or by our shared secret (SMN sends the token
    /// in the subscription URL) — for a topic in `auth.smn.topic_urns`, with
    /// `auth.smn.auto_confirm` on, and whose link is an SMN confirmation link for that
    /// topic: pgsurge never follows a link it cannot attribute to SMN, nor subscribes to
    /// a topic the operator did not list.
    pub async fn confirm(
        &self,
        c: &SubscriptionConfirmation,
        how: Authenticated,
    ) -> Result<Confirmation, EventError> {
        let cfg = &self.auth.smn;
        let refused = |why: String| Ok(Confirmation::NotConfirmed(why));
        if c.unsubscribe {
            return refused("an unsubscription is never confirmed".into());
        }
        if !cfg.auto_confirm {
            return refused("auth.smn.auto_confirm is off".into());
        }
        if !cfg.topic_urns.contains(&c.topic_urn) {
            return refused(format!(
                "topic {} is not in auth.smn.topic_urns",
                c.topic_urn
            ));
        }
        if !matches!(
            how,
            Authenticated::SmnSignature | Authenticated::SharedSecret
        ) {
            return refused(
                "it was not authenticated by an SMN signature or the shared secret".into(),
            );
        }
        self.smn.confirm(c).await.map(|()| Confirmation::Confirmed)
    }

    /// The SMN verifier (its certificate cache), for diagnostics and tests.
    pub fn smn(&self) -> &SmnVerifier {
        &self.smn
    }
}

/// What [`Receiver::confirm`] did with a subscription message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// The subscription link was visited.
    Confirmed,
    /// Not visited, and why.
    NotConfirmed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a host decoded is the one parse and the one measure: the receiver reads the
    /// host's document, not the text again, and does not measure it again.
    #[tokio::test]
    async fn a_host_decoded_event_is_neither_measured_nor_parsed_again() {
        let receiver = Receiver::new(&AuthConfig::default(), ParamLimits::default(), 16).unwrap();
        let now = OffsetDateTime::now_utc();
        let tick = r#"{"pgsurge": 1, "kind": "tick"}"#;
        // Built in code: the receiver measures the text (27 bytes over 16) and parses it.
        let text = Webhook::direct(tick);
        assert!(matches!(
            receiver.receive(&text, now).await,
            Err(EventError::TooLarge { limit: 16, .. })
        ));
        // Decoded by a host (which measured the bytes it read): taken as it is.
        let mut decoded: Webhook = serde_json::from_slice(tick.as_bytes()).unwrap();
        assert!(decoded.measured());
        assert_eq!(receiver.receive(&decoded, now).await.unwrap(), Event::Tick);
        // Its text is not read again: spoiling it changes nothing.
        decoded.body = "not JSON".into();
        assert_eq!(receiver.receive(&decoded, now).await.unwrap(), Event::Tick);
        // Without the host's document, the text is what is parsed.
        let unparsed = Webhook::direct("not JSON");
        let big = Receiver::new(&AuthConfig::default(), ParamLimits::default(), 1024).unwrap();
        assert!(matches!(
            big.receive(&unparsed, now).await,
            Err(EventError::NotJson(_))
        ));
    }
}
