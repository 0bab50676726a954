//! The S3 state store against a real Ceph RADOS Gateway (started by infra/s3/rgw-up.sh):
//! compare-and-swap under 20 concurrent writers, the create race, stale versions, the
//! start-up probe, and the PostgreSQL advisory lock for stores without conditional writes.

use pgsurge::secret::Secret;
use pgsurge::state::{
    self, Concurrency, EtagForm, S3Config, S3Store, StateBackend, StateConfig, StateError,
    StateRepo, StateStore,
};
use pgsurge_tests::pg::{Pg, Scratch};
use pgsurge_tests::rgw::{rgw, Rgw};
use std::sync::Arc;
use std::time::Instant;
use time::OffsetDateTime;

fn s3_config(r: &Rgw, prefix: &str) -> StateConfig {
    StateConfig {
        backend: StateBackend::S3,
        concurrency: Concurrency::ConditionalWrites,
        max_attempts: 500,
        s3: S3Config {
            endpoint: r.endpoint.clone(),
            region: "us-east-1".into(),
            bucket: r.bucket.clone(),
            prefix: prefix.into(),
            path_style: true,
            allow_http: true,
            access_key_id: Some(r.access_key.clone()),
            secret_access_key: Some(Secret::new(r.secret_key.clone())),
            session_token: None,
            timeout_secs: 20,
        },
        ..StateConfig::default()
    }
}

fn unique(label: &str) -> String {
    format!("it-{label}-{}", uuid::Uuid::new_v4().simple())
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// `writers` independent clients (each probes the store, as each function instance
/// would) each make `rounds` read-modify-CAS increments; returns the final document.
async fn hammer(cfg: StateConfig, writers: usize, rounds: usize) -> pgsurge::model::ClusterState {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(async move {
            let repo = state::open(&cfg, "catalog", None).await.expect("open");
            for r in 0..rounds {
                repo.update(now(), |s| {
                    s.remember_alarm(&format!("w{w}-r{r}"), now());
                    Ok::<_, ()>(())
                })
                .await
                .unwrap_or_else(|e| panic!("writer {w} round {r}: {e:?}"));
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
    state::open(&cfg, "catalog", None)
        .await
        .unwrap()
        .load()
        .await
        .unwrap()
        .state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_writers_through_cas_end_with_the_exact_count() {
    let r = rgw();
    let cfg = s3_config(&r, &unique("cas"));
    let started = Instant::now();
    let end = hammer(cfg, 20, 5).await;
    eprintln!(
        "20 writers x 5 CAS increments on RGW: {:?}",
        started.elapsed()
    );
    assert_eq!(end.revision, 100, "every increment landed exactly once");
    assert_eq!(end.decided_alarms.len(), 100);
    for w in 0..20 {
        for r in 0..5 {
            assert!(end.alarm_decided(&format!("w{w}-r{r}")), "w{w}-r{r} lost");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_probe_finds_conditional_writes_and_the_etag_form() {
    let r = rgw();
    let cfg = s3_config(&r, &unique("probe"));
    let client = S3Store::client(&cfg.s3, None).unwrap();
    let report = client.probe().await.unwrap();
    assert!(report.if_none_match, "{report:?}");
    assert!(report.if_match, "{report:?}");
    // Debian 12's RGW 16.2 only matches a bare ETag (quirk 1 of the reference notes).
    assert_eq!(report.etag_form, Some(EtagForm::Unquoted), "{report:?}");
    let store = client.with_verified_conditional_writes().await.unwrap();
    assert!(
        store.describe().contains("bare ETag"),
        "{}",
        store.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_racing_creators_have_exactly_one_winner() {
    let r = rgw();
    let cfg = s3_config(&r, &unique("create"));
    let store: Arc<dyn StateStore> = Arc::new(
        S3Store::client(&cfg.s3, None)
            .unwrap()
            .with_verified_conditional_writes()
            .await
            .unwrap(),
    );
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .compare_and_swap("k", None, format!("writer {i}").into_bytes())
                    .await
            })
        })
        .collect();
    let mut won = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(_) => won.push(i),
            Err(StateError::Conflict { .. }) => {}
            Err(e) => panic!("creator {i}: unexpected {e}"),
        }
    }
    assert_eq!(won.len(), 1, "winners: {won:?}");
    let stored = store.load("k").await.unwrap().unwrap();
    assert_eq!(stored.bytes, format!("writer {}", won[0]).into_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_version_is_refused_and_changes_nothing() {
    let r = rgw();
    let cfg = s3_config(&r, &unique("stale"));
    let store = S3Store::client(&cfg.s3, None)
        .unwrap()
        .with_verified_conditional_writes()
        .await
        .unwrap();
    let v1 = store
        .compare_and_swap("k", None, b"one".to_vec())
        .await
        .unwrap();
    let v2 = store
        .compare_and_swap("k", Some(&v1), b"two".to_vec())
        .await
        .unwrap();
    assert_ne!(v1, v2);
    let err = store
        .compare_and_swap("k", Some(&v1), b"three".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::Conflict { .. }), "{err}");
    let err = store
        .compare_and_swap("k", None, b"four".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::Conflict { .. }), "{err}");
    let now = store.load("k").await.unwrap().unwrap();
    assert_eq!(now.bytes, b"two");
    assert_eq!(now.version, v2);
    // If-Match on a key that does not exist: a conflict too (RGW answers 412, AWS 404).
    let err = store
        .compare_and_swap("missing", Some(&v2), b"x".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::Conflict { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repo_round_trips_the_typed_document() {
    let r = rgw();
    let cfg = s3_config(&r, &unique("typed"));
    let repo: StateRepo = state::open(&cfg, "catalog", None).await.unwrap();
    let first = repo.load().await.unwrap();
    assert_eq!(first.version, None);
    assert_eq!(first.state.cluster, "catalog");
    let t = OffsetDateTime::from_unix_timestamp(1_764_061_200).unwrap();
    let ((), stored) = repo
        .update(t, |s| {
            s.last_scale_up_at = Some(t);
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
    let again = repo.load().await.unwrap();
    assert_eq!(again, stored);
    assert_eq!(again.state.last_scale_up_at, Some(t));
    assert_eq!(again.state.revision, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_advisory_lock_serialises_plain_writes() {
    // The alternative for stores without conditional writes: RGW used *without* its
    // conditional headers (as OBS would be), writers serialised by pg_advisory_lock on
    // a real PostgreSQL primary.
    let r = rgw();
    let root = Scratch::new("i6-pglock");
    let primary = Pg::primary(&root.0, "primary");
    let mut cfg = s3_config(&r, &unique("pglock"));
    cfg.concurrency = Concurrency::PostgresAdvisoryLock;
    cfg.postgres_lock.conninfo = Some(Secret::new(primary.conninfo("postgres")));
    let probe_free = state::open(&cfg, "catalog", None).await.unwrap();
    assert!(
        probe_free.describe().contains("PostgreSQL advisory lock"),
        "{}",
        probe_free.describe()
    );
    let end = hammer(cfg, 20, 3).await;
    assert_eq!(end.revision, 60);
    assert_eq!(end.decided_alarms.len(), 60);
}
