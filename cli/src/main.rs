//! `pgsurge` — the command line for people. Thin over the library: each subcommand is
//! one module that parses its arguments and calls `pgsurge::*`.
//!
//! `plan` (dry-run a scaling decision), `status` (state vs cloud vs every HAProxy node),
//! `local seed` (the first replica of a local pool, for the demo), `base add|list` (register
//! an existing replica as a base replica, any provider), `node first-boot` (the replica
//! image's boot step): one module each.

mod base;
mod config_keys;
mod local;
mod node;
mod plan;
mod status;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pgsurge",
    version,
    about = "Elastic PostgreSQL read replicas: the operator's CLI"
)]
struct Cli {
    /// Configuration file (TOML); `PGSURGE_*` environment variables override it.
    #[arg(long, global = true, env = "PGSURGE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dry-run: what would the policy decide for this event against this state, and why?
    Plan(plan::PlanArgs),
    /// The cluster as the state, the cloud and every HAProxy node see it; exit 3 when they disagree.
    Status(status::StatusArgs),
    /// The local provider (one machine): `local seed` puts the first replica in its pool.
    Local(local::LocalArgs),
    /// `config keys`: every configuration key and its PGSURGE_* environment variable.
    Config(config_keys::ConfigArgs),
    /// Base replicas (any provider): `base add` registers an existing replica, `base list`.
    Base(base::BaseArgs),
    /// On a replica server (the image runs it): `node first-boot`.
    Node(node::NodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(args) => plan::run(cli.config.as_deref(), &args),
        Command::Status(args) => status::run(cli.config.as_deref(), &args),
        Command::Local(args) => local::run(cli.config.as_deref(), &args),
        Command::Config(args) => config_keys::run(&args),
        Command::Base(args) => base::run(cli.config.as_deref(), &args),
        Command::Node(args) => node::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgsurge: {e:#}");
            ExitCode::FAILURE
        }
    }
}
