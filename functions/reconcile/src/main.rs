//! `reconcile`: see `pgsurge::handlers::reconcile`. This binary only wires it to a host.

use pgsurge::{app, handlers, runtime};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    app::main("reconcile", |app| {
        runtime::service_fn(move |event| handlers::reconcile(app.clone(), event))
    })
    .await
}
