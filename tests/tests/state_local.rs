//! The local-directory backend: flock + atomic rename under concurrent writers.

use pgsurge::state::{LocalStore, StateError, StateRepo, StateStore};
use std::sync::Arc;
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_writers_end_with_the_exact_count() {
    let dir = tempfile::Builder::new()
        .prefix("pgsurge-i6-local")
        .tempdir()
        .unwrap();
    let t = OffsetDateTime::UNIX_EPOCH;
    let tasks: Vec<_> = (0..20)
        .map(|w| {
            // Each writer opens the directory itself, as separate processes would.
            let store = Arc::new(LocalStore::new(dir.path()).unwrap());
            tokio::spawn(async move {
                let repo = StateRepo::new(store, "catalog", 1000);
                for r in 0..5 {
                    repo.update(t, |s| {
                        s.remember_alarm(&format!("w{w}-r{r}"), t);
                        Ok::<_, ()>(())
                    })
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let repo = StateRepo::new(Arc::new(LocalStore::new(dir.path()).unwrap()), "catalog", 1);
    let end = repo.load().await.unwrap().state;
    assert_eq!(end.revision, 100);
    assert_eq!(end.decided_alarms.len(), 100);
    // Nothing half-written is left behind: the document and its lock file only.
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("catalog"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["state.json", "state.json.lock"]);
}

#[tokio::test]
async fn stale_versions_conflict_and_keys_cannot_escape_the_directory() {
    let dir = tempfile::Builder::new()
        .prefix("pgsurge-i6-local")
        .tempdir()
        .unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    let v1 = store
        .compare_and_swap("a/doc", None, b"1".to_vec())
        .await
        .unwrap();
    let _v2 = store
        .compare_and_swap("a/doc", Some(&v1), b"2".to_vec())
        .await
        .unwrap();
    let err = store
        .compare_and_swap("a/doc", Some(&v1), b"3".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::Conflict { .. }), "{err}");
    assert_eq!(store.load("a/doc").await.unwrap().unwrap().bytes, b"2");
    for bad in ["../escape", "/etc/passwd", "", "a/../../b"] {
        let err = store
            .compare_and_swap(bad, None, b"x".to_vec())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("not a relative path"),
            "{bad}: {err}"
        );
    }
}

#[tokio::test]
async fn a_document_from_another_cluster_is_refused() {
    let dir = tempfile::Builder::new()
        .prefix("pgsurge-i6-local")
        .tempdir()
        .unwrap();
    let store = Arc::new(LocalStore::new(dir.path()).unwrap());
    store
        .compare_and_swap(
            "catalog/state.json",
            None,
            br#"{"schema_version":1,"cluster":"orders"}"#.to_vec(),
        )
        .await
        .unwrap();
    let err = StateRepo::new(store, "catalog", 3)
        .load()
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::WrongCluster { .. }), "{err}");
}
