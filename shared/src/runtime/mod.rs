//! The runtime shim: write a handler once, run it under any host.
//!
//! The API mirrors `lambda_runtime` — a handler takes a [`LambdaEvent<T>`] (payload plus
//! [`Context`]) and is built with [`service_fn`] — so a function reads like the AWS
//! examples. The runtime knows nothing of the application: it takes its own
//! [`Settings`] (host limits, metrics push) and a ready handler — the composition root
//! (`crate::app`) loads the configuration and builds what the handler captures — and
//! [`run`] picks the host:
//!
//! | how it is started                              | host                                   |
//! |------------------------------------------------|----------------------------------------|
//! | `<bin> invoke --event FILE` (or `-` for stdin)  | CLI: prints the JSON result            |
//! | `<bin> serve [--port N]`, or `PORT` set         | HTTP webhook server (POST JSON)        |
//! | `AWS_LAMBDA_RUNTIME_API` set                    | AWS Lambda runtime API                 |
//! | `RUNTIME_API_ADDR` set                          | FunctionGraph custom runtime API       |
//!
//! Every host funnels into [`invoke`], so size limits, JSON decoding, the deadline,
//! panic capture and the one log line per invocation behave the same everywhere. A host
//! reads at most `runtime.max_body_bytes + 1` bytes; the body is measured once and
//! decoded once, into the handler's type (which keeps the parsed document: see
//! `events::Webhook`).

mod body;
mod config;
pub use config::RuntimeConfig;
mod cli;
mod context;
mod error;
mod http;
mod pull;

pub use context::{Context, Credentials, Host, LambdaEvent};
pub use error::{ErrorKind, FunctionError};
pub use http::{Admission, Gate, HttpHead};

use crate::metrics::MetricsConfig;
use clap::{Parser, Subcommand};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// A function body: takes a typed event, returns a serialisable result.
pub trait Handler<T>: Send + Sync + 'static {
    type Response: Serialize + Send + 'static;
    fn call(
        &self,
        event: LambdaEvent<T>,
    ) -> BoxFuture<'static, Result<Self::Response, FunctionError>>;
}

/// A [`Handler`] made from an async closure, like `lambda_runtime::service_fn`.
pub struct ServiceFn<F>(F);

pub fn service_fn<F>(f: F) -> ServiceFn<F> {
    ServiceFn(f)
}

impl<T, R, F, Fut> Handler<T> for ServiceFn<F>
where
    F: Fn(LambdaEvent<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, FunctionError>> + Send + 'static,
    R: Serialize + Send + 'static,
{
    type Response = R;
    fn call(&self, event: LambdaEvent<T>) -> BoxFuture<'static, Result<R, FunctionError>> {
        (self.0)(event).boxed()
    }
}

/// What every host applies around the handler: the body limit before it, the metrics
/// push after it.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub metrics: Option<Arc<MetricsConfig>>,
}

impl Limits {
    pub fn new(max_body_bytes: usize) -> Self {
        Limits {
            max_body_bytes,
            metrics: None,
        }
    }
}

/// Run one invocation: check size, decode, call with the deadline, catch panics, log.
///
/// This is the single path all hosts share; a host only moves bytes in and out.
pub async fn invoke<T, H>(
    handler: &H,
    ctx: Context,
    body: &[u8],
    limits: &Limits,
) -> Result<serde_json::Value, FunctionError>
where
    T: DeserializeOwned,
    H: Handler<T>,
{
    invoke_input(handler, ctx, Input::Bytes(body), limits).await
}

/// What a host hands [`invoke`]: the raw event bytes (CLI, runtime APIs), or a JSON value
/// the host built itself (the HTTP host's envelope: the request body stays a string in
/// it, so it is never decoded here — the handler authenticates before it parses it).
pub(crate) enum Input<'a> {
    Bytes(&'a [u8]),
    Json(serde_json::Value),
}

pub(crate) async fn invoke_input<T, H>(
    handler: &H,
    ctx: Context,
    body: Input<'_>,
    limits: &Limits,
) -> Result<serde_json::Value, FunctionError>
where
    T: DeserializeOwned,
    H: Handler<T>,
{
    let started = Instant::now();
    let (request_id, function, host) =
        (ctx.request_id.clone(), ctx.function_name.clone(), ctx.host);
    let remaining = ctx.remaining();
    let metrics = limits.metrics.clone();
    let result = call(handler, ctx, body, limits.max_body_bytes).await;
    log_invocation(&request_id, &function, host, result.as_ref().err(), started);
    if let Some(m) = metrics {
        push_metrics(&m, remaining.saturating_sub(started.elapsed())).await;
    }
    result
}

/// Push the registry, bounded by the push timeout and what is left of the deadline.
async fn push_metrics(m: &MetricsConfig, left: std::time::Duration) {
    if m.push_url.is_empty() {
        return;
    }
    let timeout = std::time::Duration::from_millis(m.push_timeout_ms).min(left);
    if timeout.is_zero() {
        return;
    }
    if let Err(e) = crate::metrics::push(
        crate::metrics::global(),
        &m.push_url,
        m.push_format,
        &m.job,
        timeout,
    )
    .await
    {
        tracing::warn!(error = %e, "metrics push failed");
    }
}

/// The one log line (and counter) every invocation gets, whether or not it reached the handler.
pub(crate) fn log_invocation(
    request_id: &str,
    function: &str,
    host: Host,
    error: Option<&FunctionError>,
    started: Instant,
) {
    let duration_ms = started.elapsed().as_millis() as u64;
    let host = host.as_str();
    let outcome = error.map(|e| e.error_type.as_str()).unwrap_or("ok");
    crate::metrics::global().inc(
        "pgsurge_invocations_total",
        "Function invocations by outcome (ok or the error type).",
        &[("function", function), ("host", host), ("outcome", outcome)],
        1.0,
    );
    match error {
        None => tracing::info!(
            request_id,
            function,
            host,
            outcome = "ok",
            duration_ms,
            "invocation finished"
        ),
        Some(e) => {
            tracing::warn!(request_id, function, host, outcome = "error", error_type = %e.error_type, error = %e.message, duration_ms, "invocation failed")
        }
    }
}

async fn call<T, H>(
    handler: &H,
    ctx: Context,
    body: Input<'_>,
    max_body_bytes: usize,
) -> Result<serde_json::Value, FunctionError>
where
    T: DeserializeOwned,
    H: Handler<T>,
{
    let not_json = |e: serde_json::Error| {
        FunctionError::new(
            ErrorKind::BadRequest,
            format!("event is not valid JSON for this function: {e}"),
        )
    };
    let payload: T = match body {
        Input::Bytes(body) if body.len() > max_body_bytes => {
            return Err(FunctionError::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "event is {} bytes; the limit (runtime.max_body_bytes) is {}",
                    body.len(),
                    max_body_bytes
                ),
            ))
        }
        // The one decoding of the event: the handler's type keeps what it needs of it.
        Input::Bytes(body) => serde_json::from_slice(body).map_err(not_json)?,
        // The host measured the raw body against the limit before building this.
        Input::Json(value) => serde_json::from_value(value).map_err(not_json)?,
    };
    let remaining = ctx.remaining();
    let fut = AssertUnwindSafe(handler.call(LambdaEvent::new(payload, ctx))).catch_unwind();
    let response = match tokio::time::timeout(remaining, fut).await {
        Err(_) => {
            return Err(FunctionError::new(
                ErrorKind::Timeout,
                format!(
                    "handler did not finish before the deadline ({} ms)",
                    remaining.as_millis()
                ),
            ))
        }
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            return Err(FunctionError::new(
                ErrorKind::Internal,
                format!("handler panicked: {what}"),
            ));
        }
        Ok(Ok(r)) => r?,
    };
    serde_json::to_value(response).map_err(|e| {
        FunctionError::new(
            ErrorKind::Internal,
            format!("could not serialise the handler's result: {e}"),
        )
    })
}

/// The runtime's own settings: how the hosts behave (`[runtime]`) and where metrics
/// are pushed after each invocation (`[metrics]`).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub runtime: RuntimeConfig,
    pub metrics: MetricsConfig,
}

#[derive(Parser, Debug)]
#[command(
    about = "A pgsurge function. With no command, serves the runtime API named by the environment."
)]
struct Cli {
    /// Configuration file (TOML). Also `PGSURGE_CONFIG`. `PGSURGE_<SECTION>__<KEY>` overrides.
    #[arg(long, global = true, env = "PGSURGE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Invoke once with an event file (`-` reads stdin) and print the JSON result.
    Invoke {
        #[arg(long)]
        event: PathBuf,
        /// Deadline for this invocation (default: runtime.timeout_secs).
        #[arg(long)]
        timeout_secs: Option<u64>,
    },
    /// Serve POSTed events over HTTP (FunctionGraph HTTP function / webhook receiver).
    Serve {
        /// Port (default: `PORT`, then runtime.http_port).
        #[arg(long)]
        port: Option<u16>,
        /// Address to bind (default: runtime.http_bind).
        #[arg(long)]
        bind: Option<String>,
    },
}

/// The process's command line: which host to run, and the configuration file the
/// application loads.
#[derive(Debug)]
pub struct Args(Cli);

impl Args {
    /// Parse the command line (exits with usage on a bad one, as every CLI does).
    pub fn parse() -> Args {
        Args(Cli::parse())
    }

    /// `--config` or `PGSURGE_CONFIG`.
    pub fn config(&self) -> Option<&std::path::Path> {
        self.0.config.as_deref()
    }
}

/// A start-up failure (say, an invalid configuration): logged, reported to the runtime
/// API when there is one, printed; the process exits with 2.
pub async fn init_failed(function: &str, message: String) -> ExitCode {
    let err = FunctionError::new(ErrorKind::BadRequest, message);
    tracing::error!(function, error = %err.message, "startup failed");
    pull::report_init_error(&err).await;
    eprintln!("{function}: {err}");
    ExitCode::from(2)
}

/// Serve `handler` under the host the command line or the environment names.
///
/// `handler` is built once by the caller, so the FunctionGraph/Lambda/HTTP hosts reuse
/// it (and what it captured) across invocations. `gate`, when given, is asked about each
/// HTTP request before its body is read or handed on (see [`Gate`]).
pub async fn run<T, H>(
    function: &'static str,
    args: Args,
    settings: Settings,
    gate: Option<Arc<dyn Gate>>,
    handler: H,
) -> ExitCode
where
    T: DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    let limits = Limits {
        max_body_bytes: settings.runtime.max_body_bytes,
        metrics: Some(Arc::new(settings.metrics.clone())),
    };
    let handler = Arc::new(handler);
    let function_name = std::env::var("RUNTIME_FUNC_NAME")
        .or_else(|_| std::env::var("AWS_LAMBDA_FUNCTION_NAME"))
        .unwrap_or_else(|_| function.to_string());
    let rt = &settings.runtime;
    match args.0.command {
        Some(Command::Invoke {
            event,
            timeout_secs,
        }) => {
            let timeout = timeout_secs.unwrap_or(rt.timeout_secs);
            cli::run(handler.as_ref(), &function_name, &event, timeout, limits).await
        }
        Some(Command::Serve { port, bind }) => {
            http::serve(handler, &function_name, rt, gate, port, bind, limits).await
        }
        None => {
            if let Some(api) = pull::Protocol::from_env() {
                pull::run(handler, api, &function_name, rt.timeout_secs, limits).await
            } else if std::env::var("PORT").is_ok() {
                http::serve(handler, &function_name, rt, gate, None, None, limits).await
            } else {
                eprintln!(
                    "{function}: no host found. Use `{function} invoke --event FILE`, `{function} serve`, \
                     or run under FunctionGraph (RUNTIME_API_ADDR) or Lambda (AWS_LAMBDA_RUNTIME_API)."
                );
                ExitCode::from(2)
            }
        }
    }
}
