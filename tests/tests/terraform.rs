//! infra/terraform, checked without `terraform init` (no provider registry here): every
//! file parses, every type / argument / required argument matches the pinned provider's
//! documented schema (infra/terraform/schema), every reference resolves, every
//! `PGSURGE_*` variable is a configuration key the binaries read, the functions are
//! packaged as `just package` writes them, and checkov passes with only the accepted
//! findings. The negative tests run the same checks over a broken copy.

use pgsurge_tests::terraform::{check_dir, literal, parse_dir, source, Known, Schema};
use pgsurge_tests::workspace_root;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `just package` writes the FunctionGraph zips, relative to the workspace root:
/// `target/package/fgs/<function>.zip`, each with an executable `bootstrap` at its root.
const FGS_PACKAGE_DIR: &str = "target/package/fgs";

fn tf_dir(cloud: &str) -> PathBuf {
    workspace_root().join("infra/terraform").join(cloud)
}

fn schema(cloud: &str) -> Schema {
    Schema::load(
        &workspace_root()
            .join("infra/terraform/schema")
            .join(format!("{cloud}.json")),
    )
}

fn assert_clean(cloud: &str, dir: &Path) {
    let problems = check_dir(dir, &schema(cloud), &Known::from_code());
    assert!(
        problems.is_empty(),
        "infra/terraform/{cloud}:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn huaweicloud_matches_schema_references_and_config_keys() {
    assert_clean("huaweicloud", &tf_dir("huaweicloud"));
}

#[test]
fn openstack_matches_schema_references_and_metadata_keys() {
    assert_clean("openstack", &tf_dir("openstack"));
}

/// The pin in versions.tf is the version the schema subset was generated from.
#[test]
fn provider_pins_match_the_schema_subsets() {
    for cloud in ["huaweicloud", "openstack"] {
        let text = std::fs::read_to_string(tf_dir(cloud).join("versions.tf")).unwrap();
        let want = format!("version = \"= {}\"", schema(cloud).version);
        assert!(
            text.contains(&want),
            "{cloud}/versions.tf must pin `{want}` (the schema subset's version)"
        );
    }
}

/// Every function crate is deployed, as the custom runtime's `bootstrap`, from the zip
/// `just package` writes for it.
#[test]
fn functions_are_deployed_from_the_package_recipe_output() {
    let dir = tf_dir("huaweicloud");
    let mut problems = Vec::new();
    let module = parse_dir(&dir, &mut problems);
    assert!(problems.is_empty(), "{problems:?}");

    let mut crates: Vec<String> = std::fs::read_dir(workspace_root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    crates.sort();

    let locals: Vec<&hcl::Attribute> = module
        .files
        .iter()
        .flat_map(|(_, b)| b.blocks())
        .filter(|b| b.identifier.as_str() == "locals")
        .flat_map(|b| b.body.attributes())
        .collect();
    let local = |k: &str| locals.iter().find(|a| a.key.as_str() == k).map(|a| &a.expr);

    let mut listed: Vec<String> = match local("functions") {
        Some(hcl::Expression::Array(items)) => items
            .iter()
            .map(|i| match i {
                hcl::Expression::String(s) => s.clone(),
                other => panic!("local.functions holds a non-literal {other:?}"),
            })
            .collect(),
        other => panic!("local.functions must be a list of names, is {other:?}"),
    };
    listed.sort();
    assert_eq!(
        listed, crates,
        "local.functions must name every functions/* crate"
    );

    // local.package_dir = "${path.module}/<relative>": resolve it from this directory.
    let pkg = hcl::format::to_string(local("package_dir").expect("local.package_dir")).unwrap();
    let rel = pkg
        .trim_matches('"')
        .strip_prefix("${path.module}/")
        .unwrap_or_else(|| panic!("local.package_dir must start at path.module: {pkg}"));
    let resolved = std::fs::canonicalize(&dir)
        .unwrap()
        .join(rel)
        .components()
        .fold(PathBuf::new(), |mut p, c| {
            match c {
                std::path::Component::ParentDir => {
                    p.pop();
                }
                c => p.push(c),
            }
            p
        });
    assert_eq!(
        resolved,
        std::fs::canonicalize(workspace_root())
            .unwrap()
            .join(FGS_PACKAGE_DIR),
        "local.package_dir must be {FGS_PACKAGE_DIR} (where `just package` writes)"
    );

    let fns: Vec<&hcl::Block> = module
        .files
        .iter()
        .flat_map(|(_, b)| b.blocks())
        .filter(|b| {
            b.identifier.as_str() == "resource"
                && b.labels[0].as_str() == "huaweicloud_fgs_function"
        })
        .collect();
    assert_eq!(
        fns.len(),
        1,
        "one huaweicloud_fgs_function, for_each over the functions"
    );
    let f = &fns[0].body;
    assert_eq!(
        source(f, "for_each").as_deref(),
        Some("toset(local.functions)")
    );
    assert_eq!(literal(f, "runtime"), Some("Custom"));
    assert_eq!(literal(f, "handler"), Some("bootstrap"));
    assert_eq!(literal(f, "code_type"), Some("zip"));
    assert_eq!(
        source(f, "func_code").as_deref(),
        Some("filebase64(\"${local.package_dir}/${each.key}.zip\")")
    );
    assert_eq!(
        source(f, "code_filename").as_deref(),
        Some("\"${each.key}.zip\"")
    );
}

/// Copy a Terraform directory to a temp dir, replace `from` with `to` in `file` (which
/// must contain it), and return the problems the checker finds there.
fn problems_after(cloud: &str, file: &str, from: &str, to: &str) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(tf_dir(cloud)).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let target = tmp.path().join(file);
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(text.contains(from), "{file} no longer contains {from:?}");
    std::fs::write(&target, text.replacen(from, to, 1)).unwrap();
    check_dir(tmp.path(), &schema(cloud), &Known::from_code())
}

fn assert_reported(problems: &[String], needles: &[&str]) {
    assert!(
        problems
            .iter()
            .any(|p| needles.iter().all(|n| p.contains(n))),
        "expected a problem mentioning {needles:?}, got {problems:#?}"
    );
}

#[test]
fn a_broken_reference_fails() {
    let p = problems_after(
        "huaweicloud",
        "storage.tf",
        "bucket        = var.state_bucket",
        "bucket        = var.state_buckett",
    );
    assert_reported(&p, &["storage.tf", "var.state_buckett", "does not resolve"]);
    let p = problems_after(
        "openstack",
        "main.tf",
        "openstack_compute_servergroup_v2.replicas.id",
        "openstack_compute_servergroup_v2.replica.id",
    );
    assert_reported(
        &p,
        &[
            "openstack_compute_servergroup_v2.replica.id",
            "does not resolve",
        ],
    );
    let p = problems_after(
        "huaweicloud",
        "outputs.tf",
        "huaweicloud_obs_bucket.state.bucket",
        "huaweicloud_obs_bucket.state.bucket_nam",
    );
    assert_reported(&p, &["reads `bucket_nam`", "huaweicloud_obs_bucket"]);
}

#[test]
fn a_misspelled_argument_fails() {
    let p = problems_after(
        "huaweicloud",
        "functions.tf",
        "memory_size   = var.function_memory_mb",
        "memory_sise   = var.function_memory_mb",
    );
    assert_reported(
        &p,
        &[
            "huaweicloud_fgs_function.fn",
            "unknown argument `memory_sise`",
        ],
    );
    // ... and the argument it replaced is required.
    assert_reported(&p, &["required argument `memory_size` is missing"]);
    // In a nested block too.
    let p = problems_after("openstack", "main.tf", "source_type ", "source_typ ");
    assert_reported(&p, &["block_device", "unknown argument `source_typ`"]);
    // A type the pinned provider does not have.
    let p = problems_after(
        "huaweicloud",
        "dns.tf",
        "huaweicloud_dns_zone\"",
        "huaweicloud_dns_zones\"",
    );
    assert_reported(&p, &["huaweicloud_dns_zones", "not in the huaweicloud"]);
}

#[test]
fn a_stale_config_key_fails() {
    let p = problems_after(
        "huaweicloud",
        "main.tf",
        "PGSURGE_STATE__S3__BUCKET ",
        "PGSURGE_STATE__S3__BUCKET_NAME ",
    );
    assert_reported(
        &p,
        &[
            "PGSURGE_STATE__S3__BUCKET_NAME",
            "not a configuration key the binaries read",
        ],
    );
    let p = problems_after(
        "huaweicloud",
        "replicas.tf",
        "pgsurge_replica =",
        "pgsurge_replica_id =",
    );
    assert_reported(&p, &["pgsurge_replica_id", "not one pgsurge uses"]);
    assert_reported(&p, &["`metadata` lacks pgsurge_replica"]);
}

#[test]
fn a_file_that_does_not_parse_fails() {
    let p = problems_after(
        "openstack",
        "outputs.tf",
        "output \"dns_zone\" {",
        "output \"dns_zone\" {{",
    );
    assert_reported(&p, &["outputs.tf", "does not parse"]);
}

fn checkov(dirs: &[&Path]) -> (bool, String) {
    let script = workspace_root().join("infra/terraform/checkov.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(dirs)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// checkov over both directories: no finding beyond those accepted (with their reasons)
/// in infra/terraform/.checkov.yaml — including pgsurge's own policies in
/// infra/terraform/checkov-policies (checkov ships none for huaweicloud resources).
/// A finding introduced into a copy fails it.
#[test]
fn checkov_passes_with_only_the_accepted_findings() {
    let (ok, text) = checkov(&[&tf_dir("huaweicloud"), &tf_dir("openstack")]);
    assert!(ok, "checkov found something not accepted:\n{text}");
    assert!(text.contains("Failed checks: 0"), "{text}");

    // The same run over a copy with a public state bucket and an open PostgreSQL port.
    let tmp = tempfile::tempdir().unwrap();
    for cloud in ["huaweicloud", "openstack"] {
        let d = tmp.path().join(cloud);
        std::fs::create_dir(&d).unwrap();
        for e in std::fs::read_dir(tf_dir(cloud)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
        }
    }
    let edit = |f: &Path, from: &str, to: &str| {
        let t = std::fs::read_to_string(f).unwrap();
        assert!(t.contains(from), "{} lacks {from}", f.display());
        std::fs::write(f, t.replacen(from, to, 1)).unwrap();
    };
    edit(
        &tmp.path().join("huaweicloud/storage.tf"),
        "acl           = \"private\"",
        "acl           = \"public-read\"",
    );
    edit(
        &tmp.path().join("openstack/main.tf"),
        "remote_ip_prefix  = var.access_cidr",
        "remote_ip_prefix  = \"0.0.0.0/0\"",
    );
    let (ok, text) = checkov(&[
        &tmp.path().join("huaweicloud"),
        &tmp.path().join("openstack"),
    ]);
    assert!(
        !ok,
        "checkov accepted a public bucket and an open port:\n{text}"
    );
    assert!(
        text.contains("CKV_PGSURGE_1"),
        "public bucket not reported:\n{text}"
    );
    assert!(
        text.contains("CKV_PGSURGE_3"),
        "open PostgreSQL port not reported:\n{text}"
    );
}
