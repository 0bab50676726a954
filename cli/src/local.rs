//! `pgsurge local seed` — put the first ("seed") replica into the local provider's pool.
//!
//! Snapshots are always taken of a replica pgsurge knows, so a fresh local setup needs
//! one before the first alarm: a pool volume filled by `pg_basebackup` from the primary,
//! a server started on it through the provider (the same bootstrap script every replica
//! boots with), and a `base` replica in the state document, which pgsurge never removes.
//! This is what an operator does once by hand on a cloud; the demo does it here.
//!
//! Refuses when the state already knows a replica of that id, so it never makes a second
//! seed. On a failure after the volume was made, the volume (and server) are deleted
//! again: no partial state is left in the pool.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use pgsurge::cloud::local::LocalCloud;
use pgsurge::cloud::CloudProvider;
use pgsurge::cloud::{Cloud, Metadata, META_CLUSTER, META_REPLICA, META_ROLE};
use pgsurge::config::Config;
use pgsurge::model::resource_name;
use pgsurge::model::{Phase, Replica, Role};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Args)]
pub struct LocalArgs {
    #[command(subcommand)]
    command: LocalCommand,
}

#[derive(Subcommand)]
enum LocalCommand {
    /// Make the seed replica: pool volume + pg_basebackup + server, recorded as `base`.
    /// Prints {"replica","server_id","volume_id","address","port"} as JSON.
    Seed(SeedArgs),
}

#[derive(Args)]
struct SeedArgs {
    /// Replica id (resource name `pgsurge-<cluster>-<id>`).
    #[arg(long, default_value = "seed")]
    id: String,
}

pub fn run(config: Option<&Path>, args: &LocalArgs) -> Result<()> {
    let config = Config::load(config).context("configuration")?;
    match &args.command {
        LocalCommand::Seed(a) => seed(&config, a),
    }
}

fn seed(config: &Config, args: &SeedArgs) -> Result<()> {
    if config.cloud.provider != CloudProvider::Local {
        bail!("`cloud.provider` must be \"local\" to seed the local pool");
    }
    let cluster = config.cluster.name.as_str();
    let cloud = LocalCloud::new(&config.local, &config.postgres).context("local provider")?;
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    rt.block_on(async {
        let repo = pgsurge::state::open(&config.state, cluster, None)
            .await
            .context("state store")?;
        let current = repo.load().await.context("state store")?.state;
        if current.replicas.iter().any(|r| r.id == args.id) {
            bail!(
                "the state of cluster {cluster:?} already has a replica {:?}; nothing done",
                args.id
            );
        }
        let name = resource_name(cluster, &args.id);
        let meta: Metadata = [
            (META_CLUSTER.to_string(), cluster.to_string()),
            (META_ROLE.to_string(), "base".to_string()),
            (META_REPLICA.to_string(), args.id.clone()),
        ]
        .into();
        let (vol, srv) = cloud
            .create_seed(&name, &meta)
            .await
            .context("seed replica")?;
        let Some(endpoint) = srv.endpoint.clone() else {
            let _ = cloud.delete_server(&srv.id).await;
            let _ = cloud.delete_volume(&vol.id).await;
            bail!("the local provider gave the seed server no endpoint");
        };
        let replica = Replica {
            id: args.id.clone(),
            role: Role::Base,
            phase: Phase::Serving,
            server_id: Some(srv.id.clone()),
            volume_id: Some(vol.id.clone()),
            az: None,
            address: Some(format!("{}:{}", endpoint.host, endpoint.port)),
            created_at: time::OffsetDateTime::now_utc(),
            op_id: None,
            since: Default::default(),
            extra: BTreeMap::new(),
        };
        let id = args.id.clone();
        let recorded = repo
            .update(time::OffsetDateTime::now_utc(), |s| {
                if s.replicas.iter().any(|r| r.id == id) {
                    return Err(format!("a replica {id:?} appeared in the state meanwhile"));
                }
                s.replicas.push(replica.clone());
                Ok(())
            })
            .await;
        if let Err(e) = recorded {
            let _ = cloud.delete_server(&srv.id).await;
            let _ = cloud.delete_volume(&vol.id).await;
            bail!("recording the seed in the state: {e}");
        }
        let endpoint = srv.endpoint.clone().expect("checked above");
        println!(
            "{}",
            json!({
                "replica": args.id,
                "server_id": srv.id,
                "volume_id": vol.id,
                "address": format!("{}:{}", endpoint.host, endpoint.port),
                "port": endpoint.port,
            })
        );
        Ok(())
    })
}
