//! `pgsurge plan --event FILE --state FILE [--now RFC3339] [--function scale-up|scale-down]`
//!
//! Parses the event exactly as a function would (any supported webhook format, bare or
//! in an API-gateway envelope; no authentication — the operator is at the keyboard),
//! validates alarm parameters against `[policy]`, and runs the pure policy against the
//! state document. Alarms in one event (Alertmanager groups) are decided in order, each
//! on the state as the previous decision left it — as the functions would. Nothing is
//! written anywhere.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use pgsurge::config::Config;
use pgsurge::events::{self, Direction, Event, Webhook};
use pgsurge::model::ClusterState;
use pgsurge::policy::{self, Action, Decision, Trigger};
use serde::Serialize;
use std::path::{Path, PathBuf};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Args)]
pub struct PlanArgs {
    /// The event: a webhook body or an API-gateway envelope (JSON).
    #[arg(long)]
    event: PathBuf,
    /// The cluster state document (JSON, as the state store holds it).
    #[arg(long)]
    state: PathBuf,
    /// Decide as of this time (RFC 3339); default: now.
    #[arg(long)]
    now: Option<String>,
    /// Which function receives the event: sets the direction of a firing alarm.
    #[arg(long, value_enum, default_value_t = Function::ScaleUp)]
    function: Function,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Function {
    ScaleUp,
    ScaleDown,
}

/// One decided input.
#[derive(Serialize)]
struct Planned {
    input: String,
    #[serde(flatten)]
    decision: Decision,
}

pub fn run(config: Option<&Path>, args: &PlanArgs) -> Result<()> {
    let config = Config::load(config).context("configuration")?;
    let now = match &args.now {
        Some(t) => OffsetDateTime::parse(t, &Rfc3339)
            .with_context(|| format!("--now {t:?} is not an RFC 3339 time"))?,
        None => OffsetDateTime::now_utc(),
    };
    let event_text = std::fs::read_to_string(&args.event)
        .with_context(|| format!("reading {}", args.event.display()))?;
    let webhook: Webhook = serde_json::from_str(&event_text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}",
            args.event.display(),
            events::EventError::NotJson(e.to_string())
        )
    })?;
    // Parsed once, above: the event is the webhook's document (or its envelope's body).
    let event = webhook
        .json()
        .and_then(events::parse_value)
        .with_context(|| args.event.display().to_string())?;
    let state_text =
        std::fs::read(&args.state).with_context(|| format!("reading {}", args.state.display()))?;
    let mut state = ClusterState::from_slice(&args.state.display().to_string(), &state_text)?;
    if state.cluster != config.cluster.name {
        eprintln!(
            "pgsurge: note: the state is for cluster {:?}, the configuration names {:?}",
            state.cluster, config.cluster.name
        );
    }
    let intent = match args.function {
        Function::ScaleUp => Direction::ScaleUp,
        Function::ScaleDown => Direction::ScaleDown,
    };
    let mut planned = Vec::new();
    match &event {
        Event::Alarms { alarms } => {
            let limits = config.policy.limits();
            for a in alarms {
                events::validate_params(a, &limits)?;
            }
            for (i, a) in alarms.iter().enumerate() {
                let d = policy::decide(
                    &state,
                    Trigger::Alarm { alarm: a, intent },
                    now,
                    &config.policy,
                );
                policy::record(&mut state, &d, now, &format!("plan-{i}"));
                planned.push(Planned {
                    input: format!("alarm {:?} ({})", a.name, a.id),
                    decision: d,
                });
            }
        }
        Event::Tick => {
            let d = policy::decide(&state, Trigger::Tick, now, &config.policy);
            planned.push(Planned {
                input: "tick".into(),
                decision: d,
            });
        }
        Event::Instance(i) => bail!(
            "{}: an instance event ({:?}) is not a scaling decision; plan takes alarms and ticks",
            args.event.display(),
            i.kind
        ),
        Event::SubscriptionConfirmation(_) => bail!(
            "{}: an SMN subscription handshake is not a scaling decision",
            args.event.display()
        ),
    }
    let mut out = std::io::stdout().lock();
    let written = print(&mut out, &planned, args.json);
    match written {
        // `pgsurge plan ... | head` is fine.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing the plan"),
    }
}

fn print(out: &mut impl std::io::Write, planned: &[Planned], json: bool) -> std::io::Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(planned)?)?;
    } else {
        for p in planned {
            let what = match &p.decision.action {
                Action::ScaleUp { add, flavor, az } => {
                    let mut s = format!("scale up: add {add}");
                    if let Some(f) = flavor {
                        s.push_str(&format!(" (flavor {f})"));
                    }
                    if let Some(z) = az {
                        s.push_str(&format!(" (az {z})"));
                    }
                    s
                }
                Action::ScaleDown { remove } => format!("scale down: remove {}", remove.join(", ")),
                Action::Nothing => "nothing".to_string(),
            };
            writeln!(out, "{}: {what}\n  reason: {}", p.input, p.decision.reason)?;
        }
    }
    Ok(())
}
