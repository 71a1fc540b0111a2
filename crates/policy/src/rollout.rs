//! Rolling replacement: members made from an older template are replaced one batch at a time.
//!
//! A member carries the template version it was made from in its [`TEMPLATE_TAG`]; one whose
//! version differs from the group's is outdated. A member without the tag predates versioning and
//! is taken as current, so upgrading Flotilla never churns a group. Scaling comes first: a rollout
//! batch is only proposed on a tick where the policy itself holds.

use flotilla_model::{Decision, Instance, InstanceId, ReplaceCause, TEMPLATE_TAG};

use crate::view::{GroupView, Member};

/// The running members made from another template version, oldest first.
pub(crate) fn outdated<'a>(view: &GroupView<'a>, running: &[Member<'a>]) -> Vec<&'a Instance> {
    let current = view.spec.template_version.as_str();
    if current.is_empty() {
        return Vec::new();
    }
    let mut old: Vec<&Instance> =
        running.iter().map(|m| m.inst).filter(|i| i.tag(TEMPLATE_TAG).is_some_and(|v| v != current)).collect();
    old.sort_by(|a, b| Instance::by_age(a, b));
    old
}

/// The next rollout batch, unless rollouts are off or the last batch for this version failed (a
/// failed new member stops the rollout until the template changes again or an operator retries).
pub(crate) fn next_batch(view: &GroupView<'_>, running: &[Member<'_>]) -> Option<Decision> {
    let rollout = view.spec.rollout?;
    if view.rollout_blocked {
        return None;
    }
    let old = outdated(view, running);
    if old.is_empty() {
        return None;
    }
    let batch: Vec<InstanceId> =
        old.iter().take(rollout.max_unavailable.max(1) as usize).map(|i| i.id.clone()).collect();
    let reason = format!(
        "template changed: {} of {} running members outdated, replacing {}",
        old.len(),
        running.len(),
        batch.len()
    );
    Some(Decision::Replace { old: batch, cause: ReplaceCause::Outdated, reason })
}
