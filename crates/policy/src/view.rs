//! What the core sees of a group, and the per-tick facts derived from it.

use std::collections::{BTreeSet, HashMap};

use flotilla_model::{AlarmStatus, GroupSpec, Instance, InstanceId, Sample, Timestamp, Unhealthy};

/// One group at one tick, as the controller knows it. Borrowed, so building one costs nothing.
#[derive(Debug, Clone, Copy)]
pub struct GroupView<'a> {
    pub spec: &'a GroupSpec,
    /// All members the controller knows, in any state.
    pub members: &'a [Instance],
    /// The latest sample per member (at most one per member, any order; may be missing for some).
    pub latest: &'a [Sample],
    /// Handover mode: the baseline. `None` (or a member that is not running) means the oldest
    /// running member is the primary.
    pub primary: Option<&'a InstanceId>,
    /// An operation for this group is still unfinished.
    pub operation_pending: bool,
    /// The last rollout batch towards the current template version failed: propose no more.
    pub rollout_blocked: bool,
    /// Members the balancer sees failing their health check, and since when.
    pub unhealthy: &'a [Unhealthy],
    /// Members the operator protected: never a victim of a scale-in, a handover or a trim to max.
    pub protected: &'a BTreeSet<InstanceId>,
    /// A health replacement failed lately (its new member did not serve either): propose none
    /// until the group's grace period has passed.
    pub health_blocked: bool,
    /// An operator's rolling replacement: running members created before this are replaced, a
    /// batch at a time (none when it is off, or its last batch failed).
    pub replace_before: Option<Timestamp>,
    /// The group's alarms as last evaluated or reported (the `alarm` kind acts on them).
    pub alarms: &'a [AlarmStatus],
}

impl<'a> GroupView<'a> {
    /// A view with no primary and no pending operation.
    pub fn new(spec: &'a GroupSpec, members: &'a [Instance], latest: &'a [Sample]) -> Self {
        GroupView {
            spec,
            members,
            latest,
            primary: None,
            operation_pending: false,
            rollout_blocked: false,
            unhealthy: &[],
            protected: &NOBODY,
            health_blocked: false,
            replace_before: None,
            alarms: &[],
        }
    }
}

static NOBODY: BTreeSet<InstanceId> = BTreeSet::new();

/// A running member and its fresh sample, if it has one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member<'a> {
    pub inst: &'a Instance,
    pub fresh: Option<&'a Sample>,
}

/// Above this many (member, sample) pairs the lookup uses a map instead of a scan.
const SCAN_LIMIT: usize = 256;

/// The running members, in the view's order, each with its fresh sample (`now - at <= stale_after`).
/// Should `latest` hold several samples of one member, the newest is used.
pub(crate) fn running_members<'a>(view: &GroupView<'a>, now: Timestamp) -> Vec<Member<'a>> {
    let mut out: Vec<Member<'a>> =
        view.members.iter().filter(|m| m.is_running()).map(|inst| Member { inst, fresh: None }).collect();
    let stale_after = view.spec.stale_after;
    let is_fresh = |s: &&Sample| now.since(s.at) <= stale_after;
    if out.len().saturating_mul(view.latest.len()) <= SCAN_LIMIT {
        for m in &mut out {
            m.fresh = newest(view.latest.iter().filter(|s| s.instance == m.inst.id)).filter(is_fresh);
        }
    } else {
        let mut by_id: HashMap<&InstanceId, &Sample> = HashMap::with_capacity(view.latest.len());
        for s in view.latest {
            by_id.entry(&s.instance).and_modify(|cur| *cur = newer(cur, s)).or_insert(s);
        }
        for m in &mut out {
            m.fresh = by_id.get(&m.inst.id).copied().filter(is_fresh);
        }
    }
    out
}

fn newer<'a>(a: &'a Sample, b: &'a Sample) -> &'a Sample {
    if b.at > a.at {
        b
    } else {
        a
    }
}

fn newest<'a>(samples: impl Iterator<Item = &'a Sample>) -> Option<&'a Sample> {
    samples.reduce(newer)
}

/// The oldest instance: smallest `created_at`, ties broken by id.
pub(crate) fn oldest<'a>(it: impl Iterator<Item = &'a Instance>) -> Option<&'a Instance> {
    it.min_by(|a, b| Instance::by_age(a, b))
}

/// Handover mode's primary, by the one rule ([`Instance::primary`]).
pub(crate) fn primary<'a>(view: &GroupView<'a>, running: &[Member<'a>]) -> Option<&'a Instance> {
    Instance::primary(view.primary, running.iter().map(|m| m.inst))
}
