//! External tools the infra checks run (promtool, amtool, prometheus, readelf, ...): a
//! missing tool is a failure naming the Debian package that provides it, never a skip.

use std::path::Path;
use std::process::{Command, Output};

/// Run `tool args...` in `dir` and return its output (whatever the exit status).
/// Panics, naming `package`, when the tool is not installed.
pub fn run(tool: &str, package: &str, args: &[&str], dir: &Path) -> Output {
    Command::new(tool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {tool} ({e}): install the Debian package `{package}` \
                 (infra/local/deps.sh does, as root)"
            )
        })
}

/// stdout + stderr, for assertions and failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
