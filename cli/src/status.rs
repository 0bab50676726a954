//! `pgsurge status [--json]`: the cluster as the state, the cloud and every HAProxy node
//! see it, one line per replica, then every disagreement in plain words.
//!
//! Read-only (see `pgsurge::ops::status`): safe to run at any time, beside the functions.

use anyhow::{anyhow, Context, Result};
use clap::Args;
use pgsurge::config::Config;
use pgsurge::ops::status::{self, StatusReport};
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
    let (report, cloud) = rt.block_on(async {
        let ports = pgsurge::app::build(&config, None).await?.ok_or_else(|| {
            anyhow!(
                "`cloud.provider` is \"none\": status compares the state with a cloud; \
                 configure one (\"local\" or \"openstack\")"
            )
        })?;
        let report = status::gather(&ports, time::OffsetDateTime::now_utc()).await?;
        anyhow::Ok((report, ports.cloud.kind()))
    })?;
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(out))
    } else {
        print(&mut out, &report, cloud)
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
        writeln!(out, "Operations: none in flight")?;
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
            match &o.alarm_id {
                Some(a) => writeln!(out, ", alarm {a}")?,
                None => writeln!(out)?,
            }
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
