//! S3-compatible backend through `object_store`: compare-and-swap with the ETag.
//!
//! Creation is `PUT` with `If-None-Match: *`; an update is `PUT` with `If-Match: <ETag
//! read>`. Both are only as good as the store's enforcement, so [`S3Store::probe`] checks
//! it on a scratch key before the store is used, and refuses a store that ignores them.
//!
//! Quirks handled (found against Ceph RGW 16.2, see the README's state-store section):
//! * RGW 16 compares `If-Match` without removing the quotes every client sends, so a
//!   quoted ETag never matches and CAS would livelock on 412s. The probe tries the
//!   quoted form first and then the bare one, and remembers which one matches
//!   ([`EtagForm`]).
//! * A racing loser may get HTTP 500 instead of 412. `object_store` retries 5xx (the
//!   retry then gets 412, a clean [`StateError::Conflict`]); a 5xx that outlives the
//!   retries becomes [`StateError::Indeterminate`] — never a success. The caller re-reads
//!   and recognises its own write by its `write_id` if it did land.
//! * `If-Match` on a missing key answers 412 on RGW, 404 on AWS: both are a conflict.
//! * Some stores answer conditional PUTs with an error (400/501: OpenStack Swift's S3
//!   layer) rather than ignoring them. The probe then tries a plain PUT: if that works,
//!   the store is refused like one that ignores the headers, naming the alternatives;
//!   only if it fails too is it a backend error (credentials, bucket, network).

use super::config::S3Config;
use super::{IfChanged, StateError, StateStore, Stored, Version};
use crate::secret::Credentials;
use async_trait::async_trait;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, ObjectStore, PutMode, PutOptions, PutPayload,
    RetryConfig, UpdateVersion,
};
use std::time::Duration;

const STORE: &str = "s3";

/// How this store wants the ETag in `If-Match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EtagForm {
    /// `If-Match: "abc"` — what RFC 9110 and AWS S3 expect.
    Quoted,
    /// `If-Match: abc` — Ceph RGW 16 only matches this form.
    Unquoted,
}

impl EtagForm {
    fn apply(self, etag: &str) -> String {
        let bare = etag.trim().trim_start_matches("W/").trim_matches('"');
        match self {
            EtagForm::Quoted => format!("\"{bare}\""),
            EtagForm::Unquoted => bare.to_string(),
        }
    }
}

/// What the start-up probe found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProbeReport {
    /// A second `If-None-Match: *` create of the same key was refused.
    pub if_none_match: bool,
    /// `If-Match` with a wrong ETag was refused and with the right one accepted.
    pub if_match: bool,
    /// The ETag form that matched.
    pub etag_form: Option<EtagForm>,
    /// `If-Match` with a wrong ETag was accepted: the store ignores `If-Match`.
    pub ignores_if_match: bool,
    /// A conditional PUT was answered with an error (not 412/409: e.g. 400 or 501, as
    /// OpenStack Swift's S3 layer does) while a plain PUT of the same key worked: the
    /// store does not support conditional writes. What it answered.
    pub rejects_conditional: Option<String>,
}

/// An S3 bucket (or a prefix in one) holding state documents.
#[derive(Debug)]
pub struct S3Store {
    store: AmazonS3,
    prefix: String,
    endpoint: String,
    bucket: String,
    /// `Some(form)`: conditional writes, verified by the probe. `None`: plain writes,
    /// safe only when writers are serialised some other way (see [`super::LockedStore`]).
    conditional: Option<EtagForm>,
}

impl S3Store {
    /// Build a client. Temporary credentials handed over by the platform (FunctionGraph
    /// agency: access key, secret key, security token) win over the configured keys.
    pub fn client(cfg: &S3Config, creds: Option<&Credentials>) -> Result<Self, StateError> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_virtual_hosted_style_request(!cfg.path_style)
            .with_allow_http(cfg.allow_http)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            // 5xx and 409 are retried a few times with a short backoff; a conditional
            // PUT's retry then answers 412 if it lost. Bounded so a function meets its deadline.
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: 3,
                retry_timeout: Duration::from_secs(cfg.timeout_secs * 2),
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(Duration::from_secs(cfg.timeout_secs))
                    .with_connect_timeout(Duration::from_secs(cfg.timeout_secs.min(5)))
                    .with_allow_http(cfg.allow_http),
            );
        if !cfg.endpoint.is_empty() {
            b = b.with_endpoint(&cfg.endpoint);
        }
        let temporary =
            creds.and_then(|c| Some((c.access_key.as_ref()?, c.secret_key.as_ref()?, c)));
        match (temporary, &cfg.access_key_id, &cfg.secret_access_key) {
            (Some((ak, sk, c)), _, _) => {
                b = b.with_access_key_id(ak).with_secret_access_key(sk.expose());
                if let Some(t) = &c.security_token {
                    b = b.with_token(t.expose());
                }
            }
            (None, Some(ak), Some(sk)) => {
                b = b.with_access_key_id(ak).with_secret_access_key(sk.expose());
                if let Some(t) = &cfg.session_token {
                    b = b.with_token(t.expose());
                }
            }
            // Without keys object_store would fall back to instance metadata; pgsurge
            // wants to be told, not to guess.
            _ => {
                return Err(StateError::Config {
                    key: "state.s3.access_key_id",
                    message: "no credentials: set state.s3.access_key_id and secret_access_key, \
                              or run with platform temporary credentials"
                        .into(),
                })
            }
        }
        let store = b.build().map_err(|e| StateError::Config {
            key: "state.s3",
            message: e.to_string(),
        })?;
        Ok(S3Store {
            store,
            prefix: cfg.prefix.clone(),
            endpoint: if cfg.endpoint.is_empty() {
                format!("AWS S3 ({})", cfg.region)
            } else {
                cfg.endpoint.clone()
            },
            bucket: cfg.bucket.clone(),
            conditional: None,
        })
    }

    /// Probe the store and enable conditional writes, or refuse it with
    /// [`StateError::NoConditionalWrites`].
    pub async fn with_verified_conditional_writes(mut self) -> Result<Self, StateError> {
        let report = self.probe().await?;
        if let Some(answer) = &report.rejects_conditional {
            return Err(self.refuse(&format!(
                "it rejects conditional PUTs ({answer}) while a plain PUT works"
            )));
        }
        match (report.if_none_match, report.if_match, report.etag_form) {
            (true, true, Some(form)) => {
                if form == EtagForm::Unquoted {
                    tracing::info!(
                        endpoint = %self.endpoint,
                        "object store matches If-Match only with a bare ETag (Ceph RGW 16 quirk); sending it unquoted"
                    );
                }
                self.conditional = Some(form);
                Ok(self)
            }
            (false, _, _) => Err(self.refuse(
                "a second PUT with If-None-Match: * on the same key succeeded: it ignores If-None-Match",
            )),
            _ if report.ignores_if_match => Err(self.refuse(
                "a PUT with If-Match and a wrong ETag succeeded: it ignores If-Match",
            )),
            _ => Err(self.refuse(
                "a PUT with If-Match never matched the object's own ETag, quoted or bare \
                 (a wrong one was refused, so updates would never succeed)",
            )),
        }
    }

    /// Use plain overwrites: only behind a writer lock, or with a single writer.
    pub fn without_conditional_writes(mut self) -> Self {
        self.conditional = None;
        self
    }

    fn refuse(&self, detail: &str) -> StateError {
        StateError::NoConditionalWrites {
            endpoint: format!("{} (bucket {})", self.endpoint, self.bucket),
            detail: detail.to_string(),
        }
    }

    /// The ETag form conditional writes use (`None`: plain writes).
    pub fn etag_form(&self) -> Option<EtagForm> {
        self.conditional
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }

    /// Check on a scratch key whether the store enforces `If-None-Match: *` and
    /// `If-Match`, and which ETag form it matches. Removes the scratch key afterwards.
    pub async fn probe(&self) -> Result<ProbeReport, StateError> {
        let key = format!(".pgsurge-probe/{}", uuid::Uuid::new_v4().simple());
        let path = self.path(&key);
        let result = self.probe_at(&path).await;
        // Best effort: a leftover probe object is harmless and tiny.
        let _ = self.store.delete(&path).await;
        result
    }

    async fn probe_at(&self, path: &Path) -> Result<ProbeReport, StateError> {
        let put = |mode: PutMode, body: &'static str| {
            let opts = PutOptions {
                mode,
                ..Default::default()
            };
            self.store
                .put_opts(path, PutPayload::from_static(body.as_bytes()), opts)
        };
        let refused = |e: &object_store::Error| {
            matches!(
                e,
                object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. }
            )
        };
        let mut report = ProbeReport {
            if_none_match: false,
            if_match: false,
            etag_form: None,
            ignores_if_match: false,
            rejects_conditional: None,
        };
        // A conditional PUT that failed with something other than a refusal: if a plain
        // PUT of the same key works, the store rejects the conditional headers themselves
        // (a refusal naming the alternatives, not a generic backend error); if it fails
        // too, the store is unusable for another reason (credentials, bucket, network).
        let rejected = |what: &'static str, e: object_store::Error| async move {
            match put(PutMode::Overwrite, "0").await {
                Ok(_) => Ok(Some(format!("{what}: {e}"))),
                Err(plain) => Err(backend(what, plain)),
            }
        };
        if let Err(e) = put(PutMode::Create, "1").await {
            report.rejects_conditional = rejected("PUT with If-None-Match: *", e).await?;
            return Ok(report);
        }
        match put(PutMode::Create, "2").await {
            Ok(_) => return Ok(report),
            Err(e) if refused(&e) => report.if_none_match = true,
            Err(e) => {
                report.rejects_conditional =
                    rejected("second PUT with If-None-Match: *", e).await?;
                return Ok(report);
            }
        }
        let etag = self
            .store
            .head(path)
            .await
            .map_err(|e| backend("probe: head", e))?
            .e_tag
            .ok_or_else(|| StateError::Backend {
                store: STORE,
                message: "probe: the store returns no ETag".into(),
            })?;
        let update = |tag: String| {
            PutMode::Update(UpdateVersion {
                e_tag: Some(tag),
                version: None,
            })
        };
        for form in [EtagForm::Quoted, EtagForm::Unquoted] {
            match put(update(form.apply("pgsurge-probe-wrong-etag")), "3").await {
                Ok(_) => {
                    report.ignores_if_match = true;
                    return Ok(report);
                }
                Err(e) if refused(&e) => {}
                Err(e) => {
                    report.rejects_conditional = rejected("PUT with If-Match", e).await?;
                    return Ok(report);
                }
            }
            match put(update(form.apply(&etag)), "4").await {
                Ok(_) => {
                    report.if_match = true;
                    report.etag_form = Some(form);
                    return Ok(report);
                }
                Err(e) if refused(&e) => continue,
                Err(e) => {
                    report.rejects_conditional = rejected("PUT with If-Match", e).await?;
                    return Ok(report);
                }
            }
        }
        Ok(report)
    }
}

fn backend(what: &str, e: object_store::Error) -> StateError {
    StateError::Backend {
        store: STORE,
        message: format!("{what}: {e}"),
    }
}

/// A fetched document with its ETag (the version compare-and-swap is conditioned on).
async fn stored(key: &str, got: object_store::GetResult) -> Result<Stored, StateError> {
    let etag = got.meta.e_tag.clone().ok_or_else(|| StateError::Backend {
        store: STORE,
        message: format!("get {key}: the store returned no ETag"),
    })?;
    let bytes = got.bytes().await.map_err(|e| backend("get body", e))?;
    Ok(Stored {
        bytes: bytes.to_vec(),
        version: Version(etag),
    })
}

#[async_trait]
impl StateStore for S3Store {
    async fn load(&self, key: &str) -> Result<Option<Stored>, StateError> {
        let got = match self.store.get(&self.path(key)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(backend("get", e)),
        };
        stored(key, got).await.map(Some)
    }

    /// A conditional GET: `If-None-Match: <ETag>` answers 304 with no body when the
    /// document is unchanged (used every interval by the agent tests on Ceph RGW).
    async fn load_if_changed(
        &self,
        key: &str,
        known: Option<&Version>,
    ) -> Result<IfChanged, StateError> {
        let Some(known) = known else {
            return Ok(match self.load(key).await? {
                None => IfChanged::Absent,
                Some(s) => IfChanged::Changed(s),
            });
        };
        let opts = GetOptions {
            if_none_match: Some(known.0.clone()),
            ..Default::default()
        };
        let got = match self.store.get_opts(&self.path(key), opts).await {
            Ok(g) => g,
            Err(object_store::Error::NotModified { .. }) => return Ok(IfChanged::Unchanged),
            Err(object_store::Error::NotFound { .. }) => return Ok(IfChanged::Absent),
            Err(e) => return Err(backend("get", e)),
        };
        stored(key, got).await.map(IfChanged::Changed)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&Version>,
        bytes: Vec<u8>,
    ) -> Result<Version, StateError> {
        let path = self.path(key);
        let conflict = || StateError::Conflict {
            key: key.to_string(),
        };
        let mode = match (self.conditional, expected) {
            (Some(_), None) => PutMode::Create,
            (Some(form), Some(v)) => PutMode::Update(UpdateVersion {
                e_tag: Some(form.apply(&v.0)),
                version: None,
            }),
            (None, _) => {
                // Plain store: compare, then overwrite. Atomic only because every writer
                // holds the same external lock (or there is only one writer).
                let current = match self.store.head(&path).await {
                    Ok(m) => m.e_tag.map(Version),
                    Err(object_store::Error::NotFound { .. }) => None,
                    Err(e) => return Err(backend("head", e)),
                };
                if current.as_ref() != expected {
                    return Err(conflict());
                }
                PutMode::Overwrite
            }
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(bytes), opts)
            .await
        {
            Ok(r) => r
                .e_tag
                .map(Version)
                .ok_or_else(|| StateError::Indeterminate {
                    key: key.to_string(),
                    message: "the store acknowledged the write without an ETag".into(),
                }),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Err(conflict()),
            // 5xx after retries, timeouts, dropped connections: the write may or may not
            // have happened. Never report success without seeing it.
            Err(e) => Err(StateError::Indeterminate {
                key: key.to_string(),
                message: e.to_string(),
            }),
        }
    }

    fn describe(&self) -> String {
        let how = match self.conditional {
            Some(EtagForm::Quoted) => "If-Match / If-None-Match compare-and-swap",
            Some(EtagForm::Unquoted) => {
                "If-Match (bare ETag, RGW 16 quirk) / If-None-Match compare-and-swap"
            }
            None => "plain writes (serialised outside the store)",
        };
        format!(
            "s3 {} bucket {} prefix {:?}: {how}",
            self.endpoint, self.bucket, self.prefix
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_forms() {
        assert_eq!(EtagForm::Quoted.apply("\"abc\""), "\"abc\"");
        assert_eq!(EtagForm::Quoted.apply("abc"), "\"abc\"");
        assert_eq!(EtagForm::Unquoted.apply("\"abc\""), "abc");
        assert_eq!(EtagForm::Unquoted.apply("W/\"abc\""), "abc");
    }

    #[test]
    fn missing_credentials_are_a_config_error_naming_the_key() {
        let cfg = S3Config {
            bucket: "b".into(),
            endpoint: "http://127.0.0.1:9".into(),
            allow_http: true,
            ..S3Config::default()
        };
        let err = S3Store::client(&cfg, None).unwrap_err().to_string();
        assert!(err.contains("state.s3.access_key_id"), "{err}");
    }
}
