//! Check-ins (seed 004's idea): members report in through the API when they are up and then at
//! least every `checkin.every`. A silent member, or one that reports it fails, counts as failing
//! its health check, beside (and like) the balancer's view, so the same health replacement
//! replaces it, new before old, once it is older than its grace. Kept in memory: after a restart
//! every member has a fresh `every` from the daemon's start before its silence counts.

use std::collections::BTreeMap;

use flotilla_model::{Checkin, EventKind, GroupId, Instance, InstanceId, SeamError, Timestamp, Unhealthy};

use crate::Controller;

/// A member's last check-in.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckinState {
    pub at: Timestamp,
    /// It said it serves (false: it said it fails).
    pub ok: bool,
    /// What it said, if anything (at most 200 characters).
    pub note: Option<String>,
}

/// The check-ins of every group's members.
pub(crate) type Checkins = std::sync::Mutex<BTreeMap<(GroupId, InstanceId), CheckinState>>;

/// Members failing by their check-ins at `now`: silent past `every` (counted from their last
/// check-in, else from their creation or the daemon's start, whichever is later), or reporting
/// that they fail.
pub fn silent_or_failing(
    policy: Checkin,
    members: &[Instance],
    last: impl Fn(&InstanceId) -> Option<CheckinState>,
    started: Timestamp,
    now: Timestamp,
) -> Vec<Unhealthy> {
    members
        .iter()
        .filter_map(|m| {
            let since = match last(&m.id) {
                Some(c) if !c.ok => c.at,
                Some(c) => c.at.plus(policy.every),
                None => m.created_at.max(started).plus(policy.every),
            };
            (now >= since).then(|| Unhealthy { id: m.id.clone(), since })
        })
        .collect()
}

impl Controller {
    /// A member reports in. The first check-in, and each change between serving and failing, is
    /// an event.
    pub async fn check_in(
        &self,
        group: &GroupId,
        member: &InstanceId,
        ok: bool,
        note: Option<String>,
    ) -> Result<CheckinState, SeamError> {
        let spec = &self.slot(group)?.spec;
        let now = self.clock.now();
        let state = CheckinState { at: now, ok, note };
        let before = {
            let mut all = self.checkins.lock().expect("checkins lock");
            all.insert((group.clone(), member.clone()), state.clone())
        };
        let said = state.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
        let what = match (before.map(|b| b.ok), ok) {
            (None, true) => Some(format!("{member} checked in{said}")),
            (None | Some(true), false) => Some(format!("{member} checked in failing{said}")),
            (Some(false), true) => Some(format!("{member} checked in serving again{said}")),
            (Some(true), true) | (Some(false), false) => None,
        };
        if let Some(what) = what {
            tracing::info!(group = %group, "{what}");
            self.event(spec, now, EventKind::Info, format!("check-in: {what}")).await;
        }
        Ok(state)
    }

    /// A member's last check-in, if it made one since the daemon started.
    pub fn last_check_in(&self, group: &GroupId, member: &InstanceId) -> Option<CheckinState> {
        self.checkins.lock().expect("checkins lock").get(&(group.clone(), member.clone())).cloned()
    }

    /// Forgets the check-ins of members that are gone.
    pub(crate) fn forget_check_ins(&self, group: &GroupId, members: &[Instance]) {
        let mut all = self.checkins.lock().expect("checkins lock");
        all.retain(|(g, id), _| g != group || members.iter().any(|m| &m.id == id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::InstanceState;
    use std::time::Duration;

    fn member(name: &str, created: u64) -> Instance {
        let mut i = Instance::new(name, &GroupId::new("g"), Timestamp::from_millis(created));
        i.state = InstanceState::Running;
        i
    }

    #[test]
    fn silence_counts_from_the_last_check_in_else_from_creation_or_start() {
        let policy = Checkin { every: Duration::from_secs(10), grace: Duration::from_secs(60) };
        let members = [member("a", 0), member("b", 0), member("c", 50_000), member("d", 0)];
        let last = |id: &InstanceId| match id.as_str() {
            "a" => Some(CheckinState { at: Timestamp::from_millis(95_000), ok: true, note: None }),
            "b" => Some(CheckinState { at: Timestamp::from_millis(80_000), ok: true, note: None }),
            "d" => Some(CheckinState { at: Timestamp::from_millis(99_000), ok: false, note: Some("disk".into()) }),
            _ => None,
        };
        let now = Timestamp::from_millis(100_000);
        let started = Timestamp::from_millis(30_000);
        let got = silent_or_failing(policy, &members, last, started, now);
        let got: Vec<(&str, u64)> = got.iter().map(|u| (u.id.as_str(), u.since.as_millis())).collect();
        // a: checked in 5 s ago, fine. b: silent since 90 s. c: never, created at 50 s: since 60 s.
        // d: said it fails at 99 s.
        assert_eq!(got, [("b", 90_000), ("c", 60_000), ("d", 99_000)]);
        // Never checked in, created before the daemon started: counted from the start.
        let got = silent_or_failing(policy, &[member("e", 0)], |_| None, started, now);
        assert_eq!(got[0].since.as_millis(), 40_000);
        // Within `every` of its creation: not yet.
        assert!(silent_or_failing(policy, &[member("f", 95_000)], |_| None, started, now).is_empty());
    }
}
