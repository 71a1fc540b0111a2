use std::collections::BTreeSet;

use crate::{InstanceId, ReplaceCause, Timestamp};

/// Why the core decided to do nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldReason {
    /// Values between the thresholds (or within the target's tolerance band, or below the request
    /// trigger), or a streak not yet long enough.
    Steady,
    /// No fresh sample from any running member.
    NoData,
    /// A streak is complete but the cooldown has not passed; the action fires once it has.
    Cooldown { remaining_ms: u64 },
    /// Another change (creating, draining, deleting member) is still in progress.
    InProgress,
    /// The streak asks for a change the bounds forbid (already at max, at min, no clone to hand to).
    AtBound,
}

/// What the core wants done. Scale-out is a count; scale-in names its victims.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Hold(HoldReason),
    ScaleOut {
        count: u32,
        reason: String,
    },
    ScaleIn {
        victims: Vec<InstanceId>,
        reason: String,
    },
    /// Retire the primary; `successor` (a running clone) becomes the primary.
    Handover {
        retire: InstanceId,
        successor: InstanceId,
        reason: String,
    },
    /// Replace these members (made from an older template, or not serving) with new ones:
    /// create, wait healthy, then drain and delete the old.
    Replace {
        old: Vec<InstanceId>,
        cause: ReplaceCause,
        reason: String,
    },
}

impl Decision {
    pub fn is_action(&self) -> bool {
        !matches!(self, Decision::Hold(_))
    }
}

/// What an operator set on a group at run time (the API, the CLI), kept by the store so a restart
/// keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupControls {
    /// Decide and explain, act on nothing (not even bounds repair) until resumed.
    pub paused: bool,
    /// Decide and record what would be done ("would scale out to 3"), act on nothing.
    pub dry_run: bool,
    /// Members no scale-in, handover or trim to max ever picks as a victim.
    pub protected: BTreeSet<InstanceId>,
    /// An operator's request the group's next pass carries out (then clears), one at a time.
    pub request: Option<OperatorRequest>,
    /// A rolling replacement an operator asked for: members created before this are outdated.
    pub replace_before: Option<Timestamp>,
}

/// A one-shot action an operator asked for, carried out by the group's next pass through the same
/// operations as the policy's own (so it is logged, resumable and fenced like them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorRequest {
    /// Bring the group to this many members (within min..=max): a scale-out or a scale-in.
    Desired(u32),
    /// Handover mode: retire the primary; the oldest running clone takes over.
    Handover,
    /// Drain this member and delete it (the group shrinks by one; never below min).
    Drain(InstanceId),
    /// Replace this member: a new one first, then drain and delete it.
    Replace(InstanceId),
}

impl OperatorRequest {
    /// The request in words, also its stored form (`desired 3`, `drain web_2`), parsed back by
    /// [`OperatorRequest::parse`].
    pub fn text(&self) -> String {
        match self {
            OperatorRequest::Desired(n) => format!("desired {n}"),
            OperatorRequest::Handover => "handover".into(),
            OperatorRequest::Drain(id) => format!("drain {id}"),
            OperatorRequest::Replace(id) => format!("replace {id}"),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let (verb, arg) = s.split_once(' ').unwrap_or((s, ""));
        match (verb, arg) {
            ("desired", n) => n.parse().ok().map(OperatorRequest::Desired),
            ("handover", "") => Some(OperatorRequest::Handover),
            ("drain", id) if !id.is_empty() => Some(OperatorRequest::Drain(InstanceId::new(id))),
            ("replace", id) if !id.is_empty() => Some(OperatorRequest::Replace(InstanceId::new(id))),
            _ => None,
        }
    }
}

/// The core's memory between ticks: streak counters and cooldown stamps. Persisted by the store so a
/// restart neither forgets a cooldown nor double-counts a sample.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PolicyState {
    pub up_count: u32,
    pub down_count: u32,
    /// Newest sample time already counted: a tick without newer data counts nothing.
    pub last_sample_at: Timestamp,
    pub last_scale_out: Option<Timestamp>,
    pub last_scale_in: Option<Timestamp>,
}

impl PolicyState {
    pub fn last_action(&self) -> Option<Timestamp> {
        self.last_scale_out.max(self.last_scale_in)
    }
}

/// One tick of the core, with the numbers behind it, for logs and `flotilla status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub at: Timestamp,
    /// Group CPU and memory (aggregated over running members with fresh samples).
    pub cpu: Option<f64>,
    pub mem: Option<f64>,
    /// The value the policy compared: for a threshold the aggregated cpu, mem, max of the two or
    /// rps; for target tracking the mean per-member value; for request count the members' requests
    /// within the window, summed.
    pub value: Option<f64>,
    /// Target tracking: the member count the value asks for, within the bounds (`None` for the
    /// other kinds, and without data).
    pub desired: Option<u32>,
    /// Running members that had a fresh sample / running members in all.
    pub sampled: u32,
    pub running: u32,
    pub up_count: u32,
    pub down_count: u32,
    pub decision: Decision,
}
