//! `scale-down`: see `pgsurge::handlers::scale_down`. This binary only wires it to a host.

use pgsurge::{handlers, runtime};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    runtime::start("scale-down", |config| {
        runtime::service_fn(move |event| handlers::scale_down(config.clone(), event))
    })
    .await
}
