//! `instance-deleted`: see `pgsurge::handlers::instance_deleted`. This binary only wires it to a host.

use pgsurge::{handlers, runtime};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    runtime::start("instance-deleted", |config| {
        runtime::service_fn(move |event| handlers::instance_deleted(config.clone(), event))
    })
    .await
}
