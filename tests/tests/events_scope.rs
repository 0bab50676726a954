//! Cluster scoping through the real function binaries: one Alertmanager / Aodh / SMN
//! topic serves many clusters, and a function counts only the alarms that name its own
//! (`cluster.name`, here `catalog`). Per format: an alarm for another cluster is
//! ignored with the reason, one for this cluster is accepted, and one that names none
//! is ignored unless `cluster.require_label = false`.

use pgsurge::events::AuthConfig;
use pgsurge::events::{ClusterScope, Event, EventError, ParamLimits, Receiver, Webhook};
use pgsurge_tests::invoke_cli;
use serde_json::{json, Value};

const OURS: &str = "catalog";

/// Run `function` on `event` with `cluster.name = catalog` (and `require_label` as
/// given); the JSON answer.
fn run(function: &str, event: &Value, require_label: Option<bool>) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("event.json");
    std::fs::write(&path, event.to_string()).unwrap();
    let mut env = vec![("PGSURGE_CLUSTER__NAME", OURS.to_string())];
    if let Some(r) = require_label {
        env.push(("PGSURGE_CLUSTER__REQUIRE_LABEL", r.to_string()));
    }
    let (code, answer, stderr) = invoke_cli(function, &path, &env);
    assert_eq!(code, 0, "{function} {event}: {answer} {stderr}");
    answer
}

fn alert(fingerprint: &str, labels: Value, annotations: Value) -> Value {
    json!({"status": "firing", "labels": labels, "annotations": annotations,
           "startsAt": "2026-11-25T09:00:00Z", "fingerprint": fingerprint})
}

fn alertmanager(alerts: Vec<Value>) -> Value {
    json!({"version": "4", "status": "firing", "alerts": alerts})
}

fn cloud_eye(description: &str, dimension: &str) -> Value {
    json!({"alarm_id": "al1", "alarm_name": "pg-read-cpu-high", "alarm_status": "alarm",
           "time": 1795597200000u64, "namespace": "SYS.ECS", "metric_name": "cpu_util",
           "dimension": dimension, "alarm_description": description})
}

/// One body per format and place the cluster can be named, naming `cluster` (or none).
fn formats(cluster: Option<&str>) -> Vec<(&'static str, Value)> {
    let word = cluster
        .map(|c| format!(" pgsurge.cluster={c}"))
        .unwrap_or_default();
    let mut label = json!({"alertname": "PgReadLoadHigh", "severity": "page"});
    let mut annotation = json!({"summary": "hot"});
    let mut dimension = "instance_id:5b7c".to_string();
    if let Some(c) = cluster {
        label["pgsurge_cluster"] = c.into();
        annotation["pgsurge.cluster"] = c.into();
        dimension = format!("instance_id:5b7c,pgsurge_cluster:{c}");
    }
    let mut generic = json!({"pgsurge": 1, "kind": "alarm", "id": "g1", "name": "load",
                             "state": "firing"});
    if let Some(c) = cluster {
        generic["params"] = json!({"cluster": c});
    }
    let ce_description = cloud_eye(&format!("Read tier hot.{word}"), "instance_id:5b7c");
    vec![
        (
            "alertmanager label",
            alertmanager(vec![alert("f1", label, json!({}))]),
        ),
        (
            "alertmanager annotation",
            alertmanager(vec![alert(
                "f1",
                json!({"alertname": "PgReadLoadHigh"}),
                annotation,
            )]),
        ),
        (
            "aodh alarm name",
            json!({"alarm_id": "a1", "alarm_name": format!("pg-read-cpu-high{word}"),
                   "current": "alarm", "previous": "ok", "reason": "Transition to alarm"}),
        ),
        (
            "cloud eye description (SMN)",
            json!({"type": "Notification", "topic_urn": "urn:smn:r:p:t",
                   "message": ce_description.to_string()}),
        ),
        (
            "cloud eye dimension (SMN)",
            json!({"type": "Notification", "topic_urn": "urn:smn:r:p:t",
                   "message": cloud_eye("Read tier hot.", &dimension).to_string()}),
        ),
        (
            "cloud eye (FunctionGraph SMN trigger)",
            json!({"record": [{"event_source": "smn",
                               "smn": {"type": "notification", "message": ce_description.to_string()}}]}),
        ),
        ("generic params.cluster", generic),
    ]
}

#[test]
fn an_alarm_for_another_cluster_is_ignored_saying_why_in_every_format() {
    for (format, event) in formats(Some("billing")) {
        let a = run("scale-up", &event, None);
        assert_eq!(a["status"], "ignored", "{format}: {a}");
        let reason = a["reason"].as_str().unwrap();
        assert!(
            reason.contains("is for cluster \"billing\", not \"catalog\""),
            "{format}: {reason}"
        );
        // Also with require_label off: naming another cluster is never ours.
        let a = run("scale-up", &event, Some(false));
        assert_eq!(a["status"], "ignored", "{format}: {a}");
    }
}

#[test]
fn an_alarm_for_this_cluster_is_accepted_in_every_format() {
    for (format, event) in formats(Some(OURS)) {
        let a = run("scale-up", &event, None);
        assert_eq!(a["status"], "accepted", "{format}: {a}");
        assert_eq!(
            a["event"]["alarms"][0]["params"]["cluster"], OURS,
            "{format}"
        );
    }
}

#[test]
fn an_alarm_that_names_no_cluster_counts_only_without_require_label() {
    for (format, event) in formats(None) {
        // The default: require_label = true.
        let a = run("scale-up", &event, None);
        assert_eq!(a["status"], "ignored", "{format}: {a}");
        let reason = a["reason"].as_str().unwrap();
        assert!(
            reason.contains("names no cluster") && reason.contains("cluster.require_label"),
            "{format}: {reason}"
        );
        let a = run("scale-up", &event, Some(false));
        assert_eq!(a["status"], "accepted", "{format}: {a}");
    }
}

/// The review's case: an alert labelled with Prometheus' `cluster=billing` reached the
/// catalog functions and was accepted. Now it names no pgsurge cluster, and the reason
/// points at the label that is not read.
#[test]
fn prometheus_cluster_label_is_not_a_pgsurge_cluster() {
    let event = alertmanager(vec![alert(
        "f1",
        json!({"alertname": "PgReadLoadHigh", "cluster": "billing"}),
        json!({}),
    )]);
    let a = run("scale-up", &event, None);
    assert_eq!(a["status"], "ignored", "{a}");
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains("its `cluster` label \"billing\" is not read"),
        "{a}"
    );
}

/// One notification, alerts of several clusters: only this cluster's count, the others
/// are listed as left out — and another cluster's parameters (here beyond our
/// `policy.max_step`) do not get the delivery refused.
#[test]
fn in_a_group_of_alerts_for_several_clusters_only_ours_count() {
    let event = alertmanager(vec![
        alert(
            "b1",
            json!({"alertname": "Hot", "pgsurge_cluster": "billing", "pgsurge_replicas": "50"}),
            json!({}),
        ),
        alert(
            "c1",
            json!({"alertname": "Hot", "pgsurge_cluster": OURS, "pgsurge_replicas": "2"}),
            json!({}),
        ),
        alert("n1", json!({"alertname": "Hot"}), json!({})),
    ]);
    let a = run("scale-up", &event, None);
    assert_eq!(a["status"], "accepted", "{a}");
    let alarms = a["event"]["alarms"].as_array().unwrap();
    assert_eq!(alarms.len(), 1, "{a}");
    assert_eq!(alarms[0]["id"], "c1@2026-11-25T09:00:00Z");
    let reason = a["reason"].as_str().unwrap();
    assert!(reason.starts_with("1 firing alarm(s) of 1"), "{reason}");
    assert!(
        reason.contains("left out")
            && reason.contains("is for cluster \"billing\"")
            && reason.contains("names no cluster"),
        "{reason}"
    );
    // With require_label off the unlabelled one is ours too.
    let a = run("scale-up", &event, Some(false));
    assert_eq!(a["event"]["alarms"].as_array().unwrap().len(), 2, "{a}");
    // Our own alarm's parameters are still held to our limits.
    let mut too_big = event.clone();
    too_big["alerts"][1]["labels"]["pgsurge_replicas"] = "50".into();
    let path = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(path.path(), too_big.to_string()).unwrap();
    let (code, answer, _) = invoke_cli(
        "scale-up",
        path.path(),
        &[("PGSURGE_CLUSTER__NAME", OURS.to_string())],
    );
    assert_eq!(code, 1, "{answer}");
    assert!(
        answer["errorMessage"]
            .as_str()
            .unwrap()
            .contains("replicas=50 is outside 1..=10"),
        "{answer}"
    );
}

/// Every function is scoped, not only scale-up.
#[test]
fn every_function_ignores_another_clusters_alarm() {
    let billing = alertmanager(vec![alert(
        "b1",
        json!({"alertname": "Hot", "pgsurge_cluster": "billing"}),
        json!({}),
    )]);
    for function in [
        "scale-up",
        "scale-down",
        "instance-ready",
        "instance-deleted",
        "reconcile",
    ] {
        let a = run(function, &billing, Some(false));
        assert_eq!(a["status"], "ignored", "{function}: {a}");
        assert!(
            a["reason"].as_str().unwrap().contains("billing"),
            "{function}: {a}"
        );
    }
    // A generic instance event that names another cluster is ignored too; one that names
    // none is read against this cluster's state (it knows its own servers).
    let instance = |cluster: Option<&str>| {
        let mut e = json!({"pgsurge": 1, "kind": "instance", "event": "deleted",
                           "server_id": "3f1e"});
        if let Some(c) = cluster {
            e["cluster"] = c.into();
        }
        e
    };
    let a = run("instance-deleted", &instance(Some("billing")), None);
    assert_eq!(a["status"], "ignored", "{a}");
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains("instance event for cluster \"billing\", not \"catalog\""),
        "{a}"
    );
    for c in [Some(OURS), None] {
        let a = run("instance-deleted", &instance(c), None);
        assert_eq!(a["status"], "accepted", "{c:?}: {a}");
    }
}

/// The library's front door: a scoped receiver holds only this cluster's alarms to the
/// parameter limits; an unscoped one (tests, `pgsurge plan`) holds every alarm.
#[tokio::test]
async fn a_scoped_receiver_checks_limits_only_for_its_own_alarms() {
    let body = alertmanager(vec![alert(
        "b1",
        json!({"alertname": "Hot", "pgsurge_cluster": "billing", "pgsurge_replicas": "50"}),
        json!({}),
    )])
    .to_string();
    let auth = AuthConfig::default();
    let now = time::OffsetDateTime::now_utc();
    let unscoped = Receiver::new(&auth, ParamLimits::default(), 256 * 1024).unwrap();
    let err = unscoped
        .receive(&Webhook::direct(body.clone()), now)
        .await
        .unwrap_err();
    assert!(matches!(err, EventError::InvalidParams { .. }), "{err}");
    let scope = ClusterScope {
        name: OURS.into(),
        require_label: true,
    };
    let scoped = Receiver::new(&auth, ParamLimits::default(), 256 * 1024)
        .unwrap()
        .scoped(scope.clone());
    let event = scoped.receive(&Webhook::direct(body), now).await.unwrap();
    let s = scope.apply(event.clone());
    assert!(!s.in_scope);
    assert_eq!(s.event, event);
    assert!(matches!(event, Event::Alarms { ref alarms } if alarms.len() == 1));
}
