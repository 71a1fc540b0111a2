//! Health replacement: a member that exists but does not serve is replaced, new before old.
//!
//! The balancer reports which members fail their health check and since when. One failing for
//! the group's `after`, once older than its `grace` (counted from its creation, so a member still
//! booting is never judged), is replaced like a rollout batch: its successor serves before it
//! drains. Unknown members count too: the provider cannot tell, the health check can.

use std::time::Duration;

use flotilla_model::{Decision, Instance, InstanceId, InstanceState, ReplaceCause, Timestamp};

use crate::view::GroupView;

/// The members to replace now, longest failing first, at most the rollout's `max_unavailable`
/// (else 1); `None` when replacement is off, blocked, or nobody qualifies.
pub(crate) fn next_batch(view: &GroupView<'_>, now: Timestamp) -> Option<Decision> {
    let policy = view.spec.health_replace?;
    if view.health_blocked {
        return None;
    }
    let mut due: Vec<(&Instance, Duration)> = view
        .unhealthy
        .iter()
        .filter_map(|u| {
            let m = view.members.iter().find(|m| m.id == u.id)?;
            let serving_kind = matches!(m.state, InstanceState::Running | InstanceState::Unknown(_));
            let failing = now.since(u.since);
            (serving_kind && now.since(m.created_at) >= policy.grace && failing >= policy.after).then_some((m, failing))
        })
        .collect();
    if due.is_empty() {
        return None;
    }
    due.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| Instance::by_age(a.0, b.0)));
    let batch = view.spec.rollout.map_or(1, |r| r.max_unavailable.max(1)) as usize;
    let picked: Vec<&(&Instance, Duration)> = due.iter().take(batch).collect();
    let reason = picked
        .iter()
        .map(|(m, failing)| format!("{} failing its health check for {}s", m.name, failing.as_secs()))
        .collect::<Vec<_>>()
        .join(", ");
    let old: Vec<InstanceId> = picked.iter().map(|(m, _)| m.id.clone()).collect();
    Some(Decision::Replace { old, cause: ReplaceCause::Unhealthy, reason })
}
