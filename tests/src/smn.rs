//! The SMN side of message signatures, for the tests: what SMN signs, built from Huawei
//! Cloud's documentation independently of the library's verifier.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The string SMN signs for message `m`: `key\nvalue\n` for each signed key in order,
/// `subject` left out when empty.
pub fn string_to_sign(m: &Value) -> String {
    let keys: &[&str] = if m["type"] == "Notification" {
        &[
            "message",
            "message_id",
            "subject",
            "timestamp",
            "topic_urn",
            "type",
        ]
    } else {
        &[
            "message",
            "message_id",
            "subscribe_url",
            "timestamp",
            "topic_urn",
            "type",
        ]
    };
    keys.iter()
        .filter_map(|k| {
            m[*k]
                .as_str()
                .filter(|v| *k != "subject" || !v.is_empty())
                .map(|v| format!("{k}\n{v}\n"))
        })
        .collect()
}

/// Where SMN's signing certificate for region `ru-moscow-1` lives (the documented shape:
/// `https://smn.<region>.<domain>/smn/SMN_<region>_<uuid>.pem`).
pub const CERT_URL: &str =
    "https://smn.ru-moscow-1.hc.sbercloud.ru/smn/SMN_ru-moscow-1_3f0c9a7e5b1d4c2e8a6f0b9d7c5e3a1f.pem";
/// The SMN endpoint host of that region: the subject an SMN certificate is issued to.
pub const SMN_HOST: &str = "smn.ru-moscow-1.hc.sbercloud.ru";
/// The topic the tests allow-list.
pub const TOPIC: &str = "urn:smn:ru-moscow-1:0a1b2c3d4e5f40718293a4b5c6d7e8f9:pgsurge-alarms";

fn openssl(dir: &Path, args: &[&str]) {
    crate::tls::openssl(args, dir)
}

/// A test certificate authority made by the `openssl` command (an implementation
/// independent of the verifier): `ca.pem` is what `auth.smn.ca_file` points at.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    serial: std::sync::atomic::AtomicU32,
}

/// A key and its certificate, made by [`TestCa::issue`] or [`TestCa::self_signed`].
pub struct Signer {
    dir: PathBuf,
    name: String,
    /// The certificate as served at `signing_cert_url` (PEM).
    pub cert_pem: Vec<u8>,
    /// The private key, PKCS#8 DER (for signing in-process with ring).
    pub pkcs8: Vec<u8>,
}

/// `rsa` (SHA256withRSA, 2048 bits) or `ec` (P-256).
fn key(dir: &Path, kind: &str, name: &str) {
    let opt = if kind == "rsa" {
        "rsa_keygen_bits:2048"
    } else {
        "ec_paramgen_curve:P-256"
    };
    let alg = if kind == "rsa" { "RSA" } else { "EC" };
    let key = format!("{name}.key");
    openssl(
        dir,
        &["genpkey", "-algorithm", alg, "-pkeyopt", opt, "-out", &key],
    );
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &key,
            "-outform",
            "DER",
            "-out",
            &format!("{name}.p8"),
        ],
    );
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::Builder::new()
            .prefix("pgsurge-smn-ca")
            .tempdir()
            .expect("tempdir");
        key(dir.path(), "rsa", "ca");
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-key",
                "ca.key",
                "-sha256",
                "-days",
                "3",
                "-subj",
                "/CN=pgsurge test root CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-out",
                "ca.pem",
            ],
        );
        TestCa {
            dir,
            serial: std::sync::atomic::AtomicU32::new(1),
        }
    }

    /// The CA certificate (PEM file) to trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate issued by this CA: subject `CN=<cn>` and, when given, SAN dNSNames.
    pub fn issue(&self, kind: &str, cn: &str, dns: &[&str]) -> Signer {
        let n = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("leaf{n}");
        let d = self.dir.path();
        key(d, kind, &name);
        let csr = format!("{name}.csr");
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/CN={cn}"),
                "-out",
                &csr,
            ],
        );
        let mut ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n".to_string();
        if !dns.is_empty() {
            let names: Vec<String> = dns.iter().map(|h| format!("DNS:{h}")).collect();
            ext.push_str(&format!("subjectAltName={}\n", names.join(",")));
        }
        std::fs::write(d.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &n.to_string(),
                "-days",
                "2",
                "-sha256",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
        self.signer(name)
    }

    /// A self-signed certificate (what anyone can make) with subject `CN=<cn>`.
    pub fn self_signed(&self, kind: &str, cn: &str) -> Signer {
        let n = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("self{n}");
        let d = self.dir.path();
        key(d, kind, &name);
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-key",
                &format!("{name}.key"),
                "-sha256",
                "-days",
                "2",
                "-subj",
                &format!("/CN={cn}"),
                "-addext",
                &format!("subjectAltName=DNS:{cn}"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
        self.signer(name)
    }

    fn signer(&self, name: String) -> Signer {
        let d = self.dir.path();
        Signer {
            cert_pem: std::fs::read(d.join(format!("{name}.pem"))).unwrap(),
            pkcs8: std::fs::read(d.join(format!("{name}.p8"))).unwrap(),
            dir: d.to_path_buf(),
            name,
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl Signer {
    /// The base64 signature of `text` (SHA-256 with this key), as SMN puts in `signature`.
    pub fn sign(&self, text: &str) -> String {
        let input = self.dir.join(format!("{}.tosign", self.name));
        std::fs::write(&input, text).unwrap();
        let out = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(self.dir.join(format!("{}.key", self.name)))
            .arg(&input)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(out.stdout)
    }

    /// Sign SMN message `m` in place (its `signature` field).
    pub fn sign_message(&self, m: &mut Value) {
        m["signature"] = self.sign(&string_to_sign(m)).into();
    }
}
