//! The seed's threshold policy: streaks of high or low samples, bounds, cooldowns.

use std::time::Duration;

use flotilla_model::{
    Decision, Evaluation, GroupSpec, HoldReason, Instance, InstanceState, MetricChoice, Mode, PolicyState, Timestamp,
};

use crate::aggregate::{self, Readings};
use crate::bounds::{self, Repair};
use crate::view::{self, GroupView, Member};
use crate::{victims, Policy};

/// Scales on `min_up` consecutive samples at or above `high` and `min_down` consecutive samples at
/// or below `low`, as configured in `GroupSpec::threshold`; see the crate docs for the order of a
/// tick. The evaluation's counters are those of the returned state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThresholdPolicy;

impl Policy for ThresholdPolicy {
    fn decide(&self, view: &GroupView<'_>, state: &PolicyState, now: Timestamp) -> (Evaluation, PolicyState) {
        let running = view::running_members(view, now);
        let readings = aggregate::read(view.spec, &running);
        let (decision, next) = tick(view, &running, &readings, state, now);
        let evaluation = Evaluation {
            at: now,
            cpu: readings.cpu,
            mem: readings.mem,
            value: readings.value,
            sampled: readings.sampled,
            running: readings.running,
            up_count: next.up_count,
            down_count: next.down_count,
            decision,
        };
        (evaluation, next)
    }
}

fn tick(
    view: &GroupView<'_>,
    running: &[Member<'_>],
    r: &Readings,
    old: &PolicyState,
    now: Timestamp,
) -> (Decision, PolicyState) {
    if bounds::in_progress(view) {
        return (Decision::Hold(HoldReason::InProgress), *old);
    }
    let mut st = count(view.spec, old, r);

    if let Some(repair) = bounds::repair(view, running) {
        let decision = match repair {
            Repair::Failed(victims) => {
                return (Decision::ScaleIn { victims, reason: "replace failed members".into() }, st)
            }
            Repair::BelowMin(count) => Decision::ScaleOut { count, reason: "below min".into() },
            Repair::AboveMax(victims) => Decision::ScaleIn { victims, reason: "above max".into() },
        };
        stamp(&mut st, &decision, now);
        return (decision, st);
    }

    let Some(value) = r.value else {
        return (Decision::Hold(HoldReason::NoData), st);
    };
    let decision = streaks(view, running, r, value, &mut st, now);
    stamp(&mut st, &decision, now);
    (decision, st)
}

/// Rule 3 and 4: advances the streaks if, and only if, a sample newer than any counted arrived.
fn count(spec: &GroupSpec, old: &PolicyState, r: &Readings) -> PolicyState {
    let mut st = *old;
    let (Some(value), Some(newest)) = (r.value, r.newest) else {
        // No fresh data: a low streak is broken; a high one waits.
        st.down_count = 0;
        return st;
    };
    if newest <= old.last_sample_at {
        return st; // already counted: calling twice on the same data changes nothing
    }
    st.last_sample_at = newest;
    let t = &spec.threshold;
    if value >= t.high {
        st.up_count = st.up_count.saturating_add(1);
        st.down_count = 0;
    } else if value <= t.low && r.complete {
        st.down_count = st.down_count.saturating_add(1);
        st.up_count = 0;
    } else {
        // Between the thresholds, or low but with members missing: both streaks break.
        st.up_count = 0;
        st.down_count = 0;
    }
    st
}

/// Resets both counters and stamps the action's time, for every action but failed-member cleanup.
fn stamp(st: &mut PolicyState, decision: &Decision, now: Timestamp) {
    match decision {
        Decision::Hold(_) => return,
        Decision::ScaleOut { .. } => st.last_scale_out = Some(now),
        Decision::ScaleIn { .. } | Decision::Handover { .. } => st.last_scale_in = Some(now),
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

fn at_bound_up(st: &mut PolicyState) -> Decision {
    st.up_count = 0;
    Decision::Hold(HoldReason::AtBound)
}

fn at_bound_down(st: &mut PolicyState) -> Decision {
    st.down_count = 0;
    Decision::Hold(HoldReason::AtBound)
}

fn metric_label(m: MetricChoice) -> &'static str {
    match m {
        MetricChoice::Cpu => "cpu",
        MetricChoice::Mem => "mem",
        MetricChoice::Max => "cpu/mem max",
    }
}

fn reason(spec: &GroupSpec, value: f64, op: &str, limit: f64, n: u32) -> String {
    let label = metric_label(spec.threshold.metric);
    let samples = if n == 1 { "sample" } else { "samples" };
    format!("{label} {value:.1} {op} {limit} for {n} {samples}")
}

/// Rule 6: turns complete streaks into actions. Scale-out beats hold beats scale-in.
fn streaks(
    view: &GroupView<'_>,
    running: &[Member<'_>],
    r: &Readings,
    value: f64,
    st: &mut PolicyState,
    now: Timestamp,
) -> Decision {
    let spec = view.spec;
    let t = &spec.threshold;
    if st.up_count >= t.min_up.max(1) {
        let active =
            view.members.iter().filter(|m| matches!(m.state, InstanceState::Creating | InstanceState::Running)).count();
        let room = (spec.max as usize).saturating_sub(active);
        let count = match spec.mode {
            Mode::Scale => room.min(spec.increment.max(1) as usize),
            Mode::Handover => room.min(1),
        };
        if count == 0 {
            return at_bound_up(st);
        }
        if let Some(hold) = cooling(st, now, spec.cooldown_up) {
            return Decision::Hold(hold);
        }
        return Decision::ScaleOut {
            count: u32::try_from(count).unwrap_or(u32::MAX),
            reason: reason(spec, value, ">=", t.high, st.up_count),
        };
    }

    if st.down_count >= t.min_down.max(1) {
        if !r.complete {
            // A member went missing or stale since the streak was counted: never scale in on it.
            st.down_count = 0;
            return Decision::Hold(HoldReason::Steady);
        }
        // Never below min, never to zero.
        let floor = spec.min.max(1) as usize;
        let spare = running.len().saturating_sub(floor);
        let why = reason(spec, value, "<=", t.low, st.down_count);
        return match spec.mode {
            Mode::Scale => {
                let n = spare.min(spec.increment.max(1) as usize);
                if n == 0 {
                    return at_bound_down(st);
                }
                if let Some(hold) = cooling(st, now, spec.cooldown_down) {
                    return Decision::Hold(hold);
                }
                let insts: Vec<&Instance> = running.iter().map(|m| m.inst).collect();
                let victims = victims::choose_victims(spec, &insts, view.latest, n);
                if victims.is_empty() {
                    return at_bound_down(st);
                }
                Decision::ScaleIn { victims, reason: why }
            }
            Mode::Handover => {
                let primary = view::primary(view, running);
                let successor =
                    primary.and_then(|p| view::oldest(running.iter().map(|m| m.inst).filter(|m| m.id != p.id)));
                let (Some(primary), Some(successor)) = (primary, successor) else {
                    return at_bound_down(st);
                };
                if spare == 0 {
                    return at_bound_down(st);
                }
                if let Some(hold) = cooling(st, now, spec.cooldown_down) {
                    return Decision::Hold(hold);
                }
                Decision::Handover { retire: primary.id.clone(), successor: successor.id.clone(), reason: why }
            }
        };
    }
    Decision::Hold(HoldReason::Steady)
}
