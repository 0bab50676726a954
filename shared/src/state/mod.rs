//! The stores of the cluster state document ([`crate::model::ClusterState`]): one JSON
//! document per cluster, updated by compare-and-swap.
//!
//! Concurrent invocations (alarm storms, retries, duplicate deliveries) must not both
//! win. Every backend implements [`StateStore`]: `load` returns the bytes plus an opaque
//! [`Version`], and `compare_and_swap` writes only if the stored version is still the
//! one that was read (or, with no version, only if nothing is stored yet).
//! [`StateRepo::update`] runs read → decide → CAS, and on a lost race re-reads and
//! decides again, a bounded number of times.
//!
//! Backends (chosen by `state.backend`, see [`StateConfig`]):
//! * [`S3Store`] — any S3-compatible store via `object_store`: `If-Match: <ETag>` for
//!   updates, `If-None-Match: *` for creation. A start-up [`probe`](S3Store::probe)
//!   checks that the store really enforces both (and whether it wants the ETag unquoted,
//!   as Ceph RGW 16 does); a store that does not is refused unless the operator chose an
//!   explicit alternative in `state.concurrency`.
//! * [`LockedStore`] + [`PgAdvisoryLock`] — for stores without conditional writes
//!   (Huawei OBS, Swift s3api): writers are serialised by a PostgreSQL advisory lock.
//! * [`LocalStore`] — a directory on one machine: `flock` + atomic rename.
//! * [`MemoryStore`] — for unit tests.

mod config;
mod local;
mod lock;
mod memory;
mod open;
mod repo;
mod s3;

pub use config::{Concurrency, PgLockConfig, S3Config, StateBackend, StateConfig};
pub use local::LocalStore;
pub use lock::{LockedStore, PgAdvisoryLock, WriterLock, WriterLockGuard};
pub use memory::MemoryStore;
pub use open::open;
pub use repo::{Fetched, StateRepo, UpdateError, Versioned};
pub use s3::{EtagForm, ProbeReport, S3Store};

use async_trait::async_trait;

/// Opaque version of a stored document (an ETag, a content hash, a counter).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(pub String);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored document and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub bytes: Vec<u8>,
    pub version: Version,
}

/// Why a state operation failed. Messages never carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Someone else wrote first. [`StateRepo::update`] re-reads and retries.
    #[error("state `{key}` changed since it was read (compare-and-swap lost the race)")]
    Conflict { key: String },
    /// The store answered with an error whose effect is unknown (HTTP 5xx, a timeout on
    /// a conditional write). Never a success: [`StateRepo::update`] re-reads to find out.
    #[error("the outcome of the write to state `{key}` is unknown: {message}")]
    Indeterminate { key: String, message: String },
    /// Lost the race `attempts` times in a row.
    #[error("gave up updating state `{key}` after {attempts} attempts lost to concurrent writers")]
    Contended { key: String, attempts: u32 },
    /// The store does not enforce conditional writes and no alternative was chosen.
    #[error(
        "the object store at {endpoint} does not honour conditional writes ({detail}); \
         concurrent invocations would silently lose updates, so pgsurge refuses to use it. \
         Use a store that enforces If-Match / If-None-Match (AWS S3, Ceph RGW, MinIO), or choose \
         an explicit alternative: state.concurrency = \"postgres-advisory-lock\" (with \
         state.postgres_lock.conninfo), or \"single-writer\" if only one invocation can ever run"
    )]
    NoConditionalWrites { endpoint: String, detail: String },
    /// The stored document cannot be used by this build (corrupt, or too new).
    #[error(transparent)]
    Document(#[from] crate::model::DocumentError),
    #[error("state document `{key}` belongs to cluster {found:?}, not {expected:?}")]
    WrongCluster {
        key: String,
        expected: String,
        found: String,
    },
    /// The writer lock (PostgreSQL advisory lock, local flock) could not be taken.
    #[error("state writer lock: {0}")]
    Lock(String),
    /// The backend could not be reached or refused the request.
    #[error("state store ({store}): {message}")]
    Backend {
        store: &'static str,
        message: String,
    },
    /// The state configuration cannot work (missing credentials, bad endpoint).
    #[error("state configuration: `{key}`: {message}")]
    Config { key: &'static str, message: String },
}

/// Load and compare-and-swap one document per key.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The document and its version, or `None` when nothing is stored under `key`.
    async fn load(&self, key: &str) -> Result<Option<Stored>, StateError>;

    /// Store `bytes` under `key` if the stored version is still `expected`
    /// (`None`: only if nothing is stored). Returns the new version, or
    /// [`StateError::Conflict`] when another writer got there first.
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&Version>,
        bytes: Vec<u8>,
    ) -> Result<Version, StateError>;

    /// One line for logs: what store, and how writers are serialised.
    fn describe(&self) -> String;

    /// Like [`StateStore::load`], but answers [`IfChanged::Unchanged`] when the stored
    /// version is still `known`. A poller (the agent, every 2 s) calls this; the S3 store
    /// sends `If-None-Match`, so an unchanged document costs one body-less 304. This
    /// default loads and compares, for stores where a read is cheap anyway.
    async fn load_if_changed(
        &self,
        key: &str,
        known: Option<&Version>,
    ) -> Result<IfChanged, StateError> {
        Ok(match self.load(key).await? {
            None => IfChanged::Absent,
            Some(s) if Some(&s.version) == known => IfChanged::Unchanged,
            Some(s) => IfChanged::Changed(s),
        })
    }
}

/// What [`StateStore::load_if_changed`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfChanged {
    /// Still the known version: nothing was transferred.
    Unchanged,
    /// Nothing is stored under the key.
    Absent,
    Changed(Stored),
}
