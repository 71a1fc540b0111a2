//! Request count: the seed-002 trigger.

use flotilla_model::{Decision, Evaluation, HoldReason, PolicyState, RequestCountSpec, Timestamp};

use crate::engine::{self, Tick};
use crate::{GroupView, Policy};

/// The seed-002 trigger, as configured in a [`PolicySpec::RequestCount`](flotilla_model::PolicySpec::RequestCount): once the running members
/// served `requests` requests within `window` (their `Metric::Requests`, summed; the balancer
/// counts them over the window), scale out by `increment` (handover mode: one clone), within max
/// and after `cooldown_up`. One sample is enough. Members that do not report only make the sum
/// smaller, so partial data may still trigger.
///
/// It never scales in and never hands over: a low count holds (`Steady`). Bounds repair (min,
/// max, failed members) still applies. The requests that triggered a scale-out stay in the window
/// until it has passed, so a `cooldown_up` shorter than the window may scale out again on them.
/// A spec of another kind is decided by that kind's rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCountPolicy;

impl Policy for RequestCountPolicy {
    fn decide(&self, view: &GroupView<'_>, state: &PolicyState, now: Timestamp) -> (Evaluation, PolicyState) {
        crate::decide(view, state, now)
    }
}

pub(crate) struct Rule<'a>(pub &'a RequestCountSpec);

impl Rule<'_> {
    fn triggered(&self, value: f64) -> bool {
        value >= self.0.requests as f64
    }
}

impl engine::Rule for Rule<'_> {
    fn count(&self, _t: &Tick<'_>, value: f64, st: &mut PolicyState) {
        st.up_count = if self.triggered(value) { st.up_count.saturating_add(1) } else { 0 };
        st.down_count = 0;
    }

    fn act(&self, t: &Tick<'_>, value: f64, st: &mut PolicyState) -> Decision {
        if st.up_count >= 1 {
            if self.triggered(value) {
                let increment = t.view.spec.increment.max(1) as usize;
                let RequestCountSpec { requests, window } = self.0;
                return t.scale_out(st, increment, || format!("{value:.0} requests in {window:?} >= {requests}"));
            }
            // Counted on this data, but the group changed since: start over.
            st.up_count = 0;
        }
        Decision::Hold(HoldReason::Steady)
    }
}
