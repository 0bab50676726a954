//! Failpoints exist only where the tests need them. `PGSURGE_FAILPOINT=<name>` aborts a
//! function at that line, so a package that could be made to abort by its environment
//! must never ship: the failpoints are behind `pgsurge`'s cargo feature `failpoints`.
//!
//! - What `cargo build --release -p <function>` (how a package is built, see
//!   infra/bench/runtime.sh) compiles: cargo's own feature resolution for that command
//!   (`cargo tree -e features`, the same resolver, no compiling) has no `failpoints`.
//! - What the tests run (`cargo build --workspace --bins`, feature unification with the
//!   tests crate's dependency) has them, and the built binaries carry the abort.

use pgsurge_tests::cluster::failpoints_built;
use pgsurge_tests::workspace_root;
use std::process::Command;

const FUNCTIONS: [&str; 5] = [
    "scale-up",
    "scale-down",
    "instance-ready",
    "instance-deleted",
    "reconcile",
];

/// The features cargo resolves for `pgsurge` in a build of `selection` (release profile:
/// features do not depend on the profile, but say what is meant).
fn pgsurge_features(selection: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["tree", "--offline", "--locked"])
        .args(["-e", "features", "-i", "pgsurge"])
        .args(selection)
        .output()
        .expect("cargo tree");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.starts_with("pgsurge v"),
        "cargo tree {selection:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

const ON: &str = "pgsurge feature \"failpoints\"";

#[test]
fn a_release_build_of_each_function_has_no_failpoints() {
    for f in FUNCTIONS.iter().chain(&["pgsurge-cli"]) {
        let tree = pgsurge_features(&["-p", f]);
        assert!(
            !tree.contains(ON),
            "`cargo build --release -p {f}` would have failpoints:\n{tree}"
        );
    }
}

#[test]
fn the_workspace_build_the_tests_run_has_failpoints_in_every_function() {
    let tree = pgsurge_features(&["--workspace"]);
    assert!(tree.contains(ON), "{tree}");
    for f in FUNCTIONS {
        assert!(
            failpoints_built(f),
            "target/debug/{f} has no failpoints: build it with `cargo build --workspace --bins`"
        );
    }
}
