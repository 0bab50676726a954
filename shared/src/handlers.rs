//! The body of each function, shared by the thin binaries in `functions/`.
//!
//! Today each handler authenticates and parses its event and says whether it is for
//! this function (`accepted`) or not (`ignored`, still a success so senders such as
//! Alertmanager do not retry). The orchestration (issue "functions end to end") plugs in
//! behind `accepted`; until then the outcome says plainly that nothing was changed.

use crate::config::Config;
use crate::events::{self, AlarmState, Event, InstanceKind, Webhook};
use crate::runtime::{FunctionError, LambdaEvent};
use serde::Serialize;
use std::sync::Arc;

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
    /// What was changed. Empty until orchestration is wired in.
    pub actions: Vec<String>,
}

const NOT_WIRED: &str = "orchestration is not wired in yet; nothing was changed";

pub async fn scale_up(
    config: Arc<Config>,
    ev: LambdaEvent<Webhook>,
) -> Result<Outcome, FunctionError> {
    handle("scale-up", &config, ev, firing_alarms).await
}

pub async fn scale_down(
    config: Arc<Config>,
    ev: LambdaEvent<Webhook>,
) -> Result<Outcome, FunctionError> {
    handle("scale-down", &config, ev, firing_alarms).await
}

pub async fn instance_ready(
    config: Arc<Config>,
    ev: LambdaEvent<Webhook>,
) -> Result<Outcome, FunctionError> {
    handle("instance-ready", &config, ev, |e| match e {
        Event::Instance(i) if matches!(i.kind, InstanceKind::Ready | InstanceKind::Launching) => {
            Ok(format!(
                "instance {} reports ready; it will be verified before registration",
                i.replica_id
                    .as_deref()
                    .or(i.server_id.as_deref())
                    .unwrap_or("?")
            ))
        }
        Event::Tick => Ok("timer tick: check pending replicas".into()),
        other => Err(format!(
            "not a ready/launching instance event or a tick ({})",
            kind_name(other)
        )),
    })
    .await
}

pub async fn instance_deleted(
    config: Arc<Config>,
    ev: LambdaEvent<Webhook>,
) -> Result<Outcome, FunctionError> {
    handle("instance-deleted", &config, ev, |e| match e {
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
        other => Err(format!(
            "not a deleted/terminating instance event ({})",
            kind_name(other)
        )),
    })
    .await
}

pub async fn reconcile(
    config: Arc<Config>,
    ev: LambdaEvent<Webhook>,
) -> Result<Outcome, FunctionError> {
    handle("reconcile", &config, ev, |e| match e {
        Event::Tick => Ok("timer tick: compare state, cloud and every HAProxy node".into()),
        other => Err(format!(
            "reconcile runs on timer ticks ({} is not one)",
            kind_name(other)
        )),
    })
    .await
}

/// Authenticate, parse, and ask `accept` whether the event is for this function.
/// A verified SMN subscription confirmation is answered here, for every function.
async fn handle(
    function: &'static str,
    config: &Config,
    ev: LambdaEvent<Webhook>,
    accept: impl Fn(&Event) -> Result<String, String>,
) -> Result<Outcome, FunctionError> {
    let webhook = ev.payload;
    let receiver = events::Receiver::new(
        &config.auth,
        config.policy.limits(),
        config.runtime.max_body_bytes,
    )?;
    let (event, how) = receiver
        .receive_authenticated(&webhook, time::OffsetDateTime::now_utc())
        .await?;
    let (status, reason) = match &event {
        Event::SubscriptionConfirmation(c) => {
            if receiver.confirm(c, how).await? {
                (
                    Status::Accepted,
                    format!("SMN subscription to {} confirmed", c.topic_urn),
                )
            } else {
                (
                    Status::Ignored,
                    format!(
                        "SMN (un)subscription message for {} not confirmed",
                        c.topic_urn
                    ),
                )
            }
        }
        other => match accept(other) {
            Ok(why) => (Status::Accepted, format!("{why}; {NOT_WIRED}")),
            Err(why) => (Status::Ignored, why),
        },
    };
    tracing::info!(function, request_id = %ev.context.request_id, status = ?status, %reason, "decision");
    Ok(Outcome {
        function,
        status,
        reason,
        event,
        actions: Vec::new(),
    })
}

fn firing_alarms(e: &Event) -> Result<String, String> {
    match e {
        Event::Alarms { alarms } => {
            let firing = alarms
                .iter()
                .filter(|a| a.state == AlarmState::Firing)
                .count();
            if firing == 0 {
                Err(format!("{} alarm(s), none firing", alarms.len()))
            } else {
                Ok(format!("{firing} firing alarm(s) of {}", alarms.len()))
            }
        }
        other => Err(format!("not an alarm ({})", kind_name(other))),
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
