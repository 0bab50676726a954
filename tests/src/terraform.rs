//! A Terraform checker that needs no `terraform init` (no provider registry is reachable
//! in CI): parses every `.tf` of a directory with `hcl-rs` and checks it against the
//! provider schema subset generated from the pinned provider's own docs
//! (`infra/terraform/schema/*.json`, `generate.py`), against the configuration keys the
//! binaries read (`pgsurge::config_keys`) and the metadata keys pgsurge writes and reads
//! (`pgsurge::cloud::META_*`). Each problem is one line naming the file and the block.
//!
//! What it checks:
//! - every file parses;
//! - every resource / data source type is in the schema, every argument and nested block
//!   is one the provider documents for it, and every unconditionally required argument is
//!   set (meta-arguments — `count`, `for_each`, `lifecycle`, … — are Terraform's own);
//! - every reference resolves: `var.x` to a variable, `local.x` to a local, `data.T.N` and
//!   `T.N` to a declared data source / resource (and the attribute read from it to one the
//!   docs list), `module.x` to a module; `each`, `count`, `path`, `self`, `terraform` and the
//!   iterator names of `for` expressions and `dynamic` blocks are Terraform's;
//! - every object key that looks like a pgsurge environment variable (`PGSURGE_*`) is one the
//!   configuration reads, and every `pgsurge_*` key (instance metadata) is a key pgsurge uses;
//!   a server's `metadata` carries the cluster, role and replica keys.

use hcl::expr::{Expression, ObjectKey, TraversalOperator};
use hcl::structure::{Block, Body, Structure};
use hcl::template::{Directive, Element, Template};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One provider's documented schema subset (`infra/terraform/schema/<provider>.json`).
#[derive(Debug, Deserialize)]
pub struct Schema {
    pub provider: String,
    pub version: String,
    pub resources: BTreeMap<String, BlockSchema>,
    pub data_sources: BTreeMap<String, BlockSchema>,
}

#[derive(Debug, Deserialize)]
pub struct BlockSchema {
    pub arguments: BTreeMap<String, ArgSchema>,
    #[serde(default)]
    pub attributes: Vec<String>,
    #[serde(default)]
    pub blocks: BTreeMap<String, BlockSchema>,
}

#[derive(Debug, Deserialize)]
pub struct ArgSchema {
    pub required: bool,
}

impl Schema {
    pub fn load(path: &Path) -> Schema {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not a schema: {e}", path.display()))
    }
}

/// What the code defines, that the Terraform must agree with.
pub struct Known {
    /// `PGSURGE_*` names the configuration reads (plus `PGSURGE_CONFIG`).
    pub env: BTreeSet<String>,
    /// Instance metadata keys pgsurge uses (`pgsurge_cluster`, ...).
    pub metadata: BTreeSet<String>,
    /// Keys every server's `metadata` must carry.
    pub required_metadata: Vec<String>,
}

impl Known {
    /// From the library: the configuration types and the `cloud::META_*` constants.
    pub fn from_code() -> Known {
        let mut env: BTreeSet<String> = pgsurge::config_keys::config_keys()
            .into_iter()
            .map(|k| k.env)
            .collect();
        env.insert("PGSURGE_CONFIG".into());
        use pgsurge::cloud::{META_CLUSTER, META_OP, META_REPLICA, META_ROLE};
        Known {
            env,
            metadata: [META_CLUSTER, META_ROLE, META_REPLICA, META_OP]
                .map(String::from)
                .into(),
            required_metadata: [META_CLUSTER, META_ROLE, META_REPLICA]
                .map(String::from)
                .into(),
        }
    }
}

/// A parsed directory: every `.tf` file's body.
pub struct Module {
    pub files: Vec<(PathBuf, Body)>,
}

/// Terraform's own arguments and blocks, valid in every resource / data block.
const META_ARGS: &[&str] = &[
    "count",
    "for_each",
    "depends_on",
    "provider",
    "lifecycle",
    "provisioner",
    "connection",
];
/// Reference roots Terraform defines itself.
const BUILTIN_ROOTS: &[&str] = &["each", "count", "path", "self", "terraform"];

/// Parse every `.tf` file in `dir`; a file that does not parse is a problem, not a panic.
pub fn parse_dir(dir: &Path, problems: &mut Vec<String>) -> Module {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tf"))
        .collect();
    paths.sort();
    let mut files = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).unwrap();
        match hcl::parse(&text) {
            Ok(body) => files.push((p, body)),
            Err(e) => problems.push(format!("{}: does not parse: {e}", name(&p))),
        }
    }
    if files.is_empty() && problems.is_empty() {
        problems.push(format!("{}: no .tf files", dir.display()));
    }
    Module { files }
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn label(b: &Block, i: usize) -> &str {
    b.labels.get(i).map(|l| l.as_str()).unwrap_or("")
}

/// Run every check over `dir`; returns the problems found (empty: all good).
pub fn check_dir(dir: &Path, schema: &Schema, known: &Known) -> Vec<String> {
    let mut problems = Vec::new();
    let module = parse_dir(dir, &mut problems);

    // Declarations.
    let mut vars = BTreeSet::new();
    let mut locals = BTreeSet::new();
    let mut modules = BTreeSet::new();
    let mut resources: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut datas: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, body) in &module.files {
        for b in body.blocks() {
            match b.identifier.as_str() {
                "variable" => {
                    vars.insert(label(b, 0).to_string());
                }
                "locals" => locals.extend(b.body.attributes().map(|a| a.key.to_string())),
                "module" => {
                    modules.insert(label(b, 0).to_string());
                }
                "resource" => {
                    resources
                        .entry(label(b, 0).into())
                        .or_default()
                        .insert(label(b, 1).into());
                }
                "data" => {
                    datas
                        .entry(label(b, 0).into())
                        .or_default()
                        .insert(label(b, 1).into());
                }
                _ => {}
            }
        }
    }
    let decl = Decls {
        vars,
        locals,
        modules,
        resources,
        datas,
        schema,
    };

    for (path, body) in &module.files {
        let file = name(path);
        for b in body.blocks() {
            let kind = b.identifier.as_str();
            let at = match kind {
                "resource" | "data" => format!("{file}: {kind} {}.{}", label(b, 0), label(b, 1)),
                _ if b.labels.is_empty() => format!("{file}: {kind}"),
                _ => format!("{file}: {kind} {}", label(b, 0)),
            };
            // Schema.
            let table = match kind {
                "resource" => Some(&schema.resources),
                "data" => Some(&schema.data_sources),
                _ => None,
            };
            if let Some(table) = table {
                let ty = label(b, 0);
                match table.get(ty) {
                    None if ty.starts_with(&format!("{}_", schema.provider)) => {
                        problems.push(format!(
                            "{at}: type {ty} is not in the {} {} schema subset (regenerate it: \
                             infra/terraform/schema/README.md)",
                            schema.provider, schema.version
                        ))
                    }
                    None => problems.push(format!(
                        "{at}: type {ty} does not belong to provider {}",
                        schema.provider
                    )),
                    Some(s) => check_block(&at, &b.body, s, true, &mut problems),
                }
            }
            // References, environment and metadata keys.
            let mut scope = Vec::new();
            if kind == "variable" {
                // A variable's `type` is a type constraint (`string`, `list(number)`), not
                // an expression with references.
                let rest = Body(
                    b.body
                        .iter()
                        .filter(
                            |s| !matches!(s, Structure::Attribute(a) if a.key.as_str() == "type"),
                        )
                        .cloned()
                        .collect(),
                );
                walk_body(&rest, &at, &decl, known, &mut scope, &mut problems);
            } else {
                walk_body(&b.body, &at, &decl, known, &mut scope, &mut problems);
            }
            if kind == "resource" && label(b, 0).contains("compute_instance") {
                check_metadata(&at, &b.body, known, &mut problems);
            }
        }
    }
    problems
}

fn check_block(at: &str, body: &Body, s: &BlockSchema, top: bool, problems: &mut Vec<String>) {
    let mut present = BTreeSet::new();
    for st in body.iter() {
        let (key, nested) = match st {
            Structure::Attribute(a) => (a.key.to_string(), None),
            Structure::Block(b) if b.identifier.as_str() == "dynamic" => {
                let content = b.body.blocks().find(|c| c.identifier.as_str() == "content");
                (label(b, 0).to_string(), content.map(|c| &c.body))
            }
            Structure::Block(b) => (b.identifier.to_string(), Some(&b.body)),
        };
        if top && META_ARGS.contains(&key.as_str()) {
            continue;
        }
        if !s.arguments.contains_key(&key) {
            problems.push(format!(
                "{at}: unknown argument `{key}` (not in the provider's documented arguments)"
            ));
            continue;
        }
        present.insert(key.clone());
        if let (Some(nb), Some(ns)) = (nested, s.blocks.get(&key)) {
            check_block(&format!("{at} > {key}"), nb, ns, false, problems);
        }
    }
    for (arg, a) in &s.arguments {
        if a.required && !present.contains(arg) {
            problems.push(format!("{at}: required argument `{arg}` is missing"));
        }
    }
}

struct Decls<'a> {
    vars: BTreeSet<String>,
    locals: BTreeSet<String>,
    modules: BTreeSet<String>,
    resources: BTreeMap<String, BTreeSet<String>>,
    datas: BTreeMap<String, BTreeSet<String>>,
    schema: &'a Schema,
}

fn walk_body(
    body: &Body,
    at: &str,
    d: &Decls,
    known: &Known,
    scope: &mut Vec<String>,
    problems: &mut Vec<String>,
) {
    for st in body.iter() {
        match st {
            Structure::Attribute(a) => walk_expr(&a.expr, at, d, known, scope, problems),
            Structure::Block(b) if b.identifier.as_str() == "dynamic" => {
                // `dynamic "x"` iterates as `x` (or its `iterator` argument).
                let it = b
                    .body
                    .attributes()
                    .find(|a| a.key.as_str() == "iterator")
                    .and_then(|a| match &a.expr {
                        Expression::Variable(v) => Some(v.to_string()),
                        _ => None,
                    })
                    .unwrap_or_else(|| label(b, 0).to_string());
                scope.push(it);
                walk_body(&b.body, at, d, known, scope, problems);
                scope.pop();
            }
            Structure::Block(b) => walk_body(&b.body, at, d, known, scope, problems),
        }
    }
}

fn walk_template(
    t: &Template,
    at: &str,
    d: &Decls,
    known: &Known,
    scope: &mut Vec<String>,
    problems: &mut Vec<String>,
) {
    for e in t.elements() {
        match e {
            Element::Literal(_) => {}
            Element::Interpolation(i) => walk_expr(&i.expr, at, d, known, scope, problems),
            Element::Directive(Directive::If(i)) => {
                walk_expr(&i.cond_expr, at, d, known, scope, problems);
                walk_template(&i.true_template, at, d, known, scope, problems);
                if let Some(f) = &i.false_template {
                    walk_template(f, at, d, known, scope, problems);
                }
            }
            Element::Directive(Directive::For(f)) => {
                walk_expr(&f.collection_expr, at, d, known, scope, problems);
                let n = scope.len();
                scope.extend(f.key_var.iter().map(|k| k.to_string()));
                scope.push(f.value_var.to_string());
                walk_template(&f.template, at, d, known, scope, problems);
                scope.truncate(n);
            }
        }
    }
}

fn walk_expr(
    e: &Expression,
    at: &str,
    d: &Decls,
    known: &Known,
    scope: &mut Vec<String>,
    problems: &mut Vec<String>,
) {
    match e {
        Expression::Null | Expression::Bool(_) | Expression::Number(_) => {}
        Expression::String(_) => {}
        Expression::Array(items) => {
            for i in items {
                walk_expr(i, at, d, known, scope, problems);
            }
        }
        Expression::Object(o) => {
            for (k, v) in o.iter() {
                let key = match k {
                    ObjectKey::Identifier(i) => Some(i.to_string()),
                    ObjectKey::Expression(Expression::String(s)) => Some(s.clone()),
                    ObjectKey::Expression(x) => {
                        walk_expr(x, at, d, known, scope, problems);
                        None
                    }
                    // Non-exhaustive upstream; today's two variants are handled above.
                    _ => None,
                };
                if let Some(key) = key {
                    check_key(&key, at, known, problems);
                }
                walk_expr(v, at, d, known, scope, problems);
            }
        }
        Expression::TemplateExpr(t) => match Template::from_expr(t) {
            Ok(t) => walk_template(&t, at, d, known, scope, problems),
            Err(err) => problems.push(format!("{at}: bad template: {err}")),
        },
        Expression::Variable(v) => check_ref(v.as_str(), &[], at, d, scope, problems),
        Expression::Traversal(t) => {
            for op in &t.operators {
                if let TraversalOperator::Index(i) = op {
                    walk_expr(i, at, d, known, scope, problems);
                }
            }
            match &t.expr {
                Expression::Variable(v) => {
                    let attrs: Vec<Option<&str>> = t
                        .operators
                        .iter()
                        .map(|op| match op {
                            TraversalOperator::GetAttr(i) => Some(i.as_str()),
                            _ => None,
                        })
                        .collect();
                    check_ref(v.as_str(), &attrs, at, d, scope, problems);
                }
                other => walk_expr(other, at, d, known, scope, problems),
            }
        }
        Expression::FuncCall(f) => {
            for a in &f.args {
                walk_expr(a, at, d, known, scope, problems);
            }
        }
        Expression::Parenthesis(p) => walk_expr(p, at, d, known, scope, problems),
        Expression::Conditional(c) => {
            walk_expr(&c.cond_expr, at, d, known, scope, problems);
            walk_expr(&c.true_expr, at, d, known, scope, problems);
            walk_expr(&c.false_expr, at, d, known, scope, problems);
        }
        Expression::Operation(op) => match &**op {
            hcl::expr::Operation::Unary(u) => walk_expr(&u.expr, at, d, known, scope, problems),
            hcl::expr::Operation::Binary(b) => {
                walk_expr(&b.lhs_expr, at, d, known, scope, problems);
                walk_expr(&b.rhs_expr, at, d, known, scope, problems);
            }
        },
        Expression::ForExpr(f) => {
            walk_expr(&f.collection_expr, at, d, known, scope, problems);
            let n = scope.len();
            scope.extend(f.key_var.iter().map(|k| k.to_string()));
            scope.push(f.value_var.to_string());
            for x in [
                Some(&f.value_expr),
                f.key_expr.as_ref(),
                f.cond_expr.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                walk_expr(x, at, d, known, scope, problems);
            }
            scope.truncate(n);
        }
        // hcl-rs may grow variants; none of today's carries references elsewhere.
        #[allow(unreachable_patterns)]
        _ => {}
    }
}

/// `root.a.b...` (None for an index or splat step).
fn check_ref(
    root: &str,
    attrs: &[Option<&str>],
    at: &str,
    d: &Decls,
    scope: &[String],
    problems: &mut Vec<String>,
) {
    if scope.iter().any(|s| s == root) || BUILTIN_ROOTS.contains(&root) {
        return;
    }
    let first = attrs.first().copied().flatten();
    let shown = || {
        let mut s = root.to_string();
        for a in attrs.iter().take(3) {
            s.push_str(&match a {
                Some(a) => format!(".{a}"),
                None => "[..]".into(),
            });
        }
        s
    };
    let ok = match root {
        "var" => first.is_some_and(|n| d.vars.contains(n)),
        "local" => first.is_some_and(|n| d.locals.contains(n)),
        "module" => first.is_some_and(|n| d.modules.contains(n)),
        "data" => {
            let (ty, n) = (first, attrs.get(1).copied().flatten());
            let found = match (ty, n) {
                (Some(ty), Some(n)) => d.datas.get(ty).is_some_and(|s| s.contains(n)),
                _ => false,
            };
            if found {
                let attr = attrs.iter().skip(2).flatten().next().copied();
                check_attr(
                    ty.unwrap(),
                    attr,
                    &d.schema.data_sources,
                    at,
                    &shown(),
                    problems,
                );
            }
            found
        }
        ty if d.resources.contains_key(ty) => {
            let found = first.is_some_and(|n| d.resources[ty].contains(n));
            if found {
                let attr = attrs.iter().skip(1).flatten().next().copied();
                check_attr(ty, attr, &d.schema.resources, at, &shown(), problems);
            }
            found
        }
        _ => false,
    };
    if !ok {
        problems.push(format!(
            "{at}: reference `{}` does not resolve (no such variable, local, data source, \
             resource or module)",
            shown()
        ));
    }
}

fn check_attr(
    ty: &str,
    attr: Option<&str>,
    table: &BTreeMap<String, BlockSchema>,
    at: &str,
    shown: &str,
    problems: &mut Vec<String>,
) {
    let (Some(attr), Some(s)) = (attr, table.get(ty)) else {
        return;
    };
    if !s.arguments.contains_key(attr) && !s.attributes.iter().any(|a| a == attr) {
        problems.push(format!(
            "{at}: `{shown}` reads `{attr}`, which {ty} neither takes nor exports"
        ));
    }
}

fn check_key(key: &str, at: &str, known: &Known, problems: &mut Vec<String>) {
    if key.starts_with("PGSURGE_") && !known.env.contains(key) {
        problems.push(format!(
            "{at}: environment variable {key} is not a configuration key the binaries read \
             (`pgsurge config keys` lists them)"
        ));
    }
    if key.starts_with("pgsurge_") && !known.metadata.contains(key) {
        problems.push(format!(
            "{at}: metadata key {key} is not one pgsurge uses ({})",
            known
                .metadata
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
}

fn check_metadata(at: &str, body: &Body, known: &Known, problems: &mut Vec<String>) {
    let Some(meta) = body.attributes().find(|a| a.key.as_str() == "metadata") else {
        problems.push(format!(
            "{at}: a server without `metadata` (pgsurge and vmagent read it)"
        ));
        return;
    };
    let Expression::Object(o) = &meta.expr else {
        problems.push(format!(
            "{at}: `metadata` must be an object literal to be checked"
        ));
        return;
    };
    let keys: BTreeSet<String> = o
        .keys()
        .filter_map(|k| match k {
            ObjectKey::Identifier(i) => Some(i.to_string()),
            ObjectKey::Expression(Expression::String(s)) => Some(s.clone()),
            _ => None,
        })
        .collect();
    for k in &known.required_metadata {
        if !keys.contains(k) {
            problems.push(format!("{at}: `metadata` lacks {k}"));
        }
    }
}

/// The value of a string attribute of a body, when it is a literal.
pub fn literal<'a>(body: &'a Body, key: &str) -> Option<&'a str> {
    body.attributes()
        .find(|a| a.key.as_str() == key)
        .and_then(|a| match &a.expr {
            Expression::String(s) => Some(s.as_str()),
            _ => None,
        })
}

/// An attribute's expression as HCL source (for comparing expressions that are not literals).
pub fn source(body: &Body, key: &str) -> Option<String> {
    body.attributes()
        .find(|a| a.key.as_str() == key)
        .map(|a| hcl::format::to_string(&a.expr).unwrap_or_default())
}
