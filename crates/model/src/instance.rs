use std::collections::BTreeMap;

use crate::{GroupId, Timestamp};

/// A member's identity: stable for its whole life, chosen before the provider creates it (it is the
/// idempotency key of a scale-out), so for the seed-style providers it is the member's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceId(pub String);

impl InstanceId {
    pub fn new(s: impl Into<String>) -> Self {
        InstanceId(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a member is in its life. Only `Running` members are counted by policies and get traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InstanceState {
    Creating,
    Running,
    /// Taken out of the balancer; in-flight work is finishing.
    Draining,
    Deleting,
    /// The provider reports it broken; the reason is for people.
    Failed(String),
    /// The provider cannot tell (its host is unreachable, the cloud says UNKNOWN, the server was
    /// stopped outside Flotilla): it may well still serve. It keeps its place against min and max,
    /// gets traffic as long as its health check passes, and is neither deleted nor replaced.
    Unknown(String),
}

impl InstanceState {
    pub fn as_str(&self) -> &str {
        match self {
            InstanceState::Creating => "creating",
            InstanceState::Running => "running",
            InstanceState::Draining => "draining",
            InstanceState::Deleting => "deleting",
            InstanceState::Failed(_) => "failed",
            InstanceState::Unknown(_) => "unknown",
        }
    }
    /// Counts against min and max: a member that is, or is about to be, or may still be serving.
    pub fn is_capacity(&self) -> bool {
        matches!(self, InstanceState::Creating | InstanceState::Running | InstanceState::Unknown(_))
    }
    /// The reason a failed or unknown member is in that state.
    pub fn reason(&self) -> Option<&str> {
        match self {
            InstanceState::Failed(r) | InstanceState::Unknown(r) => Some(r),
            _ => None,
        }
    }
    pub fn parse(s: &str, reason: Option<&str>) -> Option<Self> {
        Some(match s {
            "creating" => InstanceState::Creating,
            "running" => InstanceState::Running,
            "draining" => InstanceState::Draining,
            "deleting" => InstanceState::Deleting,
            "failed" => InstanceState::Failed(reason.unwrap_or("").to_string()),
            "unknown" => InstanceState::Unknown(reason.unwrap_or("").to_string()),
            _ => return None,
        })
    }
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: InstanceId,
    pub name: String,
    pub group: GroupId,
    pub state: InstanceState,
    /// Where its service answers (`127.0.0.1:41234` for local members).
    pub address: Option<String>,
    pub created_at: Timestamp,
    /// Provider facts worth keeping (`pid`, `vcpus`, a cloud's server id, ...).
    pub tags: BTreeMap<String, String>,
}

impl Instance {
    /// The one order of members: oldest first (`created_at`), ties broken by id, so every part
    /// that picks "the oldest" or "the first" picks the same member.
    pub fn by_age(a: &Instance, b: &Instance) -> std::cmp::Ordering {
        (a.created_at, &a.id).cmp(&(b.created_at, &b.id))
    }

    /// The one rule for a group's primary (handover mode's baseline, the member `load` starts on):
    /// the stored primary while it is a running member, else the oldest running member.
    pub fn primary<'a, I>(stored: Option<&InstanceId>, members: I) -> Option<&'a Instance>
    where
        I: IntoIterator<Item = &'a Instance>,
        I::IntoIter: Clone,
    {
        let running = members.into_iter().filter(|m| m.is_running());
        stored
            .and_then(|p| running.clone().find(|m| &m.id == p))
            .or_else(|| running.min_by(|a, b| Instance::by_age(a, b)))
    }

    pub fn new(id: impl Into<String>, group: &GroupId, created_at: Timestamp) -> Self {
        let id = id.into();
        Instance {
            name: id.clone(),
            id: InstanceId(id),
            group: group.clone(),
            state: InstanceState::Creating,
            address: None,
            created_at,
            tags: BTreeMap::new(),
        }
    }
    pub fn is_running(&self) -> bool {
        self.state == InstanceState::Running
    }
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, at: u64, state: InstanceState) -> Instance {
        let mut m = Instance::new(id, &GroupId::new("g"), Timestamp(at));
        m.state = state;
        m
    }

    #[test]
    fn the_primary_is_the_stored_running_member_else_the_oldest_running() {
        let ms = vec![
            member("b_1", 10, InstanceState::Running),
            member("a_1", 10, InstanceState::Running),
            member("old", 5, InstanceState::Draining),
            member("c_1", 20, InstanceState::Running),
        ];
        let id = |s: &str| InstanceId::new(s);
        let pick = |stored: Option<&str>| Instance::primary(stored.map(id).as_ref(), &ms).map(|m| m.name.clone());
        assert_eq!(pick(Some("c_1")).as_deref(), Some("c_1"), "the stored one while it runs");
        assert_eq!(pick(Some("old")).as_deref(), Some("a_1"), "not running: the oldest running, ties by id");
        assert_eq!(pick(Some("gone")).as_deref(), Some("a_1"));
        assert_eq!(pick(None).as_deref(), Some("a_1"));
        let none: Vec<Instance> = vec![member("x", 1, InstanceState::Creating)];
        assert!(Instance::primary(None, &none).is_none());
    }
}
