//! Every OpenStack call goes through [`Caller::send`]: a per-call timeout (the HTTP client's),
//! retries with exponential backoff on 5xx, 429 and connection failures only, the request id
//! of every answer in the logs, and the answer's status mapped to a typed [`CloudError`].
//!
//! The classification is a pure function ([`classify`]) so it is unit-tested on the exact
//! bodies Nova and Cinder send; the retry schedule is too ([`RetryPolicy::delay`]).
//! Nothing here ever logs a header or a request body: tokens travel in headers, and
//! request bodies may carry user data.

use crate::cloud::CloudError;
use bytes::Bytes;
use http::StatusCode;
use openstack_sdk::api::rest_endpoint::RestEndpoint;
use openstack_sdk::api::{raw, ApiError, QueryAsync};
use openstack_sdk::{AsyncOpenStack, RestError};
use std::time::Duration;

/// How often and how patiently a failed call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = try once).
    pub max_retries: u32,
    /// Delay before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based), honouring a server's
    /// `Retry-After` (seconds) within `max_delay`. Deterministic: many invocations retrying
    /// at once are rare for us (one function per alarm), so no jitter is needed.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        retry_after.unwrap_or(exp).min(self.max_delay)
    }
}

/// An answer with a success status.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub request_id: Option<String>,
    pub body: Bytes,
}

impl Reply {
    /// The JSON body, or the object under `key` in it.
    pub fn json(&self, key: Option<&str>) -> Result<serde_json::Value, CloudError> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).map_err(|e| {
            CloudError::Fatal(format!(
                "unreadable answer (request {}): {e}",
                self.request_id.as_deref().unwrap_or("-")
            ))
        })?;
        match key {
            None => Ok(v),
            Some(k) => v.get(k).cloned().ok_or_else(|| {
                CloudError::Fatal(format!(
                    "answer without `{k}` (request {})",
                    self.request_id.as_deref().unwrap_or("-")
                ))
            }),
        }
    }
}

fn is_quota_message(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("quota") || lower.contains("limitexceeded")
}

/// Map an HTTP error answer to a typed error. `what` names the call ("create volume
/// pgsurge-c-r1") so the message says what failed, `message` is the service's own text.
pub fn classify(what: &str, status: u16, message: &str, request_id: Option<&str>) -> CloudError {
    let rid = request_id.unwrap_or("-");
    let text = format!("{what}: HTTP {status}: {message} (request {rid})");
    match status {
        404 => CloudError::NotFound {
            kind: "resource",
            id: format!("{what} (request {rid})"),
        },
        409 => CloudError::Conflict(text),
        // Cinder answers over-quota with 413 (VolumeLimitExceeded, ...), Nova with 403
        // "Quota exceeded for instances: ...". A 413 that carries Retry-After is a rate
        // limit, which the caller has already turned into a retry.
        413 => CloudError::Quota(text),
        403 if is_quota_message(message) => CloudError::Quota(text),
        429 | 500..=599 => CloudError::Transient(text),
        _ => CloudError::Fatal(text),
    }
}

/// The human part of an OpenStack error body: `{"itemNotFound": {"message": ...}}`,
/// `{"badRequest": {...}}`, `{"overLimit": {...}}`, Neutron's `{"NeutronError": {...}}`,
/// Keystone's `{"error": {...}}`, Designate's `{"message": ...}`; else the raw text.
pub fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(&text) {
        if let Some(serde_json::Value::String(s)) = m.get("message") {
            return s.clone();
        }
        for v in m.values() {
            if let Some(s) = v.get("message").and_then(|s| s.as_str()) {
                return s.to_string();
            }
        }
    }
    let t = text.trim();
    t.chars().take(300).collect()
}

fn request_id(headers: &http::HeaderMap) -> Option<String> {
    // Nova sends both; Cinder, Neutron and Keystone send x-openstack-request-id.
    ["x-openstack-request-id", "x-compute-request-id"]
        .iter()
        .find_map(|h| headers.get(*h)?.to_str().ok().map(str::to_string))
}

fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// Whether a transport failure happened before the request could reach the service
/// (refused / unresolvable / TLS): only then is re-sending a create safe.
fn not_sent(e: &CloudError) -> bool {
    let t = e.to_string().to_ascii_lowercase();
    [
        "connection refused",
        "dns error",
        "failed to lookup",
        "tcp connect",
        "certificate",
    ]
    .iter()
    .any(|m| t.contains(m))
}

/// May this failure be retried for this method? Reads (GET, HEAD) and deletes are safe to
/// repeat. A create (POST) is repeated only when the service certainly did not act on it:
/// 429, 503 (turned away before any work), or a connection that never opened. A create
/// that timed out or got another 5xx may have been carried out, so it is *not* re-sent:
/// the caller's `ensure_*` looks for the resource before creating again, which adopts it
/// instead of making a duplicate (a re-sent boot request would also fail, the volume being
/// already reserved by the first).
pub fn may_retry(method: &http::Method, status: Option<u16>, err: &CloudError) -> bool {
    if !err.is_retryable() {
        return false;
    }
    let idempotent = matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::DELETE | http::Method::PUT
    );
    idempotent
        || match status {
            Some(s) => s == 429 || s == 503,
            None => not_sent(err),
        }
}

/// A transport failure (no HTTP answer), reduced to words that carry no secret: the SDK's
/// error chain can include URLs, never headers or bodies.
fn transport_error(what: &str, e: &ApiError<RestError>) -> CloudError {
    match e {
        ApiError::Client {
            source: RestError::AuthError { source },
        } => CloudError::Fatal(format!("{what}: authentication failed: {source}")),
        ApiError::Client { source } => CloudError::Transient(format!("{what}: {}", chain(source))),
        ApiError::Catalog { source } => {
            CloudError::Fatal(format!("{what}: service catalog: {source}"))
        }
        other => CloudError::Fatal(format!("{what}: {}", chain(other))),
    }
}

/// `a: b: c` from an error and its sources (reqwest puts "connection refused" at the end).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

/// Sends requests for the provider: the shared session plus the retry policy.
pub struct Caller {
    pub client: AsyncOpenStack,
    pub retry: RetryPolicy,
    /// Keystone's URL (the configured auth_url), probed when a token is refused, and how
    /// long that probe may take.
    pub identity: Option<IdentityProbe>,
}

/// Where Keystone is, to tell "token refused, Keystone fine" (a credential problem) from
/// "token refused and Keystone unreachable" (the SDK could not renew it: worth retrying).
#[derive(Debug, Clone)]
pub struct IdentityProbe {
    pub url: String,
    pub timeout: Duration,
}

impl IdentityProbe {
    /// `None` when Keystone answers at all (any HTTP status); else why it does not.
    pub async fn unreachable(&self) -> Option<String> {
        let client = match reqwest::Client::builder()
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .build()
        {
            Ok(c) => c,
            Err(e) => return Some(chain(&e)),
        };
        match client.get(&self.url).send().await {
            Ok(r) if r.status().is_server_error() => Some(format!("HTTP {}", r.status())),
            Ok(_) => None,
            Err(e) => Some(chain(&e)),
        }
    }
}

/// A 401 the SDK passed on: it has already tried to renew the token (once) and failed.
/// When Keystone cannot be reached that is an outage (transient, naming the identity
/// service), not a verdict on our credentials.
pub fn token_refused(
    what: &str,
    identity_url: &str,
    unreachable: Option<String>,
    err: CloudError,
) -> CloudError {
    match unreachable {
        Some(why) => CloudError::Transient(format!(
            "{what}: token refused and the identity service (Keystone) {identity_url} is \
             unreachable to renew it: {why}"
        )),
        None => err,
    }
}

impl Caller {
    /// Version discovery for a service whose catalog URL carries no version (Neutron,
    /// Designate): the SDK needs it before it can build `v2.0/...` URLs.
    pub async fn discover(
        &self,
        service: &openstack_sdk::types::ServiceType,
    ) -> Result<(), CloudError> {
        self.client
            .discover_service_endpoint(service)
            .await
            .map_err(|e| {
                CloudError::Transient(format!("{service} version discovery: {}", chain(&e)))
            })
    }

    /// Send one request, retrying transient failures; `Ok` only for a 2xx answer.
    pub async fn send<E>(&self, what: &str, ep: E) -> Result<Reply, CloudError>
    where
        E: RestEndpoint + Sync + Send,
    {
        let method = ep.method();
        let q = raw(ep).skip_error_check(true);
        let mut attempt = 0u32;
        loop {
            let started = std::time::Instant::now();
            let (err, after, status) = match q.query_async(&self.client).await {
                Ok(rsp) => {
                    let status = rsp.status();
                    let rid = request_id(rsp.headers());
                    let ms = started.elapsed().as_millis() as u64;
                    if status.is_success() {
                        tracing::debug!(call = what, %method, status = status.as_u16(),
                            request_id = rid.as_deref().unwrap_or("-"), ms, "openstack call");
                        return Ok(Reply {
                            status,
                            request_id: rid,
                            body: rsp.into_body(),
                        });
                    }
                    let message = error_message(rsp.body());
                    tracing::info!(call = what, %method, status = status.as_u16(),
                        request_id = rid.as_deref().unwrap_or("-"), ms, error = %message,
                        "openstack call failed");
                    let mut err = classify(what, status.as_u16(), &message, rid.as_deref());
                    if status == StatusCode::UNAUTHORIZED {
                        if let Some(probe) = &self.identity {
                            err = token_refused(what, &probe.url, probe.unreachable().await, err);
                        }
                    }
                    // a 413 with Retry-After and no word of quota is rate limiting (Cinder
                    // sends Retry-After with its over-quota 413s too)
                    let after = retry_after(rsp.headers());
                    if status == StatusCode::PAYLOAD_TOO_LARGE
                        && after.is_some()
                        && !is_quota_message(&message)
                    {
                        err = CloudError::Transient(format!(
                            "{what}: rate limited: {message} (request {})",
                            rid.as_deref().unwrap_or("-")
                        ));
                    }
                    (err, after, Some(status.as_u16()))
                }
                Err(e) => {
                    let err = transport_error(what, &e);
                    tracing::info!(call = what, %method, error = %err, "openstack call failed");
                    (err, None, None)
                }
            };
            if attempt >= self.retry.max_retries || !may_retry(&method, status, &err) {
                return Err(err);
            }
            attempt += 1;
            let delay = self.retry.delay(attempt, after);
            tracing::warn!(
                call = what,
                attempt,
                delay_ms = delay.as_millis() as u64,
                "retrying after a transient failure"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_answers_are_typed() {
        // Cinder, seen on the test cloud
        let body = br#"{"overLimit": {"code": 413, "message": "VolumeLimitExceeded: Maximum number of volumes allowed (2) exceeded for quota 'volumes'."}}"#;
        let e = classify("create volume v", 413, &error_message(body), Some("req-1"));
        assert!(
            matches!(&e, CloudError::Quota(m) if m.contains("Maximum number of volumes") && m.contains("req-1")),
            "{e}"
        );
        // Nova
        let body = br#"{"forbidden": {"code": 403, "message": "Quota exceeded for instances: Requested 1, but already used 1 of 1 instances"}}"#;
        let e = classify("create server s", 403, &error_message(body), None);
        assert!(matches!(e, CloudError::Quota(_)), "{e}");
        // a plain 403 is a permission problem
        let e = classify("x", 403, "Policy doesn't allow", None);
        assert!(matches!(e, CloudError::Fatal(_)), "{e}");
    }

    #[test]
    fn statuses_map_to_kinds() {
        assert!(matches!(
            classify("x", 404, "", None),
            CloudError::NotFound { .. }
        ));
        assert!(matches!(
            classify("x", 409, "in use", None),
            CloudError::Conflict(_)
        ));
        for s in [429, 500, 502, 503, 504] {
            assert!(classify("x", s, "", None).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 405, 422] {
            assert!(!classify("x", s, "", None).is_retryable(), "{s}");
        }
    }

    #[test]
    fn messages_come_from_every_error_shape() {
        assert_eq!(
            error_message(
                br#"{"badRequest": {"message": "Flavor 9 could not be found.", "code": 400}}"#
            ),
            "Flavor 9 could not be found."
        );
        assert_eq!(
            error_message(br#"{"NeutronError": {"type": "x", "message": "Network n not found.", "detail": ""}}"#),
            "Network n not found."
        );
        assert_eq!(
            error_message(br#"{"code": 409, "type": "duplicate_recordset", "message": "Duplicate RecordSet"}"#),
            "Duplicate RecordSet"
        );
        assert_eq!(
            error_message(b"<html>Bad Gateway</html>"),
            "<html>Bad Gateway</html>"
        );
    }

    #[test]
    fn creates_are_resent_only_when_certainly_not_carried_out() {
        let post = http::Method::POST;
        let timeout = CloudError::Transient("x: error sending request: operation timed out".into());
        let refused = CloudError::Transient(
            "x: error sending request: tcp connect error: Connection refused".into(),
        );
        let e500 = classify("x", 500, "", None);
        assert!(
            !may_retry(&post, None, &timeout),
            "a timed-out create may exist"
        );
        assert!(!may_retry(&post, Some(500), &e500));
        assert!(may_retry(&post, None, &refused));
        assert!(may_retry(&post, Some(503), &classify("x", 503, "", None)));
        assert!(may_retry(&post, Some(429), &classify("x", 429, "", None)));
        // reads and deletes are repeated on any transient failure
        assert!(may_retry(&http::Method::GET, None, &timeout));
        assert!(may_retry(&http::Method::DELETE, Some(500), &e500));
        // nothing fatal is retried
        assert!(!may_retry(
            &http::Method::GET,
            Some(400),
            &classify("x", 400, "", None)
        ));
    }

    #[test]
    fn a_refused_token_is_transient_only_when_keystone_is_unreachable() {
        let e401 = classify(
            "list volumes",
            401,
            "The request you have made requires authentication.",
            None,
        );
        assert!(matches!(e401, CloudError::Fatal(_)));
        let e = token_refused(
            "list volumes",
            "http://127.0.0.1:5000/v3",
            Some("tcp connect error: Connection refused".into()),
            e401.clone(),
        );
        assert!(
            matches!(&e, CloudError::Transient(m) if m.contains("identity service (Keystone) http://127.0.0.1:5000/v3") && m.contains("Connection refused")),
            "{e}"
        );
        assert_eq!(token_refused("x", "u", None, e401.clone()), e401);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let d: Vec<u64> = (1..=5)
            .map(|a| p.delay(a, None).as_millis() as u64)
            .collect();
        assert_eq!(d, [100, 200, 400, 800, 1000]);
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(30))),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_millis(0))),
            Duration::from_millis(0)
        );
    }
}
