//! `pgsurge-agent`: see `pgsurge::agent`. This binary builds the agent once from the
//! configuration and runs the library loop until SIGTERM / SIGINT.

use clap::Parser;
use pgsurge::{agent, config::Config, logging};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    version,
    about = "Converge the local HAProxy from the pgsurge cluster state"
)]
struct Args {
    /// Configuration file (TOML). `PGSURGE_<SECTION>__<KEY>` overrides.
    #[arg(long, env = "PGSURGE_CONFIG")]
    config: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    logging::init();
    let args = Args::parse();
    let built = async {
        let config = Config::load(args.config.as_deref()).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(&config.agent.listen)
            .await
            .map_err(|e| format!("agent.listen {}: {e}", config.agent.listen))?;
        let agent = agent::Agent::build(&config)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((agent, listener))
    };
    let (agent, listener) = match built.await {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "pgsurge-agent cannot start");
            return ExitCode::from(2);
        }
    };
    tracing::info!(listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving /metrics and /healthz");
    tokio::spawn(agent::serve(listener, agent.health()));
    agent.run(shutdown()).await;
    ExitCode::SUCCESS
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
