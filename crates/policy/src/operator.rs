//! An operator's one-shot request (set desired, hand over, drain or replace a member) turned into
//! the same decisions the policy makes, so the one operations runner carries it out. Pure, like the
//! rest of the core: the group and the time are arguments.

use flotilla_model::{Decision, Instance, Mode, OperatorRequest, PolicyState, ReplaceCause, Timestamp};

use crate::bounds;
use crate::victims;
use crate::view::{self, GroupView};

/// What a request comes to at one pass.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A change is in progress: the request waits for the next pass.
    Wait,
    /// Carry this out, and keep this state (a resize stamps its cooldown, so the policy does not
    /// undo the operator's change on its next sample).
    Act(Decision, PolicyState),
    /// Nothing to do: the group is already as asked (the request is answered).
    Done(String),
    /// It cannot be done; the reason names what stands in the way.
    Refused(String),
}

/// What `request` comes to for the group in `view` at `now`.
pub fn answer(view: &GroupView<'_>, request: &OperatorRequest, state: &PolicyState, now: Timestamp) -> Answer {
    if bounds::in_progress(view) {
        return Answer::Wait;
    }
    let spec = view.spec;
    let running = view::running_members(view, now);
    let insts: Vec<&Instance> = running.iter().map(|m| m.inst).collect();
    let find = |id| insts.iter().copied().find(|m| &m.id == id);
    let mut st = *state;
    match request {
        OperatorRequest::Desired(n) => {
            if spec.mode == Mode::Handover {
                return Answer::Refused("a handover-mode group has one primary; desired does not apply".into());
            }
            if *n < spec.min || *n > spec.max {
                return Answer::Refused(format!("desired {n} is outside min {} .. max {}", spec.min, spec.max));
            }
            let size = view.members.iter().filter(|m| m.state.is_capacity()).count();
            let want = *n as usize;
            let reason = format!("operator set desired {n} (was {size})");
            if want > size {
                st.last_scale_out = Some(now);
                st.up_count = 0;
                st.down_count = 0;
                let count = u32::try_from(want - size).unwrap_or(u32::MAX);
                Answer::Act(Decision::ScaleOut { count, reason }, st)
            } else if want < size {
                let victims = victims::pick(spec, &insts, view.latest, size - want, None, view.protected);
                if victims.is_empty() {
                    return Answer::Refused(format!("no member can go: {size} members, the rest protected"));
                }
                st.last_scale_in = Some(now);
                st.up_count = 0;
                st.down_count = 0;
                Answer::Act(Decision::ScaleIn { victims, reason }, st)
            } else {
                Answer::Done(format!("already {size} members"))
            }
        }
        OperatorRequest::Handover => {
            if spec.mode != Mode::Handover {
                return Answer::Refused("only a handover-mode group hands over".into());
            }
            let primary = view::primary(view, &running);
            let successor = primary.and_then(|p| view::oldest(insts.iter().copied().filter(|m| m.id != p.id)));
            match (primary, successor) {
                (Some(p), _) if view.protected.contains(&p.id) => {
                    Answer::Refused(format!("the primary {} is protected", p.id))
                }
                (Some(p), Some(s)) => {
                    st.last_scale_in = Some(now);
                    st.up_count = 0;
                    st.down_count = 0;
                    let reason = format!("operator asked to hand over from {} to {}", p.id, s.id);
                    Answer::Act(Decision::Handover { retire: p.id.clone(), successor: s.id.clone(), reason }, st)
                }
                _ => Answer::Refused("no running clone to hand over to".into()),
            }
        }
        OperatorRequest::Drain(id) => {
            let Some(m) = find(id) else { return Answer::Done(format!("{id} is not running")) };
            if view.protected.contains(&m.id) {
                return Answer::Refused(format!("{id} is protected"));
            }
            if spec.mode == Mode::Handover && view::primary(view, &running).is_some_and(|p| p.id == m.id) {
                return Answer::Refused(format!("{id} is the primary: hand over first"));
            }
            let floor = spec.min.max(1) as usize;
            if insts.len() <= floor {
                return Answer::Refused(format!("{} running, min {}: replace it instead", insts.len(), floor));
            }
            let reason = format!("operator asked to drain {id}");
            Answer::Act(Decision::ScaleIn { victims: vec![m.id.clone()], reason }, st)
        }
        OperatorRequest::Replace(id) => {
            let Some(m) = find(id) else { return Answer::Done(format!("{id} is not running")) };
            let reason = format!("operator asked to replace {id}");
            Answer::Act(Decision::Replace { old: vec![m.id.clone()], cause: ReplaceCause::Operator, reason }, st)
        }
    }
}
