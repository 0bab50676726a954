//! Pull hosts: the FunctionGraph custom runtime API and the AWS Lambda runtime API.
//!
//! Both are the same loop — fetch the next event, run it, post the result or the
//! error — and differ only in paths and headers, which [`Protocol`] holds.
//!
//! FunctionGraph (developer guide, "Custom Runtime"): `GET /v1/runtime/invocation/request`
//! returns the event with `X-Cff-Request-Id` and, with an agency, `X-CFF-Access-Key`,
//! `X-CFF-Secret-Key`, `X-CFF-Security-Token`, `X-CFF-Auth-Token`; results go to
//! `POST /v1/runtime/invocation/response/{id}`, failures to `.../error/{id}`. The
//! deadline is the invocation start plus `RUNTIME_TIMEOUT` seconds (FunctionGraph sends
//! no deadline header). The guide documents no init-error path; we post to
//! `/v1/runtime/init/error` by analogy with Lambda and exit non-zero either way.
//!
//! Lambda: `GET /2018-06-01/runtime/invocation/next` with `Lambda-Runtime-Aws-Request-Id`,
//! `Lambda-Runtime-Deadline-Ms`, `Lambda-Runtime-Invoked-Function-Arn`; results to
//! `.../invocation/{id}/response`, failures to `.../invocation/{id}/error`, start-up
//! failures to `/2018-06-01/runtime/init/error`.

use super::body::read_limited_response;
use super::{invoke, Context, Credentials, FunctionError, Handler, Host, Limits};
use crate::secret::Secret;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Which runtime API the process was started under, and where it is.
#[derive(Debug, Clone)]
pub(super) enum Protocol {
    FunctionGraph { addr: String },
    Lambda { addr: String },
}

impl Protocol {
    /// Lambda's variable wins when both are set: it is the more specific signal.
    pub(super) fn from_env() -> Option<Protocol> {
        let non_empty = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(addr) = non_empty("AWS_LAMBDA_RUNTIME_API") {
            Some(Protocol::Lambda { addr })
        } else {
            non_empty("RUNTIME_API_ADDR").map(|addr| Protocol::FunctionGraph { addr })
        }
    }

    fn host(&self) -> Host {
        match self {
            Protocol::FunctionGraph { .. } => Host::FunctionGraph,
            Protocol::Lambda { .. } => Host::Lambda,
        }
    }

    fn next_url(&self) -> String {
        match self {
            Protocol::FunctionGraph { addr } => {
                format!("http://{addr}/v1/runtime/invocation/request")
            }
            Protocol::Lambda { addr } => {
                format!("http://{addr}/2018-06-01/runtime/invocation/next")
            }
        }
    }

    fn response_url(&self, id: &str) -> String {
        match self {
            Protocol::FunctionGraph { addr } => {
                format!("http://{addr}/v1/runtime/invocation/response/{id}")
            }
            Protocol::Lambda { addr } => {
                format!("http://{addr}/2018-06-01/runtime/invocation/{id}/response")
            }
        }
    }

    fn error_url(&self, id: &str) -> String {
        match self {
            Protocol::FunctionGraph { addr } => {
                format!("http://{addr}/v1/runtime/invocation/error/{id}")
            }
            Protocol::Lambda { addr } => {
                format!("http://{addr}/2018-06-01/runtime/invocation/{id}/error")
            }
        }
    }

    fn init_error_url(&self) -> String {
        match self {
            Protocol::FunctionGraph { addr } => format!("http://{addr}/v1/runtime/init/error"),
            Protocol::Lambda { addr } => format!("http://{addr}/2018-06-01/runtime/init/error"),
        }
    }

    /// Build the invocation context from the next-event response headers.
    fn context(
        &self,
        headers: &HeaderMap,
        function: &str,
        default_timeout: u64,
    ) -> Result<Context, MalformedInvocation> {
        let h = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match self {
            Protocol::FunctionGraph { .. } => {
                let id = h("x-cff-request-id").ok_or(MalformedInvocation::NoRequestId {
                    header: "X-Cff-Request-Id",
                })?;
                let timeout = env("RUNTIME_TIMEOUT")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(default_timeout);
                let mut ctx = Context::new(
                    id,
                    function,
                    Host::FunctionGraph,
                    Duration::from_secs(timeout),
                );
                ctx.function_version =
                    env("RUNTIME_FUNC_VERSION").unwrap_or_else(|| "latest".into());
                ctx.memory_mb = env("RUNTIME_MEMORY").and_then(|m| m.parse().ok());
                ctx.invoke_type = h("x-cff-invoke-type");
                let creds = Credentials {
                    access_key: h("x-cff-access-key"),
                    secret_key: h("x-cff-secret-key").map(Secret::new),
                    security_token: h("x-cff-security-token").map(Secret::new),
                    auth_token: h("x-cff-auth-token").map(Secret::new),
                };
                ctx.credentials = (!creds.is_empty()).then_some(creds);
                Ok(ctx)
            }
            Protocol::Lambda { .. } => {
                let id =
                    h("lambda-runtime-aws-request-id").ok_or(MalformedInvocation::NoRequestId {
                        header: "Lambda-Runtime-Aws-Request-Id",
                    })?;
                let mut ctx = Context::new(
                    id,
                    function,
                    Host::Lambda,
                    Duration::from_secs(default_timeout),
                );
                if let Some(deadline) = h("lambda-runtime-deadline-ms").and_then(|d| d.parse().ok())
                {
                    ctx.deadline_ms = deadline;
                }
                ctx.invoked_function_arn = h("lambda-runtime-invoked-function-arn");
                ctx.function_version =
                    env("AWS_LAMBDA_FUNCTION_VERSION").unwrap_or_else(|| "$LATEST".into());
                ctx.memory_mb = env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").and_then(|m| m.parse().ok());
                Ok(ctx)
            }
        }
    }
}

/// A next-invocation response the loop cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum MalformedInvocation {
    #[error("next invocation has no {header} header")]
    NoRequestId { header: &'static str },
}

/// How many consecutive failures to reach the runtime API before giving up.
const MAX_API_FAILURES: u32 = 10;

pub(super) async fn run<T, H>(
    handler: Arc<H>,
    api: Protocol,
    function: &str,
    default_timeout_secs: u64,
    limits: Limits,
) -> ExitCode
where
    T: DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    let client = reqwest::Client::new();
    let host = api.host();
    tracing::info!(
        function,
        host = host.as_str(),
        "polling the runtime API for invocations"
    );
    let mut failures = 0u32;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let next = tokio::select! {
            _ = &mut shutdown => return ExitCode::SUCCESS,
            r = client.get(api.next_url()).send() => r,
        };
        let response = match next {
            Ok(r) if r.status().is_success() => r,
            other => {
                failures += 1;
                let why = match other {
                    Ok(r) => format!("HTTP {}", r.status()),
                    Err(e) => e.without_url().to_string(),
                };
                if failures >= MAX_API_FAILURES {
                    tracing::error!(function, error = %why, failures, "runtime API unreachable; exiting");
                    return ExitCode::from(1);
                }
                tracing::warn!(function, error = %why, failures, "fetching the next invocation failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 << failures.min(6))).await;
                continue;
            }
        };
        let ctx = api.context(response.headers(), function, default_timeout_secs);
        let body = read_limited_response(response, limits.max_body_bytes).await;
        let ctx = match ctx {
            Ok(c) => c,
            Err(why) => {
                // Without a request id there is nowhere to post a result; the platform times
                // it out. Back off as for a failed fetch, so a broken API is not hammered.
                failures += 1;
                tracing::error!(function, error = %why, failures, "malformed invocation from the runtime API");
                if failures >= MAX_API_FAILURES {
                    return ExitCode::from(1);
                }
                tokio::time::sleep(Duration::from_millis(100 << failures.min(6))).await;
                continue;
            }
        };
        failures = 0;
        let id = ctx.request_id.clone();
        let outcome = match body {
            Ok(body) => invoke(handler.as_ref(), ctx, &body, &limits).await,
            // Not the sender's fault and not "invalid JSON": say what happened.
            Err(e) => {
                let msg = format!(
                    "could not read the invocation's body from the runtime API: {}",
                    e.without_url()
                );
                tracing::error!(function, request_id = %id, error = %msg, "invocation failed");
                Err(FunctionError::new(super::ErrorKind::Unavailable, msg))
            }
        };
        let (url, body, error_type) = match outcome {
            Ok(v) => (api.response_url(&id), v, None),
            Err(e) => (api.error_url(&id), e.to_json(), Some(e.error_type.clone())),
        };
        let mut post = client.post(url).json(&body);
        if let (Protocol::Lambda { .. }, Some(t)) = (&api, error_type) {
            post = post.header("Lambda-Runtime-Function-Error-Type", t);
        }
        if let Err(e) = post.send().await.and_then(|r| r.error_for_status()) {
            tracing::warn!(function, request_id = %id, error = %e.without_url(), "could not post the result");
        }
    }
}

/// Under a runtime API, tell the platform that start-up failed (best effort).
pub(super) async fn report_init_error(err: &FunctionError) {
    let Some(api) = Protocol::from_env() else {
        return;
    };
    let mut post = reqwest::Client::new()
        .post(api.init_error_url())
        .json(&err.to_json());
    if matches!(api, Protocol::Lambda { .. }) {
        post = post.header("Lambda-Runtime-Function-Error-Type", err.error_type.clone());
    }
    let _ = post.timeout(Duration::from_secs(5)).send().await;
}

/// Resolves on SIGTERM or Ctrl-C, so hosts stop between invocations.
pub(super) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
