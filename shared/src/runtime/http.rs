//! HTTP host: a FunctionGraph HTTP function or a plain webhook receiver.
//!
//! `POST <any path>` with a JSON body invokes the handler. The request reaches the
//! handler as an API-Gateway-style envelope (`httpMethod`, `path`, `headers`, `body`,
//! `isBase64Encoded`) — the same shape a FunctionGraph APIG trigger delivers — so a
//! handler that authenticates headers works the same behind APIG and here.
//! `GET /healthz` answers `ok`. Status codes: 200, 400 bad event, 401 bad auth,
//! 404 no such path, 405 wrong method, 408 body too slow, 413 too large, 500 handler
//! failure, 503 too many connections, 504 past the deadline. Every error body is the
//! same `{"errorType", "errorMessage"}` JSON a function error is.
//!
//! It is plain HTTP: in production it sits behind a TLS proxy or API gateway. Its own
//! limits (`[runtime]`) bound what one client can hold: the head must arrive within
//! `header_timeout_secs`, the body within `body_timeout_secs`, a keep-alive connection
//! may sit idle `idle_timeout_secs`, and at most `max_connections` are open — one more
//! is answered 503 and closed at once, never queued. `GET /metrics` is served only on
//! the separate `runtime.metrics_listen` address, never next to the webhook.
//!
//! Requests that present a shared secret (token or HMAC headers) are authenticated here
//! before the body is parsed — a token before the body is even read. Only a request
//! that may be an SMN message (whose signature is inside the JSON body) reaches the
//! handler unauthenticated, and the handler's `Receiver` judges it.

use super::{invoke_input, Context, ErrorKind, FunctionError, Handler, Host, Input, Limits};
use crate::config::{AuthConfig, Config};
use crate::events::Webhook;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

struct Shared<H> {
    handler: Arc<H>,
    function: String,
    timeout: Duration,
    body_timeout: Duration,
    auth: AuthConfig,
    limits: Limits,
}

/// The per-connection limits of one listener.
#[derive(Debug, Clone, Copy)]
struct ConnLimits {
    header: Duration,
    idle: Duration,
    max_connections: usize,
}

/// The metrics listener is for one scraper (and an operator's curl), not for the public.
const METRICS_MAX_CONNECTIONS: usize = 8;

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
    let rt = &config.runtime;
    let port = port
        .or_else(|| std::env::var("PORT").ok().and_then(|p| p.parse().ok()))
        .unwrap_or(rt.http_port);
    let bind = bind.unwrap_or_else(|| rt.http_bind.clone());
    let shared = Arc::new(Shared {
        handler,
        function: function.to_string(),
        timeout: Duration::from_secs(rt.timeout_secs),
        body_timeout: Duration::from_secs(rt.body_timeout_secs),
        auth: config.auth.clone(),
        limits,
    });
    let conn = ConnLimits {
        header: Duration::from_secs(rt.header_timeout_secs),
        idle: Duration::from_secs(rt.idle_timeout_secs),
        max_connections: rt.max_connections,
    };
    let app = Router::new().fallback(webhook::<T, H>).with_state(shared);
    let listener = match TcpListener::bind((bind.as_str(), port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{function}: cannot listen on {bind}:{port}: {e}");
            return ExitCode::from(2);
        }
    };
    let metrics_listener = if rt.metrics_listen.is_empty() {
        None
    } else {
        match TcpListener::bind(rt.metrics_listen.as_str()).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!(
                    "{function}: cannot listen on runtime.metrics_listen {}: {e}",
                    rt.metrics_listen
                );
                return ExitCode::from(2);
            }
        }
    };
    let local = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(
        function,
        address = %local(&listener),
        metrics = %metrics_listener.as_ref().map(local).unwrap_or_else(|| "off".into()),
        max_connections = conn.max_connections,
        "serving webhooks over HTTP"
    );

    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        super::pull::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    // Connections still open at shutdown get as long as an invocation may take.
    let grace = Duration::from_secs(rt.timeout_secs);
    let metrics_task = metrics_listener.map(|l| {
        let limits = ConnLimits {
            max_connections: METRICS_MAX_CONNECTIONS,
            ..conn
        };
        tokio::spawn(accept_loop(
            l,
            metrics_router(),
            limits,
            stop.clone(),
            grace,
        ))
    });
    accept_loop(listener, app, conn, stop, grace).await;
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    ExitCode::SUCCESS
}

/// `GET /metrics` and `GET /healthz`; anything else a JSON 404 or 405.
fn metrics_router() -> Router {
    async fn metrics(method: Method) -> Response {
        if method != Method::GET {
            return method_not_allowed(&method, "GET");
        }
        (
            [("content-type", "text/plain; version=0.0.4")],
            crate::metrics::global().render(),
        )
            .into_response()
    }
    async fn other(method: Method, uri: axum::http::Uri) -> Response {
        if uri.path() == "/healthz" {
            return healthz(&method);
        }
        error_response(FunctionError::new(
            ErrorKind::NotFound,
            format!("no {} here: this listener serves GET /metrics", uri.path()),
        ))
    }
    Router::new()
        .route("/metrics", axum::routing::any(metrics))
        .fallback(other)
}

fn healthz(method: &Method) -> Response {
    if method == Method::GET || method == Method::HEAD {
        "ok\n".into_response()
    } else {
        method_not_allowed(method, "GET")
    }
}

fn method_not_allowed(method: &Method, allow: &'static str) -> Response {
    let mut r = error_response(FunctionError::new(
        ErrorKind::MethodNotAllowed,
        format!("{method} is not allowed here: use {allow}"),
    ));
    r.headers_mut()
        .insert("allow", HeaderValue::from_static(allow));
    r
}

/// Accept until `stop`, each connection in its own task under the connection cap; then
/// let open connections finish (up to `grace`).
async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (app, stop) = (app.clone(), stop.clone());
                    tokio::spawn(async move {
                        connection(stream, app, limits, stop).await;
                        drop(permit);
                    });
                }
                Err(_) => refuse(stream, limits.max_connections),
            },
            Err(e) => {
                // Out of file descriptors (EMFILE) or a connection reset before accept:
                // back off instead of spinning; connections already open are unaffected.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(grace, permits.acquire_many(all)).await;
}

fn closed(reason: &str) {
    crate::metrics::global().inc(
        "pgsurge_http_connections_closed_total",
        "HTTP connections the host closed on a limit, by reason.",
        &[("reason", reason)],
        1.0,
    );
}

/// Over the cap: a 503 written without waiting (a fresh socket's send buffer takes it)
/// and the socket closed. No task, no buffer, no read: a flood costs an accept each.
fn refuse(stream: TcpStream, cap: usize) {
    closed("max_connections");
    let body = FunctionError::new(
        ErrorKind::Unavailable,
        format!("too many open connections (runtime.max_connections = {cap}); retry later"),
    )
    .to_json()
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

/// Serve one connection, closing it when its head is too slow or it idles too long.
async fn connection(
    stream: TcpStream,
    app: Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) {
    let watch = Arc::new(Activity::new());
    let io = hyper_util::rt::TokioIo::new(Watched {
        inner: stream,
        activity: watch.clone(),
    });
    let activity = watch.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        let busy = Busy::begin(activity.clone());
        async move {
            let response = tower::ServiceExt::oneshot(app, req.map(axum::body::Body::new)).await;
            drop(busy);
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let (deadline, _) = watch.due(&limits);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !draining => {
                // Finish the request in flight, take no new one.
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            // A request began or ended, or a head began: the deadline moved.
            _ = watch.changed.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {
                if let (_, Some(reason)) = watch.due(&limits) {
                    tracing::debug!(reason, "closing an HTTP connection");
                    closed(reason);
                    // Dropping the connection closes the socket.
                    return;
                }
            }
        }
    }
}

/// What a connection is doing, in milliseconds since it opened; written by the socket
/// wrapper (bytes read) and the service (request start / response ready).
struct Activity {
    opened: Instant,
    /// A request is being handled (head parsed, response not yet produced). Its body
    /// and handler have their own limits (body timeout, the function's deadline).
    busy: AtomicBool,
    /// When the current request head began (ms + 1; 0 = no head under way).
    head_from: AtomicU64,
    /// Last byte read or last response produced (ms).
    last: AtomicU64,
    /// Wakes the connection's supervisor when its deadline may have moved.
    changed: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            busy: AtomicBool::new(false),
            // A new connection owes its first head from the moment it was accepted: a
            // client that connects and says nothing is a slow header, not an idle one.
            head_from: AtomicU64::new(1),
            last: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn read(&self) {
        let t = self.now();
        self.last.store(t, Ordering::SeqCst);
        if !self.busy.load(Ordering::SeqCst) {
            let began =
                self.head_from
                    .compare_exchange(0, t + 1, Ordering::SeqCst, Ordering::SeqCst);
            if began.is_ok() {
                self.changed.notify_one();
            }
        }
    }

    fn begin(&self) {
        self.busy.store(true, Ordering::SeqCst);
        self.head_from.store(0, Ordering::SeqCst);
        self.changed.notify_one();
    }

    fn end(&self) {
        self.last.store(self.now(), Ordering::SeqCst);
        self.busy.store(false, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// The next moment to look again, and the limit already passed, if any.
    fn due(&self, l: &ConnLimits) -> (Instant, Option<&'static str>) {
        let at = |ms: u64, d: Duration| self.opened + Duration::from_millis(ms) + d;
        let now = Instant::now();
        if self.busy.load(Ordering::SeqCst) {
            return (now + l.header.min(l.idle), None);
        }
        let (deadline, reason) = match self.head_from.load(Ordering::SeqCst) {
            0 => (at(self.last.load(Ordering::SeqCst), l.idle), "idle_timeout"),
            from => (at(from - 1, l.header), "header_timeout"),
        };
        (deadline, (now >= deadline).then_some(reason))
    }
}

/// A request in flight; ends when the service's future completes or is dropped (the
/// client went away mid-request).
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: Arc<Activity>) -> Busy {
        activity.begin();
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The socket, noting every read in the connection's [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

async fn webhook<T, H>(State(shared): State<Arc<Shared<H>>>, request: Request) -> Response
where
    T: DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    if parts.uri.path() == "/healthz" {
        return healthz(&parts.method);
    }
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // Refusals before the handler still get their log line. A refusal before the body
    // was read in full also closes the connection: the rest of it is never read.
    let refuse = |e: FunctionError| {
        super::log_invocation(&request_id, &shared.function, Host::Http, Some(&e), started);
        closing(error_response(e))
    };
    if parts.uri.path() == "/metrics" {
        return refuse(FunctionError::new(
            ErrorKind::NotFound,
            "metrics are not served on the webhook listener (see runtime.metrics_listen)",
        ));
    }
    if parts.method != Method::POST {
        let e = FunctionError::new(
            ErrorKind::MethodNotAllowed,
            format!("use POST with a JSON body (got {})", parts.method),
        );
        let mut r = refuse(e);
        r.headers_mut()
            .insert("allow", HeaderValue::from_static("POST"));
        return r;
    }
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    let envelope = |body: serde_json::Value, is_base64: bool| {
        serde_json::json!({
            "httpMethod": "POST",
            "path": parts.uri.path(),
            "headers": &headers,
            "queryStringParameters": query_map(parts.uri.query()),
            "body": body,
            "isBase64Encoded": is_base64,
            "requestContext": { "requestId": &request_id },
        })
    };
    // A token is judged before a byte of the body is read.
    let signed = headers.contains_key(&shared.auth.signature_header.to_ascii_lowercase());
    if !signed {
        if let Err(e) = preauthenticate(&shared.auth, &envelope("".into(), false)) {
            return refuse(e);
        }
    }
    let max = shared.limits.max_body_bytes;
    // Read at most max+1 bytes: enough to know the body is too large without buffering it all.
    let too_large = || {
        let msg = format!("request body exceeds runtime.max_body_bytes ({max} bytes)");
        FunctionError::new(ErrorKind::PayloadTooLarge, msg)
    };
    let read = tokio::time::timeout(shared.body_timeout, axum::body::to_bytes(body, max + 1));
    let bytes = match read.await {
        Ok(Ok(b)) if b.len() <= max => b,
        Ok(Ok(_)) => return refuse(too_large()),
        Ok(Err(e)) if is_length_limit(&e) => return refuse(too_large()),
        // A client that hung up or a broken transfer is not a too-large body.
        Ok(Err(e)) => {
            let msg = format!("could not read the request body: {e}");
            return refuse(FunctionError::new(ErrorKind::BadRequest, msg));
        }
        Err(_) => {
            let msg = format!(
                "the request body did not arrive within runtime.body_timeout_secs ({} s)",
                shared.body_timeout.as_secs()
            );
            return refuse(FunctionError::new(ErrorKind::RequestTimeout, msg));
        }
    };
    let envelope = match String::from_utf8(bytes.to_vec()) {
        Ok(s) => envelope(s.into(), false),
        Err(_) => envelope(
            base64::engine::general_purpose::STANDARD
                .encode(&bytes)
                .into(),
            true,
        ),
    };
    if signed {
        if let Err(e) = preauthenticate(&shared.auth, &envelope) {
            return refuse(e);
        }
    }
    let ctx = Context::new(request_id, &shared.function, Host::Http, shared.timeout);
    let result = invoke_input(
        shared.handler.as_ref(),
        ctx,
        Input::Json(envelope),
        &shared.limits,
    )
    .await;
    match result {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => error_response(e),
    }
}

/// Refuse a request that presents a shared secret (token or HMAC headers) which does not
/// authenticate it — before its body is parsed (and, for a token, before it is read).
///
/// This is the same `events::auth` check the handler's `Receiver` makes, taken early
/// only where the Receiver's verdict is already certain: a request that presents a
/// secret, or any request when SMN signatures are off, is judged by the secret alone.
/// A request with no secret may be an SMN message, signed inside its JSON body: only
/// the Receiver can judge it, after parsing.
fn preauthenticate(auth: &AuthConfig, envelope: &serde_json::Value) -> Result<(), FunctionError> {
    let webhook = match Webhook::deserialize(envelope) {
        Ok(w) => w,
        // Not UTF-8 after all: the handler refuses it (400) without parsing it either.
        Err(_) => return Ok(()),
    };
    let presents_secret = [
        auth.token_header.as_str(),
        "authorization",
        auth.signature_header.as_str(),
        crate::node::CALLBACK_HEADER,
    ]
    .iter()
    .any(|h| webhook.header(h).is_some());
    if !presents_secret && auth.smn.verify_signature {
        return Ok(());
    }
    crate::events::authenticate(&webhook, auth).map_err(FunctionError::from)
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

fn closing(mut r: Response) -> Response {
    r.headers_mut()
        .insert("connection", HeaderValue::from_static("close"));
    r
}

fn error_response(e: FunctionError) -> Response {
    let status =
        StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(e.to_json())).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Bearer realm=\"pgsurge\""),
        );
    }
    response
}
