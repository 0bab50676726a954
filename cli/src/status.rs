//! `pgsurge status [--json]`: the cluster as the state, the cloud and every HAProxy node
//! see it, one line per replica, then every disagreement in plain words.
//!
//! Read-only (see `pgsurge::ops::status`): safe to run at any time, beside the functions.

use anyhow::{anyhow, Context, Result};
use clap::Args;
use pgsurge::config::Config;
use pgsurge::model::{OpKind, Operation, Phase};
use pgsurge::ops::status::{self, ReplicaRow, StatusReport};
use std::io::Write;
use std::path::Path;

/// Exit code when the sources disagree (0: they agree; 1: status could not be read).
pub const DISAGREE: i32 = 3;

#[derive(Args)]
#[command(
    after_help = "Exit status: 0 when state, cloud and every HAProxy node agree; \
    3 when there is any disagreement (an unreachable node, a replica reconcile \
    refuses to move on every run, an operation past its deadline, and a missing state \
    document beside labelled resources count); \
    1 on error (bad configuration, state or cloud unreadable)."
)]
pub struct StatusArgs {
    /// Print the typed report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(config: Option<&Path>, args: &StatusArgs) -> Result<()> {
    let config = Config::load(config).context("configuration")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (report, cloud, agents) = rt.block_on(async {
        let ports = pgsurge::app::build(&config, None).await?.ok_or_else(|| {
            anyhow!(
                "`cloud.provider` is \"none\": status compares the state with a cloud; \
                 configure one (\"local\" or \"openstack\")"
            )
        })?;
        let report = status::gather(&ports, time::OffsetDateTime::now_utc()).await?;
        let agents = agent_views(&config, &ports.state).await;
        anyhow::Ok((report, ports.cloud.kind(), agents))
    })?;
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(out))
    } else {
        print(&mut out, &report, cloud).and_then(|_| print_agents(&mut out, &report, &agents))
    };
    match written {
        // `pgsurge status | head` is fine.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.context("writing the status")?,
    }
    out.flush().ok();
    if !report.agrees() {
        // A distinct code so scripts and monitors can tell "disagree" from "failed";
        // main's Result only knows success and failure.
        std::process::exit(DISAGREE);
    }
    Ok(())
}

/// Each `agent` / `both` node's last report (`<cluster>/agents/<node>.json`), or why
/// there is none.
async fn agent_views(
    config: &Config,
    state: &pgsurge::state::StateRepo,
) -> Vec<(
    String,
    Result<Option<pgsurge::agent::status::NodeStatus>, String>,
)> {
    let mut out = Vec::new();
    for n in config.haproxy.nodes.iter().filter(|n| n.mode.has_agent()) {
        let got = pgsurge::agent::status::read(state.store().as_ref(), state.cluster(), &n.name)
            .await
            .map_err(|e| e.to_string());
        out.push((n.name.clone(), got));
    }
    out
}

/// One line per agent: the revision it follows against the state's, how long since it
/// last converged its node (the lag), and its last error.
fn print_agents(
    out: &mut impl Write,
    r: &StatusReport,
    agents: &[(
        String,
        Result<Option<pgsurge::agent::status::NodeStatus>, String>,
    )],
) -> std::io::Result<()> {
    if agents.is_empty() {
        return Ok(());
    }
    let now = time::OffsetDateTime::now_utc();
    writeln!(out, "\nAgents:")?;
    for (node, got) in agents {
        match got {
            Err(e) => writeln!(out, "  {node}: status unreadable: {e}")?,
            Ok(None) => writeln!(out, "  {node}: no report yet (is pgsurge-agent running?)")?,
            Ok(Some(s)) => {
                let rev = s
                    .revision
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into());
                let behind = s
                    .revision
                    .map(|v| r.revision.saturating_sub(v))
                    .unwrap_or(r.revision);
                let lag = s
                    .lag_secs(now)
                    .map(|l| format!("{l}s ago"))
                    .unwrap_or_else(|| "never".into());
                write!(
                    out,
                    "  {node}: revision {rev} ({behind} behind), last converged {lag}, reported {}s ago, {} server(s), {} reload(s) restored",
                    (now - s.reported_at).whole_seconds().max(0),
                    s.servers.len(),
                    s.reloads
                )?;
                match &s.error {
                    Some(e) => writeln!(out, "; last error: {e}")?,
                    None => writeln!(out)?,
                }
            }
        }
    }
    Ok(())
}

/// Where operation `o` stands, from its replicas' rows. A scale-up stays in the state for
/// as long as its replicas live (a retried alarm must find it), so a listed one is not
/// necessarily working: say which.
fn progress(o: &Operation, rows: &[ReplicaRow]) -> String {
    let serving = o
        .replicas
        .iter()
        .filter_map(|id| rows.iter().find(|row| row.id == *id))
        .filter(|row| row.phase.as_deref() == Some(Phase::Serving.as_str()))
        .count() as u32;
    match o.kind {
        OpKind::ScaleUp if o.count > 0 && serving >= o.count => {
            "done, all serving (kept while its replicas live)".into()
        }
        OpKind::ScaleUp => format!("in flight, {serving} of {} serving", o.count),
        _ => "in flight".into(),
    }
}

fn print(out: &mut impl Write, r: &StatusReport, cloud: &str) -> std::io::Result<()> {
    writeln!(
        out,
        "Cluster {} (state revision {}, {cloud} cloud, {} HAProxy node(s))\n",
        r.cluster,
        r.revision,
        r.nodes.len()
    )?;
    let mut table: Vec<Vec<String>> =
        vec![["REPLICA", "ROLE", "PHASE", "SERVER", "VOLUME", "ADDRESS"]
            .iter()
            .map(|s| s.to_string())
            .chain(r.nodes.iter().cloned())
            .collect()];
    for row in &r.replicas {
        let dash = || "-".to_string();
        let mut line = vec![
            row.id.clone(),
            row.role.clone().unwrap_or_else(|| "(unknown)".into()),
            row.phase.clone().unwrap_or_else(dash),
            row.server.label(),
            row.volume.label(),
            row.address.clone().unwrap_or_else(dash),
        ];
        for n in &r.nodes {
            line.push(row.haproxy.get(n).map(|c| c.label()).unwrap_or_else(dash));
        }
        table.push(line);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|i| table.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    for line in &table {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", cells.join("  ").trim_end())?;
    }
    writeln!(out)?;
    if r.agrees() {
        writeln!(
            out,
            "State, cloud and all {} HAProxy nodes agree.",
            r.nodes.len()
        )?;
    } else {
        writeln!(out, "Disagreements:")?;
        for d in &r.disagreements {
            writeln!(out, "  {d}")?;
        }
    }
    writeln!(out)?;
    if r.operations.is_empty() {
        writeln!(out, "Operations: none")?;
    } else {
        writeln!(out, "Operations:")?;
        for o in &r.operations {
            let started = o
                .started_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            write!(
                out,
                "  {} {}: {} replica(s) [{}], started {started}",
                o.kind.as_str(),
                o.id,
                o.count,
                o.replicas.join(", ")
            )?;
            if let Some(a) = &o.alarm_id {
                write!(out, ", alarm {a}")?;
            }
            writeln!(out, ": {}", progress(o, &r.replicas))?;
        }
    }
    if r.leases.is_empty() {
        writeln!(out, "Leases: none held")?;
    } else {
        writeln!(out, "Leases:")?;
        for l in &r.leases {
            let until = l
                .until
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let void = if l.expired { " (expired)" } else { "" };
            writeln!(
                out,
                "  {}: held by {} until {until}{void}",
                l.kind, l.holder
            )?;
        }
    }
    if r.snapshots.is_empty() {
        writeln!(out, "Snapshots: none")?;
    } else {
        writeln!(out, "Snapshots:")?;
        for s in &r.snapshots {
            writeln!(
                out,
                "  {} {}: state {}, cloud {}",
                s.id,
                s.name.as_deref().unwrap_or("-"),
                if s.in_state { "yes" } else { "no" },
                s.cloud.label()
            )?;
        }
    }
    for (node, names) in &r.unmanaged {
        writeln!(
            out,
            "Static servers on {node} (not managed by pgsurge): {}",
            names.join(", ")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgsurge::ops::status::CloudCell;

    fn row(id: &str, phase: &str) -> ReplicaRow {
        ReplicaRow {
            id: id.into(),
            role: Some("surge".into()),
            phase: Some(phase.into()),
            server: CloudCell::None,
            volume: CloudCell::None,
            address: None,
            haproxy: Default::default(),
            disagreements: Vec::new(),
        }
    }

    fn op(kind: OpKind, count: u32, replicas: &[&str]) -> Operation {
        Operation {
            id: "op".into(),
            kind,
            count,
            replicas: replicas.iter().map(|r| r.to_string()).collect(),
            started_at: time::OffsetDateTime::UNIX_EPOCH,
            alarm_id: None,
            extra: Default::default(),
        }
    }

    #[test]
    fn a_scale_up_whose_replicas_all_serve_reads_done_not_in_flight() {
        let rows = [row("a", "serving"), row("b", "booting")];
        let up = op(OpKind::ScaleUp, 2, &["a", "b"]);
        assert_eq!(progress(&up, &rows), "in flight, 1 of 2 serving");
        let rows = [row("a", "serving"), row("b", "serving")];
        assert!(progress(&up, &rows).starts_with("done, all serving"));
        // Decided, nothing recorded yet.
        assert_eq!(
            progress(&op(OpKind::ScaleUp, 2, &[]), &rows),
            "in flight, 0 of 2 serving"
        );
        assert_eq!(
            progress(&op(OpKind::ScaleDown, 1, &["a"]), &rows),
            "in flight"
        );
    }
}
