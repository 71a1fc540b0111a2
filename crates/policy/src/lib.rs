//! The pure decision core of Flotilla: the policy kinds (threshold, target tracking, request
//! count), bounds repair, cooldowns and victim choice.
//!
//! **The policy core does no I/O.** It never reads a clock, a file, the network or the store, and it
//! never spawns or sleeps: time is an argument (`now`), the group is a borrowed [`GroupView`], and the
//! memory between ticks is a [`PolicyState`] value that goes in and comes back out. The same inputs
//! always give the same outputs, so the controller may call [`Policy::decide`] again on the same data
//! (after a restart, say) without double counting a sample.
//!
//! One tick, in order, for every kind:
//!
//! 1. **In progress**: an unfinished operation, or a member that is creating, draining or deleting,
//!    gives `Hold(InProgress)` and the state comes back untouched.
//! 2. **Counting**: the group's value (the kind's aggregation of the fresh samples) extends or
//!    resets the up/down counters, but only when a sample newer than any already counted arrived.
//!    Partial or stale data never extends a down count; no data at all resets it.
//! 3. **Bounds repair**: failed members are removed (no cooldown, no stamp); a group below `min` is
//!    filled up; a group above `max` is trimmed (never to zero running members).
//! 4. **The kind's rule**: a complete up count scales out (or adds a clone in handover mode); a
//!    complete down count scales in (or hands over from the primary to a clone), subject to
//!    bounds, cooldowns and complete data. Scale-out beats hold beats scale-in. Every action
//!    resets both counters and stamps its time.
//! 5. **Health**: unless the rule scales out, members failing their balancer health check for the
//!    group's `after`, once older than its `grace`, are replaced new before old (no cooldown, no
//!    stamp; the rule's action waits a tick).
//! 6. **Rollout**: on a tick that would hold, running members made from an older template version
//!    (or, failing those, created before an operator's rolling replacement) are replaced,
//!    `max_unavailable` at a time, oldest first (no cooldown, no stamp).
//!
//! An operator's one-shot request (set desired, hand over, drain, replace) becomes one of the same
//! decisions through [`operator::answer`].
//!
//! The kinds ([`flotilla_model::PolicySpec`]):
//!
//! * [`ThresholdPolicy`]: `min_up` samples at or above `high` / `min_down` at or below `low`.
//! * [`TargetTrackingPolicy`]: the group wants `ceil(running × value / target)` members; more
//!   scales out on one sample, fewer scales in after `scale_in_samples`; ±[`TARGET_TOLERANCE`]
//!   around the target holds.
//! * [`RequestCountPolicy`]: `requests` requests within the window scale out; it never scales in.
//! * [`AlarmPolicy`]: each rule adjusts the group by Heat's arithmetic while its alarm is in
//!   `alarm` (once per transition, or once per cooldown with `repeat`); no member sample needed.

mod aggregate;
mod alarm;
mod bounds;
mod engine;
mod health;
pub mod operator;
mod requests;
mod rollout;
mod target;
mod threshold;
mod victims;
mod view;

#[cfg(test)]
mod tests;

use flotilla_model::{Evaluation, GroupSpec, PolicySpec, PolicyState, Timestamp};

pub use aggregate::{member_value, policy_value};
pub use alarm::{new_capacity, AlarmPolicy};
pub use requests::RequestCountPolicy;
pub use target::{TargetTrackingPolicy, TARGET_TOLERANCE};
pub use threshold::ThresholdPolicy;
pub use victims::choose_victims;
pub use view::GroupView;

/// A decision policy. Implementations are pure: no I/O, no clock, no randomness.
pub trait Policy: Send + Sync {
    /// Pure: same inputs, same outputs. Returns the evaluation (numbers + decision) and the new state.
    fn decide(&self, view: &GroupView<'_>, state: &PolicyState, now: Timestamp) -> (Evaluation, PolicyState);
}

/// The policy a group's spec asks for: one per [`PolicySpec`] kind.
pub fn policy_for(spec: &GroupSpec) -> Box<dyn Policy> {
    match spec.policy {
        PolicySpec::Threshold(_) => Box::new(ThresholdPolicy),
        PolicySpec::TargetTracking(_) => Box::new(TargetTrackingPolicy),
        PolicySpec::RequestCount(_) => Box::new(RequestCountPolicy),
        PolicySpec::Alarm(_) => Box::new(AlarmPolicy),
    }
}

/// The one dispatch on the policy kind: the spec is the truth, whichever [`Policy`] is asked.
pub fn decide(view: &GroupView<'_>, state: &PolicyState, now: Timestamp) -> (Evaluation, PolicyState) {
    match &view.spec.policy {
        PolicySpec::Threshold(t) => engine::decide(&threshold::Rule(t), view, state, now),
        PolicySpec::TargetTracking(t) => engine::decide(&target::Rule(t), view, state, now),
        PolicySpec::RequestCount(r) => engine::decide(&requests::Rule(r), view, state, now),
        PolicySpec::Alarm(a) => engine::decide(&alarm::Rule(a), view, state, now),
    }
}
