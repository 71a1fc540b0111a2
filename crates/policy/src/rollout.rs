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

/// The running members created before the operator's cut-off (a rolling replacement asked for
/// through the API), oldest first.
fn asked<'a>(view: &GroupView<'a>, running: &[Member<'a>]) -> Vec<&'a Instance> {
    let Some(before) = view.replace_before else { return Vec::new() };
    let mut old: Vec<&Instance> = running.iter().map(|m| m.inst).filter(|i| i.created_at < before).collect();
    old.sort_by(|a, b| Instance::by_age(a, b));
    old
}

/// The next rollout batch: members made from an older template (unless rollouts are off or the
/// last batch for this version failed: a failed new member stops the rollout until the template
/// changes again), else members older than an operator's rolling replacement.
pub(crate) fn next_batch(view: &GroupView<'_>, running: &[Member<'_>]) -> Option<Decision> {
    let by_template =
        if view.spec.rollout.is_some() && !view.rollout_blocked { outdated(view, running) } else { Vec::new() };
    let (old, cause, why) = if by_template.is_empty() {
        (asked(view, running), ReplaceCause::Operator, "operator asked for a rolling replacement")
    } else {
        (by_template, ReplaceCause::Outdated, "template changed")
    };
    if old.is_empty() {
        return None;
    }
    let at_once = view.spec.rollout.map_or(1, |r| r.max_unavailable).max(1) as usize;
    let batch: Vec<InstanceId> = old.iter().take(at_once).map(|i| i.id.clone()).collect();
    let reason =
        format!("{why}: {} of {} running members outdated, replacing {}", old.len(), running.len(), batch.len());
    Some(Decision::Replace { old: batch, cause, reason })
}
