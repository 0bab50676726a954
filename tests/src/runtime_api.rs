//! The platform side of the FunctionGraph custom-runtime API and the AWS Lambda
//! runtime API, written from their documentation, to drive real binaries in tests.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    FunctionGraph,
    Lambda,
}

/// What the runtime posted back for one invocation.
#[derive(Debug, Clone)]
pub struct Posted {
    pub ok: bool,
    pub body: serde_json::Value,
    pub headers: HashMap<String, String>,
}

/// An event waiting to be fetched: request id, body, extra headers.
struct Queued {
    id: String,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Queued>,
    results: HashMap<String, Posted>,
    init_errors: Vec<serde_json::Value>,
    next_id: u64,
}

#[derive(Clone)]
pub struct RuntimeApi {
    flavor: Flavor,
    inner: Arc<Mutex<Inner>>,
    queued: Arc<Notify>,
    posted: Arc<Notify>,
    pub addr: String,
}

impl RuntimeApi {
    /// Serve the API on a free loopback port.
    pub async fn start(flavor: Flavor) -> RuntimeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let api = RuntimeApi {
            flavor,
            inner: Arc::default(),
            queued: Arc::new(Notify::new()),
            posted: Arc::new(Notify::new()),
            addr,
        };
        let router = match flavor {
            Flavor::FunctionGraph => Router::new()
                .route("/v1/runtime/invocation/request", get(next))
                .route("/v1/runtime/invocation/response/{id}", post(respond_ok))
                .route("/v1/runtime/invocation/error/{id}", post(respond_err))
                .route("/v1/runtime/init/error", post(init_error)),
            Flavor::Lambda => Router::new()
                .route("/2018-06-01/runtime/invocation/next", get(next))
                .route(
                    "/2018-06-01/runtime/invocation/{id}/response",
                    post(respond_ok),
                )
                .route(
                    "/2018-06-01/runtime/invocation/{id}/error",
                    post(respond_err),
                )
                .route("/2018-06-01/runtime/init/error", post(init_error)),
        }
        .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        api
    }

    /// Queue an event; returns its request id. `headers` are extra next-event headers.
    pub fn push(&self, body: &[u8], headers: &[(&str, &str)]) -> String {
        let mut inner = self.inner.lock().unwrap();
        inner.next_id += 1;
        let id = format!("req-{:04}-{}", inner.next_id, std::process::id());
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        inner.queue.push_back(Queued {
            id: id.clone(),
            body: body.to_vec(),
            headers,
        });
        drop(inner);
        self.queued.notify_one();
        id
    }

    /// Wait for the runtime to post the result of `id`.
    pub async fn result(&self, id: &str, timeout: Duration) -> Posted {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.posted.notified();
            if let Some(r) = self.inner.lock().unwrap().results.get(id).cloned() {
                return r;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("no result posted for {id} within {timeout:?}");
            }
        }
    }

    pub fn init_errors(&self) -> Vec<serde_json::Value> {
        self.inner.lock().unwrap().init_errors.clone()
    }
}

/// Long-poll: hold the request until an event is queued, as the real APIs do.
async fn next(State(api): State<RuntimeApi>) -> Response {
    loop {
        let notified = api.queued.notified();
        let item = api.inner.lock().unwrap().queue.pop_front();
        if let Some(Queued {
            id,
            body,
            headers: extra,
        }) = item
        {
            let mut headers = HeaderMap::new();
            let mut set = |k: &str, v: &str| {
                headers.insert(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            };
            match api.flavor {
                Flavor::FunctionGraph => set("X-Cff-Request-Id", &id),
                Flavor::Lambda => {
                    set("Lambda-Runtime-Aws-Request-Id", &id);
                    let deadline = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis()
                        + 30_000;
                    set("Lambda-Runtime-Deadline-Ms", &deadline.to_string());
                    set(
                        "Lambda-Runtime-Invoked-Function-Arn",
                        "arn:aws:lambda:eu-west-1:123456789012:function:probe",
                    );
                }
            }
            for (k, v) in &extra {
                set(k, v);
            }
            return (StatusCode::OK, headers, body).into_response();
        }
        notified.await;
    }
}

fn record(api: &RuntimeApi, id: String, ok: bool, headers: HeaderMap, body: Bytes) -> StatusCode {
    let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::String(
        String::from_utf8_lossy(&body).into(),
    ));
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    api.inner
        .lock()
        .unwrap()
        .results
        .insert(id, Posted { ok, body, headers });
    api.posted.notify_waiters();
    StatusCode::ACCEPTED
}

async fn respond_ok(
    State(api): State<RuntimeApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    record(&api, id, true, headers, body)
}

async fn respond_err(
    State(api): State<RuntimeApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    record(&api, id, false, headers, body)
}

async fn init_error(State(api): State<RuntimeApi>, body: Bytes) -> StatusCode {
    let v = serde_json::from_slice(&body).unwrap_or_default();
    api.inner.lock().unwrap().init_errors.push(v);
    api.posted.notify_waiters();
    StatusCode::ACCEPTED
}
