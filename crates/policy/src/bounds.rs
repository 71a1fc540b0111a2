//! Work that comes before the thresholds: changes in progress, failed members, min/max bounds.

use flotilla_model::{Instance, InstanceId, InstanceState, Mode};

use crate::victims;
use crate::view::{self, GroupView, Member};

/// An unfinished operation, or a member that is creating, draining or deleting: the group is in
/// the middle of a change and the core waits for it.
pub(crate) fn in_progress(view: &GroupView<'_>) -> bool {
    view.operation_pending
        || view
            .members
            .iter()
            .any(|m| matches!(m.state, InstanceState::Creating | InstanceState::Draining | InstanceState::Deleting))
}

/// A repair the bounds ask for, before any streak is looked at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Repair {
    /// Remove this failed member (the oldest; one per pass, so a provider that misreports many at
    /// once cannot empty the group). No cooldown, no stamp, no counter reset.
    Failed(Vec<InstanceId>),
    /// Add this many members to reach `min`.
    BelowMin(u32),
    /// Remove these running members to get down to `max`.
    AboveMax(Vec<InstanceId>),
}

pub(crate) fn repair(view: &GroupView<'_>, running: &[Member<'_>]) -> Option<Repair> {
    let spec = view.spec;
    // New before old: capacity lost to failed members is replaced before they are removed, so a
    // delete the provider cannot do now never blocks it. Unknown members keep their place.
    let active = view.members.iter().filter(|m| m.state.is_capacity()).count();
    // A spec with min > max is invalid; never fill beyond max anyway.
    let floor = spec.min.min(spec.max) as usize;
    if active < floor {
        return Some(Repair::BelowMin(u32::try_from(floor - active).unwrap_or(u32::MAX)));
    }
    let failed = view.members.iter().filter(|m| matches!(m.state, InstanceState::Failed(_)));
    if let Some(oldest) = failed.min_by(|a, b| Instance::by_age(a, b)) {
        return Some(Repair::Failed(vec![oldest.id.clone()]));
    }

    let max = spec.max as usize;
    if running.len() > max {
        let n = (running.len() - max).min(running.len() - 1);
        // Handover mode keeps its primary if it can: it is the baseline.
        let spare = match spec.mode {
            Mode::Handover => view::primary(view, running).map(|m| &m.id),
            Mode::Scale => None,
        };
        let insts: Vec<&Instance> = running.iter().map(|m| m.inst).collect();
        let victims = victims::pick(spec, &insts, view.latest, n, spare, view.protected);
        if !victims.is_empty() {
            return Some(Repair::AboveMax(victims));
        }
    }
    None
}
