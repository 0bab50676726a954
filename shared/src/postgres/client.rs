//! The [`Postgres`](super::Postgres) port over `tokio-postgres`.
//!
//! One short-lived connection per question: functions run for seconds, and a pool would
//! outlive the invocation anyway. TLS follows `postgres.sslmode` towards the primary and
//! `postgres.replica_sslmode` towards replicas (see [`super::tls`]); errors carry the
//! server's message but never the password.

use super::lsn::Lsn;
use super::readiness::{PrimaryStatus, ReplicaStatus};
use super::tls::{PgTls, SslMode, TlsError};
use super::{PgError, Postgres};
use crate::model::Endpoint;
use crate::postgres::PostgresConfig;
use crate::secret::Secret;
use async_trait::async_trait;
use std::time::Duration;
use tokio_postgres::Client;

/// Connects to the configured primary and to replicas with the same role and database.
#[derive(Debug, Clone)]
pub struct PgClient {
    primary: Endpoint,
    user: String,
    password: Option<Secret>,
    dbname: String,
    /// Towards the primary / towards replicas. Config validation already built both
    /// from the same settings, so an error here is a CA file changed since.
    primary_tls: Result<PgTls, TlsError>,
    replica_tls: Result<PgTls, TlsError>,
    connect_timeout: Duration,
}

impl PgClient {
    pub fn new(c: &PostgresConfig) -> PgClient {
        let tls = |mode: &str| {
            let mode: SslMode = mode.parse().unwrap_or(SslMode::VerifyFull);
            PgTls::new(mode, c.sslrootcert.as_deref())
        };
        let replica_mode = match c.replica_sslmode.as_str() {
            "" => c.sslmode.as_str(),
            m => m,
        };
        PgClient {
            primary: Endpoint {
                host: c.primary_host.clone(),
                port: c.primary_port,
            },
            user: c.replication_user.clone(),
            password: c.password.clone(),
            dbname: c.dbname.clone(),
            primary_tls: tls(&c.sslmode),
            replica_tls: tls(replica_mode),
            connect_timeout: Duration::from_secs(c.connect_timeout_secs),
        }
    }

    pub fn primary(&self) -> &Endpoint {
        &self.primary
    }

    /// A session on `at`. The connection task runs until the client is dropped.
    pub async fn connect(&self, at: &Endpoint) -> Result<Client, PgError> {
        self.connect_db(at, &self.dbname).await
    }

    /// A session on `at`, in database `db`.
    pub async fn connect_db(&self, at: &Endpoint, db: &str) -> Result<Client, PgError> {
        let tls = if *at == self.primary {
            &self.primary_tls
        } else {
            &self.replica_tls
        };
        let fail = |message: String| PgError::Connect {
            endpoint: addr(at),
            message,
        };
        let tls = tls.as_ref().map_err(|e| fail(e.to_string()))?;
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&at.host)
            .port(at.port)
            .user(&self.user)
            .dbname(db)
            .application_name("pgsurge")
            .connect_timeout(self.connect_timeout);
        if let Some(pw) = &self.password {
            cfg.password(pw.expose());
        }
        let (client, connection) =
            tokio::time::timeout(self.connect_timeout, tls.connect(&mut cfg))
                .await
                .map_err(|_| fail(format!("timed out after {:?}", self.connect_timeout)))?
                .map_err(|e| fail(format!("{} (sslmode {})", message(&e), tls.mode())))?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; the next query
            // reports that, so nothing to do here.
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// `host:port` for messages.
pub fn addr(at: &Endpoint) -> String {
    format!("{}:{}", at.host, at.port)
}

/// The server's own message when there is one (`FATAL: ...`), else the client error
/// with its causes (tokio-postgres prints only "error performing TLS handshake").
pub fn message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

fn query_err(at: &Endpoint) -> impl Fn(tokio_postgres::Error) -> PgError + '_ {
    move |e| PgError::Query {
        endpoint: addr(at),
        message: message(&e),
    }
}

fn lsn(at: &Endpoint, text: &str) -> Result<Lsn, PgError> {
    text.parse()
        .map_err(|e: super::lsn::LsnParseError| PgError::Query {
            endpoint: addr(at),
            message: e.to_string(),
        })
}

/// The primary's timeline is the first 8 hex digits of its current WAL file name;
/// `pg_walfile_name` only works outside recovery, hence the CASE.
const PRIMARY_SQL: &str = "SELECT pg_is_in_recovery(), \
       (SELECT system_identifier FROM pg_control_system()), \
       CASE WHEN pg_is_in_recovery() THEN NULL \
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END, \
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END, \
       pg_size_bytes(current_setting('wal_keep_size'))";

/// `received_tli` needs pg_read_all_stats (part of pg_monitor); without it, or without
/// a running WAL receiver, fall back to the timeline of the last restartpoint.
const REPLICA_SQL: &str = "SELECT pg_is_in_recovery(), \
       (SELECT system_identifier FROM pg_control_system()), \
       COALESCE((SELECT received_tli FROM pg_stat_wal_receiver WHERE received_tli IS NOT NULL LIMIT 1), \
                (SELECT timeline_id FROM pg_control_checkpoint())), \
       pg_last_wal_replay_lsn()::text, \
       EXTRACT(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8, \
       CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() <> 'not paused' \
            ELSE false END";

#[async_trait]
impl Postgres for PgClient {
    async fn primary_status(&self) -> Result<PrimaryStatus, PgError> {
        let at = &self.primary;
        let client = self.connect(at).await?;
        let row = client
            .query_one(PRIMARY_SQL, &[])
            .await
            .map_err(query_err(at))?;
        if row.get::<_, bool>(0) {
            return Err(PgError::NotPrimary(addr(at)));
        }
        let timeline: i32 = row.get(2);
        Ok(PrimaryStatus {
            system_identifier: row.get(1),
            timeline: timeline as u32,
            current_lsn: lsn(at, row.get(3))?,
            wal_keep_bytes: row.get::<_, i64>(4).max(0) as u64,
        })
    }

    async fn prewarm(
        &self,
        at: &Endpoint,
        targets: &[super::PrewarmTarget],
        budget: Duration,
    ) -> Result<super::Prewarmed, PgError> {
        let deadline = std::time::Instant::now() + budget;
        let mut done = super::Prewarmed::default();
        let mut session: Option<(String, Client)> = None;
        for t in targets {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left < Duration::from_millis(10) {
                done.stopped = Some(format!("the {}s budget is spent", budget.as_secs()));
                break;
            }
            if session.as_ref().is_none_or(|(db, _)| *db != t.db) {
                session = Some((t.db.clone(), self.connect_db(at, &t.db).await?));
            }
            let client = &session.as_ref().expect("just set").1;
            // The budget bounds each statement too: a large relation stops mid-way.
            let set = format!("set statement_timeout = {}", left.as_millis().max(1));
            client.batch_execute(&set).await.map_err(query_err(at))?;
            match client
                .query_one("select pg_prewarm($1::text::regclass)", &[&t.relation])
                .await
            {
                Ok(row) => {
                    done.blocks += row.get::<_, i64>(0);
                    done.relations += 1;
                }
                Err(e) => {
                    done.stopped = Some(format!("{}.{}: {}", t.db, t.relation, message(&e)));
                    break;
                }
            }
        }
        Ok(done)
    }

    async fn replica_status(&self, at: &Endpoint) -> Result<ReplicaStatus, PgError> {
        let client = self.connect(at).await?;
        let row = client
            .query_one(REPLICA_SQL, &[])
            .await
            .map_err(query_err(at))?;
        let timeline: i32 = row.get(2);
        let replay: Option<&str> = row.get(3);
        let age: Option<f64> = row.get(4);
        Ok(ReplicaStatus {
            in_recovery: row.get(0),
            system_identifier: row.get(1),
            timeline: timeline as u32,
            replay_lsn: replay.map(|t| lsn(at, t)).transpose()?,
            // A commit "in the future" (clock skew between hosts) counts as no age.
            last_replay_age: age.map(|s| Duration::from_secs_f64(s.max(0.0))),
            replay_paused: row.get(5),
        })
    }
}
