//! Every example event in tests/events/ parses into exactly the expected normalised
//! event, and the malformed one is refused with a precise error.

use pgsurge::events::{
    parse, Alarm, AlarmParams, AlarmState, Event, EventError, InstanceKind, Source,
    SubscriptionConfirmation,
};
use std::collections::BTreeMap;

fn example(name: &str) -> Result<Event, EventError> {
    let path = pgsurge_tests::workspace_root()
        .join("tests/events")
        .join(name);
    parse(&std::fs::read_to_string(&path).unwrap())
}

fn alarms(name: &str) -> Vec<Alarm> {
    match example(name).unwrap() {
        Event::Alarms { alarms } => alarms,
        other => panic!("{name}: {other:?}"),
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn alertmanager_firing() {
    assert_eq!(
        alarms("alertmanager-firing.json"),
        vec![Alarm {
            source: Source::Alertmanager,
            id: "6b3a1f0c9d2e4a17@2026-11-25T09:00:00.000Z".into(),
            name: "PgReadLoadHigh".into(),
            state: AlarmState::Firing,
            metric: None,
            value: Some(82.4),
            threshold: Some(75.0),
            resource: map(&[("alertname", "PgReadLoadHigh"), ("severity", "page")]),
            at: Some("2026-11-25T09:00:00.000Z".into()),
            params: AlarmParams {
                multiplier: Some(2),
                cluster: Some("main".into()),
                ..AlarmParams::default()
            },
        }]
    );
}

#[test]
fn alertmanager_resolved_is_the_same_occurrence() {
    let a = alarms("alertmanager-resolved.json");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].state, AlarmState::Resolved);
    assert_eq!(a[0].id, "6b3a1f0c9d2e4a17@2026-11-25T09:00:00.000Z");
    assert_eq!(
        a[0].params,
        AlarmParams {
            cluster: Some("main".into()),
            ..AlarmParams::default()
        }
    );
}

#[test]
fn alertmanager_grouped_alerts_each_count() {
    let a = alarms("alertmanager-grouped.json");
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].id, "a1b2c3d4e5f60718@2026-11-25T09:01:00Z");
    assert_eq!(a[0].state, AlarmState::Firing);
    assert_eq!(a[0].params.replicas, Some(2));
    assert_eq!(a[0].value, Some(91.2));
    assert_eq!(a[0].resource["instance"], "10.0.1.11:9187");
    assert_eq!(a[1].id, "0f1e2d3c4b5a6978@2026-11-25T08:40:00Z");
    assert_eq!(a[1].state, AlarmState::Resolved);
    assert_eq!(a[1].value, Some(41.0));
    assert!(a
        .iter()
        .all(|a| a.params.cluster.as_deref() == Some("main")));
}

#[test]
fn aodh_alarm_and_ok() {
    assert_eq!(
        alarms("aodh-alarm.json"),
        vec![Alarm {
            source: Source::Aodh,
            id: "7e8c1b2a-5d4f-4c3b-9a1e-0f2d3c4b5a69:ok->alarm:86.2".into(),
            name: "pg-read-cpu-high pgsurge.cluster=main".into(),
            state: AlarmState::Firing,
            metric: None,
            value: Some(86.2),
            threshold: None,
            resource: map(&[
                ("alarm_id", "7e8c1b2a-5d4f-4c3b-9a1e-0f2d3c4b5a69"),
                ("alarm_type", "threshold"),
                ("severity", "critical"),
            ]),
            at: None,
            params: AlarmParams {
                replicas: Some(2),
                cluster: Some("main".into()),
                ..AlarmParams::default()
            },
        }]
    );
    let ok = alarms("aodh-alarm-ok.json");
    assert_eq!(ok[0].state, AlarmState::Resolved);
    assert_eq!(
        ok[0].id,
        "7e8c1b2a-5d4f-4c3b-9a1e-0f2d3c4b5a69:alarm->ok:41.7"
    );
}

fn cloud_eye(params: AlarmParams) -> Alarm {
    Alarm {
        source: Source::CloudEye,
        id: "al1732525200000Kz3nP8qRx@1795597200000".into(),
        name: "pg-read-cpu-high".into(),
        state: AlarmState::Firing,
        metric: Some("cpu_util".into()),
        value: Some(83.6),
        threshold: Some(75.0),
        resource: map(&[
            ("namespace", "SYS.ECS"),
            ("instance_id", "5b7c2d1e-3f4a-4b5c-8d9e-0a1b2c3d4e5f"),
        ]),
        at: Some("2026-11-25T09:00:00Z".into()),
        params,
    }
}

#[test]
fn cloud_eye_through_an_smn_subscription_and_a_functiongraph_trigger() {
    assert_eq!(
        alarms("cloudeye-smn-alarm.json"),
        vec![cloud_eye(AlarmParams {
            multiplier: Some(2),
            cluster: Some("main".into()),
            ..AlarmParams::default()
        })]
    );
    assert_eq!(
        alarms("functiongraph-smn-trigger.json"),
        vec![cloud_eye(AlarmParams {
            replicas: Some(2),
            cluster: Some("main".into()),
            ..AlarmParams::default()
        })]
    );
}

#[test]
fn smn_subscription_confirmation() {
    assert_eq!(
        example("smn-subscription-confirmation.json").unwrap(),
        Event::SubscriptionConfirmation(SubscriptionConfirmation {
            topic_urn: "urn:smn:ru-moscow-1:0a1b2c3d4e5f40718293a4b5c6d7e8f9:pgsurge-alarms".into(),
            subscribe_url: "https://smn.ru-moscow-1.hc.sbercloud.ru/smn/subscription/confirm?token=7c2f1e0d9b8a47c6b5a4f3e2d1c0b9a8&topic_urn=urn:smn:ru-moscow-1:0a1b2c3d4e5f40718293a4b5c6d7e8f9:pgsurge-alarms".into(),
            unsubscribe: false,
        })
    );
}

/// AS lifecycle hooks are refused: pgsurge cannot answer them (no AS API client), and
/// accepting one meant reading the `lifecycle_action_key` and dropping it while the
/// instance stayed suspended. The refusal says why and what to send instead.
#[test]
fn auto_scaling_lifecycle_hooks_are_refused_saying_why() {
    for name in [
        "unsupported-as-lifecycle-launching.json",
        "unsupported-as-lifecycle-terminating.json",
    ] {
        let err = example(name).unwrap_err();
        assert!(matches!(err, EventError::Unsupported(_)), "{name}: {err}");
        let text = err.to_string();
        for part in [
            "Auto Scaling lifecycle hooks are not supported",
            "complete the lifecycle action",
            "\"kind\": \"instance\"",
        ] {
            assert!(text.contains(part), "{name}: {text}");
        }
    }
    // The examples come through SMN (the way AS delivers them); posted bare, the same.
    let via_smn: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            pgsurge_tests::workspace_root()
                .join("tests/events/unsupported-as-lifecycle-launching.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let bare = via_smn["message"].as_str().unwrap();
    let err = parse(bare).unwrap_err();
    assert!(matches!(err, EventError::Unsupported(_)), "{err}");
}

#[test]
fn generic_forms() {
    assert_eq!(
        alarms("generic-alarm.json"),
        vec![Alarm {
            source: Source::Generic,
            id: "manual-2026-11-25T09:00Z".into(),
            name: "read-load-high".into(),
            state: AlarmState::Firing,
            metric: Some("haproxy_backend_current_sessions".into()),
            value: Some(1840.0),
            threshold: Some(1200.0),
            resource: BTreeMap::new(),
            at: None,
            params: AlarmParams {
                replicas: Some(2),
                cluster: Some("main".into()),
                ..AlarmParams::default()
            },
        }]
    );
    assert_eq!(example("generic-tick.json").unwrap(), Event::Tick);
    match example("generic-instance-ready.json").unwrap() {
        Event::Instance(i) => {
            assert_eq!(i.kind, InstanceKind::Ready);
            assert_eq!(i.replica_id.as_deref(), Some("r-20261125-0900-1"));
            assert_eq!(i.cluster.as_deref(), Some("main"));
        }
        other => panic!("{other:?}"),
    }
    match example("generic-instance-deleted.json").unwrap() {
        Event::Instance(i) => assert_eq!(i.kind, InstanceKind::Deleted),
        other => panic!("{other:?}"),
    }
    // Aodh's event alarm on Nova's compute.instance.delete.end (through Ceilometer).
    match example("aodh-event-instance-deleted.json").unwrap() {
        Event::Instance(i) => {
            assert_eq!(i.kind, InstanceKind::Deleted);
            assert_eq!(
                i.server_id.as_deref(),
                Some("3f1e2d4c-5b6a-4798-8a9b-0c1d2e3f4a5b")
            );
            assert_eq!(i.cluster.as_deref(), Some("main"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_truncated_body_is_refused_precisely() {
    let err = example("malformed-truncated.json").unwrap_err();
    assert!(matches!(err, EventError::NotJson(_)), "{err}");
    assert!(err.to_string().contains("EOF"), "{err}");
}

#[test]
fn every_example_file_is_covered() {
    let dir = pgsurge_tests::workspace_root().join("tests/events");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".json")
            && !name.starts_with("malformed")
            && !name.starts_with("unsupported")
        {
            example(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
            n += 1;
        }
    }
    assert!(n >= 12, "only {n} examples");
}

/// A field of the wrong type is named as such, not reported "missing".
#[test]
fn a_number_where_a_string_belongs_is_named_not_missing() {
    let cases = [
        (
            r#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A"},"startsAt":5}]}"#,
            "`startsAt` must be a string, not a number",
        ),
        (
            r#"{"version":4,"alerts":[]}"#,
            "`version` must be a string, not a number",
        ),
        (
            r#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A","pgsurge_replicas":2},"startsAt":"t"}]}"#,
            "`labels.pgsurge_replicas` must be a string, not a number",
        ),
        (
            r#"{"alarm_id":"a","current":"alarm","alarm_name":7}"#,
            "`alarm_name` must be a string, not a number",
        ),
        (
            r#"{"alarm_id":1,"current":"alarm"}"#,
            "`alarm_id` must be a string, not a number",
        ),
        (
            r#"{"type":"Notification","topic_urn":"u","message":"{\"alarm_id\":\"x\",\"alarm_status\":1}"}"#,
            "`alarm_status` must be a string, not a number",
        ),
        (
            r#"{"type":"Notification","topic_urn":"u","message":5}"#,
            "`message` must be a string (or an object), not a number",
        ),
    ];
    for (body, expected) in cases {
        let err = parse(body).unwrap_err().to_string();
        assert!(err.contains(expected), "{body}: {err}");
        assert!(!err.contains("missing"), "{body}: {err}");
    }
}

/// `pgsurge_replicas="xxx2"` was read as 2 (every leading `x` stripped). Counts are
/// digits only; the multiplier may carry one `x`.
#[test]
fn counts_are_digits_only() {
    let am = |labels: &str| {
        format!(
            r#"{{"version":"4","alerts":[{{"status":"firing","labels":{{"alertname":"A",{labels}}},"startsAt":"t"}}]}}"#
        )
    };
    for bad in [
        r#""pgsurge_replicas":"xxx2""#,
        r#""pgsurge_replicas":"x2""#,
        r#""pgsurge_replicas":"+2""#,
        r#""pgsurge_multiplier":"xx2""#,
    ] {
        let err = parse(&am(bad)).unwrap_err().to_string();
        assert!(
            err.contains("label pgsurge_") && err.contains("expected a positive integer"),
            "{bad}: {err}"
        );
    }
    match parse(&am(r#""pgsurge_multiplier":"x3""#)).unwrap() {
        Event::Alarms { alarms } => assert_eq!(alarms[0].params.multiplier, Some(3)),
        other => panic!("{other:?}"),
    }
}
