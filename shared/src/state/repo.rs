//! Typed access to one cluster's document: load, and update by read → decide → CAS.

use super::{IfChanged, StateError, StateStore, Version};
use crate::model::{ClusterState, SCHEMA_VERSION};

/// What [`StateRepo::load_if_changed`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    Unchanged,
    Absent,
    Changed(Box<Versioned>),
}
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// A document as read, with the version to compare against (`None`: not stored yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    pub state: ClusterState,
    pub version: Option<Version>,
}

/// Why [`StateRepo::update`] did not write.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    #[error(transparent)]
    State(#[from] StateError),
    /// The decision function refused; nothing was written.
    #[error("{0}")]
    Aborted(E),
}

/// One cluster's state in a [`StateStore`].
#[derive(Clone)]
pub struct StateRepo {
    store: Arc<dyn StateStore>,
    cluster: String,
    key: String,
    max_attempts: u32,
}

impl std::fmt::Debug for StateRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateRepo")
            .field("store", &self.store.describe())
            .field("key", &self.key)
            .finish()
    }
}

impl StateRepo {
    pub fn new(store: Arc<dyn StateStore>, cluster: &str, max_attempts: u32) -> Self {
        StateRepo {
            store,
            cluster: cluster.to_string(),
            key: format!("{cluster}/state.json"),
            max_attempts: max_attempts.max(1),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn describe(&self) -> String {
        self.store.describe()
    }

    /// A stored document, refused when it is another cluster's.
    fn decode(&self, bytes: &[u8]) -> Result<ClusterState, StateError> {
        let state = ClusterState::from_slice(&self.key, bytes)?;
        if state.cluster != self.cluster {
            return Err(StateError::WrongCluster {
                key: self.key.clone(),
                expected: self.cluster.clone(),
                found: state.cluster,
            });
        }
        Ok(state)
    }

    /// The current document, or a fresh empty one when none is stored yet.
    pub async fn load(&self) -> Result<Versioned, StateError> {
        match self.store.load(&self.key).await? {
            None => Ok(Versioned {
                state: ClusterState::new(&self.cluster),
                version: None,
            }),
            Some(stored) => {
                let state = self.decode(&stored.bytes)?;
                Ok(Versioned {
                    state,
                    version: Some(stored.version),
                })
            }
        }
    }

    /// The store under this repository (for documents beside the state, such as the
    /// agents' per-node status objects).
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The document if its version is not `known` any more. Unlike [`StateRepo::load`],
    /// a missing document is [`Fetched::Absent`], not a fresh empty state: a poller must
    /// not take "nothing stored" for "nothing wanted".
    pub async fn load_if_changed(&self, known: Option<&Version>) -> Result<Fetched, StateError> {
        match self.store.load_if_changed(&self.key, known).await? {
            IfChanged::Unchanged => Ok(Fetched::Unchanged),
            IfChanged::Absent => Ok(Fetched::Absent),
            IfChanged::Changed(stored) => {
                let state = self.decode(&stored.bytes)?;
                Ok(Fetched::Changed(Box::new(Versioned {
                    state,
                    version: Some(stored.version),
                })))
            }
        }
    }

    /// Read the document, let `decide` change it, and compare-and-swap the result.
    ///
    /// On a lost race the document is read again and `decide` runs again on the fresh
    /// copy — so it must be a pure function of the state it is given — up to
    /// `max_attempts` times, with a short randomised backoff. When `decide` leaves the
    /// state unchanged nothing is written. Returns `decide`'s value and what was stored.
    pub async fn update<T, E>(
        &self,
        now: OffsetDateTime,
        mut decide: impl FnMut(&mut ClusterState) -> Result<T, E>,
    ) -> Result<(T, Versioned), UpdateError<E>> {
        // The write_id of our last attempt whose outcome we did not see for sure.
        let mut unconfirmed: Option<(String, T)> = None;
        // What the store said when the last attempt's outcome was unknown (5xx, timeout):
        // if that is how we run out of attempts, say so rather than blame contention.
        let mut last_unknown: Option<String> = None;
        for attempt in 1..=self.max_attempts {
            let current = self.load().await?;
            if let Some((id, _)) = &unconfirmed {
                if current.state.write_id.as_deref() == Some(id.as_str()) {
                    // Our "failed" write had landed (5xx after the fact, lost response).
                    let (_, value) = unconfirmed.take().expect("checked");
                    return Ok((value, current));
                }
            }
            let mut next = current.state.clone();
            let value = decide(&mut next).map_err(UpdateError::Aborted)?;
            if next == current.state {
                return Ok((value, current));
            }
            let write_id = uuid::Uuid::new_v4().simple().to_string();
            next.revision = current.state.revision + 1;
            next.write_id = Some(write_id.clone());
            next.updated_at = Some(now);
            next.schema_version = next.schema_version.max(SCHEMA_VERSION);
            match self
                .store
                .compare_and_swap(&self.key, current.version.as_ref(), next.to_vec())
                .await
            {
                Ok(version) => {
                    return Ok((
                        value,
                        Versioned {
                            state: next,
                            version: Some(version),
                        },
                    ))
                }
                Err(StateError::Conflict { .. }) => {
                    // A 5xx retried inside the client can surface as a conflict even
                    // though the first try landed: check on the next read.
                    unconfirmed = Some((write_id, value));
                    last_unknown = None;
                }
                Err(StateError::Indeterminate { message, .. }) => {
                    tracing::warn!(key = %self.key, attempt, %message, "write outcome unknown; re-reading");
                    unconfirmed = Some((write_id, value));
                    last_unknown = Some(message);
                }
                Err(e) => return Err(e.into()),
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        // One last look: the final attempt may have landed.
        if let Some((id, value)) = unconfirmed {
            let current = self.load().await?;
            if current.state.write_id.as_deref() == Some(id.as_str()) {
                return Ok((value, current));
            }
        }
        Err(match last_unknown {
            Some(message) => StateError::Indeterminate {
                key: self.key.clone(),
                message: format!(
                    "{message} (on the last of {} attempts; re-reading shows the write did not land)",
                    self.max_attempts
                ),
            },
            None => StateError::Contended {
                key: self.key.clone(),
                attempts: self.max_attempts,
            },
        }
        .into())
    }
}

/// Full-jitter exponential backoff: 10 ms × 2^attempt, capped at 500 ms, randomised so
/// racing writers spread out instead of colliding again in lockstep.
fn backoff(attempt: u32) -> Duration {
    let cap = (10u64 << attempt.min(6)).min(500);
    let r = uuid::Uuid::new_v4().as_u128() as u64;
    Duration::from_millis(r % (cap + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    fn now() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH
    }

    #[tokio::test]
    async fn update_creates_then_increments_and_skips_no_ops() {
        let repo = StateRepo::new(Arc::new(MemoryStore::new()), "c", 5);
        assert_eq!(repo.load().await.unwrap().version, None);
        let ((), v1) = repo
            .update(now(), |s| {
                s.remember_alarm("a", now());
                Ok::<_, ()>(())
            })
            .await
            .unwrap();
        assert_eq!(v1.state.revision, 1);
        let ((), v2) = repo.update(now(), |_| Ok::<_, ()>(())).await.unwrap();
        assert_eq!(v2.version, v1.version, "a no-op writes nothing");
        let err = repo
            .update(now(), |_| Err::<(), _>("refused"))
            .await
            .unwrap_err();
        assert!(matches!(err, UpdateError::Aborted("refused")));
    }

    /// Writes through, then reports the outcome as unknown (a 5xx after the fact).
    struct LostAnswers {
        inner: MemoryStore,
        lose: std::sync::atomic::AtomicU32,
    }

    #[async_trait::async_trait]
    impl StateStore for LostAnswers {
        async fn load(&self, key: &str) -> Result<Option<crate::state::Stored>, StateError> {
            self.inner.load(key).await
        }
        async fn compare_and_swap(
            &self,
            key: &str,
            expected: Option<&Version>,
            bytes: Vec<u8>,
        ) -> Result<Version, StateError> {
            let v = self.inner.compare_and_swap(key, expected, bytes).await?;
            if self.lose.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                self.lose.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                return Err(StateError::Indeterminate {
                    key: key.into(),
                    message: "HTTP 500".into(),
                });
            }
            Ok(v)
        }
        fn describe(&self) -> String {
            "lossy".into()
        }
    }

    #[tokio::test]
    async fn a_write_whose_answer_was_lost_is_recognised_not_repeated() {
        let store = Arc::new(LostAnswers {
            inner: MemoryStore::new(),
            lose: std::sync::atomic::AtomicU32::new(1),
        });
        let repo = StateRepo::new(store, "c", 5);
        let mut calls = 0;
        let (n, v) = repo
            .update(now(), |s| {
                calls += 1;
                s.remember_alarm("a", now());
                Ok::<_, ()>(calls)
            })
            .await
            .unwrap();
        assert_eq!((n, calls), (1, 1), "decided once, written once");
        assert_eq!(v.state.revision, 1);
        assert_eq!(repo.load().await.unwrap().state.revision, 1);
    }

    #[tokio::test]
    async fn concurrent_updates_on_memory_count_exactly() {
        let repo = StateRepo::new(Arc::new(MemoryStore::new()), "c", 1000);
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let repo = repo.clone();
                tokio::spawn(async move {
                    for j in 0..10 {
                        repo.update(now(), |s| {
                            s.remember_alarm(&format!("{i}-{j}"), now());
                            Ok::<_, ()>(())
                        })
                        .await
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let end = repo.load().await.unwrap().state;
        assert_eq!(end.revision, 80);
        assert_eq!(end.decided_alarms.len(), 80);
    }
}
