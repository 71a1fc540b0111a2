//! The `alarm` kind: Heat's arithmetic, and when a rule acts (once per transition, cooldown,
//! repeat, a change in progress, insufficient data).

use std::time::Duration;

use flotilla_model::{
    AdjustmentType, AlarmPolicySpec, AlarmState, AlarmStatus, Decision, GroupSpec, HoldReason, Mode, PolicySpec,
    PolicyState, ScalingRule,
};

use super::{members, t};
use crate::{decide, new_capacity, GroupView};

fn rule(alarm: &str, kind: AdjustmentType, adjustment: i32) -> ScalingRule {
    ScalingRule {
        alarm: alarm.into(),
        adjustment_type: kind,
        adjustment,
        min_adjustment_step: 0,
        cooldown: Duration::from_secs(60),
        repeat: false,
    }
}

/// Heat's `calculate_new_capacity` on its own unit-test table (heat/tests/test_scaling_util.py),
/// plus the bounds.
#[test]
fn new_capacity_follows_heat() {
    use AdjustmentType::*;
    let cap = |cur, kind, adj, step, min, max| {
        let mut r = rule("a", kind, adj);
        r.min_adjustment_step = step;
        new_capacity(cur, &r, min, max)
    };
    #[rustfmt::skip]
    let cases: &[(u32, AdjustmentType, i32, u32, u32, u32, u32)] = &[
        // current, type, adjustment, min step, min, max -> new
        (10, ChangeInCapacity, 1, 0, 0, 20, 11),
        (10, ChangeInCapacity, -1, 0, 0, 20, 9),
        (10, ChangeInCapacity, 15, 0, 0, 20, 20),
        (10, ChangeInCapacity, -15, 0, 2, 20, 2),
        (10, ExactCapacity, 5, 0, 0, 20, 5),
        (10, ExactCapacity, 50, 0, 0, 20, 20),
        (10, ExactCapacity, 0, 0, 1, 20, 1),
        (10, PercentChangeInCapacity, 33, 0, 0, 20, 13),
        (10, PercentChangeInCapacity, -33, 0, 0, 20, 7),
        (10, PercentChangeInCapacity, 5, 0, 0, 20, 11),
        (10, PercentChangeInCapacity, -5, 0, 0, 20, 9),
        (10, PercentChangeInCapacity, 5, 3, 0, 20, 13),
        (10, PercentChangeInCapacity, -5, 3, 0, 20, 7),
        (10, PercentChangeInCapacity, 33, 2, 0, 20, 13),
        (10, PercentChangeInCapacity, 200, 0, 0, 20, 20),
        (0, PercentChangeInCapacity, 50, 0, 0, 20, 0),
        (0, PercentChangeInCapacity, 50, 1, 0, 20, 1),
        (3, ChangeInCapacity, i32::MAX, 0, 1, 40, 40),
        (3, ExactCapacity, i32::MIN, 0, 1, 40, 1),
    ];
    for &(cur, kind, adj, step, min, max, want) in cases {
        assert_eq!(cap(cur, kind, adj, step, min, max), want, "{cur} {kind:?} {adj} step {step} in {min}..{max}");
    }
}

fn spec(rules: Vec<ScalingRule>) -> GroupSpec {
    let mut s = GroupSpec::example("web");
    s.mode = Mode::Scale;
    s.min = 1;
    s.max = 5;
    s.policy = PolicySpec::Alarm(AlarmPolicySpec { rules });
    s
}

fn status(name: &str, state: AlarmState, since: u64) -> AlarmStatus {
    AlarmStatus { name: name.into(), state, since: t(since), updated: t(since), reason: "test".into() }
}

fn up_down() -> GroupSpec {
    spec(vec![rule("high", AdjustmentType::ChangeInCapacity, 1), rule("low", AdjustmentType::ChangeInCapacity, -1)])
}

fn run(
    s: &GroupSpec,
    dsl: &str,
    alarms: &[AlarmStatus],
    pending: bool,
    st: &PolicyState,
    now: u64,
) -> (Decision, PolicyState) {
    let ms = members(s, dsl);
    let mut view = GroupView::new(s, &ms, &[]);
    view.alarms = alarms;
    view.operation_pending = pending;
    let (e, next) = decide(&view, st, t(now));
    (e.decision, next)
}

#[test]
fn an_alarm_scales_out_once_per_transition_without_any_member_sample() {
    let s = up_down();
    let alarms = [status("high", AlarmState::Alarm, 100)];
    let (d, st) = run(&s, "a:R:0 b:R:0", &alarms, false, &PolicyState::default(), 101);
    assert!(matches!(d, Decision::ScaleOut { count: 1, .. }), "{d:?}");
    // The same transition, long after the cooldown: answered already.
    let (d, _) = run(&s, "a:R:0 b:R:0 c:R:101", &alarms, false, &st, 1000);
    assert_eq!(d, Decision::Hold(HoldReason::Steady));
    // A new transition into alarm acts again (once the cooldown has passed).
    let again = [status("high", AlarmState::Alarm, 1100)];
    let (d, _) = run(&s, "a:R:0 b:R:0 c:R:101", &again, false, &st, 1101);
    assert!(matches!(d, Decision::ScaleOut { count: 1, .. }), "{d:?}");
}

#[test]
fn repeat_acts_again_every_cooldown_while_in_alarm() {
    let mut s = up_down();
    let PolicySpec::Alarm(a) = &mut s.policy else { unreachable!() };
    a.rules[0].repeat = true;
    let alarms = [status("high", AlarmState::Alarm, 100)];
    let (_, st) = run(&s, "a:R:0", &alarms, false, &PolicyState::default(), 100);
    let (d, _) = run(&s, "a:R:0 b:R:100", &alarms, false, &st, 130);
    assert_eq!(d, Decision::Hold(HoldReason::Cooldown { remaining_ms: 30_000 }));
    let (d, _) = run(&s, "a:R:0 b:R:100", &alarms, false, &st, 160);
    assert!(matches!(d, Decision::ScaleOut { count: 1, .. }), "{d:?}");
}

#[test]
fn an_alarm_raised_during_a_change_is_acted_on_when_it_ends() {
    let s = up_down();
    let alarms = [status("high", AlarmState::Alarm, 100)];
    let (d, st) = run(&s, "a:R:0 b:C:99", &alarms, false, &PolicyState::default(), 101);
    assert_eq!(d, Decision::Hold(HoldReason::InProgress));
    let (d, _) = run(&s, "a:R:0 b:R:99", &alarms, true, &st, 102);
    assert_eq!(d, Decision::Hold(HoldReason::InProgress), "an operation pending");
    let (d, _) = run(&s, "a:R:0 b:R:99", &alarms, false, &st, 103);
    assert!(matches!(d, Decision::ScaleOut { count: 1, .. }), "kept, not dropped: {d:?}");
}

#[test]
fn ok_and_insufficient_data_do_nothing_and_min_holds() {
    let s = up_down();
    for state in [AlarmState::Ok, AlarmState::InsufficientData] {
        let alarms = [status("high", state, 100), status("low", state, 100)];
        let (d, _) = run(&s, "a:R:0 b:R:0", &alarms, false, &PolicyState::default(), 101);
        assert_eq!(d, Decision::Hold(HoldReason::Steady), "{state:?}");
    }
    let (d, _) = run(&s, "a:R:0 b:R:0", &[], false, &PolicyState::default(), 101);
    assert_eq!(d, Decision::Hold(HoldReason::Steady), "never reported");
    let low = [status("low", AlarmState::Alarm, 100)];
    let (d, _) = run(&s, "a:R:0", &low, false, &PolicyState::default(), 101);
    assert_eq!(d, Decision::Hold(HoldReason::AtBound), "at min");
    let (d, _) = run(&s, "a:R:0 b:R:5", &low, false, &PolicyState::default(), 101);
    assert!(matches!(&d, Decision::ScaleIn { victims, .. } if victims.len() == 1), "{d:?}");
}

#[test]
fn growing_beats_shrinking_and_exact_capacity_sets_the_size() {
    let s =
        spec(vec![rule("low", AdjustmentType::ChangeInCapacity, -1), rule("burst", AdjustmentType::ExactCapacity, 4)]);
    let both = [status("low", AlarmState::Alarm, 100), status("burst", AlarmState::Alarm, 100)];
    let (d, _) = run(&s, "a:R:0 b:R:0", &both, false, &PolicyState::default(), 101);
    assert!(matches!(d, Decision::ScaleOut { count: 2, .. }), "{d:?}");
}
