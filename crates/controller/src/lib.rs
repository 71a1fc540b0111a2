//! The control loop: for each group, `observe` (store + provider + metric sources), `decide` (the pure
//! core in `flotilla-policy`), `apply` (operations: intent stored first, steps idempotent).
//!
//! Invariants kept here:
//! - no provider call without a stored operation: every create/delete runs inside an `Operation`
//!   written (state Pending) before the first call and marked Done/Failed after the last;
//! - one reconcile per group at a time (one task per group), one pending operation per group
//!   (enforced by the store);
//! - after a crash, a pending operation is resumed before anything new is decided: creates are
//!   idempotent by name, deletes by id, so resuming never duplicates a member or orphans one.

mod alarms;
mod apply;
mod backoff;
mod checkin;
mod controller;
mod counters;
mod naming;
mod observe;
mod run;

pub use alarms::{AlarmReport, SIGNAL_MEMORY};
pub use backoff::Backoff;
pub use checkin::CheckinState;
pub use controller::{
    hold_words, Controller, ControllerParts, Failpoint, GroupStatus, MemberInput, Options, ReconcileOutcome,
    RequestError, FAILPOINTS,
};
pub use counters::{outcome, GroupCounters};
pub use naming::{fresh_names, highest};
pub use run::{run, Shutdown};
