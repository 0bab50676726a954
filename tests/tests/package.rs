//! `just package` (infra/package/): the FunctionGraph zips hold an executable `bootstrap`,
//! the binary it starts and the config it reads; every packaged binary loads on glibc
//! 2.17 (the floor infra/package/README.md states) — checked on the symbol versions it
//! needs — and a binary built normally on this Debian 12 box fails that same check.

use pgsurge_tests::glibc::{newer_than, Version};
use pgsurge_tests::tools::{run, text};
use pgsurge_tests::workspace_root;
use std::path::{Path, PathBuf};
use std::process::Command;

const FUNCTIONS: [&str; 5] = [
    "scale-up",
    "scale-down",
    "instance-ready",
    "instance-deleted",
    "reconcile",
];
/// Keep in step with GLIBC_FLOOR in infra/package/package.sh.
const FLOOR: Version = Version(2, 17, 0);
/// FunctionGraph takes a zip of at most 40 MB through the console (50 MB through the API;
/// larger only from OBS): "well under" is a quarter of that.
const ZIP_LIMIT: u64 = 10 * 1024 * 1024;

fn package_dir() -> PathBuf {
    let dir = workspace_root().join("target/package");
    assert!(
        dir.join("fgs").is_dir(),
        "{} missing: run `./just package` first (`./just test` does)",
        dir.display()
    );
    dir
}

fn zip_path(f: &str) -> PathBuf {
    package_dir().join("fgs").join(format!("{f}.zip"))
}

/// Unzip one package into a fresh directory.
fn unzipped(f: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        "unzip",
        "unzip",
        &[
            "-q",
            zip_path(f).to_str().unwrap(),
            "-d",
            dir.path().to_str().unwrap(),
        ],
        Path::new("."),
    );
    assert!(o.status.success(), "unzip {f}: {}", text(&o));
    dir
}

#[test]
#[ignore = "needs the release packages: run by `./just test-package`"]
fn each_zip_holds_bootstrap_binary_and_config_and_is_small() {
    use std::os::unix::fs::PermissionsExt;
    for f in FUNCTIONS {
        let zip = zip_path(f);
        let size = std::fs::metadata(&zip).unwrap().len();
        println!("{}: {size} bytes", zip.display());
        assert!(
            size < ZIP_LIMIT,
            "{f}.zip is {size} bytes, over {ZIP_LIMIT}"
        );
        let o = run(
            "unzip",
            "unzip",
            &["-Z1", zip.to_str().unwrap()],
            Path::new("."),
        );
        let mut names: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        names.sort();
        let mut want = vec![
            "bootstrap".to_string(),
            f.to_string(),
            "pgsurge.toml".into(),
        ];
        want.sort();
        assert_eq!(names, want, "{f}.zip");
        let dir = unzipped(f);
        for exe in ["bootstrap", f] {
            let mode = std::fs::metadata(dir.path().join(exe))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o111,
                0o111,
                "{f}.zip: {exe} is executable ({mode:o})"
            );
        }
        let shipped = std::fs::read(dir.path().join("pgsurge.toml")).unwrap();
        let source = std::fs::read(workspace_root().join("infra/package/pgsurge.toml")).unwrap();
        assert_eq!(
            shipped, source,
            "{f}.zip carries infra/package/pgsurge.toml"
        );
        // the same binary is packaged for HTTP hosting
        let http = std::fs::read(package_dir().join("http/bin").join(f)).unwrap();
        assert!(
            http == std::fs::read(dir.path().join(f)).unwrap(),
            "{f}: fgs and http binaries differ"
        );
        assert!(package_dir()
            .join(format!("http/systemd/pgsurge-{f}.service"))
            .is_file());
    }
}

#[test]
#[ignore = "needs the release packages: run by `./just test-package`"]
fn packaged_binaries_need_no_glibc_newer_than_the_floor() {
    for f in FUNCTIONS {
        let dir = unzipped(f);
        let too_new = newer_than(&dir.path().join(f), FLOOR);
        assert!(
            too_new.is_empty(),
            "{f}: symbols newer than glibc {FLOOR}: {too_new:?}"
        );
    }
}

/// The check can fail: the debug build (Debian 12, glibc 2.36) needs newer symbols.
#[test]
fn a_normal_debian_build_fails_the_glibc_check() {
    let debug = pgsurge_tests::bin("scale-up");
    let too_new = newer_than(&debug, FLOOR);
    assert!(
        !too_new.is_empty(),
        "{} needs nothing newer than {FLOOR}?",
        debug.display()
    );
    assert!(
        too_new.iter().any(|(_, v)| *v >= Version(2, 34, 0)),
        "Debian 12's glibc 2.36 build uses 2.34 symbols (libc_start_main, pthread_*): {too_new:?}"
    );
}

/// Release packages carry no failpoints (the tests crate's feature is not unified into
/// a package build); the workspace debug build does, which shows the probe can see them.
#[test]
#[ignore = "needs the release packages: run by `./just test-package`"]
fn packaged_binaries_have_no_failpoints() {
    let marker = pgsurge::failpoint::ENV.as_bytes();
    let has = |p: &Path| {
        std::fs::read(p)
            .unwrap()
            .windows(marker.len())
            .any(|w| w == marker)
    };
    assert!(
        has(&pgsurge_tests::bin("scale-up")),
        "the debug build has failpoints"
    );
    for f in FUNCTIONS {
        assert!(
            !has(&package_dir().join("http/bin").join(f)),
            "{f} has failpoints"
        );
    }
}

/// The bootstrap runs its binary with pgsurge.toml beside it (here: an error naming a key
/// the packaged config leaves to the environment), and `PGSURGE_*` overrides that file.
#[test]
#[ignore = "needs the release packages: run by `./just test-package`"]
fn bootstrap_reads_the_packaged_config_and_the_environment_overrides_it() {
    let dir = unzipped("scale-up");
    let event = workspace_root().join("tests/events/generic-alarm.json");
    let bootstrap = |env: &[(&str, &str)]| {
        let mut c = Command::new(dir.path().join("bootstrap"));
        c.args(["invoke", "--event", event.to_str().unwrap()])
            .current_dir("/");
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PGSURGE_")) {
            c.env_remove(k);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        (o.status.code(), text(&o))
    };
    let (code, out) = bootstrap(&[]);
    assert_eq!(code, Some(2), "bad setup: {out}");
    assert!(out.contains("invalid configuration"), "{out}");
    // The default state backend is `local`: an S3 key missing means the packaged file
    // (backend = "s3", the rest left to the environment) was read.
    assert!(
        out.contains("state.s3.bucket") && out.contains("backend = \"s3\""),
        "the packaged config chose S3 state: {out}"
    );

    let (code, out) = bootstrap(&[("PGSURGE_CLOUD__PROVIDER", "nimbus")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("nimbus"),
        "the environment overrides the file: {out}"
    );
}

/// The TLS front for HTTP hosting is a valid HAProxy configuration (with a fresh
/// self-signed certificate); without the certificate HAProxy refuses it.
#[test]
#[ignore = "needs the release packages: run by `./just test-package`"]
fn http_front_config_is_valid_haproxy() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("tls.pem");
    let key = dir.path().join("key.pem");
    let o = run(
        "openssl",
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=pgsurge.test",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            pem.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "openssl: {}", text(&o));
    let mut both = std::fs::read(&pem).unwrap();
    both.extend(std::fs::read(&key).unwrap());
    std::fs::write(&pem, both).unwrap();
    let cfg = package_dir().join("http/haproxy-tls.cfg");
    let check = |pem: &Path| {
        let o = Command::new("haproxy")
            .args(["-c", "-f", cfg.to_str().unwrap()])
            .env("PGSURGE_TLS_PEM", pem)
            .output()
            .expect("haproxy (Debian package `haproxy`) runs");
        (o.status.success(), text(&o))
    };
    let (ok, out) = check(&pem);
    assert!(ok, "haproxy -c: {out}");
    let (ok, out) = check(&dir.path().join("missing.pem"));
    assert!(!ok, "a missing certificate must fail: {out}");
}
