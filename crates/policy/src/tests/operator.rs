//! An operator's requests, as decisions: what each comes to, and what refuses it.

use std::collections::BTreeSet;

use flotilla_model::{Decision, GroupSpec, InstanceId, Mode, OperatorRequest as Req, PolicyState, ReplaceCause};

use super::{assert_safe, members, t};
use crate::operator::{answer, Answer};
use crate::GroupView;

fn group(mode: Mode) -> GroupSpec {
    let mut s = GroupSpec::example("g");
    s.mode = mode;
    s.min = 1;
    s.max = 4;
    s
}

fn ask(spec: &GroupSpec, dsl: &str, protected: &[&str], req: Req) -> Answer {
    let members = members(spec, dsl);
    let protected: BTreeSet<InstanceId> = protected.iter().map(|p| InstanceId::new(*p)).collect();
    let mut view = GroupView::new(spec, &members, &[]);
    view.protected = &protected;
    let a = answer(&view, &req, &PolicyState::default(), t(100));
    if let Answer::Act(d, _) = &a {
        assert_safe(spec, &members, d, "operator");
    }
    a
}

fn refused(a: Answer) -> String {
    match a {
        Answer::Refused(why) => why,
        other => panic!("want a refusal, got {other:?}"),
    }
}

#[test]
fn desired_scales_out_or_in_to_the_count_and_stamps_the_cooldown() {
    let scale = group(Mode::Scale);
    match ask(&scale, "a:R:1 b:R:2", &[], Req::Desired(4)) {
        Answer::Act(Decision::ScaleOut { count: 2, .. }, st) => assert_eq!(st.last_scale_out, Some(t(100))),
        other => panic!("{other:?}"),
    }
    // Oldest first (the group's victim rule), never a protected member.
    match ask(&scale, "a:R:1 b:R:2 c:R:3", &["a"], Req::Desired(1)) {
        Answer::Act(Decision::ScaleIn { victims, .. }, st) => {
            assert_eq!(victims, [InstanceId::new("b"), InstanceId::new("c")]);
            assert_eq!(st.last_scale_in, Some(t(100)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ask(&scale, "a:R:1 b:R:2", &[], Req::Desired(2)), Answer::Done("already 2 members".into()));
    assert_eq!(refused(ask(&scale, "a:R:1", &[], Req::Desired(5))), "desired 5 is outside min 1 .. max 4");
    assert_eq!(
        refused(ask(&scale, "a:R:1 b:R:2", &["a", "b"], Req::Desired(1))),
        "no member can go: 2 members, the rest protected"
    );
    assert!(refused(ask(&group(Mode::Handover), "a:R:1", &[], Req::Desired(2))).contains("handover-mode"));
}

#[test]
fn a_request_waits_while_a_change_is_in_progress() {
    let scale = group(Mode::Scale);
    for req in [Req::Desired(3), Req::Drain(InstanceId::new("a")), Req::Replace(InstanceId::new("a")), Req::Handover] {
        assert_eq!(ask(&scale, "a:R:1 b:C:2", &[], req), Answer::Wait);
    }
}

#[test]
fn drain_and_replace_name_one_member() {
    let scale = group(Mode::Scale);
    let d = ask(&scale, "a:R:1 b:R:2", &[], Req::Drain(InstanceId::new("b")));
    assert!(
        matches!(d, Answer::Act(Decision::ScaleIn { ref victims, .. }, _) if victims == &[InstanceId::new("b")]),
        "{d:?}"
    );
    assert_eq!(
        refused(ask(&scale, "a:R:1", &[], Req::Drain(InstanceId::new("a")))),
        "1 running, min 1: replace it instead"
    );
    assert_eq!(refused(ask(&scale, "a:R:1 b:R:2", &["b"], Req::Drain(InstanceId::new("b")))), "b is protected");
    assert_eq!(
        ask(&scale, "a:R:1", &[], Req::Drain(InstanceId::new("gone"))),
        Answer::Done("gone is not running".into())
    );
    let r = ask(&scale, "a:R:1", &[], Req::Replace(InstanceId::new("a")));
    assert!(
        matches!(r, Answer::Act(Decision::Replace { ref old, cause: ReplaceCause::Operator, .. }, _) if old == &[InstanceId::new("a")]),
        "a lone member is replaced new before old: {r:?}"
    );
    let primary = ask(&group(Mode::Handover), "a:R:1 b:R:2", &[], Req::Drain(InstanceId::new("a")));
    assert_eq!(refused(primary), "a is the primary: hand over first");
}

#[test]
fn handover_retires_the_primary_for_the_oldest_clone_unless_protected_or_alone() {
    let ho = group(Mode::Handover);
    match ask(&ho, "a:R:1 c:R:3 b:R:2", &[], Req::Handover) {
        Answer::Act(Decision::Handover { retire, successor, .. }, _) => {
            assert_eq!((retire.as_str(), successor.as_str()), ("a", "b"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(refused(ask(&ho, "a:R:1", &[], Req::Handover)), "no running clone to hand over to");
    assert_eq!(refused(ask(&ho, "a:R:1 b:R:2", &["a"], Req::Handover)), "the primary a is protected");
    assert_eq!(
        refused(ask(&group(Mode::Scale), "a:R:1 b:R:2", &[], Req::Handover)),
        "only a handover-mode group hands over"
    );
}
