//! `pgsurge node first-boot` and `node network` — run by the replica image at boot (see
//! `pgsurge::node::first_boot`). Needs no configuration file: everything comes from the
//! cloud (config drive / metadata service) and the image.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Turn this server's data disk into a standby and call instance-ready back.
    FirstBoot,
    /// Static addresses from the config drive's network_data.json (before networkd starts).
    Network,
}

pub fn run(args: &NodeArgs) -> Result<()> {
    match args.command {
        NodeCommand::FirstBoot => {
            let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
            rt.block_on(pgsurge::node::first_boot::run(
                &pgsurge::node::first_boot::Layout::default(),
            ))
            .context("first boot failed")
        }
        NodeCommand::Network => {
            let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
            rt.block_on(pgsurge::node::first_boot::configure_network(
                &pgsurge::node::first_boot::Layout::default(),
            ))
            .map(|_| ())
            .context("network configuration from the config drive failed")
        }
    }
}
