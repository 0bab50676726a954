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
//! What makes a signature trusted, in the order it is checked (each refusal says which):
//! 1. the `topic_urn` is in `auth.smn.topic_urns` — an empty list trusts no topic (config
//!    validation refuses it when verification is on): any cloud account can create a
//!    topic, so the topic is what ties a message to *our* alarms;
//! 2. `signing_cert_url` is `https://smn.<region>.<domain>/smn/<file>.pem`, exactly: the
//!    SMN endpoint of the topic's own region under one of `auth.smn.domains`, no port, no
//!    query. Never any other subdomain: object storage buckets are served from
//!    subdomains of the same domains (`<bucket>.obs.<region>.<domain>`), so anyone could
//!    host a certificate there. The shape is the documented one
//!    (`https://smn.cn-north-9.myhuaweicloud.com/smn/SMN_cn-north-9_<uuid>.pem`);
//! 3. the certificate (PEM: the signing certificate, then any intermediates) chains to a
//!    trusted root — the system store plus `auth.smn.ca_file` — checked by
//!    `rustls-webpki` at the message's receive time (no extended-key-usage requirement:
//!    what SMN's certificate carries there is not documented);
//! 4. the certificate is issued to the SMN service: one of its subject CNs or SAN
//!    dNSNames equals (ASCII case-insensitively, no wildcard expansion) one of
//!    `auth.smn.signing_subjects`, or — when that list is empty — the host of
//!    `signing_cert_url` itself (`smn.<region>.<domain>`). A publicly trusted certificate
//!    for an attacker's own domain chains fine; this is what refuses it;
//! 5. the signature verifies with the certificate's key, inside its validity period.
//!
//! The fetch goes through the [`SmnFetcher`] trait so tests can serve their own
//! certificate; [`HttpsFetcher`] is the real one (verified TLS, no redirects). Verified
//! certificates are cached per URL for [`CERT_TTL`], at most [`CERT_CACHE_MAX`] of them;
//! the chain is re-checked on every use (cheap), so expiry is never missed.

use super::x509::{der_chain, parse_cert, CertError, SigningCert};
use super::{EventError, SubscriptionConfirmation};
use async_trait::async_trait;
use base64::Engine;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// `[auth.smn]`: how SMN messages are authenticated.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmnConfig {
    /// Verify SMN signatures of SMN-shaped HTTP webhooks (off by default: SMN bodies then
    /// need the shared secret, e.g. the token in the subscription URL's query string).
    pub verify_signature: bool,
    /// With `verify_signature`: also demand the shared secret (token or HMAC), so a
    /// message needs both a valid signature and our token.
    pub require_token: bool,
    /// SMN endpoint domains: certificates only from `smn.<region>.<domain>`, subscription
    /// links only from there or `console.<domain>` — exact hosts, never other subdomains.
    pub domains: Vec<String>,
    /// Names the signing certificate must be issued to (subject CN or SAN dNSName, exact).
    /// Empty: the host of `signing_cert_url`.
    pub signing_subjects: Vec<String>,
    /// Accept messages from these topics only, and auto-confirm only these. Must not be
    /// empty when `verify_signature` is on.
    pub topic_urns: Vec<String>,
    /// Refuse messages whose `timestamp` is older than this (0: no limit). SMN retries
    /// deliveries, so this is looser than `auth.replay_window_secs`.
    pub max_age_secs: u64,
    /// Visit `subscribe_url` when an authenticated SubscriptionConfirmation for an
    /// allow-listed topic arrives.
    pub auto_confirm: bool,
    /// Extra CA certificates (PEM) trusted for the HTTPS fetches and as roots of the
    /// signing certificate's chain, for a private region's own CA.
    pub ca_file: Option<PathBuf>,
}

impl Default for SmnConfig {
    fn default() -> Self {
        SmnConfig {
            // Off by default: turning it on needs `topic_urns`, which only the operator
            // knows; until then SMN messages authenticate like any webhook (the token).
            verify_signature: false,
            // Both, by default: the token costs nothing (SMN sends the subscription URL's
            // query string back verbatim), and a leaked token alone or a certificate
            // mistake alone is then not enough to make pgsurge act.
            require_token: true,
            domains: vec![
                "myhuaweicloud.com".into(),
                "huaweicloud.com".into(),
                "hc.sbercloud.ru".into(),
                "cloud.ru".into(),
            ],
            signing_subjects: Vec::new(),
            topic_urns: Vec::new(),
            max_age_secs: 3600,
            auto_confirm: true,
            ca_file: None,
        }
    }
}

/// Why a fetch (or the trust store it needs) failed; names the URL without its query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

impl From<String> for FetchError {
    fn from(s: String) -> Self {
        FetchError(s)
    }
}

/// Fetches a URL (the signing certificate, the subscription confirmation link).
#[async_trait]
pub trait SmnFetcher: Send + Sync {
    async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError>;
}

/// The real fetcher: HTTPS only, verified TLS, no redirects, bounded size and time.
pub struct HttpsFetcher {
    client: reqwest::Client,
}

const MAX_FETCH_BYTES: usize = 64 * 1024;

impl HttpsFetcher {
    pub fn new(cfg: &SmnConfig) -> Result<Self, FetchError> {
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
    async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        // Errors name the URL without its query: a subscription link carries SMN's
        // confirmation token there.
        let shown = url.split('?').next().unwrap_or(url);
        let mut resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {shown}: {}", e.without_url()))?;
        if !resp.status().is_success() {
            return Err(format!("GET {shown}: HTTP {}", resp.status()).into());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("GET {shown}: {}", e.without_url()))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_FETCH_BYTES {
                return Err(format!("GET {shown}: larger than {MAX_FETCH_BYTES} bytes").into());
            }
        }
        Ok(body)
    }
}

/// How long a verified certificate is reused before it is fetched again.
pub const CERT_TTL: Duration = Duration::from_secs(3600);
/// At most this many certificates are cached (SMN uses one per region; a few regions
/// and a rotation fit). Past it the oldest entry goes.
pub const CERT_CACHE_MAX: usize = 16;

/// A certificate that passed the chain and subject checks once.
#[derive(Clone)]
struct Verified {
    fetched: Instant,
    chain: Arc<Vec<Vec<u8>>>,
    cert: SigningCert,
}

/// Verifies SMN messages and confirms subscriptions.
pub struct SmnVerifier {
    cfg: SmnConfig,
    fetcher: Arc<dyn SmnFetcher>,
    /// Loaded at the first verification (reading the system store costs ~20 ms): a
    /// process that never sees an SMN message never pays it.
    roots: OnceLock<Result<Vec<TrustAnchor<'static>>, FetchError>>,
    cache: Mutex<HashMap<String, Verified>>,
}

fn bad(message: impl Into<String>) -> EventError {
    EventError::BadSignature(format!("SMN: {}", message.into()))
}

/// The region of an SMN topic URN (`urn:smn:<region>:<project>:<name>`).
pub fn topic_region(urn: &str) -> Option<&str> {
    let mut parts = urn.split(':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("urn"), Some("smn"), Some(region)) if !region.is_empty() => Some(region),
        _ => None,
    }
}

fn is_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl SmnVerifier {
    pub fn new(cfg: SmnConfig, fetcher: Arc<dyn SmnFetcher>) -> Self {
        SmnVerifier {
            cfg,
            fetcher,
            roots: OnceLock::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &SmnConfig {
        &self.cfg
    }

    /// Parse `url` as an https URL without credentials or fragment; return it and its
    /// lower-cased host.
    fn https_url(what: &str, url: &str) -> Result<(reqwest::Url, String), EventError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(format!("{what} {url:?}: {e}")))?;
        if parsed.scheme() != "https" {
            return Err(bad(format!("{what} must be https://, got {url:?}")));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(format!("{what} must not carry credentials")));
        }
        if parsed.port().is_some() || parsed.fragment().is_some() {
            return Err(bad(format!("{what} must not name a port or a fragment")));
        }
        let host = parsed.host_str().unwrap_or("").to_ascii_lowercase();
        Ok((parsed, host))
    }

    /// `smn.<region>.<domain>` for one of the configured domains → `Some(region)`.
    fn smn_endpoint_region<'h>(&self, host: &'h str) -> Option<&'h str> {
        let rest = host.strip_prefix("smn.")?;
        self.cfg.domains.iter().find_map(|d| {
            let region = rest
                .strip_suffix(&d.to_ascii_lowercase())?
                .strip_suffix('.')?;
            is_label(region).then_some(region)
        })
    }

    fn endpoint_hint(&self) -> String {
        let domains: Vec<String> = self
            .cfg
            .domains
            .iter()
            .map(|d| format!("smn.<region>.{d}"))
            .collect();
        domains.join(", ")
    }

    /// Is `url` the SMN signing-certificate URL of `region`'s endpoint?
    pub fn check_cert_url(&self, url: &str, region: &str) -> Result<(), EventError> {
        let what = "signing_cert_url";
        let (parsed, host) = Self::https_url(what, url)?;
        let Some(host_region) = self.smn_endpoint_region(&host) else {
            return Err(bad(format!(
                "{what} host {host:?} is not an SMN endpoint ({}; auth.smn.domains): \
                 the certificate is not trusted",
                self.endpoint_hint()
            )));
        };
        if host_region != region {
            return Err(bad(format!(
                "{what} host {host:?} is not the SMN endpoint of the topic's region {region:?}"
            )));
        }
        let file = parsed.path().strip_prefix("/smn/").unwrap_or("");
        let file_ok = file.len() > 4
            && file.ends_with(".pem")
            && file
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !file_ok || parsed.query().is_some() {
            return Err(bad(format!(
                "{what} path {:?} is not an SMN certificate (/smn/<name>.pem, no query)",
                parsed.path()
            )));
        }
        Ok(())
    }

    /// Is `url` an SMN subscription-confirmation link for `topic`?
    /// `https://smn.<region>.<domain>/smn/subscription/confirm?...` or the console's
    /// `https://console.<domain>/smn/subscription/confirm?...` (what SMN's documentation
    /// shows), with the topic's region, and its `topic_urn` parameter, when present, the
    /// message's topic.
    pub fn check_subscribe_url(&self, url: &str, topic: &str) -> Result<(), EventError> {
        let what = "subscribe_url";
        let (parsed, host) = Self::https_url(what, url)?;
        let region = topic_region(topic).unwrap_or("");
        let console = self
            .cfg
            .domains
            .iter()
            .any(|d| host == format!("console.{}", d.to_ascii_lowercase()));
        match self.smn_endpoint_region(&host) {
            Some(r) if r == region => {}
            None if console => {}
            _ => {
                return Err(bad(format!(
                    "{what} host {host:?} is not the SMN endpoint of region {region:?} or \
                     console.<domain> (auth.smn.domains)"
                )))
            }
        }
        if parsed.path() != "/smn/subscription/confirm" {
            return Err(bad(format!(
                "{what} path {:?} is not /smn/subscription/confirm",
                parsed.path()
            )));
        }
        if let Some((_, t)) = parsed.query_pairs().find(|(k, _)| k == "topic_urn") {
            if t != topic {
                return Err(bad(format!(
                    "{what} names topic {t:?}, not the message's {topic:?}"
                )));
            }
        }
        Ok(())
    }

    /// The trusted roots: the system store plus `auth.smn.ca_file`.
    fn roots(&self) -> Result<&[TrustAnchor<'static>], EventError> {
        self.roots
            .get_or_init(|| load_roots(self.cfg.ca_file.as_deref()))
            .as_deref()
            .map_err(|e| EventError::Unavailable(format!("SMN trusted roots: {e}")))
    }

    /// Chain and subject checks of a fetched certificate at `now`.
    fn check_chain(
        &self,
        chain: &[Vec<u8>],
        cert: &SigningCert,
        host: &str,
        now: OffsetDateTime,
    ) -> Result<(), EventError> {
        let roots = self.roots()?;
        let ders: Vec<CertificateDer<'_>> =
            chain.iter().map(|c| CertificateDer::from(&c[..])).collect();
        let leaf = webpki::EndEntityCert::try_from(&ders[0])
            .map_err(|e| bad(format!("the signing certificate is not usable: {e}")))?;
        let at = UnixTime::since_unix_epoch(Duration::from_secs(
            u64::try_from(now.unix_timestamp()).unwrap_or(0),
        ));
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            roots,
            &ders[1..],
            at,
            AnyUsage,
            None,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => bad(
                format!("the signing certificate or an issuer of it is not valid now: {e:?}"),
            ),
            _ => bad(format!(
                "the signing certificate (with {}) does not chain to a trusted root \
                 (system store or auth.smn.ca_file): {e}",
                describe(cert)
            )),
        })?;
        let wanted: Vec<&str> = if self.cfg.signing_subjects.is_empty() {
            vec![host]
        } else {
            self.cfg
                .signing_subjects
                .iter()
                .map(String::as_str)
                .collect()
        };
        let issued_to_smn = cert
            .names
            .iter()
            .any(|n| wanted.iter().any(|w| n.eq_ignore_ascii_case(w)));
        if !issued_to_smn {
            return Err(bad(format!(
                "the signing certificate carries {}, not the SMN service's ({}{})",
                describe(cert),
                wanted.join(", "),
                if self.cfg.signing_subjects.is_empty() {
                    "; set auth.smn.signing_subjects if your region's certificate names another"
                } else {
                    "; auth.smn.signing_subjects"
                }
            )));
        }
        Ok(())
    }

    async fn cert(
        &self,
        url: &str,
        host: &str,
        now: OffsetDateTime,
    ) -> Result<SigningCert, EventError> {
        let cached = self
            .cache
            .lock()
            .expect("not poisoned")
            .get(url)
            .filter(|v| v.fetched.elapsed() < CERT_TTL)
            .cloned();
        let (v, fresh) = match cached {
            Some(v) => (v, false),
            None => {
                let bytes = self.fetcher.get(url).await.map_err(|e| {
                    EventError::Unavailable(format!("SMN signing certificate: {e}"))
                })?;
                let unusable =
                    |e: CertError| bad(format!("signing certificate at {url} is not usable: {e}"));
                let chain = der_chain(&bytes).map_err(unusable)?;
                let cert = parse_cert(&chain[0]).map_err(unusable)?;
                let v = Verified {
                    fetched: Instant::now(),
                    chain: Arc::new(chain),
                    cert,
                };
                (v, true)
            }
        };
        // Checked on every use, cached or not: expiry of any link is noticed at once.
        self.check_chain(&v.chain, &v.cert, host, now)?;
        // Only a certificate that passed is cached: a bad one is fetched again, so a
        // fixed certificate at the same URL is taken at once.
        if fresh {
            let mut cache = self.cache.lock().expect("not poisoned");
            cache.retain(|_, e| e.fetched.elapsed() < CERT_TTL);
            if cache.len() >= CERT_CACHE_MAX {
                let oldest = cache
                    .iter()
                    .min_by_key(|(_, e)| e.fetched)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    cache.remove(&k);
                }
            }
            cache.insert(url.to_string(), v.clone());
        }
        Ok(v.cert)
    }

    /// How many certificates are cached now (for tests and diagnostics).
    pub fn cached_certificates(&self) -> usize {
        self.cache.lock().expect("not poisoned").len()
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
        if !self.cfg.topic_urns.iter().any(|t| t == topic) {
            return Err(bad(if self.cfg.topic_urns.is_empty() {
                format!("topic {topic:?}: auth.smn.topic_urns is empty, so no topic is trusted")
            } else {
                format!("topic {topic:?} is not in auth.smn.topic_urns")
            }));
        }
        let region = topic_region(topic)
            .ok_or_else(|| bad(format!("topic {topic:?} is not urn:smn:<region>:...")))?;
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
        self.check_cert_url(cert_url, region)?;
        let host = Self::https_url("signing_cert_url", cert_url)?.1;
        let cert = self.cert(cert_url, &host, now).await?;
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
        self.check_subscribe_url(&c.subscribe_url, &c.topic_urn)?;
        self.fetcher
            .get(&c.subscribe_url)
            .await
            .map(|_| ())
            .map_err(|e| EventError::Unavailable(format!("SMN subscription confirmation: {e}")))
    }
}

/// "subject CN=…, DNS=…" for refusals: what the certificate says, so an operator can
/// compare it with `auth.smn.signing_subjects`.
fn describe(cert: &SigningCert) -> String {
    if cert.names.is_empty() {
        "no host name (no subject CN, no SAN dNSName)".into()
    } else {
        format!("subject/SAN names {:?}", cert.names)
    }
}

/// No extended-key-usage requirement: the chain and the exact subject are what bind the
/// certificate to SMN, and what SMN's certificate lists as EKU is not documented.
struct AnyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, _: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

/// The system store (via `rustls-native-certs`, which honours `SSL_CERT_FILE` /
/// `SSL_CERT_DIR`) plus the certificates of `ca_file`.
fn load_roots(ca_file: Option<&std::path::Path>) -> Result<Vec<TrustAnchor<'static>>, FetchError> {
    let mut ders: Vec<CertificateDer<'static>> = rustls_native_certs::load_native_certs().certs;
    if let Some(path) = ca_file {
        let pem =
            std::fs::read(path).map_err(|e| format!("auth.smn.ca_file {}: {e}", path.display()))?;
        let extra =
            der_chain(&pem).map_err(|e| format!("auth.smn.ca_file {}: {e}", path.display()))?;
        ders.extend(extra.into_iter().map(CertificateDer::from));
    }
    // A malformed root in the system store is skipped, not fatal: it can anchor nothing.
    let anchors: Vec<TrustAnchor<'static>> = ders
        .iter()
        .filter_map(|d| {
            webpki::anchor_from_trusted_cert(d)
                .ok()
                .map(|a| a.to_owned())
        })
        .collect();
    if anchors.is_empty() {
        return Err(FetchError(
            "no trusted root certificates (the system store is empty or unreadable and \
             auth.smn.ca_file is not set)"
                .into(),
        ));
    }
    Ok(anchors)
}
