//! Serialising writers of a store that has no conditional writes.
//!
//! Huawei / SberCloud OBS documents no `If-Match` / `If-None-Match` on writes, and
//! OpenStack Swift's S3 layer fails them. For such stores the operator chooses (never by
//! silent fallback) `state.concurrency = "postgres-advisory-lock"`: each write takes a
//! PostgreSQL session advisory lock on the primary — which the functions reach anyway to
//! read its WAL position — then compares and writes. The lock lives as long as the
//! session, so a writer that dies releases it with its connection.

use super::{StateError, StateStore, Stored, Version};
use crate::secret::Secret;
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Held while a writer compares and writes; released on drop.
pub trait WriterLockGuard: Send {}

/// A mutual-exclusion lock shared by every writer of the same store.
#[async_trait]
pub trait WriterLock: Send + Sync {
    async fn acquire(&self, key: &str) -> Result<Box<dyn WriterLockGuard>, StateError>;
    fn describe(&self) -> String;
}

/// `pg_advisory_lock` on the primary.
pub struct PgAdvisoryLock {
    conninfo: Secret,
    timeout: Duration,
}

impl std::fmt::Debug for PgAdvisoryLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAdvisoryLock")
            .field("conninfo", &self.conninfo)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PgAdvisoryLock {
    pub fn new(conninfo: Secret, timeout: Duration) -> Self {
        PgAdvisoryLock { conninfo, timeout }
    }

    /// The 64-bit advisory lock id for a state key: stable across processes and versions.
    pub fn lock_id(key: &str) -> i64 {
        let digest = Sha256::digest(format!("pgsurge-state:{key}").as_bytes());
        i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

struct PgGuard {
    client: Option<tokio_postgres::Client>,
    id: i64,
}

impl WriterLockGuard for PgGuard {}

impl Drop for PgGuard {
    fn drop(&mut self) {
        // Unlock explicitly when a runtime is around; closing the session (dropping the
        // client ends the connection task) releases the lock regardless.
        if let (Some(client), Ok(rt)) = (self.client.take(), tokio::runtime::Handle::try_current())
        {
            let id = self.id;
            rt.spawn(async move {
                let _ = client
                    .execute("SELECT pg_advisory_unlock($1)", &[&id])
                    .await;
            });
        }
    }
}

fn pg_err(what: &str, e: tokio_postgres::Error) -> StateError {
    // tokio_postgres errors never include the password; the conninfo is not echoed.
    StateError::Lock(format!("{what}: {}", crate::postgres::client::message(&e)))
}

#[async_trait]
impl WriterLock for PgAdvisoryLock {
    async fn acquire(&self, key: &str) -> Result<Box<dyn WriterLockGuard>, StateError> {
        // The conninfo is libpq's: its `sslmode` (up to verify-full) and `sslrootcert`
        // are honoured, with the same TLS as pgsurge's other connections.
        let (mut cfg, mode, rootcert) =
            crate::postgres::tls::split_conninfo(self.conninfo.expose())
                .map_err(|m| StateError::Lock(format!("state.postgres_lock.conninfo: {m}")))?;
        let tls = crate::postgres::tls::PgTls::new(mode, rootcert.as_deref())
            .map_err(|e| StateError::Lock(format!("state.postgres_lock.conninfo: {e}")))?;
        let (client, connection) = tokio::time::timeout(self.timeout, tls.connect(&mut cfg))
            .await
            .map_err(|_| StateError::Lock("connecting to PostgreSQL timed out".into()))?
            .map_err(|e| pg_err(&format!("connecting to PostgreSQL (sslmode {mode})"), e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        // lock_timeout bounds the wait inside the server too, so a stuck holder cannot
        // keep us past the function's deadline.
        let ms = self.timeout.as_millis();
        client
            .batch_execute(&format!("SET lock_timeout = {ms}"))
            .await
            .map_err(|e| pg_err("SET lock_timeout", e))?;
        let id = Self::lock_id(key);
        client
            .execute("SELECT pg_advisory_lock($1)", &[&id])
            .await
            .map_err(|e| pg_err(&format!("pg_advisory_lock({id})"), e))?;
        Ok(Box::new(PgGuard {
            client: Some(client),
            id,
        }))
    }

    fn describe(&self) -> String {
        "PostgreSQL advisory lock".into()
    }
}

/// A store whose compare-and-swap runs under a [`WriterLock`]: compare, then write,
/// with every other writer waiting.
pub struct LockedStore {
    inner: Arc<dyn StateStore>,
    lock: Arc<dyn WriterLock>,
}

impl LockedStore {
    /// `inner` must compare before writing (as [`super::S3Store`] does in plain mode).
    pub fn new(inner: Arc<dyn StateStore>, lock: Arc<dyn WriterLock>) -> Self {
        LockedStore { inner, lock }
    }
}

#[async_trait]
impl StateStore for LockedStore {
    async fn load(&self, key: &str) -> Result<Option<Stored>, StateError> {
        self.inner.load(key).await
    }

    async fn load_if_changed(
        &self,
        key: &str,
        known: Option<&Version>,
    ) -> Result<super::IfChanged, StateError> {
        self.inner.load_if_changed(key, known).await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&Version>,
        bytes: Vec<u8>,
    ) -> Result<Version, StateError> {
        let guard = self.lock.acquire(key).await?;
        let result = self.inner.compare_and_swap(key, expected, bytes).await;
        drop(guard);
        result
    }

    fn describe(&self) -> String {
        format!("{} under a {}", self.inner.describe(), self.lock.describe())
    }
}
