//! The layers of the crate, and the test that keeps them.
//!
//! [`LAYERS`] is the one statement of which top-level module may use which (ARCHITECTURE.md
//! mirrors it). The test reads every `shared/src/**/*.rs`, finds each `crate::…` path
//! (plain or grouped, `use crate::{a, b::c}`) and each `super::` path that climbs to the
//! crate root, and fails naming the file and line of every use the table does not allow.
//! Test code is not checked: everything from a top-level `#[cfg(test)]` line on, and
//! files named `tests.rs` (test modules by convention) — tests may wire layers together.
#![cfg(test)]

use std::collections::BTreeSet;
use std::path::Path;

/// Each top-level module and the modules it may use besides itself. A module missing
/// here fails the test: a new module is placed in the layers when it is added.
///
/// Leaves first (they use nothing of the crate), then the domain, then the root.
pub const LAYERS: &[(&str, &[&str])] = &[
    // Leaves: plain data, the configuration error and checks, secrets, crash points.
    ("model", &[]),
    ("check", &[]),
    ("secret", &[]),
    ("failpoint", &[]),
    ("logging", &[]),
    ("metrics", &["check"]),
    // Pure decisions: the model only (and the config checks of its own section).
    ("policy", &["model", "check"]),
    // Adapters. `postgres` (the PostgreSQL client, TLS and the replica bootstrap
    // parameters) sits beneath the two adapters that run PostgreSQL themselves: the local
    // cloud (its servers are `postgres` processes) and the advisory-lock state store.
    ("postgres", &["model", "check", "secret", "failpoint"]),
    ("balancer", &["model", "check", "secret", "failpoint"]),
    (
        "cloud",
        &["model", "check", "secret", "failpoint", "postgres"],
    ),
    (
        "state",
        &["model", "check", "secret", "failpoint", "postgres"],
    ),
    ("events", &["model", "check", "secret", "failpoint"]),
    // The host: its own settings and infrastructure, none of the domain.
    (
        "runtime",
        &["check", "secret", "failpoint", "metrics", "logging"],
    ),
    // The replica server's side (`pgsurge node first-boot`) and the instance parameters
    // and callback credentials scale-up writes for it.
    (
        "node",
        &[
            "model",
            "check",
            "secret",
            "failpoint",
            "events",
            "cloud",
            "postgres",
        ],
    ),
    // The orchestration: every port, never the assembled configuration.
    (
        "ops",
        &[
            "model",
            "check",
            "secret",
            "failpoint",
            "metrics",
            "policy",
            "postgres",
            "balancer",
            "cloud",
            "state",
            "events",
            "node",
        ],
    ),
    // The root: assembles the configuration, composes the ports, and the handlers.
    (
        "config",
        &[
            "check", "events", "runtime", "metrics", "state", "policy", "balancer", "postgres",
            "cloud", "ops", "agent", "node",
        ],
    ),
    // `pgsurge config keys`: asks the assembled configuration's types for every key.
    ("config_keys", &["config"]),
    ("handlers", ANY),
    ("app", ANY),
    // The agent binary's composition root and loop (`pgsurge-agent`): like `app`, it
    // builds its ports from the assembled configuration. Its converge and reload rules
    // are pure (balancer plan + model); its status objects live in `ops::agent_status`.
    ("agent", ANY),
    ("lib", ANY),
];

/// Marker for the root: may use every module.
const ANY: &[&str] = &["*"];

/// KNOWN EXCEPTIONS — uses the table forbids that are tolerated for now, each as
/// `(file, module it uses, why)`. An entry that no longer matches a use fails the test,
/// so the list only shrinks. Empty since the composition root (`app`, issue 13 step 1)
/// took over what the runtime, `ops/build.rs` and the domain's `FunctionError` /
/// `Credentials` imports did; keep it empty.
pub const KNOWN_EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "events/auth.rs",
        "node",
        "the callback credential's check; move `node::callback::{verify, admit}` into events",
    ),
    (
        "events/receive.rs",
        "node",
        "the callback credential's check; move `node::callback::{verify, admit}` into events",
    ),
    (
        "cloud/local/mod.rs",
        "node",
        "the VM provider reads the instance parameters; move `node::params` (the wire format \
         scale-up writes) beneath both",
    ),
    (
        "cloud/local/vm.rs",
        "node",
        "the VM provider reads the instance parameters; move `node::params` (the wire format \
         scale-up writes) beneath both",
    ),
];

/// One use of another top-level module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    /// Path relative to the source root, `/`-separated.
    pub file: String,
    pub line: usize,
    /// The top-level module used.
    pub target: String,
}

/// The module path of a file relative to the source root: `ops/lease.rs` → `[ops, lease]`,
/// `ops/mod.rs` → `[ops]`, `lib.rs` → `[]`.
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// `text` with comments and the insides of string and char literals blanked (newlines
/// kept, so line numbers stay right), and cut at the first top-level `#[cfg(test)]`.
fn code_only(text: &str) -> String {
    let text = match text.find("\n#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            while i < b.len() && !(b[i] == '*' && b.get(i + 1) == Some(&'/')) {
                out.push(blank(b[i]));
                i += 1;
            }
            out.push_str("  ");
            i += 2;
        } else if c == 'r'
            && matches!(next, Some('"' | '#'))
            && !ident_char(b.get(i.wrapping_sub(1)))
        {
            // Raw string r"…" / r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"')
                .chain((0..hashes).map(|_| '#'))
                .collect();
            let rest: String = b[j + 1..].iter().collect();
            let len = rest.find(&close).map_or(rest.chars().count(), |k| {
                rest[..k].chars().count() + close.chars().count()
            });
            for &ch in &b[i..(j + 1 + len).min(b.len())] {
                out.push(blank(ch));
            }
            i = j + 1 + len;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (b.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A char literal ('"', '\'', '\n'); a lifetime ('a) has no closing quote.
            let end = if next == Some('\\') {
                (i + 2..b.len())
                    .find(|&k| b[k] == '\'')
                    .unwrap_or(b.len() - 1)
            } else {
                i + 2
            };
            for _ in i..=end {
                out.push(' ');
            }
            i = end + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

/// The leading identifier of `s`.
fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules named at `rest` (just after `crate::` or a root-reaching
/// `super::`): one identifier, or the first identifier of each item of a `{…}` group.
fn targets(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    let Some(group) = rest.strip_prefix('{') else {
        return vec![ident(rest).to_string()];
    };
    let (mut depth, mut items, mut cur) = (0usize, Vec::new(), String::new());
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    items
        .iter()
        .map(|i| ident(i.trim()).to_string())
        .filter(|i| !i.is_empty() && i != "self")
        .collect()
}

/// Every use of a top-level module in one file.
pub fn uses(rel: &str, text: &str) -> Vec<Use> {
    let code = code_only(text);
    let depth = module_path(rel).len();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    for (at, _) in code.match_indices("crate::") {
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || matches!(bytes[at - 1], b'_' | b'$'))
        {
            continue; // `$crate::` (a macro's own crate), `my_crate::`
        }
        for target in targets(&code[at + "crate::".len()..]) {
            found.push((at, target));
        }
    }
    // `super::super::x` from a file `depth` modules deep reaches the root when it
    // climbs `depth` times: then `x` is a top-level module.
    let mut at = 0;
    while let Some(k) = code[at..].find("super::") {
        let start = at + k;
        let mut end = start;
        let mut climbs = 0;
        while code[end..].starts_with("super::") {
            climbs += 1;
            end += "super::".len();
        }
        let boundary = start == 0
            || !(bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b':');
        if boundary && depth > 0 && climbs >= depth {
            for target in targets(&code[end..]) {
                found.push((start, target));
            }
        }
        at = end;
    }
    found.sort();
    found
        .into_iter()
        .map(|(at, target)| Use {
            file: rel.to_string(),
            line: line_of(at),
            target,
        })
        .collect()
}

/// Every `.rs` file under `root` that is checked, as (relative path, text).
fn sources(root: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|e| e == "rs")
                && p.file_name().is_some_and(|n| n != "tests.rs")
            {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = std::fs::read_to_string(&p).unwrap();
                out.push((rel, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

/// Check the tree at `root` against `layers`, forgiving `exceptions`. Returns one line
/// per forbidden use (`file:line: …`), per module missing from the table, and per
/// exception that no longer matches a use.
pub fn check(
    root: &Path,
    layers: &[(&str, &[&str])],
    exceptions: &[(&str, &str, &str)],
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut used_exceptions = BTreeSet::new();
    for (rel, text) in sources(root) {
        // A file skipped whole: the module is test-only (`#![cfg(test)]`).
        if code_only(&text).trim_start().starts_with("#![cfg(test)]") {
            continue;
        }
        let from = module_path(&rel)
            .first()
            .cloned()
            .unwrap_or_else(|| "lib".to_string());
        let Some((_, allowed)) = layers.iter().find(|(m, _)| *m == from) else {
            problems.push(format!(
                "{rel}: module `{from}` is not in the layer table (architecture::LAYERS)"
            ));
            continue;
        };
        for u in uses(&rel, &text) {
            if u.target == from || allowed.contains(&"*") || allowed.contains(&u.target.as_str()) {
                continue;
            }
            if let Some(e) = exceptions
                .iter()
                .find(|(f, t, _)| *f == u.file && *t == u.target)
            {
                used_exceptions.insert((e.0, e.1));
                continue;
            }
            problems.push(format!(
                "{}:{}: `{from}` may not use `{}` (allowed: {})",
                u.file,
                u.line,
                u.target,
                if allowed.is_empty() {
                    "nothing of the crate".to_string()
                } else {
                    allowed.join(", ")
                }
            ));
        }
    }
    for (f, t, why) in exceptions {
        if !used_exceptions.contains(&(*f, *t)) {
            problems.push(format!(
                "known exception ({f} uses `{t}`: {why}) no longer happens: remove it from \
                 architecture::KNOWN_EXCEPTIONS"
            ));
        }
    }
    problems
}

#[test]
fn the_crate_keeps_its_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = check(&root, LAYERS, KNOWN_EXCEPTIONS);
    assert!(
        problems.is_empty(),
        "the layers of shared/src (see architecture::LAYERS, ARCHITECTURE.md):\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_forbidden_use_fails_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |rel: &str, text: &str| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "lib.rs",
        "pub mod model;\npub mod policy;\npub mod cloud;\n",
    );
    write("model/mod.rs", "pub struct A;\n");
    // Line 4: a grouped use with one forbidden item; the string and comment don't count.
    write(
        "policy/mod.rs",
        "use crate::model::A;\n\
         const S: &str = \"crate::state\"; // crate::ops\n\
         /* crate::ops */ const C: char = '\"';\n\
         use crate::{model::A as B, state::Store};\n\
         #[cfg(test)]\nmod tests { use crate::ops::X; }\n",
    );
    // A `super::` path that climbs to the root from two levels down (line 2).
    write(
        "cloud/local/mod.rs",
        "use super::Cloud;\nuse super::super::ops::run;\n",
    );
    write("cloud/mod.rs", "pub mod local;\n");
    // A module the table does not know.
    write("extra.rs", "\n");
    let layers: &[(&str, &[&str])] = &[
        ("model", &[]),
        ("policy", &["model"]),
        ("cloud", &["model"]),
        ("lib", &["*"]),
    ];
    let problems = check(src, layers, &[("cloud/mod.rs", "ops", "gone")]);
    assert_eq!(
        problems,
        [
            "cloud/local/mod.rs:2: `cloud` may not use `ops` (allowed: model)",
            "extra.rs: module `extra` is not in the layer table (architecture::LAYERS)",
            "policy/mod.rs:4: `policy` may not use `state` (allowed: model)",
            "known exception (cloud/mod.rs uses `ops`: gone) no longer happens: remove it \
             from architecture::KNOWN_EXCEPTIONS",
        ],
        "{problems:#?}"
    );
    // The same forbidden use, forgiven by an exception, is not reported.
    let forgiven = check(
        src,
        layers,
        &[
            ("cloud/local/mod.rs", "ops", "r13b"),
            ("policy/mod.rs", "state", "x"),
        ],
    );
    assert_eq!(forgiven.len(), 1, "{forgiven:#?}");
}

#[test]
fn every_module_of_the_crate_is_in_the_table_once() {
    let mut seen = BTreeSet::new();
    for (m, allowed) in LAYERS {
        assert!(seen.insert(*m), "`{m}` twice in LAYERS");
        for a in *allowed {
            assert!(
                *a == "*" || LAYERS.iter().any(|(n, _)| n == a),
                "`{m}` may use `{a}`, which is not in LAYERS"
            );
        }
    }
}
