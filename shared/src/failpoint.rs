//! Named failpoints: crash the process at a chosen line, to prove crash safety.
//!
//! Every side effect in the orchestration is bracketed by `failpoint::hit("<op>.before_<x>")`
//! and `"<op>.after_<x>"`. With `PGSURGE_FAILPOINT=<name>` set, reaching that point aborts the
//! process at once — no destructors, no flush, exactly like a killed function. Tests run a
//! function with each name, then run it (or reconcile) again and assert convergence.
//! Without the variable a failpoint is one atomic load.

use std::sync::OnceLock;

/// The environment variable that arms a failpoint.
pub const ENV: &str = "PGSURGE_FAILPOINT";

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.is_empty()))
        .as_deref()
}

/// Abort the process here if `name` is the armed failpoint.
pub fn hit(name: &str) {
    if armed() == Some(name) {
        // Visible in the test's captured stderr; then die like `kill -9` would leave us.
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}
