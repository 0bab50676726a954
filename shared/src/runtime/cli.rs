//! CLI host: `<bin> invoke --event FILE` prints the handler's JSON result on stdout.
//!
//! Exit codes: 0 success, 1 handler error, 2 the event could not be read. The error
//! is printed as the same `{"errorType", "errorMessage"}` JSON the other hosts return.

use super::body::read_limited;
use super::{invoke, Context, Handler, Host, Limits};
use serde::de::DeserializeOwned;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

pub(super) async fn run<T, H>(
    handler: &H,
    function: &str,
    event: &Path,
    timeout_secs: u64,
    limits: Limits,
) -> ExitCode
where
    T: DeserializeOwned,
    H: Handler<T>,
{
    let body = match read_event(event, limits.max_body_bytes) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{function}: cannot read event {}: {e}", event.display());
            return ExitCode::from(2);
        }
    };
    let ctx = Context::new(
        uuid::Uuid::new_v4().to_string(),
        function,
        Host::Cli,
        Duration::from_secs(timeout_secs),
    );
    let (json, code) = match invoke(handler, ctx, &body, &limits).await {
        Ok(v) => (v, ExitCode::SUCCESS),
        Err(e) => (e.to_json(), ExitCode::from(1)),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&json).unwrap_or_default()
    );
    code
}

/// At most `max + 1` bytes of the event: a larger one is refused by [`invoke`]'s measure
/// without being read whole.
fn read_event(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    if path == Path::new("-") {
        read_limited(std::io::stdin().lock(), max)
    } else {
        read_limited(std::fs::File::open(path)?, max)
    }
}
