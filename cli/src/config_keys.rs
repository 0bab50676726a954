//! `pgsurge config keys`: every configuration key and the environment variable that sets
//! it, from the configuration types (`pgsurge::config_keys`). Deployments use it to check
//! the variables they set (tests/tests/terraform.rs does, for infra/terraform).

use clap::{Args, Subcommand};

#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print `<toml.path>\t<PGSURGE_ENV_NAME>` for every key, sorted.
    Keys,
}

pub fn run(args: &ConfigArgs) -> anyhow::Result<()> {
    match args.command {
        ConfigCommand::Keys => {
            for k in pgsurge::config_keys::config_keys() {
                println!("{}\t{}", k.path, k.env);
            }
            Ok(())
        }
    }
}
