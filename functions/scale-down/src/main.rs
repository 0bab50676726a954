//! `scale-down`: see `pgsurge::handlers::scale_down`. This binary only wires it to a host.

use pgsurge::{app, handlers, runtime};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    app::main("scale-down", |app| {
        runtime::service_fn(move |event| handlers::scale_down(app.clone(), event))
    })
    .await
}
