//! `pgsurge base add|list` — base replicas: the long-lived replicas people made, which
//! pgsurge snapshots to clone surge replicas from and never removes.
//!
//! `add` registers an existing replica (server, data volume, address) after checking it
//! in the state, the cloud and its PostgreSQL (`pgsurge::ops::base`); a refusal changes
//! nothing, and adding the same replica twice writes nothing the second time. Works with
//! any provider (on the local one, `pgsurge local seed` makes and registers one in one go).

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use pgsurge::config::Config;
use pgsurge::ops::base::{add_base, base_replicas, Added, BaseReplica};
use serde_json::json;
use std::path::Path;

#[derive(Args)]
pub struct BaseArgs {
    #[command(subcommand)]
    command: BaseCommand,
}

#[derive(Subcommand)]
enum BaseCommand {
    /// Register an existing replica as a base replica, after checking that the server and
    /// volume exist (the volume attached to the server), that any pgsurge labels they carry
    /// say this cluster, `base` and this id, and that PostgreSQL at the address is in
    /// recovery with the primary's system identifier. Prints {"outcome","replica"} as JSON:
    /// outcome "registered", or "already-registered" (nothing written).
    Add(AddArgs),
    /// The base replicas the state records, as JSON lines.
    List,
}

#[derive(Args)]
struct AddArgs {
    /// Replica id (a-z, 0-9, '-'); resource names and HAProxy use it.
    #[arg(long)]
    id: String,
    /// The server's id in the cloud (Nova server id; local: the pool's server id).
    #[arg(long)]
    server: String,
    /// The data volume's id (Cinder volume id; local: the pool's volume id).
    #[arg(long)]
    volume: String,
    /// host:port where its PostgreSQL takes reads (what HAProxy will use).
    #[arg(long)]
    address: String,
    /// Availability zone; default: the volume's, as the cloud reports it.
    #[arg(long)]
    az: Option<String>,
}

pub fn run(config: Option<&Path>, args: &BaseArgs) -> Result<()> {
    let config = Config::load(config).context("configuration")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let ports = pgsurge::app::build(&config, None).await?.ok_or_else(|| {
            anyhow!("`cloud.provider` is \"none\": base replicas live in a cloud; configure one")
        })?;
        match &args.command {
            BaseCommand::Add(a) => {
                let spec = BaseReplica {
                    id: a.id.clone(),
                    server_id: a.server.clone(),
                    volume_id: a.volume.clone(),
                    address: a.address.clone(),
                    az: a.az.clone(),
                };
                let added = add_base(&ports, &spec, time::OffsetDateTime::now_utc())
                    .await
                    .with_context(|| format!("base replica {:?} not added", a.id))?;
                println!("{}", serde_json::to_string(&added)?);
                if let Added::AlreadyRegistered { .. } = added {
                    eprintln!(
                        "pgsurge: {:?} is already registered so; nothing changed",
                        a.id
                    );
                }
            }
            BaseCommand::List => {
                let state = ports.state.load().await.context("state store")?.state;
                for r in base_replicas(&state) {
                    println!(
                        "{}",
                        json!({
                            "id": r.id, "phase": r.phase.as_str(), "server_id": r.server_id,
                            "volume_id": r.volume_id, "address": r.address, "az": r.az,
                        })
                    );
                }
            }
        }
        anyhow::Ok(())
    })
}
