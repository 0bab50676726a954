//! Verifying replicas coming up: each booting / catching-up replica checked by ourselves,
//! then registered in every HAProxy node — what instance-ready and reconcile drive.
//! A callback is never trusted: it only makes us look sooner.

use super::desired::split_address;
use super::replica_steps::roll_back;
use super::{
    phase_metric, refused, secs_between, update_replica, OpsError, Ports, Refusal, Report,
};
use crate::balancer::{AdminState, ServerSpec};
use crate::cloud::{CloudError, Status};
use crate::failpoint;
use crate::model::{resource_name, Endpoint};
use crate::model::{Phase, Replica};
use crate::postgres;
use std::time::Duration;
use time::OffsetDateTime;

/// Look at every replica still coming up (`booting`, `catching_up`); keep polling up to
/// `wait` for those not ready yet, then leave them for the next tick. The caller holds
/// the `register` lease.
pub(crate) async fn drive_pending(
    ports: &Ports,
    now: OffsetDateTime,
    wait: Duration,
) -> Result<Report, OpsError> {
    let mut report = Report::default();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let state = ports.state.load().await?.state;
        let pending: Vec<Replica> = state
            .replicas
            .iter()
            .filter(|r| matches!(r.phase, Phase::Booting | Phase::CatchingUp))
            .cloned()
            .collect();
        if pending.is_empty() {
            return Ok(report);
        }
        let mut still = Vec::new();
        for r in &pending {
            match check_one(ports, r, now).await? {
                Checked::Done(done) => report.did(done),
                Checked::NotYet => still.push(r.id.clone()),
                // Not retried in this run: nothing about it changes by waiting.
                Checked::Refused(why) => refused(ports, &r.id, &why, now, &mut report).await?,
            }
        }
        if still.is_empty() {
            return Ok(report);
        }
        if tokio::time::Instant::now() + Duration::from_millis(500) > deadline {
            report.later(format!("not ready yet: {}", still.join(", ")));
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What one look at a replica coming up found.
enum Checked {
    /// Registered (or, its server in error, rolled back): what was done.
    Done(String),
    /// Not ready yet.
    NotYet,
    /// Its server is in error but rolling it back was refused: why.
    Refused(Refusal),
}

async fn check_one(ports: &Ports, r: &Replica, now: OffsetDateTime) -> Result<Checked, OpsError> {
    let Some(server_id) = &r.server_id else {
        return Ok(Checked::NotYet);
    };
    let server = match ports.cloud.get_server(server_id).await {
        Ok(s) => s,
        // Gone while booting: instance-deleted / reconcile clean it up.
        Err(CloudError::NotFound { .. }) => return Ok(Checked::NotYet),
        Err(e) => return Err(e.into()),
    };
    if server.status == Status::Error {
        // It will never boot (OpenStack: no valid host, a volume that failed to attach).
        // Delete server and volume and forget the replica, so it stops counting toward
        // capacity and the next alarm can try again.
        let fault = server
            .fault
            .as_deref()
            .unwrap_or("the provider gave no reason");
        tracing::error!(replica = %r.id, server = %server.id, %fault, "server went into error; rolling the replica back");
        // Only a surge replica whose resources the cloud labels as it (see roll_back).
        return match roll_back(ports, r, now).await {
            Ok(()) => Ok(Checked::Done(format!(
                "rolled back {}: its server {} went into error ({fault})",
                r.id, server.id
            ))),
            Err(OpsError::Refused(why)) => Ok(Checked::Refused(Refusal::InErrorNotRolledBack {
                server_id: server.id.clone(),
                fault: fault.into(),
                refusal: Box::new(why),
            })),
            Err(e) => Err(e),
        };
    }
    let endpoint = match (
        &server.endpoint,
        r.address.as_deref().and_then(split_address),
    ) {
        (Some(e), _) => e.clone(),
        (None, Some((host, port))) => Endpoint { host, port },
        (None, None) => return Ok(Checked::NotYet),
    };
    let readiness = postgres::check(ports.pg.as_ref(), &endpoint, &ports.lag).await?;
    if !readiness.is_ready() {
        tracing::info!(replica = %r.id, readiness = %readiness, "not ready yet");
        // Accepting connections means PostgreSQL is up and replaying: catching up.
        let up = readiness
            .check(postgres::Condition::AcceptsConnections)
            .map(|c| c.ok)
            .unwrap_or(false);
        if up && r.phase == Phase::Booting {
            set_phase(ports, &r.id, Phase::CatchingUp, now).await?;
            if let Some(since) = r.since.booting {
                phase_metric("boot", secs_between(since.0, OffsetDateTime::now_utc()));
            }
        }
        return Ok(Checked::NotYet);
    }
    let name = resource_name(&ports.cluster, &r.id);
    let spec = ServerSpec {
        name: name.clone(),
        address: endpoint.host.clone(),
        port: endpoint.port,
        weight: ports.haproxy.weight,
        check: ports.haproxy.check,
        slowstart_ms: ports.haproxy.slowstart_secs * 1000,
    };
    // Caught up: pre-warm its cache (optional, bounded, best effort) before traffic.
    let prewarmed = super::prewarm::prewarm(ports, &r.id, &endpoint).await;
    // What the provider keeps beside a ready replica (OpenStack: its DNS A record), made
    // here and not by a read of the server; before HAProxy sends it traffic.
    failpoint::hit("ready.before_publish");
    ports.cloud.publish_server(&server).await?;
    let started = OffsetDateTime::now_utc();
    let state = ports.state.load().await?.state;
    failpoint::hit("ready.before_register");
    let fan = ports.fanout(&state);
    let result = fan.put_server(&spec, AdminState::Ready).await;
    failpoint::hit("ready.after_register");
    match result {
        // No push node at all (every node is `agent`): the agents register it below.
        Ok(rep) if rep.succeeded() > 0 || rep.nodes.is_empty() => {
            if !rep.all_ok() {
                tracing::warn!(replica = %r.id, failed = ?rep.failed(), "some HAProxy nodes missed the change; reconcile repairs them");
            }
        }
        Ok(rep) => {
            let failed = format!("{:?}", rep.failed());
            return Err(Refusal::NoNodeTook { name, failed }.into());
        }
        Err(e) => {
            let error = e.to_string();
            return Err(Refusal::Register { name, error }.into());
        }
    }
    // Nodes only their agent reaches: ask the agents (the desired set now holds the
    // replica) and record `serving` once every one of them reports it ready.
    if !super::agent_register::on_every_agent(ports, r, &name, now).await? {
        return Ok(Checked::NotYet);
    }
    phase_metric("register", secs_between(started, OffsetDateTime::now_utc()));
    match (r.since.catching_up, r.since.booting) {
        (Some(catching_up), _) => phase_metric("catch-up", secs_between(catching_up.0, started)),
        // Caught up at the first look after booting: the whole wait was the boot (the
        // bootstrap script returns once PostgreSQL accepts connections), catch-up none.
        (None, Some(booting)) => {
            phase_metric("boot", secs_between(booting.0, started));
            phase_metric("catch-up", 0.0);
        }
        (None, None) => {}
    }
    let address = format!("{}:{}", endpoint.host, endpoint.port);
    let id = r.id.clone();
    update_replica(ports, &id, now, |x| {
        if x.phase.is_pending() {
            x.phase = Phase::Serving;
            x.address = Some(address.clone());
            x.since.entered(&Phase::Serving, now);
        }
    })
    .await?;
    Ok(Checked::Done(format!(
        "{name} verified ({readiness}){} and registered in HAProxy",
        prewarmed.map(|p| format!(", {p},")).unwrap_or_default()
    )))
}

async fn set_phase(
    ports: &Ports,
    id: &str,
    phase: Phase,
    now: OffsetDateTime,
) -> Result<(), OpsError> {
    update_replica(ports, id, now, |x| {
        x.since.entered(&phase, now);
        x.phase = phase.clone();
    })
    .await?;
    Ok(())
}
