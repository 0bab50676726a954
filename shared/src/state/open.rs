//! Build the configured store: the one place that turns `[state]` into a [`StateRepo`].

use super::config::{Concurrency, StateBackend, StateConfig};
use super::{LocalStore, LockedStore, MemoryStore, PgAdvisoryLock, S3Store, StateError, StateRepo};
use crate::secret::Credentials;
use std::sync::Arc;
use std::time::Duration;

/// Open the state of `cluster` as configured. For S3 with conditional writes this runs
/// the start-up probe and fails — before any side effect — on a store that ignores them.
/// `creds`: temporary credentials from the platform, preferred over configured keys.
pub async fn open(
    cfg: &StateConfig,
    cluster: &str,
    creds: Option<&Credentials>,
) -> Result<StateRepo, StateError> {
    let store: Arc<dyn super::StateStore> = match cfg.backend {
        StateBackend::Memory => Arc::new(MemoryStore::new()),
        StateBackend::Local => Arc::new(LocalStore::new(&cfg.local_dir)?),
        StateBackend::S3 => {
            let client = S3Store::client(&cfg.s3, creds)?;
            match cfg.concurrency {
                Concurrency::ConditionalWrites => {
                    Arc::new(client.with_verified_conditional_writes().await?)
                }
                Concurrency::PostgresAdvisoryLock => {
                    let conninfo =
                        cfg.postgres_lock
                            .conninfo
                            .clone()
                            .ok_or(StateError::Config {
                                key: "state.postgres_lock.conninfo",
                                message:
                                    "is required with concurrency = \"postgres-advisory-lock\""
                                        .into(),
                            })?;
                    let lock = PgAdvisoryLock::new(
                        conninfo,
                        Duration::from_secs(cfg.postgres_lock.timeout_secs),
                    );
                    Arc::new(LockedStore::new(
                        Arc::new(client.without_conditional_writes()),
                        Arc::new(lock),
                    ))
                }
                Concurrency::SingleWriter => {
                    tracing::warn!(
                        "state.concurrency = \"single-writer\": writes are not protected against \
                         concurrent invocations; make sure only one can run at a time"
                    );
                    Arc::new(client.without_conditional_writes())
                }
            }
        }
    };
    Ok(StateRepo::new(store, cluster, cfg.max_attempts))
}
