//! `pgsurge plan`: the real binary, an example event, a state file, a config file.

use std::process::Command;

fn plan(args: &[&str]) -> std::process::Output {
    Command::new(pgsurge_tests::bin("pgsurge"))
        .arg("plan")
        .args(args)
        .env_remove("PGSURGE_CONFIG")
        .current_dir(pgsurge_tests::workspace_root())
        .output()
        .unwrap()
}

const STATE: &str = r#"{"schema_version":1,"cluster":"catalog","replicas":[
 {"id":"b0","role":"base","phase":"serving","created_at":"2026-01-01T00:00:00Z"},
 {"id":"b1","role":"base","phase":"serving","created_at":"2026-01-01T00:00:00Z"},
 {"id":"s0","role":"surge","phase":"serving","created_at":"2026-11-25T07:00:00Z"},
 {"id":"s1","role":"surge","phase":"serving","created_at":"2026-11-25T07:05:00Z"}]}"#;

/// The policy these plans run under: a weekday-morning pre-scale window (floor 6).
/// (Not config/pgsurge.example.toml: that one is every key at its default, no window.)
const CONFIG: &str = r#"
[cluster]
name = "catalog"
[policy]
min_replicas = 2
max_replicas = 12
[[policy.schedule]]
name = "weekday-morning-peak"
cron = "30 8 * * 1-5"
duration_mins = 120
min_replicas = 6
"#;

#[test]
fn plan_prints_the_decision_and_its_reason() {
    let dir = tempfile::Builder::new()
        .prefix("pgsurge-i6-plan")
        .tempdir()
        .unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, STATE).unwrap();
    let state = state.to_str().unwrap();
    let config = dir.path().join("pgsurge.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let config = config.to_str().unwrap();
    let out = plan(&[
        "--event",
        "tests/events/alertmanager-firing.json",
        "--state",
        state,
        "--config",
        config,
        "--now",
        "2026-11-25T09:00:00Z",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // x2 of 4 serving = 8: add 4.
    assert!(stdout.contains("scale up: add 4"), "{stdout}");
    assert!(
        stdout.contains(
            "reason: alarm \"PgReadLoadHigh\" (firing): alarm parameter multiplier=x2 of 4 serving"
        ),
        "{stdout}"
    );

    // A scale-down alarm through the scale-down function, inside the weekday
    // morning window (floor 6): nothing; after it: newest surge replicas first.
    let down = |now: &str| {
        plan(&[
            "--event",
            "tests/events/generic-alarm.json",
            "--state",
            state,
            "--config",
            config,
            "--now",
            now,
            "--function",
            "scale-down",
            "--json",
        ])
    };
    let out = down("2026-11-25T09:00:00Z");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["action"]["action"], "nothing");
    assert!(
        v[0]["reason"]
            .as_str()
            .unwrap()
            .contains("weekday-morning-peak"),
        "{v}"
    );
    let out = down("2026-11-25T12:00:00Z");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["action"]["action"], "scale-down");
    assert_eq!(v[0]["action"]["remove"], serde_json::json!(["s1", "s0"]));
    assert!(v[0]["reason"].as_str().unwrap().contains("newest first"));
}

#[test]
fn plan_refuses_bad_input_with_a_clear_message() {
    let dir = tempfile::Builder::new()
        .prefix("pgsurge-i6-plan")
        .tempdir()
        .unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, STATE).unwrap();
    let state = state.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "--event",
                "tests/events/malformed-truncated.json",
                "--state",
                state,
            ],
            "not JSON",
        ),
        (
            &[
                "--event",
                "tests/events/generic-tick.json",
                "--state",
                "/nonexistent/state.json",
            ],
            "reading /nonexistent/state.json",
        ),
        (
            &[
                "--event",
                "tests/events/generic-tick.json",
                "--state",
                state,
                "--now",
                "yesterday",
            ],
            "is not an RFC 3339 time",
        ),
        (
            &[
                "--event",
                "tests/events/generic-instance-ready.json",
                "--state",
                state,
            ],
            "not a scaling decision",
        ),
    ];
    for (args, want) in cases {
        let out = plan(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
