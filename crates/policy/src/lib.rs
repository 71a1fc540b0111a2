//! The pure decision core of Flotilla: threshold policy, bounds repair, cooldowns and victim choice.
//!
//! **The policy core does no I/O.** It never reads a clock, a file, the network or the store, and it
//! never spawns or sleeps: time is an argument (`now`), the group is a borrowed [`GroupView`], and the
//! memory between ticks is a [`PolicyState`] value that goes in and comes back out. The same inputs
//! always give the same outputs, so the controller may call [`Policy::decide`] again on the same data
//! (after a restart, say) without double counting a sample.
//!
//! One tick, in order:
//!
//! 1. **In progress**: an unfinished operation, or a member that is creating, draining or deleting,
//!    gives `Hold(InProgress)` and the state comes back untouched.
//! 2. **Counting**: the aggregated value of the fresh samples extends or resets the up/down streaks,
//!    but only when a sample newer than any already counted arrived. Partial or stale data never
//!    extends a low streak; no data at all resets it.
//! 3. **Bounds repair**: failed members are removed (no cooldown, no stamp); a group below `min` is
//!    filled up; a group above `max` is trimmed (never to zero running members).
//! 4. **Streaks**: a complete high streak scales out (or adds a clone in handover mode); a complete
//!    low streak scales in (or hands over from the primary to a clone), subject to bounds and
//!    cooldowns. Scale-out beats hold beats scale-in.

mod aggregate;
mod bounds;
mod threshold;
mod victims;
mod view;

#[cfg(test)]
mod tests;

use flotilla_model::{Evaluation, GroupSpec, PolicyState, Timestamp};

pub use aggregate::member_value;
pub use threshold::ThresholdPolicy;
pub use victims::choose_victims;
pub use view::GroupView;

/// A decision policy. Implementations are pure: no I/O, no clock, no randomness.
pub trait Policy: Send + Sync {
    /// Pure: same inputs, same outputs. Returns the evaluation (numbers + decision) and the new state.
    fn decide(&self, view: &GroupView<'_>, state: &PolicyState, now: Timestamp) -> (Evaluation, PolicyState);
}

/// The policy a group's spec asks for. Every group uses the [`ThresholdPolicy`] for now.
pub fn policy_for(spec: &GroupSpec) -> Box<dyn Policy> {
    let _ = spec;
    Box::new(ThresholdPolicy)
}
