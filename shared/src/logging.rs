//! Logging: `tracing` to stderr, JSON lines when stderr is not a terminal.
//!
//! stdout is reserved for results (the CLI host prints the handler's JSON there), so
//! logs always go to stderr. `RUST_LOG` overrides the default `info` level.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber once. Safe to call twice (the second call is a no-op).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if std::io::stderr().is_terminal() {
        builder.compact().try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    };
    // Already installed (tests call this repeatedly): keep the first one.
    drop(result);
}
