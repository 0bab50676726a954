//! A store that ignores conditional writes is detected by the start-up probe and refused
//! with a clear message — unless the operator chose an explicit alternative.
//!
//! The store here is a minimal S3 endpoint that, like Huawei OBS's documented PUT,
//! has no notion of `If-Match` / `If-None-Match`: it stores whatever it is sent. It is
//! a stand-in for such a store (the probe's *positive* path is tested against real Ceph
//! RGW in `state_s3.rs`). It also records request headers, to check that platform
//! temporary credentials (AK/SK + security token) are what signs the requests.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use pgsurge::runtime::Credentials;
use pgsurge::secret::Secret;
use pgsurge::state::{self, Concurrency, S3Config, StateBackend, StateConfig, StateError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Plain {
    objects: Mutex<HashMap<String, Vec<u8>>>,
    headers: Mutex<Vec<HeaderMap>>,
}

async fn object(
    State(s): State<Arc<Plain>>,
    method: Method,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.headers.lock().unwrap().push(headers);
    let etag = |b: &[u8]| format!("\"{}\"", hex::encode(&Sha256::digest(b)[..16]));
    let mut objects = s.objects.lock().unwrap();
    match method {
        Method::PUT => {
            let tag = etag(&body);
            objects.insert(key, body.to_vec());
            (StatusCode::OK, [("etag", tag)]).into_response()
        }
        Method::GET | Method::HEAD => match objects.get(&key) {
            None => StatusCode::NOT_FOUND.into_response(),
            Some(b) => {
                let head = [
                    ("etag", etag(b)),
                    ("last-modified", "Wed, 25 Nov 2026 09:00:00 GMT".to_string()),
                    ("content-length", b.len().to_string()),
                ];
                if method == Method::HEAD {
                    (StatusCode::OK, head).into_response()
                } else {
                    (StatusCode::OK, head, b.clone()).into_response()
                }
            }
        },
        Method::DELETE => {
            objects.remove(&key);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn plain_store() -> (String, Arc<Plain>) {
    let shared = Arc::new(Plain::default());
    let app = Router::new()
        .route("/{*key}", any(object))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), shared)
}

fn cfg(endpoint: &str, concurrency: Concurrency) -> StateConfig {
    StateConfig {
        backend: StateBackend::S3,
        concurrency,
        s3: S3Config {
            endpoint: endpoint.into(),
            bucket: "state".into(),
            prefix: "pgsurge".into(),
            allow_http: true,
            access_key_id: Some("AKCONFIGURED".into()),
            secret_access_key: Some(Secret::new("configured-secret")),
            timeout_secs: 5,
            ..S3Config::default()
        },
        ..StateConfig::default()
    }
}

#[tokio::test]
async fn a_store_without_conditional_writes_is_refused_with_a_clear_message() {
    let (endpoint, _store) = plain_store().await;
    let err = state::open(
        &cfg(&endpoint, Concurrency::ConditionalWrites),
        "catalog",
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, StateError::NoConditionalWrites { .. }),
        "{err}"
    );
    let msg = err.to_string();
    for needle in [
        "does not honour conditional writes",
        "If-None-Match: *",
        "refuses",
        "postgres-advisory-lock",
        "single-writer",
        &endpoint,
    ] {
        assert!(msg.contains(needle), "message lacks {needle:?}: {msg}");
    }
    assert!(!msg.contains("configured-secret"), "{msg}");
}

#[tokio::test]
async fn an_explicit_single_writer_choice_is_honoured_and_said() {
    let (endpoint, store) = plain_store().await;
    let repo = state::open(&cfg(&endpoint, Concurrency::SingleWriter), "catalog", None)
        .await
        .unwrap();
    assert!(
        repo.describe().contains("plain writes"),
        "{}",
        repo.describe()
    );
    let t = time::OffsetDateTime::UNIX_EPOCH;
    repo.update(t, |s| {
        s.remember_alarm("a", t);
        Ok::<_, ()>(())
    })
    .await
    .unwrap();
    assert_eq!(repo.load().await.unwrap().state.revision, 1);
    assert!(store
        .objects
        .lock()
        .unwrap()
        .contains_key("state/pgsurge/catalog/state.json"));
}

#[tokio::test]
async fn platform_temporary_credentials_sign_the_requests() {
    let (endpoint, store) = plain_store().await;
    let creds = Credentials {
        access_key: Some("AKTEMPORARY".into()),
        secret_key: Some(Secret::new("temporary-secret")),
        security_token: Some(Secret::new("token-from-functiongraph")),
        auth_token: None,
    };
    let repo = state::open(
        &cfg(&endpoint, Concurrency::SingleWriter),
        "catalog",
        Some(&creds),
    )
    .await
    .unwrap();
    repo.load().await.unwrap();
    let last = store
        .headers
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("a request reached the store");
    let auth = last["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKTEMPORARY/"),
        "{auth}"
    );
    assert!(
        auth.contains("x-amz-security-token"),
        "the token is signed: {auth}"
    );
    assert_eq!(last["x-amz-security-token"], "token-from-functiongraph");
    // Without platform credentials, the configured keys sign.
    let repo = state::open(&cfg(&endpoint, Concurrency::SingleWriter), "catalog", None)
        .await
        .unwrap();
    repo.load().await.unwrap();
    let headers = store.headers.lock().unwrap();
    let auth = headers.last().unwrap()["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(auth.contains("Credential=AKCONFIGURED/"), "{auth}");
}

#[tokio::test]
async fn config_refuses_the_advisory_lock_without_a_connection_string() {
    let text = "[state]\nbackend = \"s3\"\nconcurrency = \"postgres-advisory-lock\"\n[state.s3]\nbucket = \"b\"\n";
    let err = pgsurge::config::Config::from_toml(text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("state.postgres_lock.conninfo"), "{err}");
}
