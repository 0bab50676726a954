//! `instance-deleted`: see `pgsurge::handlers::instance_deleted`. This binary only wires it to a host.

use pgsurge::{app, handlers, runtime};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    app::main("instance-deleted", |app| {
        runtime::service_fn(move |event| handlers::instance_deleted(app.clone(), event))
    })
    .await
}
