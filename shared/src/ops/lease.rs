//! Work leases: one invocation at a time does each kind of work.
//!
//! Deciding is safe under any concurrency (one compare-and-swap per decision, keyed by
//! the alarm). Doing is not: two invocations driving the same recorded `creating`
//! replicas would both find no volume named `pgsurge-c-s1` and both create one, since
//! clouds do not enforce unique names. So each kind of work — `create`, `register`,
//! `remove`, `reconcile` — runs under a lease in the state document: taken by CAS,
//! renewed every third of its length while the work runs, released at the end. An
//! invocation that finds it held says so and leaves the work to the holder; a killed
//! holder's lease runs out after `ops.lease_secs` and the next run (or the reconcile
//! timer) takes over — which is why leases are short and renewed rather than long.

use super::{OpsError, Ports, Report};
use crate::model::Lease;
use std::future::Future;
use std::time::Duration;
use time::OffsetDateTime;

/// Run `work` holding lease `kind`; when another live invocation holds it, record that
/// in `report` and skip the work (it is not an error: the holder is doing it).
pub(crate) async fn with_lease<Fut>(
    ports: &Ports,
    kind: &str,
    report: &mut Report,
    work: impl FnOnce() -> Fut,
) -> Result<(), OpsError>
where
    Fut: Future<Output = Result<Report, OpsError>>,
{
    let me = holder_id();
    let length = time::Duration::seconds(ports.ops.lease_secs as i64);
    if let Err(held) = take(ports, kind, &me, length).await? {
        report.later(format!(
            "{kind}: another invocation ({}) is doing it, lease until {}",
            held.holder,
            crate::model::rfc3339(held.until)
        ));
        return Ok(());
    }
    let work = work();
    tokio::pin!(work);
    let mut renew = tokio::time::interval(Duration::from_secs(ports.ops.lease_secs.div_ceil(3)));
    renew.tick().await; // the first tick is immediate: we just took it
    let result = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = renew.tick() => {
                match take(ports, kind, &me, length).await {
                    Ok(Ok(())) => {}
                    // Lost it (we stalled past its end and someone took over): carry on —
                    // every step adopts what exists — but say so.
                    Ok(Err(other)) => tracing::warn!(kind, holder = %other.holder, "work lease taken over by another invocation"),
                    Err(e) => tracing::warn!(kind, error = %e, "could not renew the work lease"),
                }
            }
        }
    };
    // Best effort: an unreleased lease only delays the next run by its remaining time.
    if let Err(e) = release(ports, kind, &me).await {
        tracing::warn!(kind, error = %e, "could not release the work lease");
    }
    report.absorb(result?);
    Ok(())
}

/// Take or renew lease `kind` for `me`; `Err(lease)` when someone else holds it.
async fn take(
    ports: &Ports,
    kind: &str,
    me: &str,
    length: time::Duration,
) -> Result<Result<(), Lease>, OpsError> {
    let (outcome, _) = ports
        .state
        .update(
            OffsetDateTime::now_utc(),
            |s| -> Result<_, std::convert::Infallible> {
                // Read the clock inside: a CAS retry must judge expiry afresh.
                let now = OffsetDateTime::now_utc();
                Ok(match decide(s.leases.get(kind), me, now) {
                    Verdict::Take => {
                        s.leases.insert(
                            kind.to_string(),
                            Lease {
                                holder: me.to_string(),
                                until: now + length,
                            },
                        );
                        Ok(())
                    }
                    Verdict::HeldBy(other) => Err(other),
                })
            },
        )
        .await?;
    Ok(outcome)
}

async fn release(ports: &Ports, kind: &str, me: &str) -> Result<(), OpsError> {
    ports
        .state
        .update(
            OffsetDateTime::now_utc(),
            |s| -> Result<_, std::convert::Infallible> {
                if s.leases.get(kind).is_some_and(|l| l.holder == me) {
                    s.leases.remove(kind);
                }
                Ok(())
            },
        )
        .await?;
    Ok(())
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Take,
    HeldBy(Lease),
}

/// Pure: may `me` take (or renew) a lease currently in state `current` at `now`?
fn decide(current: Option<&Lease>, me: &str, now: OffsetDateTime) -> Verdict {
    match current {
        Some(l) if l.holder != me && l.until > now => Verdict::HeldBy(l.clone()),
        _ => Verdict::Take,
    }
}

fn holder_id() -> String {
    let rnd = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", std::process::id(), &rnd[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, until: OffsetDateTime) -> Lease {
        Lease {
            holder: holder.into(),
            until,
        }
    }

    #[test]
    fn free_expired_or_own_leases_are_taken_live_foreign_ones_are_not() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let later = now + time::Duration::seconds(5);
        let earlier = now - time::Duration::seconds(1);
        assert_eq!(decide(None, "me", now), Verdict::Take);
        assert_eq!(decide(Some(&lease("me", later)), "me", now), Verdict::Take);
        assert_eq!(decide(Some(&lease("x", earlier)), "me", now), Verdict::Take);
        assert_eq!(
            decide(Some(&lease("x", later)), "me", now),
            Verdict::HeldBy(lease("x", later))
        );
        // Exactly at its end a lease is void.
        assert_eq!(decide(Some(&lease("x", now)), "me", now), Verdict::Take);
    }
}
