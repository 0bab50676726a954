//! `reconcile`: see `pgsurge::handlers::reconcile`. This binary only wires it to a host.

use pgsurge::{handlers, runtime};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    runtime::start("reconcile", |config| {
        runtime::service_fn(move |event| handlers::reconcile(config.clone(), event))
    })
    .await
}
