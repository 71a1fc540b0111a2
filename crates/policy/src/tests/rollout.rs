//! Rolling replacement: which members are outdated, batch sizes, and what comes first.

use flotilla_model::{Decision, GroupSpec, HoldReason, InstanceId, PolicyState, Rollout};

use super::{assert_safe, members, samples, t};
use crate::GroupView;

fn spec(version: &str, batch: u32) -> GroupSpec {
    let mut s = GroupSpec::example("g");
    s.mode = flotilla_model::Mode::Scale;
    s.min = 3;
    s.max = 4;
    s.template_version = version.into();
    s.rollout = Some(Rollout { max_unavailable: batch });
    s
}

fn decide(spec: &GroupSpec, members_dsl: &str, samples_dsl: &str, blocked: bool) -> Decision {
    let members = members(spec, members_dsl);
    let latest = samples(samples_dsl);
    let view = GroupView {
        spec,
        members: &members,
        latest: &latest,
        primary: None,
        operation_pending: false,
        rollout_blocked: blocked,
        unhealthy: &[],
        health_blocked: false,
        replace_before: None,
        protected: &std::collections::BTreeSet::new(),
        alarms: &[],
    };
    let (eval, _) = crate::decide(&view, &PolicyState::default(), t(100));
    assert_safe(spec, &members, &eval.decision, "rollout");
    eval.decision
}

fn replaced(d: &Decision) -> Vec<&str> {
    match d {
        Decision::Replace { old, .. } => old.iter().map(InstanceId::as_str).collect(),
        other => panic!("want a replace, got {other:?}"),
    }
}

const STEADY: &str = "a@100:c50 b@100:c50 c@100:c50";

#[test]
fn outdated_members_are_replaced_oldest_first_one_batch_at_a_time() {
    let d = decide(&spec("v2", 1), "a:R:3:v1 b:R:1:v1 c:R:2:v2", STEADY, false);
    assert_eq!(replaced(&d), ["b"]);
    let d = decide(&spec("v2", 2), "a:R:3:v1 b:R:1:v1 c:R:2:v1", STEADY, false);
    assert_eq!(replaced(&d), ["b", "c"]);
    if let Decision::Replace { reason, .. } = &d {
        assert_eq!(reason, "template changed: 3 of 3 running members outdated, replacing 2");
    }
}

#[test]
fn current_untagged_and_unversioned_groups_are_left_alone() {
    let hold = Decision::Hold(HoldReason::Steady);
    assert_eq!(decide(&spec("v2", 1), "a:R:1:v2 b:R:2:v2 c:R:3:v2", STEADY, false), hold);
    // No tag: made before versioning, taken as current.
    assert_eq!(decide(&spec("v2", 1), "a:R:1 b:R:2 c:R:3", STEADY, false), hold);
    assert_eq!(decide(&spec("", 1), "a:R:1:v1 b:R:2:v1 c:R:3:v1", STEADY, false), hold);
    let mut off = spec("v2", 1);
    off.rollout = None;
    assert_eq!(decide(&off, "a:R:1:v1 b:R:2:v1 c:R:3:v1", STEADY, false), hold);
}

#[test]
fn a_failed_batch_blocks_the_rollout() {
    let d = decide(&spec("v2", 1), "a:R:1:v1 b:R:2:v1 c:R:3:v1", STEADY, true);
    assert_eq!(d, Decision::Hold(HoldReason::Steady));
}

#[test]
fn scaling_and_changes_in_progress_come_first() {
    let s = spec("v2", 1);
    // High load: scale out, not a rollout batch (the new member is made from v2 anyway).
    let hot = "a@100:c95 b@100:c95 c@100:c95";
    let members_dsl = "a:R:1:v1 b:R:2:v1 c:R:3:v1";
    let mut st = PolicyState { up_count: 3, ..PolicyState::default() };
    st.last_sample_at = t(95);
    let members = members(&s, members_dsl);
    let latest = samples(hot);
    let view = GroupView::new(&s, &members, &latest);
    let (eval, _) = crate::decide(&view, &st, t(100));
    assert!(matches!(eval.decision, Decision::ScaleOut { .. }), "{:?}", eval.decision);
    // A member still creating: wait.
    let d = decide(&s, "a:R:1:v1 b:R:2:v1 c:R:3:v1 n:C:4:v2", STEADY, false);
    assert_eq!(d, Decision::Hold(HoldReason::InProgress));
    // No metrics at all: a rollout needs none.
    let d = decide(&s, "a:R:1:v1 b:R:2:v1 c:R:3:v1", "", false);
    assert_eq!(replaced(&d), ["a"]);
}
