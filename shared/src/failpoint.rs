//! Named failpoints: crash the process at a chosen line, to prove crash safety.
//!
//! Every side effect in the orchestration is bracketed by `failpoint::hit("<op>.before_<x>")`
//! and `"<op>.after_<x>"`. With `PGSURGE_FAILPOINT=<name>` set, reaching that point aborts the
//! process at once — no destructors, no flush, exactly like a killed function. Tests run a
//! function with each name, then run it (or reconcile) again and assert convergence.
//! Without the variable a failpoint is one atomic load.
//!
//! A side effect directly followed by the next one shares the point between them: the
//! `after_` of the first would be the `before_` of the second with nothing in between
//! (`scale_down.before_delete_server` is also "after `mark_deleting`").
//!
//! Only with the cargo feature `failpoints` (the tests crate turns it on, so a workspace
//! build has it): without it `hit` is empty and the variable is ignored, so no release
//! build (`cargo build --release -p <function>`) can be made to abort by its environment.

/// The environment variable that arms a failpoint (with the `failpoints` feature).
pub const ENV: &str = "PGSURGE_FAILPOINT";

#[cfg(feature = "failpoints")]
fn armed() -> Option<&'static str> {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.is_empty()))
        .as_deref()
}

/// Abort the process here if `name` is the armed failpoint.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    if armed() == Some(name) {
        // Visible in the test's captured stderr; then die like `kill -9` would leave us.
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

/// Without the `failpoints` feature: nothing, whatever the environment says.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// Every failpoint in the orchestration, in the order an operation meets them. The crash
/// test iterates over this list; a unit test below keeps it equal to the `hit` calls in
/// the source, so a new side effect cannot slip out of the crash test.
pub const ALL: &[&str] = &[
    "scale_up.after_decision",
    "scale_up.before_snapshot",
    "scale_up.after_snapshot",
    "scale_up.after_snapshot_record",
    "scale_up.before_volume",
    "scale_up.after_volume",
    "scale_up.before_server",
    "local.create_server.while_bootstrapping",
    "scale_up.after_server",
    "scale_up.after_record",
    "ready.before_publish",
    "ready.before_register",
    "ready.after_register",
    "scale_down.after_decision",
    "scale_down.before_drain",
    "scale_down.after_drain",
    "scale_down.before_mark_deleting",
    "scale_down.before_delete_server",
    "local.delete_server.after_stop",
    "local.delete_server.after_record",
    "openstack.delete_server.accepted",
    "scale_down.after_delete_server",
    "scale_down.before_unpublish",
    "scale_down.after_unpublish",
    "scale_down.before_delete_volume",
    "openstack.delete_volume.before_request",
    "scale_down.after_delete_volume",
    "scale_down.after_forget",
    "deleted.before_unregister",
    "deleted.after_unregister",
    "deleted.before_delete_volume",
    "deleted.after_delete_volume",
    "deleted.before_unpublish",
    "deleted.after_unpublish",
    "reconcile.before_rollback",
    "reconcile.before_unpublish",
    "reconcile.after_rollback",
    "reconcile.before_haproxy",
    "reconcile.after_haproxy",
    "reconcile.before_delete_orphan",
    "reconcile.after_delete_orphan",
    "snapshot_ahead.after_intent",
    "snapshot_ahead.after_snapshot",
    "snapshot_ahead.after_record",
    "reconcile.before_rotate",
    "reconcile.after_rotate",
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Every `failpoint::hit("<name>")` in `src/`, found by reading the source.
    fn hits_in(dir: &Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                hits_in(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let needle = concat!("failpoint::", "hit(\"");
                for (at, _) in text.match_indices(needle) {
                    let rest = &text[at + needle.len()..];
                    let name = &rest[..rest.find('"').unwrap()];
                    // Skip the placeholders in doc comments ("<op>.before_<x>").
                    if !name.contains('<') {
                        found.insert(name.to_string());
                    }
                }
            }
        }
    }

    #[test]
    fn all_lists_exactly_the_failpoints_in_the_source() {
        let mut found = BTreeSet::new();
        hits_in(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        let listed: BTreeSet<String> = super::ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(listed.len(), super::ALL.len(), "a name is listed twice");
        assert_eq!(
            listed, found,
            "failpoint::ALL differs from the hit() calls in src/"
        );
    }
}
