//! Is a replica ready to serve reads? A pure decision over what the primary and the
//! replica report about themselves; the I/O lives in [`super::client`].

use super::lsn::Lsn;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// How far behind a replica may be and still count as caught up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LagBounds {
    pub max_bytes: u64,
    pub max_age: Duration,
}

impl From<&crate::postgres::PostgresConfig> for LagBounds {
    fn from(c: &crate::postgres::PostgresConfig) -> Self {
        LagBounds {
            max_bytes: c.max_replay_lag_bytes,
            max_age: Duration::from_secs(c.max_replay_lag_secs),
        }
    }
}

/// What the primary says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrimaryStatus {
    /// `pg_control_system().system_identifier`: equal on a primary and all its replicas.
    pub system_identifier: i64,
    /// The timeline the primary writes on.
    pub timeline: u32,
    /// `pg_current_wal_lsn()`.
    pub current_lsn: Lsn,
    /// `wal_keep_size` in bytes: the WAL the primary keeps (at least) behind its current
    /// position for standbys that fall behind. What a clone of an older snapshot streams
    /// must still be there (`policy::snapshot_ahead::wal_fit`).
    pub wal_keep_bytes: u64,
}

/// What a replica says about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaStatus {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    pub system_identifier: i64,
    /// The timeline it receives (`pg_stat_wal_receiver.received_tli`), or the timeline of
    /// its last restartpoint when no WAL receiver is running.
    pub timeline: u32,
    /// `pg_last_wal_replay_lsn()`; `None` on a server that never was in recovery.
    pub replay_lsn: Option<Lsn>,
    /// Time since the commit of the last transaction it replayed; `None` before the first.
    pub last_replay_age: Option<Duration>,
    /// `pg_get_wal_replay_pause_state() <> 'not paused'`.
    pub replay_paused: bool,
}

/// One condition of readiness, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    AcceptsConnections,
    InRecovery,
    SameSystemIdentifier,
    SameTimeline,
    ReplayLagBytes,
    ReplayLagSeconds,
}

impl Condition {
    pub const ALL: [Condition; 6] = [
        Condition::AcceptsConnections,
        Condition::InRecovery,
        Condition::SameSystemIdentifier,
        Condition::SameTimeline,
        Condition::ReplayLagBytes,
        Condition::ReplayLagSeconds,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Condition::AcceptsConnections => "accepts connections",
            Condition::InRecovery => "in recovery",
            Condition::SameSystemIdentifier => "same system identifier as the primary",
            Condition::SameTimeline => "same timeline as the primary",
            Condition::ReplayLagBytes => "replay lag in bytes within bound",
            Condition::ReplayLagSeconds => "replay lag in seconds within bound",
        }
    }
}

/// The outcome of one condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub condition: Condition,
    pub ok: bool,
    pub detail: String,
}

/// The one-word summary, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// No connection (down, still starting, refusing us).
    Unreachable,
    /// A primary, or a standby that was promoted: never register it as a replica.
    NotInRecovery,
    /// Another cluster or another timeline: it will never catch up with this primary.
    Diverged,
    /// A replica of this primary that is behind (or whose lag is not known yet).
    Lagging,
    Ready,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Unreachable => "unreachable",
            Verdict::NotInRecovery => "not in recovery",
            Verdict::Diverged => "diverged",
            Verdict::Lagging => "lagging",
            Verdict::Ready => "ready",
        })
    }
}

/// Every condition with its outcome, plus the measured lag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Readiness {
    pub checks: Vec<Check>,
    pub lag_bytes: Option<u64>,
    pub lag_secs: Option<f64>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    pub fn failing(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }

    pub fn check(&self, condition: Condition) -> Option<&Check> {
        self.checks.iter().find(|c| c.condition == condition)
    }

    pub fn verdict(&self) -> Verdict {
        let failed = |c| self.check(c).is_some_and(|c| !c.ok);
        if failed(Condition::AcceptsConnections) {
            Verdict::Unreachable
        } else if failed(Condition::InRecovery) {
            Verdict::NotInRecovery
        } else if failed(Condition::SameSystemIdentifier) || failed(Condition::SameTimeline) {
            Verdict::Diverged
        } else if !self.is_ready() {
            Verdict::Lagging
        } else {
            Verdict::Ready
        }
    }
}

/// `ready`, or the verdict and each failing condition with its detail.
impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.verdict())?;
        let mut sep = ": ";
        for c in self.failing() {
            write!(f, "{sep}{} failed ({})", c.condition.describe(), c.detail)?;
            sep = "; ";
        }
        Ok(())
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Decide readiness. `replica` is the replica's status, or why it could not be read.
///
/// The caller reads the replica *before* the primary, so the byte lag it sees can only
/// overstate the true lag: a replica is never called caught up too early.
pub fn evaluate(
    primary: &PrimaryStatus,
    replica: Result<&ReplicaStatus, &str>,
    bounds: &LagBounds,
) -> Readiness {
    let r = match replica {
        Ok(r) => r,
        Err(why) => {
            let mut checks = vec![Check {
                condition: Condition::AcceptsConnections,
                ok: false,
                detail: why.to_string(),
            }];
            checks.extend(Condition::ALL[1..].iter().map(|&condition| Check {
                condition,
                ok: false,
                detail: "unknown: no connection".into(),
            }));
            return Readiness {
                checks,
                lag_bytes: None,
                lag_secs: None,
            };
        }
    };
    let mut checks = vec![Check {
        condition: Condition::AcceptsConnections,
        ok: true,
        detail: "connected".into(),
    }];
    checks.push(Check {
        condition: Condition::InRecovery,
        ok: r.in_recovery,
        detail: if r.in_recovery {
            "pg_is_in_recovery() = true".into()
        } else {
            "pg_is_in_recovery() = false: this server is a primary".into()
        },
    });
    let same_id = r.system_identifier == primary.system_identifier;
    checks.push(Check {
        condition: Condition::SameSystemIdentifier,
        ok: same_id,
        detail: format!(
            "replica {} vs primary {}",
            r.system_identifier, primary.system_identifier
        ),
    });
    checks.push(Check {
        condition: Condition::SameTimeline,
        ok: r.timeline == primary.timeline,
        detail: format!("replica {} vs primary {}", r.timeline, primary.timeline),
    });

    let paused = if r.replay_paused {
        "; replay is paused"
    } else {
        ""
    };
    let lag_bytes = r.replay_lsn.map(|lsn| lsn.bytes_until(primary.current_lsn));
    checks.push(Check {
        condition: Condition::ReplayLagBytes,
        ok: r.in_recovery && lag_bytes.is_some_and(|b| b <= bounds.max_bytes),
        detail: match (r.replay_lsn, lag_bytes) {
            (Some(lsn), Some(b)) => format!(
                "replayed up to {lsn}, primary at {}: {} behind, bound {}{paused}",
                primary.current_lsn,
                mib(b),
                mib(bounds.max_bytes)
            ),
            _ => "unknown: no replay position (never in recovery)".into(),
        },
    });

    // Everything replayed means no time lag, however long ago the last commit was
    // (an idle primary); otherwise the age of the last replayed commit.
    let lag_secs = match (lag_bytes, r.last_replay_age) {
        (Some(0), _) => Some(0.0),
        (Some(_), Some(age)) => Some(age.as_secs_f64()),
        _ => None,
    };
    let max = bounds.max_age.as_secs_f64();
    checks.push(Check {
        condition: Condition::ReplayLagSeconds,
        ok: r.in_recovery && lag_secs.is_some_and(|s| s <= max),
        detail: match lag_secs {
            Some(s) => format!("{s:.1} s behind, bound {max:.0} s{paused}"),
            None if lag_bytes.is_some() => {
                format!("unknown: no transaction replayed yet, bound {max:.0} s{paused}")
            }
            None => "unknown: no replay position".into(),
        },
    });
    Readiness {
        checks,
        lag_bytes,
        lag_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primary() -> PrimaryStatus {
        PrimaryStatus {
            system_identifier: 7_300_000_000_000_000_001,
            timeline: 1,
            current_lsn: Lsn(10 << 20),
            wal_keep_bytes: 1 << 30,
        }
    }

    fn replica(replay: u64, age: Option<u64>) -> ReplicaStatus {
        ReplicaStatus {
            in_recovery: true,
            system_identifier: 7_300_000_000_000_000_001,
            timeline: 1,
            replay_lsn: Some(Lsn(replay)),
            last_replay_age: age.map(Duration::from_secs),
            replay_paused: false,
        }
    }

    const BOUNDS: LagBounds = LagBounds {
        max_bytes: 1 << 20,
        max_age: Duration::from_secs(5),
    };

    #[test]
    fn caught_up_replica_is_ready_even_when_the_primary_is_idle() {
        let r = evaluate(&primary(), Ok(&replica(10 << 20, Some(3600))), &BOUNDS);
        assert!(r.is_ready(), "{r}");
        assert_eq!(r.verdict(), Verdict::Ready);
        assert_eq!((r.lag_bytes, r.lag_secs), (Some(0), Some(0.0)));
        assert_eq!(r.to_string(), "ready");
    }

    #[test]
    fn within_both_bounds_is_ready() {
        let r = evaluate(
            &primary(),
            Ok(&replica((10 << 20) - 4096, Some(1))),
            &BOUNDS,
        );
        assert!(r.is_ready(), "{r}");
    }

    #[test]
    fn behind_in_bytes_is_lagging_and_says_so() {
        let mut rep = replica(5 << 20, Some(1));
        rep.replay_paused = true;
        let r = evaluate(&primary(), Ok(&rep), &BOUNDS);
        assert_eq!(r.verdict(), Verdict::Lagging);
        let failing: Vec<_> = r.failing().map(|c| c.condition).collect();
        assert_eq!(failing, vec![Condition::ReplayLagBytes]);
        let text = r.to_string();
        assert!(text.starts_with("lagging: replay lag in bytes"), "{text}");
        assert!(
            text.contains("5.0 MiB behind") && text.contains("paused"),
            "{text}"
        );
    }

    #[test]
    fn old_last_commit_while_behind_is_lagging_in_seconds() {
        let r = evaluate(
            &primary(),
            Ok(&replica((10 << 20) - 100, Some(60))),
            &BOUNDS,
        );
        let failing: Vec<_> = r.failing().map(|c| c.condition).collect();
        assert_eq!(failing, vec![Condition::ReplayLagSeconds]);
        assert_eq!(r.verdict(), Verdict::Lagging);
    }

    #[test]
    fn unknown_age_while_behind_is_not_ready() {
        let r = evaluate(&primary(), Ok(&replica((10 << 20) - 100, None)), &BOUNDS);
        assert!(!r.is_ready());
        let c = r.check(Condition::ReplayLagSeconds).unwrap();
        assert!(c.detail.contains("no transaction replayed yet"), "{c:?}");
    }

    #[test]
    fn a_primary_is_never_a_ready_replica() {
        let mut rep = replica(0, None);
        rep.in_recovery = false;
        rep.replay_lsn = None;
        let r = evaluate(&primary(), Ok(&rep), &BOUNDS);
        assert_eq!(r.verdict(), Verdict::NotInRecovery);
        assert!(!r.is_ready());
    }

    #[test]
    fn another_cluster_or_timeline_has_diverged() {
        let mut rep = replica(10 << 20, None);
        rep.system_identifier += 1;
        assert_eq!(
            evaluate(&primary(), Ok(&rep), &BOUNDS).verdict(),
            Verdict::Diverged
        );
        let mut rep = replica(10 << 20, None);
        rep.timeline = 2;
        let r = evaluate(&primary(), Ok(&rep), &BOUNDS);
        assert_eq!(r.verdict(), Verdict::Diverged);
        assert!(r.to_string().contains("replica 2 vs primary 1"), "{r}");
    }

    #[test]
    fn unreachable_lists_every_condition_as_unknown() {
        let r = evaluate(&primary(), Err("connection refused"), &BOUNDS);
        assert_eq!(r.verdict(), Verdict::Unreachable);
        assert_eq!(r.checks.len(), Condition::ALL.len());
        assert!(r.failing().count() == Condition::ALL.len());
        assert!(r.to_string().contains("connection refused"));
    }
}
