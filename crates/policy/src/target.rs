//! Target tracking: keep the mean per-member value of a metric near a target.

use flotilla_model::{Decision, Evaluation, GroupSpec, HoldReason, PolicyState, TargetMetric, TargetSpec, Timestamp};

use crate::engine::{self, samples, Tick};
use crate::{GroupView, Policy};

/// Values within this share of the target (either side) want no change: without a band, a group
/// near its target would flap between two sizes.
pub const TARGET_TOLERANCE: f64 = 0.10;

/// Keeps the mean per-member value of the metric in a [`PolicySpec::TargetTracking`](flotilla_model::PolicySpec::TargetTracking) near its
/// target, the way AWS target tracking does:
///
/// * the group wants `ceil(running × value / target)` members, within `[max(min, 1), max]`; a
///   value within ±[`TARGET_TOLERANCE`] of the target wants the members it has;
/// * more than it has: scale out to that many on the first sample that shows it (no streak; the
///   `increment` does not cap it; handover mode adds one clone), after `cooldown_up`;
/// * fewer than it has, on `scale_in_samples` consecutive samples with every running member
///   reporting: scale in by the difference, at most `increment` (handover mode: the primary
///   retires for a running clone), after `cooldown_down`. Partial data resets the count;
/// * wanting more at max, or fewer at min, holds `AtBound`.
///
/// The up counter holds the samples that wanted more (an action needs one), the down counter those
/// that wanted fewer. A spec of another kind is decided by that kind's rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetTrackingPolicy;

impl Policy for TargetTrackingPolicy {
    fn decide(&self, view: &GroupView<'_>, state: &PolicyState, now: Timestamp) -> (Evaluation, PolicyState) {
        crate::decide(view, state, now)
    }
}

pub(crate) struct Rule<'a>(pub &'a TargetSpec);

/// What the value asks for with `running` members: the unbounded count (`running` inside the
/// tolerance band) and the count within the spec's bounds.
fn wanted(spec: &GroupSpec, t: &TargetSpec, running: u32, value: f64) -> (f64, u32) {
    let raw = if (value - t.target).abs() <= TARGET_TOLERANCE * t.target {
        f64::from(running)
    } else {
        (f64::from(running) * value / t.target).ceil()
    };
    // `as` saturates (and maps NaN to 0); the bounds apply after. A spec with min above max
    // (invalid) never wants more than max.
    let bounded = (raw as u32).max(spec.min.max(1)).min(spec.max);
    (raw, bounded)
}

impl engine::Rule for Rule<'_> {
    fn count(&self, t: &Tick<'_>, value: f64, st: &mut PolicyState) {
        let running = t.r.running;
        let (raw, _) = wanted(t.view.spec, self.0, running, value);
        if raw > f64::from(running) {
            st.up_count = st.up_count.saturating_add(1);
            st.down_count = 0;
        } else if raw < f64::from(running) && t.r.complete {
            st.down_count = st.down_count.saturating_add(1);
            st.up_count = 0;
        } else {
            // Within the band (or fewer wanted while members are missing): both counts break.
            st.up_count = 0;
            st.down_count = 0;
        }
    }

    fn act(&self, t: &Tick<'_>, value: f64, st: &mut PolicyState) -> Decision {
        let spec = t.view.spec;
        let running = t.r.running;
        let (raw, desired) = wanted(spec, self.0, running, value);
        if st.up_count >= 1 {
            if raw > f64::from(running) {
                // Saturating: a huge value asks for `max` members, not an overflow.
                let want = (raw - f64::from(running)) as usize;
                return t.scale_out(st, want, || self.reason(value, ">", desired, None));
            }
            // Counted on this data, but the group changed since: start over.
            st.up_count = 0;
        }
        if st.down_count >= self.0.scale_in_samples.max(1) {
            if raw < f64::from(running) {
                let want = running.saturating_sub(desired).min(spec.increment.max(1)) as usize;
                let n = st.down_count;
                return t.scale_in(st, want, || self.reason(value, "<", desired, Some(n)));
            }
            st.down_count = 0;
        }
        Decision::Hold(HoldReason::Steady)
    }

    fn desired(&self, t: &Tick<'_>, value: f64) -> Option<u32> {
        Some(wanted(t.view.spec, self.0, t.r.running, value).1)
    }
}

impl Rule<'_> {
    fn reason(&self, value: f64, op: &str, desired: u32, n: Option<u32>) -> String {
        let label = match self.0.metric {
            TargetMetric::Cpu => "cpu",
            TargetMetric::Mem => "mem",
            TargetMetric::Rps => "rps",
        };
        let members = if desired == 1 { "member" } else { "members" };
        let streak = n.map(|n| format!(" for {}", samples(n))).unwrap_or_default();
        format!("per-member {label} {value:.1} {op} target {}{streak}: {desired} {members} wanted", self.0.target)
    }
}
