//! `scale-up`: see `pgsurge::handlers::scale_up`. This binary only wires it to a host.

use pgsurge::{app, handlers, runtime};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    app::main("scale-up", |app| {
        runtime::service_fn(move |event| handlers::scale_up(app.clone(), event))
    })
    .await
}
