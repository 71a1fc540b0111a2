//! The seed's threshold policy: streaks of high or low samples.

use flotilla_model::{Decision, Evaluation, HoldReason, MetricChoice, PolicyState, ThresholdSpec, Timestamp};

use crate::engine::{self, samples, Tick};
use crate::{GroupView, Policy};

/// Scales on `min_up` consecutive samples at or above `high` and `min_down` consecutive samples at
/// or below `low` (with every running member reporting), as configured in a
/// [`PolicySpec::Threshold`](flotilla_model::PolicySpec::Threshold); see the crate docs for the order of a tick. A spec of another kind is
/// decided by that kind's rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThresholdPolicy;

impl Policy for ThresholdPolicy {
    fn decide(&self, view: &GroupView<'_>, state: &PolicyState, now: Timestamp) -> (Evaluation, PolicyState) {
        crate::decide(view, state, now)
    }
}

pub(crate) struct Rule<'a>(pub &'a ThresholdSpec);

impl engine::Rule for Rule<'_> {
    fn count(&self, t: &Tick<'_>, value: f64, st: &mut PolicyState) {
        let spec = self.0;
        if value >= spec.high {
            st.up_count = st.up_count.saturating_add(1);
            st.down_count = 0;
        } else if value <= spec.low && t.r.complete {
            st.down_count = st.down_count.saturating_add(1);
            st.up_count = 0;
        } else {
            // Between the thresholds, or low but with members missing: both streaks break.
            st.up_count = 0;
            st.down_count = 0;
        }
    }

    fn act(&self, t: &Tick<'_>, value: f64, st: &mut PolicyState) -> Decision {
        let spec = self.0;
        let increment = t.view.spec.increment.max(1) as usize;
        if st.up_count >= spec.min_up.max(1) {
            let n = st.up_count;
            return t.scale_out(st, increment, || self.reason(value, ">=", spec.high, n));
        }
        if st.down_count >= spec.min_down.max(1) {
            let n = st.down_count;
            return t.scale_in(st, increment, || self.reason(value, "<=", spec.low, n));
        }
        Decision::Hold(HoldReason::Steady)
    }
}

impl Rule<'_> {
    fn reason(&self, value: f64, op: &str, limit: f64, n: u32) -> String {
        let label = match self.0.metric {
            MetricChoice::Cpu => "cpu",
            MetricChoice::Mem => "mem",
            MetricChoice::Max => "cpu/mem max",
            MetricChoice::Rps => "rps",
        };
        format!("{label} {value:.1} {op} {limit} for {}", samples(n))
    }
}
