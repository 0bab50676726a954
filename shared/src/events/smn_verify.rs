//! SMN message signatures and the subscription handshake.
//!
//! Per Huawei's SMN documentation ("Message Signature Verification"): the string to
//! sign is `key\nvalue\n` for each signed key in alphabetical order —
//! `message, message_id, subject (only when not empty), timestamp, topic_urn, type` for
//! a `Notification`, and `message, message_id, subscribe_url, timestamp, topic_urn,
//! type` for `SubscriptionConfirmation` / `UnsubscribeConfirmation`. The `signature` is
//! the base64 signature of that string with the key of the X.509 certificate at
//! `signing_cert_url`, in the algorithm the certificate names (SHA256withRSA in practice).
//!
//! The certificate is trusted because of where it comes from: it must be an `https://`
//! URL on a host in `auth.smn.cert_hosts` (exact host or a subdomain of it), fetched with
//! TLS verification and without following redirects. The fetch goes through the
//! [`SmnFetcher`] trait so tests can serve their own certificate; [`HttpsFetcher`] is
//! the real one. Certificates are cached per URL for an hour.

use super::x509::{parse_cert, SigningCert};
use super::{EventError, SubscriptionConfirmation};
use async_trait::async_trait;
use base64::Engine;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// `[auth.smn]`: how SMN messages are authenticated.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmnConfig {
    /// Verify SMN signatures; an SMN-shaped HTTP webhook is then authenticated by its
    /// signature alone (SMN cannot send our token). Off: SMN bodies need the token/HMAC.
    pub verify_signature: bool,
    /// Hosts `signing_cert_url` and `subscribe_url` may point at (exact or subdomain).
    pub cert_hosts: Vec<String>,
    /// Accept messages from these topics only (empty: any topic).
    pub topic_urns: Vec<String>,
    /// Refuse messages whose `timestamp` is older than this (0: no limit). SMN retries
    /// deliveries, so this is looser than `auth.replay_window_secs`.
    pub max_age_secs: u64,
    /// Visit `subscribe_url` when a verified SubscriptionConfirmation arrives.
    pub auto_confirm: bool,
    /// Extra CA certificate (PEM) trusted for the HTTPS fetches, for private regions.
    pub ca_file: Option<PathBuf>,
}

impl Default for SmnConfig {
    fn default() -> Self {
        SmnConfig {
            verify_signature: true,
            cert_hosts: vec![
                "myhuaweicloud.com".into(),
                "huaweicloud.com".into(),
                "hc.sbercloud.ru".into(),
                "cloud.ru".into(),
            ],
            topic_urns: Vec::new(),
            max_age_secs: 3600,
            auto_confirm: true,
            ca_file: None,
        }
    }
}

/// Fetches a URL (the signing certificate, the subscription confirmation link).
#[async_trait]
pub trait SmnFetcher: Send + Sync {
    async fn get(&self, url: &str) -> Result<Vec<u8>, String>;
}

/// The real fetcher: HTTPS only, verified TLS, no redirects, bounded size and time.
pub struct HttpsFetcher {
    client: reqwest::Client,
}

const MAX_FETCH_BYTES: usize = 64 * 1024;

impl HttpsFetcher {
    pub fn new(cfg: &SmnConfig) -> Result<Self, String> {
        let mut b = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5));
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("auth.smn.ca_file {}: {e}", path.display()))?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("auth.smn.ca_file {}: {e}", path.display()))?;
            b = b.add_root_certificate(ca);
        }
        Ok(HttpsFetcher {
            client: b.build().map_err(|e| e.to_string())?,
        })
    }
}

#[async_trait]
impl SmnFetcher for HttpsFetcher {
    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_FETCH_BYTES {
                return Err(format!("GET {url}: larger than {MAX_FETCH_BYTES} bytes"));
            }
        }
        Ok(body)
    }
}

/// Verifies SMN messages and confirms subscriptions.
pub struct SmnVerifier {
    cfg: SmnConfig,
    fetcher: Arc<dyn SmnFetcher>,
    cache: Mutex<HashMap<String, (Instant, SigningCert)>>,
}

const CERT_TTL: Duration = Duration::from_secs(3600);

fn bad(message: impl Into<String>) -> EventError {
    EventError::BadSignature(format!("SMN: {}", message.into()))
}

impl SmnVerifier {
    pub fn new(cfg: SmnConfig, fetcher: Arc<dyn SmnFetcher>) -> Self {
        SmnVerifier {
            cfg,
            fetcher,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &SmnConfig {
        &self.cfg
    }

    /// Is `url` an https URL on an allowed SMN host?
    pub fn check_url(&self, what: &str, url: &str) -> Result<(), EventError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(format!("{what} {url:?}: {e}")))?;
        if parsed.scheme() != "https" {
            return Err(bad(format!("{what} must be https://, got {url:?}")));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(format!("{what} must not carry credentials")));
        }
        let host = parsed.host_str().unwrap_or("").to_ascii_lowercase();
        let allowed = self.cfg.cert_hosts.iter().any(|h| {
            let h = h.to_ascii_lowercase();
            host == h || host.ends_with(&format!(".{h}"))
        });
        if !allowed {
            return Err(bad(format!(
                "{what} host {host:?} is not in auth.smn.cert_hosts ({})",
                self.cfg.cert_hosts.join(", ")
            )));
        }
        Ok(())
    }

    async fn cert(&self, url: &str) -> Result<SigningCert, EventError> {
        if let Some((at, c)) = self.cache.lock().expect("not poisoned").get(url) {
            if at.elapsed() < CERT_TTL {
                return Ok(c.clone());
            }
        }
        let bytes = self
            .fetcher
            .get(url)
            .await
            .map_err(|e| EventError::Unavailable(format!("SMN signing certificate: {e}")))?;
        let cert = parse_cert(&bytes)
            .map_err(|e| bad(format!("signing certificate at {url} is not usable: {e}")))?;
        self.cache
            .lock()
            .expect("not poisoned")
            .insert(url.to_string(), (Instant::now(), cert.clone()));
        Ok(cert)
    }

    /// Verify an SMN message (the whole JSON body) at time `now`.
    pub async fn verify(
        &self,
        v: &serde_json::Value,
        now: OffsetDateTime,
    ) -> Result<(), EventError> {
        let field = |k: &str| -> Result<&str, EventError> {
            v.get(k)
                .and_then(|x| x.as_str())
                .ok_or_else(|| bad(format!("missing string field `{k}`")))
        };
        let kind = field("type")?;
        let signed_keys: &[&str] = match kind {
            "Notification" => &[
                "message",
                "message_id",
                "subject",
                "timestamp",
                "topic_urn",
                "type",
            ],
            "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
                "message",
                "message_id",
                "subscribe_url",
                "timestamp",
                "topic_urn",
                "type",
            ],
            other => return Err(bad(format!("unknown message type {other:?}"))),
        };
        match v.get("signature_version").and_then(|s| s.as_str()) {
            None | Some("v1") => {}
            Some(other) => {
                return Err(bad(format!(
                    "signature_version {other:?} is not supported (v1)"
                )))
            }
        }
        let topic = field("topic_urn")?;
        if !self.cfg.topic_urns.is_empty() && !self.cfg.topic_urns.iter().any(|t| t == topic) {
            return Err(bad(format!(
                "topic {topic:?} is not in auth.smn.topic_urns"
            )));
        }
        let ts = field("timestamp")?;
        let at = OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
            .map_err(|e| bad(format!("timestamp {ts:?} is not RFC 3339: {e}")))?;
        let age = (now - at).whole_seconds();
        if self.cfg.max_age_secs > 0 && (age > self.cfg.max_age_secs as i64 || age < -300) {
            return Err(EventError::StaleTimestamp {
                age_secs: age,
                window_secs: self.cfg.max_age_secs,
            });
        }
        let mut to_sign = String::new();
        for &k in signed_keys {
            let value = match (k, v.get(k)) {
                ("subject", None | Some(serde_json::Value::Null)) => continue,
                ("subject", Some(serde_json::Value::String(s))) if s.is_empty() => continue,
                (_, Some(serde_json::Value::String(s))) => s.as_str(),
                (_, _) => {
                    return Err(bad(format!(
                        "signed field `{k}` is missing or not a string"
                    )))
                }
            };
            to_sign.push_str(k);
            to_sign.push('\n');
            to_sign.push_str(value);
            to_sign.push('\n');
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(field("signature")?.trim())
            .map_err(|_| bad("`signature` is not base64"))?;
        let cert_url = field("signing_cert_url")?;
        self.check_url("signing_cert_url", cert_url)?;
        let cert = self.cert(cert_url).await?;
        if now < cert.not_before || now > cert.not_after {
            return Err(bad(format!(
                "the signing certificate is not valid now (valid {} .. {})",
                cert.not_before, cert.not_after
            )));
        }
        if !cert.verify(to_sign.as_bytes(), &signature) {
            return Err(bad(format!(
                "signature does not match the message ({} with the certificate at {cert_url})",
                cert.algorithm()
            )));
        }
        Ok(())
    }

    /// Complete the SMN subscription handshake by visiting `subscribe_url`.
    pub async fn confirm(&self, c: &SubscriptionConfirmation) -> Result<(), EventError> {
        self.check_url("subscribe_url", &c.subscribe_url)?;
        self.fetcher
            .get(&c.subscribe_url)
            .await
            .map(|_| ())
            .map_err(|e| EventError::Unavailable(format!("SMN subscription confirmation: {e}")))
    }
}
