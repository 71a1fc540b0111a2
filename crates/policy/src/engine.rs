//! The order of a tick, shared by every policy kind, and the actions the kinds share. A kind is a
//! [`Rule`]: how a new sample moves the up/down counters, and how the counters become a decision.

use std::time::Duration;

use flotilla_model::{Decision, Evaluation, HoldReason, Instance, Mode, PolicyState, Timestamp};

use crate::aggregate::{self, Readings};
use crate::bounds::{self, Repair};
use crate::health;
use crate::rollout;
use crate::victims;
use crate::view::{self, GroupView, Member};

/// One policy kind's rules, given a tick.
pub(crate) trait Rule {
    /// A sample newer than any counted arrived and the group's value is `value`: extend or reset
    /// the up/down counters.
    fn count(&self, t: &Tick<'_>, value: f64, st: &mut PolicyState);
    /// After in-progress and bounds: turn the counters (and the current value) into a decision.
    /// Scale-out beats hold beats scale-in.
    fn act(&self, t: &Tick<'_>, value: f64, st: &mut PolicyState) -> Decision;
    /// The member count `value` asks for, if the kind has one (for the evaluation).
    fn desired(&self, _t: &Tick<'_>, _value: f64) -> Option<u32> {
        None
    }
    /// The value the rule acts on: the members' aggregated metric unless the kind has its own.
    fn value(&self, t: &Tick<'_>) -> Option<f64> {
        t.r.value
    }
    /// Whether a scale-in needs every running member's sample (missing data never scales in). A
    /// kind that reads no member samples (alarms) guards against missing data itself.
    fn reads_samples(&self) -> bool {
        true
    }
}

/// The group at one tick, as every rule sees it.
pub(crate) struct Tick<'a> {
    pub view: GroupView<'a>,
    /// Running members, each with its fresh sample if it has one.
    pub running: &'a [Member<'a>],
    pub r: &'a Readings,
    pub now: Timestamp,
    /// The rule reads member samples: a scale-in needs them from every running member.
    pub reads_samples: bool,
}

/// One tick of `rule`; see the crate docs for the order. The evaluation's counters are those of the
/// returned state.
pub(crate) fn decide(
    rule: &impl Rule,
    view: &GroupView<'_>,
    old: &PolicyState,
    now: Timestamp,
) -> (Evaluation, PolicyState) {
    let running = view::running_members(view, now);
    let readings = aggregate::read(view.spec, &running, now);
    let t = Tick { view: *view, running: &running, r: &readings, now, reads_samples: rule.reads_samples() };
    let (decision, next) = t.run(rule, old);
    let value = rule.value(&t);
    let evaluation = Evaluation {
        at: now,
        cpu: readings.cpu,
        mem: readings.mem,
        value,
        desired: value.and_then(|v| rule.desired(&t, v)),
        sampled: readings.sampled,
        running: readings.running,
        up_count: next.up_count,
        down_count: next.down_count,
        decision,
    };
    (evaluation, next)
}

impl Tick<'_> {
    fn run(&self, rule: &impl Rule, old: &PolicyState) -> (Decision, PolicyState) {
        if bounds::in_progress(&self.view) {
            return (Decision::Hold(HoldReason::InProgress), *old);
        }
        let mut st = *old;
        match (self.r.value, self.r.newest) {
            (Some(value), Some(newest)) if newest > old.last_sample_at => {
                st.last_sample_at = newest;
                rule.count(self, value, &mut st);
            }
            // Already counted: calling twice on the same data changes nothing.
            (Some(_), Some(_)) => {}
            // No fresh data: a low streak is broken; a high one waits.
            _ => st.down_count = 0,
        }

        if let Some(repair) = bounds::repair(&self.view, self.running) {
            let decision = match repair {
                Repair::Failed(victims) => {
                    return (Decision::ScaleIn { victims, reason: "replace failed members".into() }, st)
                }
                Repair::BelowMin(count) => Decision::ScaleOut { count, reason: "below min".into() },
                Repair::AboveMax(victims) => Decision::ScaleIn { victims, reason: "above max".into() },
            };
            stamp(&mut st, &decision, self.now);
            return (decision, st);
        }

        let decision = match rule.value(self) {
            Some(value) => rule.act(self, value, &mut st),
            None => Decision::Hold(HoldReason::NoData),
        };
        // A member that does not serve is replaced before the group shrinks or merely holds; a
        // scale-out comes first (it adds capacity sooner). Neither stamps a cooldown nor resets a
        // streak: the streak acts on the tick after.
        if !matches!(decision, Decision::ScaleOut { .. }) {
            if let Some(batch) = health::next_batch(&self.view, self.now) {
                return (batch, st);
            }
        }
        if !decision.is_action() {
            // A rollout keeps the group's size and needs no metrics; it neither stamps a cooldown
            // nor resets a streak.
            if let Some(batch) = rollout::next_batch(&self.view, self.running) {
                return (batch, st);
            }
        }
        stamp(&mut st, &decision, self.now);
        (decision, st)
    }

    /// Adds up to `want` members (handover mode: one clone), never above max, once `cooldown_up`
    /// has passed since the last action. At max: `AtBound`, and the up streak starts over.
    pub fn scale_out(&self, st: &mut PolicyState, want: usize, reason: impl FnOnce() -> String) -> Decision {
        let spec = self.view.spec;
        let active = self.view.members.iter().filter(|m| m.state.is_capacity()).count();
        let room = (spec.max as usize).saturating_sub(active);
        let count = match spec.mode {
            Mode::Scale => room.min(want),
            Mode::Handover => room.min(1),
        };
        if count == 0 {
            st.up_count = 0;
            return Decision::Hold(HoldReason::AtBound);
        }
        if let Some(hold) = cooling(st, self.now, spec.cooldown_up) {
            return Decision::Hold(hold);
        }
        Decision::ScaleOut { count: u32::try_from(count).unwrap_or(u32::MAX), reason: reason() }
    }

    /// Removes up to `want` running members (handover mode: retires the primary, a running clone
    /// takes over), never below min nor the last one, once `cooldown_down` has passed since the last
    /// action, and only while every running member reports. At a bound: `AtBound`, and the down
    /// streak starts over.
    pub fn scale_in(&self, st: &mut PolicyState, want: usize, reason: impl FnOnce() -> String) -> Decision {
        if self.reads_samples && !self.r.complete {
            // A member went missing or stale since the streak was counted: never scale in on it.
            st.down_count = 0;
            return Decision::Hold(HoldReason::Steady);
        }
        let spec = self.view.spec;
        // Never below min, never to zero.
        let floor = spec.min.max(1) as usize;
        let spare = self.running.len().saturating_sub(floor);
        match spec.mode {
            Mode::Scale => {
                let n = spare.min(want);
                if n == 0 {
                    return at_bound_down(st);
                }
                if let Some(hold) = cooling(st, self.now, spec.cooldown_down) {
                    return Decision::Hold(hold);
                }
                let insts: Vec<&Instance> = self.running.iter().map(|m| m.inst).collect();
                let victims = victims::pick(spec, &insts, self.view.latest, n, None, self.view.protected);
                if victims.is_empty() {
                    return at_bound_down(st);
                }
                Decision::ScaleIn { victims, reason: reason() }
            }
            Mode::Handover => {
                let primary = view::primary(&self.view, self.running);
                let successor =
                    primary.and_then(|p| view::oldest(self.running.iter().map(|m| m.inst).filter(|m| m.id != p.id)));
                let (Some(primary), Some(successor)) = (primary, successor) else {
                    return at_bound_down(st);
                };
                if self.view.protected.contains(&primary.id) {
                    return at_bound_down(st);
                }
                if spare == 0 {
                    return at_bound_down(st);
                }
                if let Some(hold) = cooling(st, self.now, spec.cooldown_down) {
                    return Decision::Hold(hold);
                }
                Decision::Handover { retire: primary.id.clone(), successor: successor.id.clone(), reason: reason() }
            }
        }
    }
}

/// Resets both counters and stamps the action's time, for every action but failed-member cleanup.
fn stamp(st: &mut PolicyState, decision: &Decision, now: Timestamp) {
    match decision {
        Decision::Hold(_) => return,
        Decision::ScaleOut { .. } => st.last_scale_out = Some(now),
        Decision::ScaleIn { .. } | Decision::Handover { .. } => st.last_scale_in = Some(now),
        Decision::Replace { .. } => return,
    }
    st.up_count = 0;
    st.down_count = 0;
}

/// Remaining cooldown, if the last action was less than `cooldown` ago.
fn cooling(st: &PolicyState, now: Timestamp, cooldown: Duration) -> Option<HoldReason> {
    let since = now.since(st.last_action()?);
    (since < cooldown).then(|| {
        let left = cooldown - since;
        HoldReason::Cooldown { remaining_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1) }
    })
}

fn at_bound_down(st: &mut PolicyState) -> Decision {
    st.down_count = 0;
    Decision::Hold(HoldReason::AtBound)
}

/// "1 sample", "4 samples".
pub(crate) fn samples(n: u32) -> String {
    format!("{n} {}", if n == 1 { "sample" } else { "samples" })
}
