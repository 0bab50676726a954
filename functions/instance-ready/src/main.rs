//! `instance-ready`: see `pgsurge::handlers::instance_ready`. This binary only wires it to a host.

use pgsurge::{app, handlers, runtime};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    app::main("instance-ready", |app| {
        runtime::service_fn(move |event| handlers::instance_ready(app.clone(), event))
    })
    .await
}
