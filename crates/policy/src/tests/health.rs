//! Health replacement: who is judged, when, how many at once, and what comes first.

use std::time::Duration;

use flotilla_model::{Decision, GroupSpec, HealthReplace, HoldReason, PolicyState, ReplaceCause, Rollout, Unhealthy};

use super::{assert_safe, members, samples, t};
use crate::GroupView;

/// Scale mode, 3..6 members, grace 60 s, replace after 20 s of failing.
fn spec() -> GroupSpec {
    let mut s = GroupSpec::example("g");
    s.mode = flotilla_model::Mode::Scale;
    s.min = 3;
    s.max = 6;
    s.rollout = None;
    s.health_replace = Some(HealthReplace { grace: Duration::from_secs(60), after: Duration::from_secs(20) });
    s
}

/// `id@since` tokens: the member fails its check since `since` seconds.
fn failing(dsl: &str) -> Vec<Unhealthy> {
    dsl.split_whitespace()
        .map(|tok| {
            let (id, since) = tok.split_once('@').unwrap();
            Unhealthy { id: flotilla_model::InstanceId::new(id), since: t(since.parse().unwrap()) }
        })
        .collect()
}

const STEADY: &str = "a@200:c50 b@200:c50 c@200:c50";

/// Decides at t = 200 s.
fn decide_with(spec: &GroupSpec, members_dsl: &str, samples_dsl: &str, failing_dsl: &str, blocked: bool) -> Decision {
    let members = members(spec, members_dsl);
    let latest = samples(samples_dsl);
    let unhealthy = failing(failing_dsl);
    let view = GroupView { unhealthy: &unhealthy, health_blocked: blocked, ..GroupView::new(spec, &members, &latest) };
    let (eval, _) = crate::decide(&view, &PolicyState::default(), t(200));
    assert_safe(spec, &members, &eval.decision, "health");
    eval.decision
}

fn decide(members_dsl: &str, failing_dsl: &str) -> Decision {
    decide_with(&spec(), members_dsl, STEADY, failing_dsl, false)
}

fn replaced(d: &Decision) -> Vec<&str> {
    match d {
        Decision::Replace { old, cause: ReplaceCause::Unhealthy, .. } => old.iter().map(|i| i.as_str()).collect(),
        other => panic!("want a health replace, got {other:?}"),
    }
}

#[test]
fn a_member_failing_past_grace_and_after_is_replaced_with_the_reason() {
    let d = decide("a:R:1 b:R:2 c:R:3", "b@150");
    assert_eq!(replaced(&d), ["b"]);
    let Decision::Replace { reason, .. } = &d else { unreachable!() };
    assert_eq!(reason, "b failing its health check for 50s");
}

#[test]
fn nobody_is_judged_too_early() {
    let hold = Decision::Hold(HoldReason::Steady);
    // Failing for 10 s only (after is 20 s).
    assert_eq!(decide("a:R:1 b:R:2 c:R:3", "b@190"), hold);
    // Failing since it was made, but made 30 s ago: still within its grace.
    assert_eq!(decide("a:R:1 b:R:2 c:R:170", "c@170"), hold);
    // Exactly at both limits: judged.
    assert_eq!(replaced(&decide("a:R:1 b:R:2 c:R:140", "c@180")), ["c"]);
}

#[test]
fn off_blocked_or_healthy_means_nothing_is_replaced() {
    let hold = Decision::Hold(HoldReason::Steady);
    let mut off = spec();
    off.health_replace = None;
    assert_eq!(decide_with(&off, "a:R:1 b:R:2 c:R:3", STEADY, "b@100", false), hold);
    assert_eq!(decide_with(&spec(), "a:R:1 b:R:2 c:R:3", STEADY, "b@100", true), hold);
    assert_eq!(decide("a:R:1 b:R:2 c:R:3", ""), hold);
    // A report about a member that is not in the group changes nothing.
    assert_eq!(decide("a:R:1 b:R:2 c:R:3", "zz@1"), hold);
}

#[test]
fn unknown_members_are_judged_by_their_health_check_not_draining_or_failed_ones() {
    // Unknown: the provider cannot tell, the balancer can.
    assert_eq!(replaced(&decide("a:R:1 b:U:2 c:R:3", "b@100")), ["b"]);
    // A member draining is on its way out already (and the group is busy).
    assert_eq!(decide("a:R:1 b:D:2 c:R:3", "b@100"), Decision::Hold(HoldReason::InProgress));
}

#[test]
fn at_most_max_unavailable_at_once_longest_failing_first() {
    let all = "a@150 b@100 c@120";
    assert_eq!(replaced(&decide("a:R:1 b:R:2 c:R:3", all)), ["b"]);
    let mut two = spec();
    two.rollout = Some(Rollout { max_unavailable: 2 });
    assert_eq!(replaced(&decide_with(&two, "a:R:1 b:R:2 c:R:3", STEADY, all, false)), ["b", "c"]);
}

#[test]
fn a_scale_out_comes_first_a_scale_in_waits() {
    let s = spec();
    let members_dsl = "a:R:1 b:R:2 c:R:3";
    // High load: the group grows first.
    let hot = "a@200:c95 b@200:c95 c@200:c95";
    let mut st = PolicyState { up_count: 3, last_sample_at: t(195), ..PolicyState::default() };
    let (members, latest, unhealthy) = (members(&s, members_dsl), samples(hot), failing("b@100"));
    let view = GroupView { unhealthy: &unhealthy, ..GroupView::new(&s, &members, &latest) };
    let (eval, _) = crate::decide(&view, &st, t(200));
    assert!(matches!(eval.decision, Decision::ScaleOut { .. }), "{:?}", eval.decision);
    // Low load with a complete down streak: the replacement first, and the streak survives it.
    let mut big = s.clone();
    big.min = 1;
    let cold = samples("a@200:c5 b@200:c5 c@200:c5");
    st = PolicyState { down_count: 3, last_sample_at: t(195), ..PolicyState::default() };
    let view = GroupView { unhealthy: &unhealthy, ..GroupView::new(&big, &members, &cold) };
    let (eval, next) = crate::decide(&view, &st, t(200));
    assert_eq!(replaced(&eval.decision), ["b"]);
    assert_eq!(next.down_count, 4, "the streak waits for the next tick");
    assert_eq!(next.last_scale_in, None);
}
