//! The `Postgres` port: is a replica ready to take reads?
//!
//! A replica is ready when it
//! 1. accepts connections,
//! 2. is in recovery (a standby, never a primary),
//! 3. has the primary's system identifier and timeline (it replicates *this* primary), and
//! 4. replays within the configured lag: `pg_last_wal_replay_lsn()` at most
//!    `max_replay_lag_bytes` behind the primary's `pg_current_wal_lsn()`, and its last
//!    replayed commit at most `max_replay_lag_secs` old.
//!
//! [`check`] reads both servers once and lists every condition with its outcome
//! ([`Readiness`]); [`wait_ready`] polls until all hold or a deadline passes and then
//! says which condition still fails. The decision itself ([`readiness::evaluate`]) is
//! pure; [`PgClient`] is the `tokio-postgres` implementation of the port.
//!
//! [`bootstrap`] holds the parameters of the replica bootstrap script.

mod config;
pub use config::PostgresConfig;
pub mod bootstrap;
pub mod client;
pub mod lsn;
pub mod readiness;
pub mod tls;

pub use client::PgClient;
pub use lsn::Lsn;
pub use readiness::{
    evaluate, Check, Condition, LagBounds, PrimaryStatus, Readiness, ReplicaStatus, Verdict,
};

use crate::model::Endpoint;
use async_trait::async_trait;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgError {
    #[error("cannot connect to PostgreSQL at {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error("query on {endpoint} failed: {message}")]
    Query { endpoint: String, message: String },
    /// The configured primary is itself a standby (a failover happened, or the
    /// configuration is wrong): no replica can be judged against it.
    #[error("the configured primary {0} is in recovery, not a primary")]
    NotPrimary(String),
}

/// What readiness needs to know from PostgreSQL.
#[async_trait]
pub trait Postgres: Send + Sync {
    async fn primary_status(&self) -> Result<PrimaryStatus, PgError>;
    async fn replica_status(&self, at: &Endpoint) -> Result<ReplicaStatus, PgError>;
    /// Load `targets` into the shared buffers of the server at `at` (`pg_prewarm`), in
    /// order, stopping when `budget` is spent (`ops::prewarm`). Unsupported by default.
    async fn prewarm(
        &self,
        at: &Endpoint,
        _targets: &[PrewarmTarget],
        _budget: Duration,
    ) -> Result<Prewarmed, PgError> {
        Err(PgError::Query {
            endpoint: format!("{}:{}", at.host, at.port),
            message: "pre-warm is not supported by this Postgres port".into(),
        })
    }
}

/// One relation to pre-warm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrewarmTarget {
    pub db: String,
    /// `"schema"."relation"`, quoted for a `regclass` cast.
    pub relation: String,
}

/// What a pre-warm loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prewarmed {
    /// Blocks `pg_prewarm` reported loaded, in total.
    pub blocks: i64,
    /// Relations loaded in full.
    pub relations: usize,
    /// Why it stopped before the end of the list (the budget, an error), if it did.
    pub stopped: Option<String>,
}

/// Check the replica at `at` once.
///
/// A replica that cannot be reached or queried is a `Readiness` with
/// [`Condition::AcceptsConnections`] failing; a primary that cannot be read is an error
/// (nothing can be decided without it).
pub async fn check(
    pg: &dyn Postgres,
    at: &Endpoint,
    bounds: &LagBounds,
) -> Result<Readiness, PgError> {
    // Replica first, primary second: the lag we compute can only overstate the truth.
    let replica = pg.replica_status(at).await;
    let primary = pg.primary_status().await?;
    Ok(match &replica {
        Ok(r) => evaluate(&primary, Ok(r), bounds),
        Err(e) => evaluate(&primary, Err(&e.to_string()), bounds),
    })
}

/// The replica did not become ready before the deadline.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("replica {endpoint} not ready by the deadline: {reason}")]
pub struct NotReady {
    pub endpoint: String,
    /// The last readiness seen, or why the primary could not be read.
    pub reason: String,
    pub last: Option<Readiness>,
}

/// Poll [`check`] until the replica is ready or `deadline` passes.
pub async fn wait_ready(
    pg: &dyn Postgres,
    at: &Endpoint,
    bounds: &LagBounds,
    deadline: Instant,
) -> Result<Readiness, NotReady> {
    let mut delay = Duration::from_millis(50);
    let mut last = None;
    loop {
        let reason = match check(pg, at, bounds).await {
            Ok(r) if r.is_ready() => return Ok(r),
            Ok(r) => {
                let reason = r.to_string();
                last = Some(r);
                reason
            }
            Err(e) => format!("cannot check: {e}"),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(NotReady {
                endpoint: client::addr(at),
                reason,
                last,
            });
        }
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A replica that replays 1 MiB per poll: pure logic of the wait loop only; the
    /// real thing is tested against PostgreSQL in tests/tests/local_provider.rs.
    struct Catching(AtomicU64);

    #[async_trait]
    impl Postgres for Catching {
        async fn primary_status(&self) -> Result<PrimaryStatus, PgError> {
            Ok(PrimaryStatus {
                system_identifier: 1,
                timeline: 1,
                current_lsn: Lsn(4 << 20),
                wal_keep_bytes: 0,
            })
        }
        async fn replica_status(&self, _: &Endpoint) -> Result<ReplicaStatus, PgError> {
            let replayed = self.0.fetch_add(1 << 20, Ordering::SeqCst);
            Ok(ReplicaStatus {
                in_recovery: true,
                system_identifier: 1,
                timeline: 1,
                replay_lsn: Some(Lsn(replayed)),
                last_replay_age: Some(Duration::from_millis(10)),
                replay_paused: false,
            })
        }
    }

    fn at() -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port: 1,
        }
    }

    const TIGHT: LagBounds = LagBounds {
        max_bytes: 0,
        max_age: Duration::from_secs(1),
    };

    #[tokio::test]
    async fn waits_until_caught_up() {
        let pg = Catching(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(10);
        let r = wait_ready(&pg, &at(), &TIGHT, deadline).await.unwrap();
        assert_eq!(r.lag_bytes, Some(0));
        assert_eq!(pg.0.load(Ordering::SeqCst), 5 << 20);
    }

    #[tokio::test]
    async fn deadline_names_the_failing_condition() {
        let pg = Catching(AtomicU64::new(0));
        let err = wait_ready(
            &pg,
            &at(),
            &TIGHT,
            Instant::now() + Duration::from_millis(60),
        )
        .await
        .unwrap_err();
        assert!(
            err.reason.starts_with("lagging: replay lag in bytes"),
            "{err}"
        );
        assert_eq!(err.last.unwrap().verdict(), Verdict::Lagging);
    }
}
