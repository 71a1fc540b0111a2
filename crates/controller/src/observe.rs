//! Observe: merge what the provider reports with what the store remembers, and sample metrics.

use std::collections::BTreeMap;

use flotilla_model::{
    Backend, Event, EventKind, GroupSpec, Instance, InstanceId, InstanceState, OpKind, OpState, ReplaceCause, Sample,
    SeamError, Timestamp, Unhealthy, CREATE_TAGS,
};

use crate::Controller;

impl Controller {
    /// The group's members as of now. The provider is the truth about existence; the store adds our
    /// own intent states (Draining/Deleting) while an operation holds them. Members the provider
    /// has that the store lacks are adopted; members the store has that the provider lost are gone.
    pub(crate) async fn observe_members(&self, spec: &GroupSpec, now: Timestamp) -> Result<Vec<Instance>, SeamError> {
        let group = &spec.id;
        let listed = self.provider.list(Some(group)).await.map_err(|e| e.context("provider list"))?;
        let stored: BTreeMap<_, _> =
            self.store.instances(group).await?.into_iter().map(|i| (i.id.clone(), i)).collect();

        let mut members = Vec::with_capacity(listed.len());
        for mut inst in listed {
            match stored.get(&inst.id) {
                None => {
                    self.event(
                        spec,
                        now,
                        EventKind::MemberUp,
                        format!("adopted {} ({})", inst.name, inst.state.as_str()),
                    )
                    .await;
                    self.store.upsert_instance(&inst).await?;
                }
                Some(old) => {
                    // The template version and the boot time are facts of the create, which a
                    // later list may not repeat: keep them.
                    for tag in CREATE_TAGS {
                        if let (None, Some(v)) = (inst.tag(tag), old.tag(tag)) {
                            inst.tags.insert(tag.to_string(), v.to_string());
                        }
                    }
                    // Intent states outlive the provider's view only while an operation runs; an
                    // operation that ended without finishing them (failed) hands them back.
                    if matches!(old.state, InstanceState::Draining | InstanceState::Deleting)
                        && inst.state == InstanceState::Running
                        && self.has_pending(spec).await?
                    {
                        inst.state = old.state.clone();
                    }
                    if old != &inst {
                        if old.state != inst.state {
                            tracing::info!(group = %group, member = %inst.name, from = old.state.as_str(),
                                to = inst.state.as_str(), "member state changed");
                        }
                        self.store.upsert_instance(&inst).await?;
                    }
                }
            }
            members.push(inst);
        }
        for (id, old) in &stored {
            if !members.iter().any(|m| &m.id == id) {
                self.store.remove_instance(group, id).await?;
                self.forget(spec, old).await;
                self.event(
                    spec,
                    now,
                    EventKind::MemberGone,
                    format!("{} disappeared (was {})", old.name, old.state.as_str()),
                )
                .await;
            }
        }
        members.sort_by(Instance::by_age);
        Ok(members)
    }

    /// Tells the balancer which members should serve: the running (and unknown) ones with an address. It adds
    /// those it lacks (adopted after a restart, or whose scale-out was resumed), returns to service
    /// one a failed retire left drained, and forgets members that are gone. New members are added
    /// by the scale-out itself, which also waits for their health check.
    pub(crate) async fn sync_balancer(&self, spec: &GroupSpec, members: &[Instance]) -> Result<(), SeamError> {
        let wanted: Vec<Backend> = members
            .iter()
            // Unknown: the provider cannot tell, the guest may well serve; its health check decides.
            .filter(|m| matches!(m.state, InstanceState::Running | InstanceState::Unknown(_)))
            .filter_map(|m| {
                let address = m.address.clone()?;
                Some(Backend { id: m.id.clone(), address, weight: weight_of(m) })
            })
            .collect();
        self.balancer.sync(&spec.id, &wanted).await
    }

    /// The last rollout batch towards the group's current template version failed: the rollout
    /// stays stopped (and reported) until the template changes again. Read from the operation log,
    /// so it survives a restart.
    pub(crate) async fn rollout_blocked(&self, spec: &GroupSpec) -> Result<bool, SeamError> {
        if spec.rollout.is_none() || spec.template_version.is_empty() {
            return Ok(false);
        }
        let recent = self.store.operations(&spec.id, 50).await?;
        Ok(recent
            .iter()
            .find_map(|op| match &op.kind {
                OpKind::Replace { version, cause: ReplaceCause::Outdated, .. } if version == &spec.template_version => {
                    Some(&op.state)
                }
                _ => None,
            })
            .is_some_and(|state| matches!(state, OpState::Failed(_))))
    }

    /// The cut-off of the operator's rolling replacement, while it goes on. It ends (cleared, with
    /// an event) when no running member is older, or when one of its batches failed: a broken
    /// image does not burn through the group.
    pub(crate) async fn operator_rollout(
        &self,
        spec: &GroupSpec,
        controls: &flotilla_model::GroupControls,
        members: &[Instance],
    ) -> Result<Option<Timestamp>, SeamError> {
        let Some(before) = controls.replace_before else { return Ok(None) };
        let recent = self.store.operations(&spec.id, 50).await?;
        let failed = recent.iter().find_map(|op| match (&op.kind, &op.state) {
            (OpKind::Replace { cause: ReplaceCause::Operator, old, .. }, OpState::Failed(why))
                if op.created_at >= before && !old.is_empty() =>
            {
                Some(why.clone())
            }
            _ => None,
        });
        let busy = members.iter().any(|m| !m.is_running() && m.state.is_capacity());
        let left = members.iter().any(|m| m.is_running() && m.created_at < before);
        let end = match failed {
            Some(why) => Some(format!("rolling replacement stopped: a batch failed ({why})")),
            None if !left && !busy => Some("rolling replacement finished".to_string()),
            None => None,
        };
        let Some(what) = end else { return Ok(Some(before)) };
        self.update_controls(&spec.id, &what, |c| {
            if c.replace_before == Some(before) {
                c.replace_before = None;
            }
        })
        .await?;
        Ok(None)
    }

    /// The group's newest health replacement, if it failed: `(old, names, when)`.
    pub(crate) async fn failed_health_replace(
        &self,
        spec: &GroupSpec,
    ) -> Result<Option<(Vec<InstanceId>, Vec<String>, Timestamp)>, SeamError> {
        let recent = self.store.operations(&spec.id, 50).await?;
        let newest =
            recent.into_iter().find(|op| matches!(op.kind, OpKind::Replace { cause: ReplaceCause::Unhealthy, .. }));
        Ok(newest.and_then(|op| match (op.kind, op.state) {
            (OpKind::Replace { old, names, .. }, OpState::Failed(_)) => Some((old, names, op.updated_at)),
            _ => None,
        }))
    }

    /// Members failing their health check, as the balancer sees them, and by their check-ins
    /// when the group expects them (each member once, from the earlier of the two). A balancer that
    /// cannot tell reports none (nobody is replaced on a guess).
    pub(crate) async fn unhealthy(&self, spec: &GroupSpec, now: Timestamp) -> Vec<Unhealthy> {
        if spec.health_replace.is_none() {
            return Vec::new();
        }
        let mut out = self.balancer.unhealthy(&spec.id, now).await.unwrap_or_else(|e| {
            tracing::warn!(group = %spec.id, error = %e, "could not read the balancer's health view");
            Vec::new()
        });
        if let Some(policy) = spec.checkin {
            let members = match self.store.instances(&spec.id).await {
                Ok(m) => m.into_iter().filter(Instance::is_running).collect::<Vec<_>>(),
                Err(e) => {
                    tracing::warn!(group = %spec.id, error = %e, "could not list members for their check-ins");
                    return out;
                }
            };
            self.forget_check_ins(&spec.id, &members);
            let last = |id: &InstanceId| self.last_check_in(&spec.id, id);
            for u in crate::checkin::silent_or_failing(policy, &members, last, self.started, now) {
                match out.iter_mut().find(|o| o.id == u.id) {
                    Some(o) => o.since = o.since.min(u.since),
                    None => out.push(u),
                }
            }
        }
        out
    }

    /// A health replacement whose new member never served (and was removed again) waits the
    /// group's grace period before the next attempt: the cause is likely shared (the image, the
    /// health path), and a new member each pass would only burn the cloud. One whose new member
    /// serves but whose old one could not be deleted is retried at once, with the same names.
    pub(crate) async fn health_blocked(
        &self,
        spec: &GroupSpec,
        members: &[Instance],
        now: Timestamp,
    ) -> Result<bool, SeamError> {
        let Some(policy) = spec.health_replace else { return Ok(false) };
        let Some((_, names, at)) = self.failed_health_replace(spec).await? else { return Ok(false) };
        let created = names.iter().all(|n| members.iter().any(|m| &m.name == n));
        Ok(!created && now.since(at) < policy.grace)
    }

    pub(crate) async fn has_pending(&self, spec: &GroupSpec) -> Result<bool, SeamError> {
        Ok(self.store.unfinished_operations().await?.iter().any(|op| op.group == spec.id))
    }

    /// Latest sample per running member, merged across sources (max per metric: the conservative
    /// reading). A source that fails is logged; its members are simply unsampled this tick, and
    /// missing data never scales in.
    pub(crate) async fn sample(&self, spec: &GroupSpec, members: &[Instance], now: Timestamp) -> Vec<Sample> {
        let running: Vec<Instance> = members.iter().filter(|m| m.is_running()).cloned().collect();
        if running.is_empty() {
            return Vec::new();
        }
        let mut merged: BTreeMap<_, Sample> = BTreeMap::new();
        for source in &self.sources {
            match source.sample(&spec.id, &running, now).await {
                Ok(samples) => {
                    for s in samples {
                        match merged.get_mut(&s.instance) {
                            Some(cur) => cur.merge_max(&s),
                            None => {
                                merged.insert(s.instance.clone(), s);
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(group = %spec.id, source = source.name(), error = %e, "metric source failed");
                    if let Ok(slot) = self.slot(&spec.id) {
                        let mut c = slot.counters.lock().expect("counters lock");
                        *c.source_errors.entry(source.name().to_string()).or_default() += 1;
                    }
                }
            }
        }
        let samples: Vec<Sample> = merged.into_values().collect();
        if let Err(e) = self.store.push_samples(&spec.id, &samples, self.options.sample_window).await {
            tracing::warn!(group = %spec.id, error = %e, "could not store samples");
        }
        samples
    }

    /// Tells every metric source a member is gone (its pinned key and pushed values go with it).
    pub(crate) async fn forget(&self, spec: &GroupSpec, member: &Instance) {
        for source in &self.sources {
            source.forget(&spec.id, member).await;
        }
    }

    /// Records a history event; a store failure here is logged, never fatal to the loop.
    pub(crate) async fn event(&self, spec: &GroupSpec, at: Timestamp, kind: EventKind, message: String) {
        self.event_with(spec, at, kind, message, None).await;
    }

    /// An event with its machine-readable detail (JSON).
    pub(crate) async fn event_with(
        &self,
        spec: &GroupSpec,
        at: Timestamp,
        kind: EventKind,
        message: String,
        data: Option<serde_json::Value>,
    ) {
        let ev = Event { at, group: spec.id.clone(), kind, message, data: data.map(|d| d.to_string()) };
        if let Err(e) = self.store.record_event(&ev).await {
            tracing::warn!(group = %spec.id, error = %e, "could not record event");
        }
        self.changed();
    }
}

/// A member's share under weighted selection: its vCPUs (1 when unknown).
pub(crate) fn weight_of(m: &Instance) -> u32 {
    m.tag("vcpus").and_then(|v| v.parse().ok()).filter(|w| *w >= 1).unwrap_or(1)
}
