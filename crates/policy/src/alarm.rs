//! The `alarm` kind (seed 003): Heat scaling policies driven by alarms. Each rule adjusts the group
//! while its alarm is in `alarm`, by Heat's arithmetic ([`new_capacity`]), once per transition or,
//! with `repeat`, once per cooldown. The alarm's state is the input, not a one-shot signal, so an
//! alarm that fires while the group is changing is acted on when the change ends (Heat drops such a
//! signal).

use flotilla_model::{
    AdjustmentType, AlarmPolicySpec, AlarmState, AlarmStatus, Decision, Evaluation, HoldReason, PolicyState,
    ScalingRule, Timestamp,
};

use crate::engine::{self, Tick};
use crate::{GroupView, Policy};

/// Decides an [`AlarmPolicySpec`](flotilla_model::AlarmPolicySpec) group; a spec of another kind is
/// decided by that kind's rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlarmPolicy;

impl Policy for AlarmPolicy {
    fn decide(&self, view: &GroupView<'_>, state: &PolicyState, now: Timestamp) -> (Evaluation, PolicyState) {
        crate::decide(view, state, now)
    }
}

/// Heat's `calculate_new_capacity`: the size an adjustment asks for from `current`, within
/// `min..=max`. A percent change rounds towards zero, except that a change smaller than one member
/// is one member (away from zero), and at least `min_step` members when that is larger.
pub fn new_capacity(current: u32, rule: &ScalingRule, min: u32, max: u32) -> u32 {
    let cur = i64::from(current);
    let adj = i64::from(rule.adjustment);
    let new = match rule.adjustment_type {
        AdjustmentType::ChangeInCapacity => cur + adj,
        AdjustmentType::ExactCapacity => adj,
        AdjustmentType::PercentChangeInCapacity => {
            let delta = cur as f64 * adj as f64 / 100.0;
            let rounded = if delta.abs() < 1.0 { delta.signum() * delta.abs().ceil() } else { delta.trunc() } as i64;
            let step = i64::from(rule.min_adjustment_step);
            let rounded = if step > rounded.abs() { step * adj.signum() } else { rounded };
            cur + rounded
        }
    };
    u32::try_from(new.clamp(i64::from(min), i64::from(max.max(min)))).unwrap_or(max)
}

pub(crate) struct Rule<'a>(pub &'a AlarmPolicySpec);

fn state_of<'a>(alarms: &'a [AlarmStatus], name: &str) -> Option<&'a AlarmStatus> {
    alarms.iter().find(|a| a.name == name)
}

impl engine::Rule for Rule<'_> {
    /// Alarms are evaluated (or reported) outside the core; there are no streaks to count.
    fn count(&self, _t: &Tick<'_>, _value: f64, _st: &mut PolicyState) {}

    /// The number of the policy's alarms in `alarm`: always known, even with no member sample.
    fn value(&self, t: &Tick<'_>) -> Option<f64> {
        let firing = self
            .0
            .rules
            .iter()
            .filter(|r| state_of(t.view.alarms, &r.alarm).is_some_and(|a| a.state == AlarmState::Alarm))
            .count();
        Some(firing as f64)
    }

    fn reads_samples(&self) -> bool {
        false
    }

    /// The first rule (in the file's order) whose alarm is in `alarm` and that may act now decides;
    /// a rule that would grow the group goes before one that would shrink it.
    fn act(&self, t: &Tick<'_>, _value: f64, st: &mut PolicyState) -> Decision {
        let spec = t.view.spec;
        let current =
            u32::try_from(t.view.members.iter().filter(|m| m.state.is_capacity()).count()).unwrap_or(u32::MAX);
        let mut held: Option<HoldReason> = None;
        let mut firing: Vec<(&ScalingRule, &AlarmStatus, u32)> = self
            .0
            .rules
            .iter()
            .filter_map(|r| {
                let a = state_of(t.view.alarms, &r.alarm).filter(|a| a.state == AlarmState::Alarm)?;
                Some((r, a, new_capacity(current, r, spec.min.max(1), spec.max)))
            })
            .collect();
        // Growing first: under contradicting alarms, capacity wins.
        firing.sort_by_key(|&(_, _, want)| std::cmp::Reverse(want > current));
        for (rule, alarm, want) in firing {
            let out = want > current;
            let last = if out { st.last_scale_out } else { st.last_scale_in };
            // Once per transition: an adjustment in this direction since the alarm went off
            // answered it.
            if !rule.repeat && last.is_some_and(|l| l >= alarm.since) {
                continue;
            }
            if let Some(l) = last {
                let since = t.now.since(l);
                if since < rule.cooldown {
                    let left = u64::try_from((rule.cooldown - since).as_millis()).unwrap_or(u64::MAX).max(1);
                    held.get_or_insert(HoldReason::Cooldown { remaining_ms: left });
                    continue;
                }
            }
            let reason = || {
                format!(
                    "alarm {} is in alarm ({}): {} {} -> {want} members",
                    rule.alarm,
                    alarm.reason,
                    rule.adjustment_type.as_str(),
                    rule.adjustment
                )
            };
            let d = if want > current {
                t.scale_out(st, (want - current) as usize, reason)
            } else if want < current {
                t.scale_in(st, (current - want) as usize, reason)
            } else {
                Decision::Hold(HoldReason::AtBound)
            };
            if d.is_action() {
                return d;
            }
            held.get_or_insert(match d {
                Decision::Hold(h) => h,
                _ => unreachable!("an action returned above"),
            });
        }
        Decision::Hold(held.unwrap_or(HoldReason::Steady))
    }
}
