//! A store that ignores conditional writes is detected by the start-up probe and refused
//! with a clear message — unless the operator chose an explicit alternative.
//!
//! The store here is a minimal S3 endpoint that, like Huawei OBS's documented PUT,
//! has no notion of `If-Match` / `If-None-Match`: it stores whatever it is sent. It is
//! a stand-in for such a store (the probe's *positive* path is tested against real Ceph
//! RGW in `state_s3.rs`). It also records request headers, to check that platform
//! temporary credentials (AK/SK + security token) are what signs the requests.
//!
//! Configured otherwise, the same stand-in plays the stores and failures that a real
//! server cannot be made to produce on demand: one that ignores only `If-Match`, one that
//! rejects conditional headers with 400/501 (Swift's S3 layer), an AWS-style one that
//! compares the quoted ETag, and HTTP 500 answers to conditional PUTs (RGW's racing
//! loser; a write that landed but whose answer was lost; a store that keeps failing).

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
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex};

/// How the stand-in treats `If-Match`.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum IfMatch {
    /// Ignores it (Huawei OBS documents no conditional PUT).
    #[default]
    Ignore,
    /// Compares the header with the quoted ETag, as AWS S3 does (RFC 9110 entity-tags).
    Quoted,
    /// Compares it with the bare ETag, as Ceph RGW 16 does.
    Bare,
    /// Refuses every If-Match with 412, even the right ETag.
    Never,
}

/// A competing writer, run inside the store just before an If-Match PUT is judged.
type Competitor = Box<dyn FnOnce(&mut HashMap<String, Vec<u8>>) + Send>;

#[derive(Default)]
struct Plain {
    objects: Mutex<HashMap<String, Vec<u8>>>,
    headers: Mutex<Vec<HeaderMap>>,
    /// Honour `If-None-Match: *` (412 when the key exists).
    if_none_match: bool,
    if_match: IfMatch,
    /// Answer every PUT that carries a conditional header with this status, doing
    /// nothing (OpenStack Swift's S3 layer fails conditional writes this way).
    reject_conditional: Option<StatusCode>,
    /// Answer the next N If-Match PUTs with HTTP 500 (u32::MAX: all of them) ...
    fail_if_match: AtomicU32,
    /// ... after storing the body when its ETag matched (the write landed, the answer
    /// was lost), or without storing it (an RGW racing loser).
    land_then_fail: AtomicBool,
    competitor: Mutex<Option<Competitor>>,
    /// If-Match PUTs seen (object_store's own retries included).
    if_match_puts: AtomicU32,
}

async fn object(
    State(s): State<Arc<Plain>>,
    method: Method,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.headers.lock().unwrap().push(headers.clone());
    let etag = |b: &[u8]| format!("\"{}\"", hex::encode(&Sha256::digest(b)[..16]));
    let mut objects = s.objects.lock().unwrap();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match method {
        Method::PUT => {
            let (if_match, if_none_match) = (header("if-match"), header("if-none-match"));
            if if_match.is_some() || if_none_match.is_some() {
                if let Some(status) = s.reject_conditional {
                    return (status, "<Error><Code>NotImplemented</Code></Error>").into_response();
                }
            }
            if let Some(given) = if_match {
                s.if_match_puts.fetch_add(1, SeqCst);
                if let Some(compete) = s.competitor.lock().unwrap().take() {
                    compete(&mut objects);
                }
                let current = objects.get(&key).map(|b| etag(b));
                let matches = match s.if_match {
                    IfMatch::Ignore => true,
                    IfMatch::Quoted => current.as_deref() == Some(given),
                    IfMatch::Bare => current.as_deref().map(|c| c.trim_matches('"')) == Some(given),
                    IfMatch::Never => false,
                };
                let failing = s.fail_if_match.load(SeqCst);
                if failing > 0 {
                    s.fail_if_match.store(failing - 1, SeqCst);
                    if matches && s.land_then_fail.load(SeqCst) {
                        objects.insert(key, body.to_vec());
                    }
                    return (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "<Error><Code>InternalError</Code></Error>",
                    )
                        .into_response();
                }
                if !matches {
                    return StatusCode::PRECONDITION_FAILED.into_response();
                }
            }
            if s.if_none_match && if_none_match == Some("*") && objects.contains_key(&key) {
                return StatusCode::PRECONDITION_FAILED.into_response();
            }
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
    stand_in(Plain::default()).await
}

async fn stand_in(behaviour: Plain) -> (String, Arc<Plain>) {
    let shared = Arc::new(behaviour);
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

fn conditional(if_match: IfMatch) -> Plain {
    Plain {
        if_none_match: true,
        if_match,
        ..Plain::default()
    }
}

async fn open_conditional(
    endpoint: &str,
    max_attempts: u32,
) -> Result<state::StateRepo, StateError> {
    let mut c = cfg(endpoint, Concurrency::ConditionalWrites);
    c.max_attempts = max_attempts;
    state::open(&c, "catalog", None).await
}

const KEY: &str = "state/pgsurge/catalog/state.json";

fn t0() -> time::OffsetDateTime {
    time::OffsetDateTime::UNIX_EPOCH
}

fn alarm_ids(store: &Plain) -> Vec<String> {
    let objects = store.objects.lock().unwrap();
    let doc = pgsurge::model::ClusterState::from_slice(KEY, &objects[KEY]).unwrap();
    doc.decided_alarms.iter().map(|a| a.id.clone()).collect()
}

/// A competing writer that adds alarm `id` and bumps the revision, as another invocation would.
fn competitor(id: &'static str) -> Competitor {
    Box::new(move |objects: &mut HashMap<String, Vec<u8>>| {
        let mut doc = pgsurge::model::ClusterState::from_slice(KEY, &objects[KEY]).unwrap();
        doc.remember_alarm(id, t0());
        doc.revision += 1;
        doc.write_id = Some(format!("competitor-{id}"));
        objects.insert(KEY.to_string(), doc.to_vec());
    })
}

/// RGW's racing loser: another writer lands first and our conditional PUT is answered 500
/// (not 412), without landing. The client must re-read, decide again on the fresh state
/// and land exactly once — never count the 500 as a success.
#[tokio::test]
async fn a_racing_loser_answered_500_rereads_and_lands_exactly_once() {
    let (endpoint, store) = stand_in(conditional(IfMatch::Quoted)).await;
    let repo = open_conditional(&endpoint, 5).await.unwrap();
    repo.update(t0(), |s| {
        s.remember_alarm("first", t0());
        Ok::<_, ()>(())
    })
    .await
    .unwrap();
    *store.competitor.lock().unwrap() = Some(competitor("theirs"));
    store.fail_if_match.store(1, SeqCst);
    let before = store.if_match_puts.load(SeqCst);
    let mut decided = 0;
    let ((), end) = repo
        .update(t0(), |s| {
            decided += 1;
            s.remember_alarm("ours", t0());
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
    assert_eq!(decided, 2, "decided again on the state the winner left");
    assert_eq!(end.state.revision, 3, "create, theirs, ours");
    assert_eq!(alarm_ids(&store), ["first", "theirs", "ours"]);
    // 500, then object_store's retry of the same PUT (412: stale ETag), then ours.
    assert_eq!(store.if_match_puts.load(SeqCst) - before, 3);
    assert_eq!(repo.load().await.unwrap().state, end.state);
}

/// The other reading of a 500: the write landed and only the answer was lost. The
/// retried PUT then gets 412; the client re-reads, recognises its own write by
/// `write_id`, and does not write again.
#[tokio::test]
async fn a_write_that_landed_but_was_answered_500_is_recognised_not_repeated() {
    let (endpoint, store) = stand_in(conditional(IfMatch::Quoted)).await;
    let repo = open_conditional(&endpoint, 5).await.unwrap();
    repo.update(t0(), |s| {
        s.remember_alarm("first", t0());
        Ok::<_, ()>(())
    })
    .await
    .unwrap();
    store.fail_if_match.store(1, SeqCst);
    store.land_then_fail.store(true, SeqCst);
    let mut decided = 0;
    let ((), end) = repo
        .update(t0(), |s| {
            decided += 1;
            s.remember_alarm("ours", t0());
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
    assert_eq!(decided, 1);
    assert_eq!(end.state.revision, 2);
    assert_eq!(alarm_ids(&store), ["first", "ours"]);
}

/// A store that answers every conditional PUT with 500: a clear error naming the unknown
/// outcome — never Ok, never blamed on contention — and the stored state is untouched.
#[tokio::test]
async fn a_store_that_keeps_answering_500_is_a_clear_error_and_changes_nothing() {
    let (endpoint, store) = stand_in(conditional(IfMatch::Quoted)).await;
    let repo = open_conditional(&endpoint, 2).await.unwrap();
    repo.update(t0(), |s| {
        s.remember_alarm("first", t0());
        Ok::<_, ()>(())
    })
    .await
    .unwrap();
    store.fail_if_match.store(u32::MAX, SeqCst);
    let err = repo
        .update(t0(), |s| {
            s.remember_alarm("ours", t0());
            Ok::<_, &str>(())
        })
        .await
        .unwrap_err();
    let pgsurge::state::UpdateError::State(StateError::Indeterminate { message, .. }) = &err else {
        panic!("{err}")
    };
    assert!(message.contains("500"), "{message}");
    assert!(message.contains("did not land"), "{message}");
    assert_eq!(alarm_ids(&store), ["first"]);
    assert_eq!(repo.load().await.unwrap().state.revision, 1);
}

fn assert_refusal(err: &StateError, detail: &str) {
    assert!(
        matches!(err, StateError::NoConditionalWrites { .. }),
        "{err}"
    );
    let msg = err.to_string();
    for needle in [detail, "postgres-advisory-lock", "single-writer", "refuses"] {
        assert!(msg.contains(needle), "message lacks {needle:?}: {msg}");
    }
}

#[tokio::test]
async fn a_store_that_ignores_only_if_match_is_refused_for_that() {
    let (endpoint, _store) = stand_in(conditional(IfMatch::Ignore)).await;
    let err = open_conditional(&endpoint, 5).await.unwrap_err();
    assert_refusal(
        &err,
        "a PUT with If-Match and a wrong ETag succeeded: it ignores If-Match",
    );
    assert!(!err.to_string().contains("never matched"), "{err}");
}

#[tokio::test]
async fn a_store_whose_if_match_never_matches_is_refused_for_that() {
    let (endpoint, _store) = stand_in(conditional(IfMatch::Never)).await;
    let err = open_conditional(&endpoint, 5).await.unwrap_err();
    assert_refusal(&err, "never matched the object's own ETag, quoted or bare");
}

/// Swift's S3 layer answers conditional PUTs with an error instead of ignoring them: a
/// refusal that names the alternatives, not a generic backend error.
#[tokio::test]
async fn a_store_that_rejects_conditional_headers_is_refused_naming_the_alternatives() {
    for status in [StatusCode::BAD_REQUEST, StatusCode::NOT_IMPLEMENTED] {
        let (endpoint, _store) = stand_in(Plain {
            reject_conditional: Some(status),
            ..Plain::default()
        })
        .await;
        let err = open_conditional(&endpoint, 5).await.unwrap_err();
        assert_refusal(
            &err,
            "it rejects conditional PUTs (PUT with If-None-Match: *",
        );
        assert!(
            err.to_string().contains(status.as_str()),
            "names what the store answered: {err}"
        );
        assert!(err.to_string().contains("while a plain PUT works"), "{err}");
    }
}

/// The ETag form the probe found is the one every compare-and-swap sends: quoted to a
/// store that compares quoted (AWS S3), bare to one that compares bare (RGW 16).
#[tokio::test]
async fn compare_and_swap_sends_the_etag_in_the_form_the_store_compares() {
    for (form, quoted) in [(IfMatch::Quoted, true), (IfMatch::Bare, false)] {
        let (endpoint, store) = stand_in(conditional(form)).await;
        let repo = open_conditional(&endpoint, 5).await.unwrap();
        assert_eq!(
            repo.describe().contains("bare ETag"),
            !quoted,
            "{}",
            repo.describe()
        );
        for id in ["a", "b"] {
            repo.update(t0(), |s| {
                s.remember_alarm(id, t0());
                Ok::<_, ()>(())
            })
            .await
            .unwrap();
        }
        assert_eq!(alarm_ids(&store), ["a", "b"]);
        let headers = store.headers.lock().unwrap();
        let sent: Vec<&str> = headers
            .iter()
            .filter_map(|h| h.get("if-match"))
            .map(|v| v.to_str().unwrap())
            .filter(|v| !v.contains("pgsurge-probe-wrong-etag"))
            .collect();
        let last = *sent.last().expect("the update used If-Match");
        assert_eq!(
            last.starts_with('"') && last.ends_with('"'),
            quoted,
            "{last}"
        );
    }
}
