//! The body of each function, shared by the thin binaries in `functions/`.
//!
//! Each handler authenticates and parses its event and says whether it is for this
//! function (`accepted`) or not (`ignored`, still a success so senders such as
//! Alertmanager do not retry). Accepted events run the orchestration in [`crate::ops`]
//! against the configured cloud; with `cloud.provider = "none"` nothing is changed and
//! the answer says so.

use crate::app::App;
use crate::events::Alarm;
use crate::events::{self, AlarmState, Event, InstanceKind, Webhook};
use crate::ops;
use crate::runtime::{FunctionError, LambdaEvent};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Accepted,
    Ignored,
}

/// What a function answers.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub function: &'static str,
    pub status: Status,
    pub reason: String,
    pub event: Event,
    /// What was changed, one line each.
    pub actions: Vec<String>,
    /// What is left for a later run (a replica still catching up, a node to repair).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// The scaling decision and its reason, when one was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<crate::policy::Decision>,
    /// Reconcile: when the next run has something to do (see [`ops::requeue`]); absent
    /// when nothing waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requeue_after_secs: Option<u64>,
}

const NO_CLOUD: &str = "no cloud configured (cloud.provider = \"none\"); nothing was changed";

/// The orchestration step an accepted event runs: what it did, left, and (reconcile)
/// when it wants to run again; the other flows' reports convert with no requeue.
type Act = for<'a> fn(
    &'a ops::Ports,
    &'a Event,
    &'a LambdaEvent<()>,
) -> BoxFuture<'a, Result<ops::ReconcileOutcome, ops::OpsError>>;

/// The alarms a function acts on: the firing ones, and — for scale-up, when
/// `policy.scale_down_on_resolved` is set — the resolved ones too (Alertmanager and Cloud
/// Eye send an alarm's "resolved" to the same receiver as its "firing": the scale-up
/// function). The policy turns such a resolved scale-up alarm into a scale-down.
fn alarms(e: &Event, with_resolved: bool) -> Vec<Alarm> {
    match e {
        Event::Alarms { alarms } => alarms
            .iter()
            .filter(|a| a.state == AlarmState::Firing || with_resolved)
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// How long instance-ready may keep polling: the configured wait, within the deadline.
fn ready_wait(p: &ops::Ports, ctx: &LambdaEvent<()>) -> Duration {
    let margin = Duration::from_secs(5);
    Duration::from_secs(p.ops.ready_wait_secs).min(ctx.context.remaining().saturating_sub(margin))
}

pub async fn scale_up(app: Arc<App>, ev: LambdaEvent<Webhook>) -> Result<Outcome, FunctionError> {
    let on_resolved = app.config.policy.scale_down_on_resolved;
    handle(
        "scale-up",
        &app,
        ev,
        move |e| acted_on(e, on_resolved),
        |p, e, _| {
            async move {
                let alarms = alarms(e, p.policy.scale_down_on_resolved);
                ops::scale_up(p, &alarms, now()).await.map(Into::into)
            }
            .boxed()
        },
    )
    .await
}

pub async fn scale_down(app: Arc<App>, ev: LambdaEvent<Webhook>) -> Result<Outcome, FunctionError> {
    handle(
        "scale-down",
        &app,
        ev,
        |e| acted_on(e, false),
        |p, e, _| {
            async move {
                ops::scale_down(p, &alarms(e, false), now())
                    .await
                    .map(Into::into)
            }
            .boxed()
        },
    )
    .await
}

pub async fn instance_ready(
    app: Arc<App>,
    ev: LambdaEvent<Webhook>,
) -> Result<Outcome, FunctionError> {
    handle(
        "instance-ready",
        &app,
        ev,
        |e| match e {
            Event::Instance(i)
                if matches!(i.kind, InstanceKind::Ready | InstanceKind::Launching) =>
            {
                Ok(format!(
                    "instance {} reports ready; it will be verified before registration",
                    i.replica_id
                        .as_deref()
                        .or(i.server_id.as_deref())
                        .unwrap_or("?")
                ))
            }
            Event::Tick => Ok("timer tick: check pending replicas".into()),
            other => Err(NotForUs::Kind {
                wants: "a ready/launching instance event or a tick",
                got: kind_name(other),
            }),
        },
        |p, _, ctx| {
            async move {
                ops::check_pending(p, now(), ready_wait(p, ctx))
                    .await
                    .map(Into::into)
            }
            .boxed()
        },
    )
    .await
}

pub async fn instance_deleted(
    app: Arc<App>,
    ev: LambdaEvent<Webhook>,
) -> Result<Outcome, FunctionError> {
    handle(
        "instance-deleted",
        &app,
        ev,
        |e| match e {
            Event::Instance(i)
                if matches!(i.kind, InstanceKind::Deleted | InstanceKind::Terminating) =>
            {
                Ok(format!(
                    "instance {} is gone or going",
                    i.replica_id
                        .as_deref()
                        .or(i.server_id.as_deref())
                        .unwrap_or("?")
                ))
            }
            other => Err(NotForUs::Kind {
                wants: "a deleted/terminating instance event",
                got: kind_name(other),
            }),
        },
        |p, e, _| {
            async move {
                match e {
                    Event::Instance(i) => ops::instance_deleted(p, i, now()).await.map(Into::into),
                    _ => Ok(ops::ReconcileOutcome::default()),
                }
            }
            .boxed()
        },
    )
    .await
}

pub async fn reconcile(app: Arc<App>, ev: LambdaEvent<Webhook>) -> Result<Outcome, FunctionError> {
    handle(
        "reconcile",
        &app,
        ev,
        |e| match e {
            Event::Tick => Ok("timer tick: compare state, cloud and every HAProxy node".into()),
            other => Err(NotForUs::NotATick {
                got: kind_name(other),
            }),
        },
        |p, _, _| async move { ops::reconcile(p, now()).await }.boxed(),
    )
    .await
}

/// Authenticate, parse, and ask `accept` whether the event is for this function.
/// A verified SMN subscription confirmation is answered here, for every function.
async fn handle(
    function: &'static str,
    app: &App,
    ev: LambdaEvent<Webhook>,
    accept: impl Fn(&Event) -> Result<String, NotForUs>,
    act: Act,
) -> Result<Outcome, FunctionError> {
    let webhook = ev.payload;
    let ctx = LambdaEvent::new((), ev.context);
    let receiver = app.receiver();
    let (event, how) = receiver
        .receive_authenticated(&webhook, time::OffsetDateTime::now_utc())
        .await?;
    // Cluster scoping, before `accept`: every function sees only this cluster's alarms.
    let events::Scoped {
        event,
        in_scope,
        ignored,
    } = events::ClusterScope::new(&app.config.cluster).apply(event);
    let (status, reason) = match &event {
        _ if !in_scope => (Status::Ignored, ignored.join("; ")),
        Event::SubscriptionConfirmation(c) => match receiver.confirm(c, how).await? {
            events::Confirmation::Confirmed => (
                Status::Accepted,
                format!("SMN subscription to {} confirmed", c.topic_urn),
            ),
            events::Confirmation::NotConfirmed(why) => (
                Status::Ignored,
                format!(
                    "SMN (un)subscription message for {} not confirmed: {why}",
                    c.topic_urn
                ),
            ),
        },
        other => match accept(other) {
            Ok(why) if ignored.is_empty() => (Status::Accepted, why),
            Ok(why) => (
                Status::Accepted,
                format!("{why}; left out: {}", ignored.join("; ")),
            ),
            Err(why) => (Status::Ignored, why.to_string()),
        },
    };
    let mut done = ops::ReconcileOutcome::default();
    let mut reason = reason;
    if status == Status::Accepted && !matches!(event, Event::SubscriptionConfirmation(_)) {
        match app.ports(ctx.context.credentials.as_ref()).await? {
            None => reason = format!("{reason}; {NO_CLOUD}"),
            Some(ports) => done = act(&ports, &event, &ctx).await?,
        }
    }
    let requeue_after_secs = done.requeue_after.map(|d| d.as_secs());
    let report = done.report;
    tracing::info!(
        function,
        request_id = %ctx.context.request_id,
        status = ?status,
        %reason,
        pending = report.pending.len(),
        requeue_after_secs,
        "decision"
    );
    Ok(Outcome {
        function,
        status,
        reason,
        event,
        actions: report.actions,
        pending: report.pending,
        decision: report.decision,
        requeue_after_secs,
    })
}

/// Why an event is not for this function: answered `ignored` with this reason (a
/// success, so that senders such as Alertmanager do not retry it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum NotForUs {
    #[error("not {wants} ({got})")]
    Kind {
        wants: &'static str,
        got: &'static str,
    },
    #[error("reconcile runs on timer ticks ({got} is not one)")]
    NotATick { got: &'static str },
    #[error("{alarms} alarm(s), none firing")]
    NoneFiring { alarms: usize },
}

/// Accept an alarm notification when it holds an alarm this function acts on.
fn acted_on(e: &Event, with_resolved: bool) -> Result<String, NotForUs> {
    match e {
        Event::Alarms { alarms } => {
            let firing = alarms
                .iter()
                .filter(|a| a.state == AlarmState::Firing)
                .count();
            let resolved = alarms.len() - firing;
            if firing > 0 && (resolved == 0 || !with_resolved) {
                Ok(format!("{firing} firing alarm(s) of {}", alarms.len()))
            } else if with_resolved && resolved > 0 {
                Ok(format!(
                    "{firing} firing and {resolved} resolved alarm(s) \
                     (policy.scale_down_on_resolved = true)"
                ))
            } else {
                Err(NotForUs::NoneFiring {
                    alarms: alarms.len(),
                })
            }
        }
        other => Err(NotForUs::Kind {
            wants: "an alarm",
            got: kind_name(other),
        }),
    }
}

fn kind_name(e: &Event) -> &'static str {
    match e {
        Event::Alarms { .. } => "alarms",
        Event::Instance(_) => "instance event",
        Event::SubscriptionConfirmation(_) => "SMN subscription confirmation",
        Event::Tick => "tick",
    }
}
