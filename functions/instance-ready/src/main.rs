//! `instance-ready`: see `pgsurge::handlers::instance_ready`. This binary only wires it to a host.

use pgsurge::{handlers, runtime};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    runtime::start("instance-ready", |config| {
        runtime::service_fn(move |event| handlers::instance_ready(config.clone(), event))
    })
    .await
}
