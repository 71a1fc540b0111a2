use crate::{GroupId, InstanceId, Timestamp};

/// An operation's row id in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub i64);

impl std::fmt::Display for OpId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "op#{}", self.0)
    }
}

/// What an operation intends. Written to the store *before* the first provider call, with every
/// name and victim already chosen, so resuming it after a crash repeats the same steps: creates are
/// idempotent by name, deletes by id.
#[derive(Debug, Clone, PartialEq)]
pub enum OpKind {
    ScaleOut {
        names: Vec<String>,
        clone: bool,
    },
    ScaleIn {
        victims: Vec<InstanceId>,
    },
    Handover {
        retire: InstanceId,
        successor: InstanceId,
    },
    /// Removes these members on purpose (`run --stop-members`, `cleanup`, the demo's end), the
    /// last one included. Never resumed after a crash: the next run keeps what is left.
    Stop {
        victims: Vec<InstanceId>,
    },
    /// Create `names` from template `version`, then retire `old`: a rollout batch, or members
    /// that do not serve.
    Replace {
        old: Vec<InstanceId>,
        names: Vec<String>,
        version: String,
        cause: ReplaceCause,
    },
}

/// Why members are replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceCause {
    /// Made from an older template (a rollout batch).
    Outdated,
    /// Failing the balancer's health check past the group's grace period.
    Unhealthy,
    /// An operator asked for it (one member, or a rolling replacement of all).
    Operator,
}

impl ReplaceCause {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplaceCause::Outdated => "outdated",
            ReplaceCause::Unhealthy => "unhealthy",
            ReplaceCause::Operator => "operator",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "outdated" => Some(ReplaceCause::Outdated),
            "unhealthy" => Some(ReplaceCause::Unhealthy),
            "operator" => Some(ReplaceCause::Operator),
            _ => None,
        }
    }
}

impl OpKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            OpKind::ScaleOut { .. } => "scale-out",
            OpKind::ScaleIn { .. } => "scale-in",
            OpKind::Handover { .. } => "handover",
            OpKind::Stop { .. } => "stop",
            OpKind::Replace { .. } => "replace",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum OpState {
    /// Written; provider calls may or may not have happened.
    Pending,
    Done,
    /// Gave up; the reason is for people. Any partial effect was undone or is recorded in events.
    Failed(String),
}

impl OpState {
    pub fn as_str(&self) -> &'static str {
        match self {
            OpState::Pending => "pending",
            OpState::Done => "done",
            OpState::Failed(_) => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub id: OpId,
    pub group: GroupId,
    pub kind: OpKind,
    pub state: OpState,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Kinds of entries in a group's scaling history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    ScaleOut,
    ScaleIn,
    Handover,
    MemberUp,
    MemberGone,
    Recovered,
    Error,
    Info,
    /// The core's decision changed (another outcome, or another reason to hold).
    Decision,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ScaleOut => "scale-out",
            EventKind::ScaleIn => "scale-in",
            EventKind::Handover => "handover",
            EventKind::MemberUp => "member-up",
            EventKind::MemberGone => "member-gone",
            EventKind::Recovered => "recovered",
            EventKind::Error => "error",
            EventKind::Info => "info",
            EventKind::Decision => "decision",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scale-out" => EventKind::ScaleOut,
            "scale-in" => EventKind::ScaleIn,
            "handover" => EventKind::Handover,
            "member-up" => EventKind::MemberUp,
            "member-gone" => EventKind::MemberGone,
            "recovered" => EventKind::Recovered,
            "error" => EventKind::Error,
            "info" => EventKind::Info,
            "decision" => EventKind::Decision,
            _ => return None,
        })
    }
}

/// Which events to read ([`crate::Store::find_events`]); every field left empty matches all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    pub group: Option<GroupId>,
    pub kind: Option<EventKind>,
    /// At or after this time.
    pub since: Option<Timestamp>,
    /// Strictly before this time (a page's cursor).
    pub before: Option<Timestamp>,
}

/// One line of scaling history.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: Timestamp,
    pub group: GroupId,
    pub kind: EventKind,
    pub message: String,
    /// A machine-readable detail, as JSON text (a decision's inputs, rule and outcome); the model
    /// carries no serde, so it is text here and parsed by whoever shows it.
    pub data: Option<String>,
}
