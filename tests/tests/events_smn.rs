//! SMN message signatures and the subscription handshake, with certificates and
//! signatures made by the `openssl` command (an implementation independent of ours).
//!
//! The certificate reaches the verifier through the `SmnFetcher` trait (served from
//! memory here), and once for real over HTTPS from `openssl s_server` with a private CA.

use pgsurge::config::AuthConfig;
use pgsurge::events::{
    Authenticated, Event, EventError, HttpsFetcher, ParamLimits, Receiver, SmnConfig, SmnFetcher,
    Webhook,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

const CERT_URL: &str =
    "https://smn.ru-moscow-1.hc.sbercloud.ru/smn/resources/cert/pgsurge-test.crt";

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the `openssl` command is needed (Debian package openssl; infra/local/deps.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    /// A fresh key and self-signed certificate: `rsa` (SHA256withRSA) or `ec` (P-256).
    fn new(kind: &str) -> Keys {
        let dir = tempfile::Builder::new()
            .prefix("pgsurge-i6-smn")
            .tempdir()
            .unwrap();
        let newkey = if kind == "rsa" { "rsa:2048" } else { "ec" };
        let mut args = vec!["req", "-x509", "-newkey", newkey];
        if kind == "ec" {
            args.extend(["-pkeyopt", "ec_paramgen_curve:P-256"]);
        }
        args.extend([
            "-sha256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=smn-signing-test",
        ]);
        openssl(dir.path(), &args);
        Keys { dir }
    }

    fn cert(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("cert.pem")).unwrap()
    }

    fn sign(&self, text: &str) -> String {
        std::fs::write(self.dir.path().join("tosign"), text).unwrap();
        let sig = openssl(
            self.dir.path(),
            &["dgst", "-sha256", "-sign", "key.pem", "tosign"],
        );
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(sig)
    }
}

/// Serves one certificate and records every URL asked for.
struct Served {
    cert: Vec<u8>,
    asked: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl SmnFetcher for Served {
    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        self.asked.lock().unwrap().push(url.to_string());
        Ok(self.cert.clone())
    }
}

fn ts(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0).unwrap().format(&Rfc3339).unwrap()
}

fn cloud_eye_message() -> String {
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(
            pgsurge_tests::workspace_root().join("tests/events/cloudeye-smn-alarm.json"),
        )
        .unwrap(),
    )
    .unwrap();
    example["message"].as_str().unwrap().to_string()
}

fn notification(keys: &Keys, at: OffsetDateTime, cert_url: &str) -> Value {
    let mut m = json!({
        "type": "Notification",
        "topic_urn": "urn:smn:ru-moscow-1:0a1b2c3d4e5f40718293a4b5c6d7e8f9:pgsurge-alarms",
        "message_id": "a3c9f2d7e18b4c6f9d0e1f2a3b4c5d6e",
        "subject": "[Major alarm] pg-read-cpu-high",
        "message": cloud_eye_message(),
        "timestamp": ts(at),
        "signature_version": "v1",
        "signing_cert_url": cert_url,
        "unsubscribe_url": "https://smn.ru-moscow-1.hc.sbercloud.ru/smn/subscription/unsubscribe?x=1",
    });
    m["signature"] = keys.sign(&pgsurge_tests::smn::string_to_sign(&m)).into();
    m
}

fn via_http(m: &Value) -> Webhook {
    Webhook {
        headers: Default::default(),
        body: m.to_string(),
        via_http: true,
    }
}

fn receiver(keys: &Keys, smn: SmnConfig) -> (Receiver, Arc<Served>) {
    let served = Arc::new(Served {
        cert: keys.cert(),
        asked: Mutex::new(Vec::new()),
    });
    let auth = AuthConfig {
        smn,
        ..AuthConfig::default()
    };
    (
        Receiver::with_fetcher(&auth, ParamLimits::default(), 256 * 1024, served.clone()),
        served,
    )
}

#[tokio::test]
async fn a_signed_notification_is_authenticated_by_its_signature_alone() {
    for kind in ["rsa", "ec"] {
        let keys = Keys::new(kind);
        let (r, served) = receiver(&keys, SmnConfig::default());
        let now = OffsetDateTime::now_utc();
        let m = notification(&keys, now - Duration::seconds(30), CERT_URL);
        // No token, no HMAC: SMN cannot send them; its signature is the proof.
        let event = r.receive(&via_http(&m), now).await.unwrap();
        match event {
            Event::Alarms { alarms } => assert_eq!(alarms[0].name, "pg-read-cpu-high"),
            other => panic!("{other:?}"),
        }
        assert_eq!(served.asked.lock().unwrap().as_slice(), [CERT_URL]);
        // The certificate is cached: a second message fetches nothing.
        r.receive(&via_http(&m), now).await.unwrap();
        assert_eq!(served.asked.lock().unwrap().len(), 1, "{kind}");
    }
}

#[tokio::test]
async fn tampering_wrong_keys_hosts_and_stale_messages_are_rejected() {
    let keys = Keys::new("rsa");
    let (r, _) = receiver(&keys, SmnConfig::default());
    let now = OffsetDateTime::now_utc();
    let good = notification(&keys, now, CERT_URL);

    let mut tampered = good.clone();
    tampered["message"] = good["message"]
        .as_str()
        .unwrap()
        .replace("pgsurge.multiplier=2", "pgsurge.multiplier=3")
        .into();
    let err = r.receive(&via_http(&tampered), now).await.unwrap_err();
    assert!(matches!(err, EventError::BadSignature(_)), "{err}");
    assert!(
        err.to_string()
            .contains("signature does not match the message (SHA256withRSA"),
        "{err}"
    );

    let mut retimed = good.clone();
    retimed["timestamp"] = ts(now + Duration::seconds(1)).into();
    assert!(matches!(
        r.receive(&via_http(&retimed), now).await.unwrap_err(),
        EventError::BadSignature(_)
    ));

    // Signed by someone else's key, pointing at our certificate.
    let other = Keys::new("rsa");
    let forged = notification(&other, now, CERT_URL);
    assert!(matches!(
        r.receive(&via_http(&forged), now).await.unwrap_err(),
        EventError::BadSignature(_)
    ));

    // Certificates only from allowed hosts, over https.
    let evil = notification(&keys, now, "https://smn.evil.example/cert.pem");
    let err = r.receive(&via_http(&evil), now).await.unwrap_err();
    assert!(
        err.to_string().contains("is not in auth.smn.cert_hosts"),
        "{err}"
    );
    let lookalike = notification(&keys, now, "https://evilhc.sbercloud.ru.example/c.pem");
    assert!(r
        .receive(&via_http(&lookalike), now)
        .await
        .unwrap_err()
        .to_string()
        .contains("cert_hosts"));
    let plain = notification(&keys, now, "http://smn.ru-moscow-1.hc.sbercloud.ru/c.pem");
    assert!(r
        .receive(&via_http(&plain), now)
        .await
        .unwrap_err()
        .to_string()
        .contains("must be https://"));

    let stale = notification(&keys, now - Duration::hours(2), CERT_URL);
    let err = r.receive(&via_http(&stale), now).await.unwrap_err();
    assert!(
        matches!(
            err,
            EventError::StaleTimestamp {
                window_secs: 3600,
                ..
            }
        ),
        "{err}"
    );

    let mut unsigned = good.clone();
    unsigned["signature"] = "not base64!".into();
    assert!(r
        .receive(&via_http(&unsigned), now)
        .await
        .unwrap_err()
        .to_string()
        .contains("not base64"));

    // A message signed while the certificate was valid, checked after it expired.
    let later = now + Duration::days(3);
    let expired = notification(&keys, later, CERT_URL);
    let err = r.receive(&via_http(&expired), later).await.unwrap_err();
    assert!(err.to_string().contains("not valid now"), "{err}");

    let only_other_topic = SmnConfig {
        topic_urns: vec!["urn:smn:ru-moscow-1:x:other".into()],
        ..SmnConfig::default()
    };
    let (r2, _) = receiver(&keys, only_other_topic);
    assert!(r2
        .receive(&via_http(&good), now)
        .await
        .unwrap_err()
        .to_string()
        .contains("auth.smn.topic_urns"));
}

#[tokio::test]
async fn a_verified_subscription_is_confirmed_and_an_unsubscription_is_not() {
    let keys = Keys::new("rsa");
    let (r, served) = receiver(&keys, SmnConfig::default());
    let now = OffsetDateTime::now_utc();
    let subscribe_url = "https://smn.ru-moscow-1.hc.sbercloud.ru/smn/subscription/confirm?token=7c2f&topic_urn=urn:smn:x";
    let mut m = json!({
        "type": "SubscriptionConfirmation",
        "topic_urn": "urn:smn:ru-moscow-1:0a1b2c3d4e5f40718293a4b5c6d7e8f9:pgsurge-alarms",
        "message_id": "0d1e2f3a4b5c4d6e8f9a0b1c2d3e4f5a",
        "message": "You are invited to subscribe to topic: urn:smn:x.",
        "subscribe_url": subscribe_url,
        "timestamp": ts(now),
        "signature_version": "v1",
        "signing_cert_url": CERT_URL,
    });
    m["signature"] = keys.sign(&pgsurge_tests::smn::string_to_sign(&m)).into();
    let (event, how) = r.receive_authenticated(&via_http(&m), now).await.unwrap();
    assert_eq!(how, Authenticated::SmnSignature);
    let Event::SubscriptionConfirmation(c) = event else {
        panic!("{event:?}")
    };
    assert!(r.confirm(&c, how).await.unwrap());
    assert_eq!(served.asked.lock().unwrap().last().unwrap(), subscribe_url);

    m["type"] = "UnsubscribeConfirmation".into();
    m["signature"] = keys.sign(&pgsurge_tests::smn::string_to_sign(&m)).into();
    let (event, how) = r.receive_authenticated(&via_http(&m), now).await.unwrap();
    let Event::SubscriptionConfirmation(c) = event else {
        panic!("{event:?}")
    };
    assert!(c.unsubscribe);
    let asked = served.asked.lock().unwrap().len();
    assert!(
        !r.confirm(&c, how).await.unwrap(),
        "never re-subscribe on an unsubscribe message"
    );
    // A confirmation that did not come with a verified SMN signature is never followed.
    m["type"] = "SubscriptionConfirmation".into();
    let (event, how) = r
        .receive_authenticated(&Webhook::direct(m.to_string()), now)
        .await
        .unwrap();
    assert_eq!(how, Authenticated::Platform);
    let Event::SubscriptionConfirmation(c) = event else {
        panic!("{event:?}")
    };
    assert!(!r.confirm(&c, how).await.unwrap());
    assert_eq!(served.asked.lock().unwrap().len(), asked);

    // A forged subscription (tampered URL) is refused before anything is visited.
    m["type"] = "SubscriptionConfirmation".into();
    m["subscribe_url"] =
        "https://smn.ru-moscow-1.hc.sbercloud.ru/smn/subscription/confirm?token=attacker".into();
    assert!(matches!(
        r.receive(&via_http(&m), now).await.unwrap_err(),
        EventError::BadSignature(_)
    ));
}

/// `openssl s_server -WWW` serving a directory over TLS; killed on drop.
struct TlsServer(std::process::Child);
impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_real_fetcher_gets_the_certificate_over_verified_https() {
    let keys = Keys::new("rsa");
    let d: PathBuf = keys.dir.path().to_path_buf();
    // A private CA and a server certificate for 127.0.0.1.
    openssl(
        &d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=pgsurge-test-ca",
        ],
    );
    openssl(
        &d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &d,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "srv.pem",
        ],
    );
    let www = d.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::copy(d.join("cert.pem"), www.join("smn.crt")).unwrap();
    let port = pgsurge_tests::free_port();
    let _server = TlsServer(
        Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-WWW",
                "-accept",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("-cert")
            .arg(d.join("srv.pem"))
            .arg("-key")
            .arg(d.join("srv.key"))
            .current_dir(&www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let smn = SmnConfig {
        cert_hosts: vec!["127.0.0.1".into()],
        ca_file: Some(d.join("ca.pem")),
        ..SmnConfig::default()
    };
    let cert_url = format!("https://127.0.0.1:{port}/smn.crt");
    let auth = AuthConfig {
        smn: smn.clone(),
        ..AuthConfig::default()
    };
    let r = Receiver::new(&auth, ParamLimits::default(), 256 * 1024).unwrap();
    let now = OffsetDateTime::now_utc();
    let m = notification(&keys, now, &cert_url);
    let event = r.receive(&via_http(&m), now).await.unwrap();
    assert!(matches!(event, Event::Alarms { .. }), "{event:?}");

    // Without the private CA the same fetch fails TLS verification.
    let strict = HttpsFetcher::new(&SmnConfig {
        ca_file: None,
        ..smn
    })
    .unwrap();
    let err = strict.get(&cert_url).await.unwrap_err();
    assert!(err.contains(&cert_url), "{err}");
    let err = strict
        .get(&format!("http://127.0.0.1:{port}/smn.crt"))
        .await
        .unwrap_err();
    assert!(!err.is_empty());
}

/// The signature covers only the SMN keys. A captured genuine message (still inside the
/// age window) with keys of another format added next to them must not be read as that
/// format: each variant is refused, names the injected keys, and yields no alarm.
#[tokio::test]
async fn a_signed_message_with_injected_keys_of_another_format_is_refused() {
    let keys = Keys::new("rsa");
    let (r, _) = receiver(&keys, SmnConfig::default());
    let now = OffsetDateTime::now_utc();
    let genuine = notification(&keys, now - Duration::minutes(10), CERT_URL);
    // The genuine message itself is accepted (so the refusals below are due to the keys).
    let (event, how) = r
        .receive_authenticated(&via_http(&genuine), now)
        .await
        .unwrap();
    assert_eq!(how, Authenticated::SmnSignature);
    assert!(matches!(event, Event::Alarms { .. }), "{event:?}");

    let forged_alerts = json!([{
        "status": "firing",
        "labels": {"alertname": "Forged", "pgsurge_replicas": "10"},
        "annotations": {},
        "startsAt": "2026-11-25T09:00:00Z",
        "fingerprint": "f00d"
    }]);
    let injections: Vec<(Vec<(&str, Value)>, &str)> = vec![
        (
            vec![("version", json!("4")), ("alerts", forged_alerts)],
            "alerts, version",
        ),
        (
            vec![("alarm_id", json!("forged")), ("current", json!("alarm"))],
            "alarm_id, current",
        ),
        (
            vec![
                ("pgsurge", json!(1)),
                ("kind", json!("alarm")),
                ("id", json!("x")),
                ("name", json!("x")),
                ("state", json!("firing")),
            ],
            "pgsurge",
        ),
        (
            vec![
                ("lifecycle_action_key", json!("k")),
                ("instance_id", json!("i")),
            ],
            "lifecycle_action_key",
        ),
    ];
    for (added, named) in injections {
        let mut m = genuine.clone();
        for (k, v) in added {
            m[k] = v;
        }
        let err = r.receive(&via_http(&m), now).await.unwrap_err();
        assert!(matches!(err, EventError::Unauthenticated(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("keys of another event format ({named})")),
            "{text}"
        );
        assert!(text.contains("signature does not cover"), "{text}");
    }
}
