//! `scale-up`: see `pgsurge::handlers::scale_up`. This binary only wires it to a host.

use pgsurge::{handlers, runtime};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    runtime::start("scale-up", |config| {
        runtime::service_fn(move |event| handlers::scale_up(config.clone(), event))
    })
    .await
}
