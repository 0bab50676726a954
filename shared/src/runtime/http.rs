//! HTTP host: a FunctionGraph HTTP function or a plain webhook receiver.
//!
//! `POST <any path>` with a JSON body invokes the handler. The request reaches the
//! handler as an API-Gateway-style envelope (`httpMethod`, `path`, `headers`, `body`,
//! `isBase64Encoded`) — the same shape a FunctionGraph APIG trigger delivers — so a
//! handler that authenticates headers works the same behind APIG and here.
//! `GET /healthz` answers `ok`. Status codes: 200, 400 bad event, 401 bad auth,
//! 413 too large, 500 handler failure, 504 past the deadline.

use super::{invoke, Context, FunctionError, Handler, Host, Limits};
use crate::config::Config;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

struct Shared<H> {
    handler: Arc<H>,
    function: String,
    timeout: Duration,
    limits: Limits,
}

pub(super) async fn serve<T, H>(
    handler: Arc<H>,
    function: &str,
    config: &Config,
    port: Option<u16>,
    bind: Option<String>,
    limits: Limits,
) -> ExitCode
where
    T: DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    let port = port
        .or_else(|| std::env::var("PORT").ok().and_then(|p| p.parse().ok()))
        .unwrap_or(config.runtime.http_port);
    let bind = bind.unwrap_or_else(|| config.runtime.http_bind.clone());
    let shared = Arc::new(Shared {
        handler,
        function: function.to_string(),
        timeout: Duration::from_secs(config.runtime.timeout_secs),
        limits,
    });
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(|| async {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    crate::metrics::global().render(),
                )
            }),
        )
        .fallback(handle::<T, H>)
        .with_state(shared);
    let listener = match tokio::net::TcpListener::bind((bind.as_str(), port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{function}: cannot listen on {bind}:{port}: {e}");
            return ExitCode::from(2);
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(function, address = %local, "serving webhooks over HTTP");
    match axum::serve(listener, app)
        .with_graceful_shutdown(super::pull::shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{function}: HTTP server failed: {e}");
            ExitCode::from(1)
        }
    }
}

async fn handle<T, H>(State(shared): State<Arc<Shared<H>>>, request: Request) -> Response
where
    T: DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // Refusals before the handler still get their log line.
    let refuse = |e: FunctionError| {
        super::log_invocation(&request_id, &shared.function, Host::Http, Some(&e), started);
        error_response(e)
    };
    if parts.method != Method::POST {
        let msg = format!("use POST with a JSON body (got {})", parts.method);
        return refuse(FunctionError::new(super::ErrorKind::BadRequest, msg));
    }
    let max = shared.limits.max_body_bytes;
    // Read at most max+1 bytes: enough to know the body is too large without buffering it all.
    let too_large = || {
        let msg = format!("request body exceeds runtime.max_body_bytes ({max} bytes)");
        FunctionError::new(super::ErrorKind::PayloadTooLarge, msg)
    };
    let bytes = match axum::body::to_bytes(body, max + 1).await {
        Ok(b) if b.len() <= max => b,
        Ok(_) => return refuse(too_large()),
        Err(e) if is_length_limit(&e) => return refuse(too_large()),
        // A client that hung up or a broken transfer is not a too-large body.
        Err(e) => {
            let msg = format!("could not read the request body: {e}");
            return refuse(FunctionError::new(super::ErrorKind::BadRequest, msg));
        }
    };
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    let (body, is_base64) = match std::str::from_utf8(&bytes) {
        Ok(s) => (s.to_string(), false),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&bytes),
            true,
        ),
    };
    let envelope = serde_json::json!({
        "httpMethod": "POST",
        "path": parts.uri.path(),
        "headers": headers,
        "queryStringParameters": query_map(parts.uri.query()),
        "body": body,
        "isBase64Encoded": is_base64,
        "requestContext": { "requestId": request_id },
    });
    let envelope = serde_json::to_vec(&envelope).unwrap_or_default();
    let ctx = Context::new(request_id, &shared.function, Host::Http, shared.timeout);
    // The raw body was already checked against the limit; the envelope adds headers.
    let limits = Limits {
        max_body_bytes: envelope.len(),
        metrics: shared.limits.metrics.clone(),
    };
    match invoke(shared.handler.as_ref(), ctx, &envelope, &limits).await {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => error_response(e),
    }
}

/// Whether reading the body stopped at the size limit (rather than failing).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

fn query_map(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

fn error_response(e: FunctionError) -> Response {
    let status =
        StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(e.to_json())).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            "www-authenticate",
            axum::http::HeaderValue::from_static("Bearer realm=\"pgsurge\""),
        );
    }
    response
}
