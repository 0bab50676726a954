//! Policy rules, one test per rule, then properties over arbitrary states and alarms.

use super::*;
use crate::events::{AlarmParams, Source};
use crate::model::Replica;
use proptest::prelude::*;
use time::macros::datetime;
use time::Duration;

const NOW: OffsetDateTime = datetime!(2026-11-25 09:00 UTC);

fn replica(id: &str, role: Role, phase: Phase, age_mins: i64) -> Replica {
    Replica {
        id: id.into(),
        role,
        phase,
        server_id: None,
        volume_id: None,
        az: None,
        address: None,
        created_at: NOW - Duration::minutes(age_mins),
        op_id: None,
        since: Default::default(),
        extra: BTreeMap::new(),
    }
}

/// `base` serving base replicas and `surge` serving surge replicas (newest last).
fn cluster(base: u32, surge: u32) -> ClusterState {
    let mut s = ClusterState::new("c");
    for i in 0..base {
        s.replicas.push(replica(
            &format!("b{i}"),
            Role::Base,
            Phase::Serving,
            10_000,
        ));
    }
    for i in 0..surge {
        s.replicas.push(replica(
            &format!("s{i}"),
            Role::Surge,
            Phase::Serving,
            100 - i as i64,
        ));
    }
    s
}

fn alarm(id: &str, state: AlarmState) -> Alarm {
    Alarm {
        source: Source::Generic,
        id: id.into(),
        name: "load".into(),
        state,
        metric: None,
        value: None,
        threshold: None,
        resource: BTreeMap::new(),
        at: None,
        params: AlarmParams::default(),
    }
}

fn up(a: &Alarm) -> Trigger<'_> {
    Trigger::Alarm {
        alarm: a,
        intent: Direction::ScaleUp,
    }
}

fn down(a: &Alarm) -> Trigger<'_> {
    Trigger::Alarm {
        alarm: a,
        intent: Direction::ScaleDown,
    }
}

fn cfg() -> PolicyConfig {
    PolicyConfig {
        min_replicas: 2,
        max_replicas: 12,
        ..PolicyConfig::default()
    }
}

#[test]
fn multiplier_doubles_the_serving_count() {
    let d = decide(
        &cluster(3, 0),
        up(&alarm("a", AlarmState::Firing)),
        NOW,
        &cfg(),
    );
    assert_eq!(
        d.action,
        Action::ScaleUp {
            add: 3,
            flavor: None,
            az: None
        },
        "{}",
        d.reason
    );
    assert_eq!(d.desired, 6);
    assert!(d.reason.contains("multiplier x2"), "{}", d.reason);
    let x3 = PolicyConfig {
        multiplier: 3,
        ..cfg()
    };
    let d = decide(
        &cluster(3, 0),
        up(&alarm("a", AlarmState::Firing)),
        NOW,
        &x3,
    );
    assert_eq!(
        d.action,
        Action::ScaleUp {
            add: 6,
            flavor: None,
            az: None
        }
    );
}

#[test]
fn step_and_alarm_parameters() {
    let step = PolicyConfig {
        mode: Mode::Step,
        step: 2,
        ..cfg()
    };
    let d = decide(
        &cluster(3, 0),
        up(&alarm("a", AlarmState::Firing)),
        NOW,
        &step,
    );
    assert_eq!(
        d.action,
        Action::ScaleUp {
            add: 2,
            flavor: None,
            az: None
        }
    );
    let mut a = alarm("b", AlarmState::Firing);
    a.params.replicas = Some(4);
    a.params.flavor = Some("s7.xlarge.4".into());
    let d = decide(&cluster(3, 0), up(&a), NOW, &cfg());
    assert_eq!(
        d.action,
        Action::ScaleUp {
            add: 4,
            flavor: Some("s7.xlarge.4".into()),
            az: None
        }
    );
    a.params = AlarmParams {
        multiplier: Some(3),
        ..AlarmParams::default()
    };
    assert_eq!(decide(&cluster(3, 0), up(&a), NOW, &cfg()).desired, 9);
}

#[test]
fn target_tracking_follows_the_metric() {
    let tt = PolicyConfig {
        mode: Mode::TargetTracking,
        target_value: Some(60.0),
        ..cfg()
    };
    let mut a = alarm("a", AlarmState::Firing);
    a.value = Some(90.0);
    // ceil(4 × 90 / 60) = 6
    let d = decide(&cluster(2, 2), up(&a), NOW, &tt);
    assert_eq!(
        d.action,
        Action::ScaleUp {
            add: 2,
            flavor: None,
            az: None
        },
        "{}",
        d.reason
    );
    a.value = None;
    let d = decide(&cluster(2, 2), up(&a), NOW, &tt);
    assert_eq!(d.action, Action::Nothing);
    assert!(d.reason.contains("metric value"), "{}", d.reason);
    // Low load, scale-down alarm: ceil(6 × 20 / 60) = 2, but never base, never below min.
    let mut low = alarm("l", AlarmState::Firing);
    low.value = Some(20.0);
    let d = decide(&cluster(2, 4), down(&low), NOW, &tt);
    assert_eq!(
        d.action,
        Action::ScaleDown {
            remove: vec!["s3".into(), "s2".into(), "s1".into(), "s0".into()]
        }
    );
}

#[test]
fn max_caps_and_in_flight_counts() {
    let d = decide(
        &cluster(8, 0),
        up(&alarm("a", AlarmState::Firing)),
        NOW,
        &cfg(),
    );
    assert_eq!(
        d.action,
        Action::ScaleUp {
            add: 4,
            flavor: None,
            az: None
        }
    );
    assert!(
        d.reason.contains("capped by max_replicas 12"),
        "{}",
        d.reason
    );
    // Three already coming up: x2 of 3 serving is 6 = 3 serving + 3 pending.
    let mut s = cluster(3, 0);
    for i in 0..3 {
        s.replicas
            .push(replica(&format!("p{i}"), Role::Surge, Phase::Booting, 1));
    }
    let d = decide(&s, up(&alarm("a", AlarmState::Firing)), NOW, &cfg());
    assert_eq!(d.action, Action::Nothing);
    assert!(d.reason.contains("3 pending"), "{}", d.reason);
    // An operation decided but with no replica recorded yet counts too.
    let mut s = cluster(3, 0);
    let first = decide(&s, up(&alarm("a", AlarmState::Firing)), NOW, &cfg());
    record(&mut s, &first, NOW, "op-1");
    let no_cooldown = PolicyConfig {
        scale_up_cooldown_secs: 0,
        ..cfg()
    };
    let d = decide(&s, up(&alarm("b", AlarmState::Firing)), NOW, &no_cooldown);
    assert_eq!(d.capacity.pending, 3);
    assert_eq!(d.action, Action::Nothing, "{}", d.reason);
}

#[test]
fn a_vanished_replica_of_a_materialised_scale_up_is_not_pending_forever() {
    // A scale-up named two replicas; one was later deleted behind our back and
    // forgotten. The operation stays (its other replica lives) but nothing is pending,
    // so a scale-down may proceed.
    let mut s = cluster(2, 0);
    let first = decide(&s, up(&alarm("a", AlarmState::Firing)), NOW, &cfg());
    record(&mut s, &first, NOW, "op-1");
    s.operations[0].replicas = vec!["s1".into(), "s2".into()];
    let mut kept = replica("s2", Role::Surge, Phase::Serving, 1);
    kept.op_id = Some("op-1".into());
    s.replicas.push(kept);
    let no_cooldown = PolicyConfig {
        scale_down_cooldown_secs: 0,
        ..cfg()
    };
    let d = decide(&s, down(&alarm("b", AlarmState::Firing)), NOW, &no_cooldown);
    assert_eq!(d.capacity.pending, 0, "{}", d.reason);
    assert_eq!(
        d.action,
        Action::ScaleDown {
            remove: vec!["s2".into()]
        },
        "{}",
        d.reason
    );
}

#[test]
fn cooldowns_are_separate() {
    let mut s = cluster(3, 3);
    s.last_scale_up_at = Some(NOW - Duration::seconds(100));
    let d = decide(&s, up(&alarm("a", AlarmState::Firing)), NOW, &cfg());
    assert_eq!(d.action, Action::Nothing);
    assert!(
        d.reason.contains("scale-up cooldown, 200s left"),
        "{}",
        d.reason
    );
    // Scale-down waits its own (longer) cooldown after a scale-up.
    let d = decide(&s, down(&alarm("b", AlarmState::Firing)), NOW, &cfg());
    assert!(
        d.reason.contains("scale-down cooldown, 800s left"),
        "{}",
        d.reason
    );
    s.last_scale_up_at = Some(NOW - Duration::seconds(1000));
    let d = decide(&s, down(&alarm("b", AlarmState::Firing)), NOW, &cfg());
    assert_eq!(
        d.action,
        Action::ScaleDown {
            remove: vec!["s2".into(), "s1".into(), "s0".into()]
        }
    );
}

#[test]
fn scale_down_removes_surge_newest_first_never_base_never_below_min() {
    let step = PolicyConfig {
        mode: Mode::Step,
        scale_down_step: 2,
        ..cfg()
    };
    let d = decide(
        &cluster(2, 3),
        down(&alarm("a", AlarmState::Firing)),
        NOW,
        &step,
    );
    assert_eq!(
        d.action,
        Action::ScaleDown {
            remove: vec!["s2".into(), "s1".into()]
        }
    );
    // Only base replicas: nothing to remove.
    let d = decide(
        &cluster(5, 0),
        down(&alarm("a", AlarmState::Firing)),
        NOW,
        &step,
    );
    assert_eq!(d.action, Action::Nothing);
    assert!(
        d.reason.contains("base replicas are never removed"),
        "{}",
        d.reason
    );
    // At the floor.
    let min3 = PolicyConfig {
        min_replicas: 3,
        ..step
    };
    let d = decide(
        &cluster(1, 2),
        down(&alarm("a", AlarmState::Firing)),
        NOW,
        &min3,
    );
    assert_eq!(d.action, Action::Nothing, "{}", d.reason);
    // Never during a scale-up.
    let mut s = cluster(2, 3);
    s.replicas
        .push(replica("p", Role::Surge, Phase::CatchingUp, 1));
    let d = decide(&s, down(&alarm("a", AlarmState::Firing)), NOW, &cfg());
    assert!(d.reason.contains("still coming up"), "{}", d.reason);
}

#[test]
fn resolved_alarms_scale_down_only_when_configured() {
    let s = cluster(2, 4);
    let d = decide(&s, up(&alarm("a", AlarmState::Resolved)), NOW, &cfg());
    assert_eq!(d.action, Action::Nothing);
    assert!(
        d.reason.contains("scale_down_on_resolved = false"),
        "{}",
        d.reason
    );
    let on = PolicyConfig {
        scale_down_on_resolved: true,
        ..cfg()
    };
    let d = decide(&s, up(&alarm("a", AlarmState::Resolved)), NOW, &on);
    // multiplier /2 of 6 = 3
    assert_eq!(
        d.action,
        Action::ScaleDown {
            remove: vec!["s3".into(), "s2".into(), "s1".into()]
        }
    );
}

#[test]
fn an_alarms_resolution_is_not_a_duplicate_of_its_firing() {
    let on = PolicyConfig {
        scale_down_on_resolved: true,
        ..cfg()
    };
    let mut s = cluster(2, 0);
    let firing = alarm("fp@2026-11-25T09:00:00Z", AlarmState::Firing);
    let d = decide(&s, up(&firing), NOW, &on);
    assert!(matches!(d.action, Action::ScaleUp { .. }), "{}", d.reason);
    record(&mut s, &d, NOW, "op-1");
    // The replicas came up and served (their operation finished); then the same
    // occurrence resolves.
    s.operations.clear();
    s.replicas.retain(|r| r.role == Role::Base);
    s.replicas
        .push(replica("s1", Role::Surge, Phase::Serving, 20_000));
    s.replicas
        .push(replica("s2", Role::Surge, Phase::Serving, 20_001));
    let later = NOW + Duration::hours(1);
    let resolved = alarm("fp@2026-11-25T09:00:00Z", AlarmState::Resolved);
    let d = decide(&s, up(&resolved), later, &on);
    assert!(matches!(d.action, Action::ScaleDown { .. }), "{}", d.reason);
    record(&mut s, &d, later, "op-2");
    // A second delivery of the resolution is the duplicate.
    let again = decide(&s, up(&resolved), later, &on);
    assert_eq!(again.action, Action::Nothing);
    assert!(again.reason.contains("already decided"), "{}", again.reason);
}

#[test]
fn a_duplicate_alarm_decides_once() {
    let mut s = cluster(3, 0);
    let a = alarm("fp@2026-11-25T09:00:00Z", AlarmState::Firing);
    let first = decide(&s, up(&a), NOW, &cfg());
    assert!(matches!(first.action, Action::ScaleUp { .. }));
    record(&mut s, &first, NOW, "op-1");
    let again = decide(&s, up(&a), NOW + Duration::hours(1), &cfg());
    assert_eq!(again.action, Action::Nothing);
    assert!(again.reason.contains("already decided"), "{}", again.reason);
    assert_eq!(again.alarm_id, None);
}

#[test]
fn scheduled_windows_raise_the_floor_on_ticks() {
    let mut c = cfg();
    c.schedule = vec![ScheduleWindow {
        name: "morning".into(),
        cron: "30 8 * * 1-5".parse().unwrap(),
        duration_mins: 120,
        min_replicas: 6,
    }];
    let d = decide(&cluster(3, 0), Trigger::Tick, NOW, &c);
    assert_eq!(
        d.action,
        Action::ScaleUp {
            add: 3,
            flavor: None,
            az: None
        },
        "{}",
        d.reason
    );
    assert!(d.reason.contains("morning"), "{}", d.reason);
    let after = datetime!(2026-11-25 10:31 UTC);
    let d = decide(&cluster(3, 0), Trigger::Tick, after, &c);
    assert_eq!(d.action, Action::Nothing, "{}", d.reason);
    // The window also keeps a scale-down alarm from going below it.
    let d = decide(
        &cluster(2, 5),
        down(&alarm("a", AlarmState::Firing)),
        NOW,
        &c,
    );
    assert_eq!(
        d.action,
        Action::ScaleDown {
            remove: vec!["s4".into()]
        },
        "{}",
        d.reason
    );
    // Above max on a tick: trim surge replicas.
    let d = decide(&cluster(2, 12), Trigger::Tick, after, &c);
    assert_eq!(
        d.action,
        Action::ScaleDown {
            remove: vec!["s11".into(), "s10".into()]
        }
    );
}

#[test]
fn record_starts_cooldowns_and_marks_draining() {
    let mut s = cluster(2, 2);
    let on = PolicyConfig {
        mode: Mode::Step,
        ..cfg()
    };
    let d = decide(&s, down(&alarm("a", AlarmState::Firing)), NOW, &on);
    record(&mut s, &d, NOW, "op-d");
    assert_eq!(s.last_scale_down_at, Some(NOW));
    assert_eq!(s.replica("s1").unwrap().phase, Phase::Draining);
    assert_eq!(s.operations[0].kind, OpKind::ScaleDown);
    assert!(s.alarm_decided("a"));
}

// ---- properties -------------------------------------------------------------------

fn arb_phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Creating),
        Just(Phase::Booting),
        Just(Phase::CatchingUp),
        Just(Phase::Serving),
        Just(Phase::Serving),
        Just(Phase::Serving),
        Just(Phase::Draining),
        Just(Phase::Deleting),
        Just(Phase::Failed),
        "[a-z]{1,8}".prop_map(Phase::Other),
    ]
}

fn arb_state() -> impl Strategy<Value = ClusterState> {
    let rep = (
        prop_oneof![Just(Role::Base), Just(Role::Surge), Just(Role::Surge)],
        arb_phase(),
        0i64..10_000,
    );
    (
        proptest::collection::vec(rep, 0..30),
        proptest::option::of(0i64..5000),
        proptest::option::of(0i64..5000),
    )
        .prop_map(|(reps, up, down)| {
            let mut s = ClusterState::new("c");
            for (i, (role, phase, age)) in reps.into_iter().enumerate() {
                s.replicas.push(replica(&format!("r{i}"), role, phase, age));
            }
            s.last_scale_up_at = up.map(|a| NOW - Duration::seconds(a));
            s.last_scale_down_at = down.map(|a| NOW - Duration::seconds(a));
            s
        })
}

fn arb_cfg() -> impl Strategy<Value = PolicyConfig> {
    (
        prop_oneof![
            Just(Mode::Step),
            Just(Mode::Multiplier),
            Just(Mode::TargetTracking)
        ],
        1u32..5,
        2u32..4,
        0u32..6,
        0u32..20,
        any::<bool>(),
        proptest::option::of(0u32..10),
    )
        .prop_map(
            |(mode, step, mult, min, extra, on_resolved, window_min)| PolicyConfig {
                mode,
                step,
                scale_down_step: step,
                multiplier: mult,
                target_value: Some(50.0),
                min_replicas: min,
                max_replicas: min + extra + 1,
                scale_down_on_resolved: on_resolved,
                schedule: window_min
                    .map(|m| ScheduleWindow {
                        name: "w".into(),
                        cron: "0 8 * * *".parse().unwrap(),
                        duration_mins: 120,
                        min_replicas: m.min(min + extra + 1),
                    })
                    .into_iter()
                    .collect(),
                ..PolicyConfig::default()
            },
        )
}

fn arb_alarm() -> impl Strategy<Value = (Alarm, Direction)> {
    (
        "[a-z0-9]{1,6}",
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(0.0f64..500.0),
        proptest::option::of(1u32..10),
        proptest::option::of(2u32..3),
    )
        .prop_map(|(id, firing, up, value, replicas, multiplier)| {
            let mut a = alarm(
                &id,
                if firing {
                    AlarmState::Firing
                } else {
                    AlarmState::Resolved
                },
            );
            a.value = value;
            a.params.replicas = replicas;
            if replicas.is_none() {
                a.params.multiplier = multiplier;
            }
            (
                a,
                if up {
                    Direction::ScaleUp
                } else {
                    Direction::ScaleDown
                },
            )
        })
}

/// A decision to do nothing must be for a reason that holds: the reason names one of
/// the rules, and the fact that rule depends on is true of the inputs — or the state
/// already satisfies what was asked. (Otherwise "nothing" could hide a policy that
/// silently ignores alarms.)
fn nothing_is_justified(
    s: &ClusterState,
    trigger: Trigger<'_>,
    now: OffsetDateTime,
    c: &PolicyConfig,
    d: &Decision,
) -> Result<(), String> {
    let cap = d.capacity;
    let r = d.reason.as_str();
    let check = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("claims {what}, which is false"))
        }
    };
    let in_cooldown = |since: Option<OffsetDateTime>, secs: u64| {
        since.is_some_and(|t| t + Duration::seconds(secs as i64) > now)
    };
    let surge_serving = s
        .replicas
        .iter()
        .any(|x| x.role == Role::Surge && x.phase == Phase::Serving);
    let (alarm, intent) = match trigger {
        Trigger::Tick => {
            check(cap.total >= cap.floor, "capacity at or above the floor")?;
            return check(
                cap.total <= c.max_replicas
                    || cap.pending > 0
                    || !surge_serving
                    || cap.serving <= cap.floor,
                "capacity within max, or nothing removable",
            );
        }
        Trigger::Alarm { alarm, intent } => (alarm, intent),
    };
    let direction = alarm.params.action.unwrap_or(intent);
    if r.contains("already decided") {
        return check(s.alarm_decided(&alarm.id), "a duplicate");
    }
    if r.contains("scale-up cooldown") {
        return check(
            in_cooldown(s.last_scale_up_at, c.scale_up_cooldown_secs),
            "a scale-up cooldown",
        );
    }
    if r.contains("scale-down cooldown") {
        return check(
            in_cooldown(
                s.last_scale_up_at.max(s.last_scale_down_at),
                c.scale_down_cooldown_secs,
            ),
            "a scale-down cooldown",
        );
    }
    if r.contains("still coming up") {
        return check(cap.pending > 0, "replicas in flight");
    }
    if r.contains("does not scale down by itself") {
        return check(
            alarm.state == AlarmState::Resolved
                && direction == Direction::ScaleUp
                && !c.scale_down_on_resolved,
            "a resolved scale-up alarm with scale_down_on_resolved off",
        );
    }
    if r.contains("resolved scale-down alarm needs no action") {
        return check(
            alarm.state == AlarmState::Resolved && direction == Direction::ScaleDown,
            "a resolved scale-down alarm",
        );
    }
    if r.contains("target tracking needs") {
        return check(
            c.mode == Mode::TargetTracking
                && alarm.params.replicas.is_none()
                && alarm.params.multiplier.is_none()
                && !alarm.value.is_some_and(|v| v.is_finite() && v >= 0.0),
            "target tracking without a usable value",
        );
    }
    match direction {
        // Scale-up asked: the capacity already meets the floor (and the max, or the desired).
        Direction::ScaleUp if alarm.state == AlarmState::Firing => {
            check(cap.total >= cap.floor, "capacity at or above the floor")?;
            if r.contains("already at max_replicas") {
                return check(cap.total >= c.max_replicas, "capacity at max");
            }
            check(
                r.contains("already meets the desired"),
                "a recognised scale-up reason",
            )
        }
        // Scale-down asked: nothing is removable without going below the floor.
        _ => {
            if r.contains("no serving surge replica") {
                return check(!surge_serving, "no serving surge replica");
            }
            let desired: u32 = r
                .split("desired ")
                .nth(1)
                .and_then(|t| t.split(|ch: char| !ch.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .ok_or("a scale-down reason without the desired capacity")?;
            check(
                r.contains("the floor (") && (cap.serving <= cap.floor || cap.total <= desired),
                "capacity already at the floor or the desired",
            )
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn bounds_hold_and_base_is_never_removed(
        s in arb_state(), c in arb_cfg(), (a, dir) in arb_alarm(), mins in 0i64..1440, tick in any::<bool>()
    ) {
        let now = NOW - Duration::minutes(mins);
        let trigger = if tick { Trigger::Tick } else { Trigger::Alarm { alarm: &a, intent: dir } };
        let d = decide(&s, trigger, now, &c);
        let cap = capacity(&s, now, &c);
        match &d.action {
            Action::ScaleUp { add, .. } => {
                prop_assert!(*add > 0);
                prop_assert!(cap.total + add <= c.max_replicas, "{} + {add} > max: {}", cap.total, d.reason);
            }
            Action::ScaleDown { remove } => {
                prop_assert!(!remove.is_empty());
                let mut seen = std::collections::BTreeSet::new();
                for id in remove {
                    prop_assert!(seen.insert(id.clone()), "removed twice: {id}");
                    let r = s.replica(id).expect("exists");
                    prop_assert_eq!(&r.role, &Role::Surge, "{}", &d.reason);
                    prop_assert_eq!(&r.phase, &Phase::Serving);
                }
                prop_assert!(cap.serving - remove.len() as u32 >= cap.floor, "below floor: {}", d.reason);
                // Newest first: every removed replica is at least as new as every kept surge one.
                let oldest_removed = remove.iter().map(|id| s.replica(id).unwrap().created_at).min().unwrap();
                for r in s.replicas.iter().filter(|r| r.role == Role::Surge && r.phase == Phase::Serving && !remove.contains(&r.id)) {
                    prop_assert!(r.created_at <= oldest_removed);
                }
            }
            Action::Nothing => {
                let why = nothing_is_justified(&s, trigger, now, &c, &d);
                prop_assert!(why.is_ok(), "{}: {}", why.unwrap_err(), d.reason);
            }
        }
        prop_assert!(!d.reason.is_empty());
    }

    #[test]
    fn decisions_are_deterministic(s in arb_state(), c in arb_cfg(), (a, dir) in arb_alarm()) {
        let one = decide(&s, Trigger::Alarm { alarm: &a, intent: dir }, NOW, &c);
        let two = decide(&s.clone(), Trigger::Alarm { alarm: &a.clone(), intent: dir }, NOW, &c.clone());
        prop_assert_eq!(one, two);
    }

    #[test]
    fn a_duplicate_alarm_id_decides_once(s in arb_state(), c in arb_cfg(), (a, dir) in arb_alarm(), later in 0i64..100_000) {
        let mut s = s;
        let first = decide(&s, Trigger::Alarm { alarm: &a, intent: dir }, NOW, &c);
        record(&mut s, &first, NOW, "op");
        let again = decide(&s, Trigger::Alarm { alarm: &a, intent: dir }, NOW + Duration::seconds(later), &c);
        prop_assert_eq!(again.action, Action::Nothing);
        prop_assert!(again.reason.contains("already decided"));
    }
}

/// The check above is not vacuous: a "nothing" whose stated reason is false is caught.
#[test]
fn a_nothing_with_a_false_reason_is_caught() {
    let s = cluster(2, 0);
    let c = PolicyConfig {
        min_replicas: 2,
        max_replicas: 10,
        ..PolicyConfig::default()
    };
    let a = alarm("x", AlarmState::Firing);
    let cap = capacity(&s, NOW, &c);
    let nothing = |reason: &str| Decision {
        action: Action::Nothing,
        reason: reason.into(),
        desired: cap.total,
        capacity: cap,
        alarm_id: None,
    };
    for (reason, what) in [
        ("scale-up cooldown, 10s left", "scale-up cooldown"),
        ("alarm was already decided", "duplicate"),
        ("2 replica(s) still coming up", "in flight"),
        ("already at max_replicas 10", "capacity at max"),
        ("ignored for no reason", "recognised"),
    ] {
        let err = nothing_is_justified(&s, up(&a), NOW, &c, &nothing(reason)).unwrap_err();
        assert!(err.contains(what), "{reason}: {err}");
    }
    // A true one passes.
    assert!(nothing_is_justified(
        &s,
        up(&a),
        NOW,
        &c,
        &nothing("capacity 2 (2 serving + 0 pending) already meets the desired 2")
    )
    .is_ok());
}

// ---- alarm flavors: `allowed_flavors` plus the configured flavor, nothing else ----

fn with_flavor(flavor: &str) -> Alarm {
    let mut a = alarm("f", AlarmState::Firing);
    a.params.flavor = Some(flavor.into());
    a
}

fn flavor_verdict(c: &PolicyConfig, flavor: &str) -> Result<(), String> {
    crate::events::validate_params(&with_flavor(flavor), &c.limits()).map_err(|e| e.to_string())
}

#[test]
fn an_empty_allowed_flavors_allows_only_the_configured_flavor() {
    let c = PolicyConfig {
        configured_flavor: Some("m1.tiny".into()),
        ..cfg()
    };
    assert!(c.allowed_flavors.is_empty());
    flavor_verdict(&c, "m1.tiny").unwrap();
    let err = flavor_verdict(&c, "m1.xlarge").unwrap_err();
    assert!(
        err.contains(
            "\"m1.xlarge\" is not in policy.allowed_flavors or the configured flavor (m1.tiny)"
        ),
        "{err}"
    );
    // No configured flavor (the local provider): an empty list allows none at all.
    let local = cfg();
    let err = flavor_verdict(&local, "m1.tiny").unwrap_err();
    assert!(
        err.contains("allows only the configured flavor, and this provider configures none"),
        "{err}"
    );
    // An alarm without a flavor is not affected.
    crate::events::validate_params(&alarm("n", AlarmState::Firing), &local.limits()).unwrap();
}

#[test]
fn listed_flavors_are_allowed_besides_the_configured_one() {
    let c = PolicyConfig {
        allowed_flavors: vec!["m1.small".into(), "m1.medium".into()],
        configured_flavor: Some("m1.tiny".into()),
        ..cfg()
    };
    for ok in ["m1.small", "m1.medium", "m1.tiny"] {
        flavor_verdict(&c, ok).unwrap();
    }
    assert_eq!(
        c.limits().allowed_flavors,
        ["m1.small", "m1.medium", "m1.tiny"]
    );
    let err = flavor_verdict(&c, "m1.large").unwrap_err();
    assert!(err.contains("(m1.small, m1.medium, m1.tiny)"), "{err}");
    // Without a configured flavor, exactly the list.
    let listed = PolicyConfig {
        configured_flavor: None,
        ..c
    };
    flavor_verdict(&listed, "m1.small").unwrap();
    assert!(flavor_verdict(&listed, "m1.tiny").is_err());
}

#[test]
fn a_scale_up_decision_carries_the_alarms_flavor_and_a_tick_none() {
    let c = PolicyConfig {
        allowed_flavors: vec!["m1.small".into()],
        ..cfg()
    };
    let a = with_flavor("m1.small");
    let d = decide(&cluster(2, 0), up(&a), NOW, &c);
    assert!(
        matches!(&d.action, Action::ScaleUp { flavor: Some(f), .. } if f == "m1.small"),
        "{d:?}"
    );
    let d = decide(&cluster(1, 0), Trigger::Tick, NOW, &c);
    assert!(
        matches!(&d.action, Action::ScaleUp { flavor: None, .. }),
        "{d:?}"
    );
}

#[test]
fn the_configured_flavor_comes_from_the_provider_when_the_config_loads() {
    let os = crate::config::Config::from_toml(
        "[cloud]\nprovider = \"openstack\"\n[openstack]\nflavor = \"m1.tiny\"\nimage = \"replica\"",
    )
    .unwrap();
    assert_eq!(os.policy.configured_flavor.as_deref(), Some("m1.tiny"));
    assert_eq!(os.policy.limits().allowed_flavors, ["m1.tiny"]);
    // The local provider has no sizes: nothing configured, so nothing allowed by default.
    let local = crate::config::Config::from_toml("[cloud]\nprovider = \"local\"").unwrap();
    assert_eq!(local.policy.configured_flavor, None);
    assert!(local.policy.limits().allowed_flavors.is_empty());
    // A `[policy]` key of that name does not exist: it cannot be set by hand.
    let err = crate::config::Config::from_toml("[policy]\nconfigured_flavor = \"x\"").unwrap_err();
    assert!(err.to_string().contains("policy"), "{err}");
}
