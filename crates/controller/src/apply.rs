//! Apply: turn a decision into a stored operation, then carry out its steps. Every step is
//! idempotent, so `execute` is also how a crashed operation is resumed.

use flotilla_model::{
    Backend, Decision, EventKind, GroupId, GroupSpec, Instance, InstanceId, InstanceState, Mode, OpKind, OpState,
    Operation, ReplaceCause, SeamError, TEMPLATE_TAG,
};

use crate::naming::fresh_names;
use crate::Controller;

/// A member of the clone family (`<clone_base>_N`).
fn is_clone(spec: &GroupSpec, m: &Instance) -> bool {
    m.name.strip_prefix(spec.instance.clone_base.as_str()).is_some_and(|rest| rest.starts_with('_'))
}

impl Controller {
    /// Stores the intent for `decision`, then executes it.
    pub(crate) async fn apply(
        &self,
        spec: &GroupSpec,
        decision: &Decision,
        members: &[Instance],
        primary: Option<&InstanceId>,
    ) -> Result<(), SeamError> {
        let kind = match decision {
            Decision::Hold(_) => return Ok(()),
            Decision::ScaleOut { count, reason } => {
                let clone = spec.mode == Mode::Handover && members.iter().any(Instance::is_running);
                let base = if clone { &spec.instance.clone_base } else { &spec.instance.base_name };
                // Names are global across groups, so number against every member we own.
                let everyone = self.provider.list(None).await.map_err(|e| e.context("provider list"))?;
                let names =
                    fresh_names(self.store.as_ref(), base, everyone.iter().map(|i| i.name.as_str()), *count as usize)
                        .await?;
                tracing::info!(group = %spec.id, "SCALE UP: {reason}; creating {}", names.join(", "));
                OpKind::ScaleOut { names, clone }
            }
            Decision::ScaleIn { victims, reason } => {
                let list: Vec<&str> = victims.iter().map(InstanceId::as_str).collect();
                tracing::info!(group = %spec.id, "SCALE IN: {reason}; removing {}", list.join(", "));
                OpKind::ScaleIn { victims: victims.clone() }
            }
            Decision::Handover { retire, successor, reason } => {
                debug_assert_eq!(Some(retire), primary);
                tracing::info!(group = %spec.id, "SCALE DOWN: {reason}; deleting baseline {retire} and proceeding with clone {successor}");
                OpKind::Handover { retire: retire.clone(), successor: successor.clone() }
            }
            Decision::Replace { old, cause, reason } => {
                let names = match self.retry_names(spec, old, *cause, members).await? {
                    Some(names) => names,
                    None => {
                        // New members take the name family of those they replace (a clone's successor is a clone).
                        let clone = old.iter().all(|id| members.iter().any(|m| &m.id == id && is_clone(spec, m)));
                        let base = if clone { &spec.instance.clone_base } else { &spec.instance.base_name };
                        let everyone = self.provider.list(None).await.map_err(|e| e.context("provider list"))?;
                        let in_use = everyone.iter().map(|i| i.name.as_str());
                        fresh_names(self.store.as_ref(), base, in_use, old.len()).await?
                    }
                };
                let list: Vec<&str> = old.iter().map(InstanceId::as_str).collect();
                let label = match cause {
                    ReplaceCause::Outdated => "ROLLOUT",
                    ReplaceCause::Unhealthy => "REPLACE UNHEALTHY",
                    ReplaceCause::Operator => "REPLACE (OPERATOR)",
                };
                tracing::info!(group = %spec.id, "{label}: {reason}; {} -> {}", list.join(", "), names.join(", "));
                if *cause == ReplaceCause::Unhealthy {
                    self.event(spec, self.clock.now(), EventKind::Info, format!("replacing: {reason}")).await;
                }
                OpKind::Replace { old: old.clone(), names, version: spec.template_version.clone(), cause: *cause }
            }
        };
        self.perform_for(spec, kind).await
    }

    /// A health replacement of the same members that failed after its new members were made (the
    /// old ones could not be deleted) is retried with the same names: the create finds them, so
    /// retrying never adds a member per attempt.
    async fn retry_names(
        &self,
        spec: &GroupSpec,
        old: &[InstanceId],
        cause: ReplaceCause,
        members: &[Instance],
    ) -> Result<Option<Vec<String>>, SeamError> {
        if cause != ReplaceCause::Unhealthy {
            return Ok(None);
        }
        let Some((failed_old, names, _)) = self.failed_health_replace(spec).await? else { return Ok(None) };
        let exist = names.iter().all(|n| members.iter().any(|m| &m.name == n));
        Ok((failed_old == old && exist).then_some(names))
    }

    /// The one way members change, for the loop and for every verb (`deploy`, `cleanup`,
    /// `run --stop-members`, `demo`): the intent is stored first (every name and victim already
    /// chosen), then carried out in steps that are each safe to repeat, then finished. A crash
    /// anywhere leaves a pending operation that [`Controller::recover`] completes; a failed step
    /// marks it Failed with the reason (and an event) and returns the error.
    pub async fn perform(&self, group: &GroupId, kind: OpKind) -> Result<(), SeamError> {
        let spec = &self.slot(group)?.spec;
        self.perform_for(spec, kind).await
    }

    async fn perform_for(&self, spec: &GroupSpec, kind: OpKind) -> Result<(), SeamError> {
        let op = self.store.begin_operation(&spec.id, &kind, self.clock.now()).await?;
        self.failpoint(match kind {
            OpKind::ScaleOut { .. } => "scale-out:after-begin",
            OpKind::ScaleIn { .. } => "scale-in:after-begin",
            OpKind::Stop { .. } => "stop:after-begin",
            OpKind::Handover { .. } => "handover:after-begin",
            OpKind::Replace { .. } => "replace:after-begin",
        });
        self.execute(spec, &op).await
    }

    /// Carries out (or resumes) an operation and marks it finished. On error the operation is
    /// marked Failed with the reason, and the error is returned for the error policy.
    pub(crate) async fn execute(&self, spec: &GroupSpec, op: &Operation) -> Result<(), SeamError> {
        let started = tokio::time::Instant::now();
        let result = match &op.kind {
            OpKind::ScaleOut { names, clone } => self.scale_out(spec, names, *clone).await,
            OpKind::ScaleIn { victims } => self.scale_in(spec, victims).await,
            OpKind::Stop { victims } => self.stop(spec, victims).await,
            OpKind::Handover { retire, successor } => self.handover(spec, retire, successor).await,
            OpKind::Replace { old, names, version, cause } => self.replace(spec, old, names, version, *cause).await,
        };
        let now = self.clock.now();
        if let Ok(slot) = self.slot(&spec.id) {
            slot.counters.lock().expect("counters lock").operation(op.kind.as_str(), result.is_ok(), started.elapsed());
        }
        match result {
            Ok(()) => {
                self.store.finish_operation(op.id, &OpState::Done, now).await?;
                Ok(())
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(group = %spec.id, op = %op.id, kind = op.kind.as_str(), error = %reason, "operation failed");
                self.event(spec, now, EventKind::Error, format!("{} failed: {reason}", op.kind.as_str())).await;
                self.store.finish_operation(op.id, &OpState::Failed(reason), now).await?;
                Err(e)
            }
        }
    }

    async fn scale_out(&self, spec: &GroupSpec, names: &[String], clone: bool) -> Result<(), SeamError> {
        let created = self.create_serving(spec, names, &spec.template_version, "scale-out:after-create").await?;
        for inst in &created {
            let what = if clone { "clone" } else { "member" };
            self.event(
                spec,
                self.clock.now(),
                EventKind::MemberUp,
                format!("{what} {} serving at {}", inst.name, inst.address.as_deref().unwrap_or("-")),
            )
            .await;
        }
        if self.store.primary(&spec.id).await?.is_none() {
            if let Some(first) = created.first() {
                self.store.set_primary(&spec.id, Some(&first.id)).await?;
            }
        }
        let names: Vec<&str> = created.iter().map(|i| i.name.as_str()).collect();
        self.event(spec, self.clock.now(), EventKind::ScaleOut, format!("created {}", names.join(", "))).await;
        Ok(())
    }

    async fn scale_in(&self, spec: &GroupSpec, victims: &[InstanceId]) -> Result<(), SeamError> {
        // Re-checked against the group as it is now (a resumed scale-in may find the survivors
        // gone): a running victim is retired only while a member outside the victims runs.
        let listed = self.provider.list(Some(&spec.id)).await.map_err(|e| e.context("provider list"))?;
        let survivors = listed.iter().any(|m| m.is_running() && !victims.contains(&m.id));
        let mut doomed = Vec::with_capacity(victims.len());
        for id in victims {
            let running = listed.iter().any(|m| &m.id == id && m.is_running());
            if running && !survivors {
                self.event(
                    spec,
                    self.clock.now(),
                    EventKind::Info,
                    format!("kept {id}: no other member is running, so removing it would stop the group serving"),
                )
                .await;
            } else {
                doomed.push(id.clone());
            }
        }
        self.retire_all(spec, &doomed, "removed").await
    }

    /// Removes every victim, the last serving member included: the operator asked for it.
    async fn stop(&self, spec: &GroupSpec, victims: &[InstanceId]) -> Result<(), SeamError> {
        self.retire_all(spec, victims, "stopped").await
    }

    /// Retires `ids` one by one, then forgets a primary among them and says what was `done`.
    async fn retire_all(&self, spec: &GroupSpec, ids: &[InstanceId], done: &str) -> Result<(), SeamError> {
        if ids.is_empty() {
            return Ok(());
        }
        for id in ids {
            self.retire(spec, id).await?;
        }
        // A primary that is gone names nobody; the next observation derives one again.
        if self.store.primary(&spec.id).await?.is_some_and(|p| ids.contains(&p)) {
            self.store.set_primary(&spec.id, None).await?;
        }
        let names: Vec<&str> = ids.iter().map(InstanceId::as_str).collect();
        self.event(spec, self.clock.now(), EventKind::ScaleIn, format!("{done} {}", names.join(", "))).await;
        Ok(())
    }

    async fn handover(&self, spec: &GroupSpec, retire: &InstanceId, successor: &InstanceId) -> Result<(), SeamError> {
        let listed = self.provider.list(Some(&spec.id)).await.map_err(|e| e.context("provider list"))?;
        let successor_running = listed.iter().any(|m| &m.id == successor && m.is_running());
        let retire_exists = listed.iter().any(|m| &m.id == retire);
        if !successor_running {
            if retire_exists {
                // Never retire the baseline without a healthy successor: that would delete the
                // last serving member.
                return Err(SeamError::transient(format!("handover aborted: clone {successor} is not running")));
            }
            return Err(SeamError::transient(format!("handover: neither {retire} nor a running {successor} exists")));
        }
        // The successor becomes primary first: if we crash after this, resuming only deletes.
        self.store.set_primary(&spec.id, Some(successor)).await?;
        self.failpoint("handover:after-primary");
        self.retire(spec, retire).await?;
        self.event(
            spec,
            self.clock.now(),
            EventKind::Handover,
            format!("deleted baseline {retire}; {successor} is the new primary"),
        )
        .await;
        Ok(())
    }

    /// Creates `names` (idempotent by name), tags them with the template version, stores them, hands
    /// them to the balancer and waits until each passes its health check.
    async fn create_serving(
        &self,
        spec: &GroupSpec,
        names: &[String],
        version: &str,
        after_create: &'static str,
    ) -> Result<Vec<Instance>, SeamError> {
        let mut created = self
            .provider
            .create(&spec.id, &spec.instance, names)
            .await
            .map_err(|e| e.context(format!("create {}", names.join(", "))))?;
        self.failpoint(after_create);
        for inst in &mut created {
            if !version.is_empty() {
                inst.tags.insert(TEMPLATE_TAG.to_string(), version.to_string());
            }
            self.store.upsert_instance(inst).await?;
            if let Some(address) = &inst.address {
                let backend =
                    Backend { id: inst.id.clone(), address: address.clone(), weight: crate::observe::weight_of(inst) };
                self.balancer.add(&spec.id, backend).await?;
                if !self.balancer.wait_healthy(&spec.id, &inst.id, self.options.healthy_timeout).await? {
                    return Err(SeamError::transient(format!("{} did not pass its health check", inst.name)));
                }
            }
        }
        Ok(created)
    }

    /// One rollout batch: the new members serve before any old one drains, so the group never has
    /// fewer serving members than before. A new member this attempt created that fails is removed
    /// again (nothing is orphaned) and the operation fails, which stops the rollout for this
    /// template version.
    async fn replace(
        &self,
        spec: &GroupSpec,
        old: &[InstanceId],
        names: &[String],
        version: &str,
        cause: ReplaceCause,
    ) -> Result<(), SeamError> {
        // What exists already was made by an earlier attempt (resumed after a crash) and may be all
        // that serves now: an undo removes only what this attempt created.
        let listed = self.provider.list(Some(&spec.id)).await.map_err(|e| e.context("provider list"))?;
        let created = match self.create_serving(spec, names, version, "replace:after-create").await {
            Ok(created) => created,
            Err(e) => {
                for name in names.iter().filter(|n| !listed.iter().any(|m| &m.name == *n)) {
                    let id = InstanceId::new(name.clone());
                    if let Err(undo) = self.retire(spec, &id).await {
                        tracing::warn!(group = %spec.id, member = %id, error = %undo, "could not remove a failed new member");
                    }
                }
                return Err(e.context(match cause {
                    ReplaceCause::Outdated => "rollout stopped",
                    ReplaceCause::Unhealthy => "health replacement waits one grace period",
                    ReplaceCause::Operator => "the operator's replacement stopped",
                }));
            }
        };
        for inst in &created {
            self.event(
                spec,
                self.clock.now(),
                EventKind::MemberUp,
                format!("member {} serving at {}", inst.name, inst.address.as_deref().unwrap_or("-")),
            )
            .await;
        }
        self.failpoint("replace:after-serving");
        // A primary being replaced hands its role to the first new member.
        let primary = self.store.primary(&spec.id).await?;
        for id in old {
            if primary.as_ref() == Some(id) {
                if let Some(first) = created.first() {
                    self.store.set_primary(&spec.id, Some(&first.id)).await?;
                }
            }
            self.retire(spec, id).await?;
        }
        let olds: Vec<&str> = old.iter().map(InstanceId::as_str).collect();
        let why = match cause {
            ReplaceCause::Outdated => format!("template {version}"),
            ReplaceCause::Unhealthy => "failing their health check".to_string(),
            ReplaceCause::Operator => "asked by the operator".to_string(),
        };
        self.event(
            spec,
            self.clock.now(),
            EventKind::Info,
            format!("replaced {} with {} ({why})", olds.join(", "), names.join(", ")),
        )
        .await;
        Ok(())
    }

    /// Drain → delete → forget, each step safe to repeat.
    async fn retire(&self, spec: &GroupSpec, id: &InstanceId) -> Result<(), SeamError> {
        let stored = self.store.instances(&spec.id).await?.into_iter().find(|i| &i.id == id);
        if let Some(mut inst) = stored.clone() {
            inst.state = InstanceState::Draining;
            self.store.upsert_instance(&inst).await?;
            let report = self.balancer.drain(&spec.id, id, spec.drain_timeout).await?;
            if !report.completed {
                tracing::warn!(group = %spec.id, member = %id, inflight = report.inflight_left,
                    "drain deadline passed with requests in flight");
            }
            self.failpoint("retire:after-drain");
            inst.state = InstanceState::Deleting;
            self.store.upsert_instance(&inst).await?;
        }
        self.provider
            .delete(&spec.id, std::slice::from_ref(id))
            .await
            .map_err(|e| e.context(format!("delete {id}")))?;
        self.failpoint("retire:after-delete");
        self.balancer.remove(&spec.id, id).await?;
        self.store.remove_instance(&spec.id, id).await?;
        let gone = stored.unwrap_or_else(|| Instance::new(id.as_str(), &spec.id, self.clock.now()));
        self.forget(spec, &gone).await;
        self.event(spec, self.clock.now(), EventKind::MemberGone, format!("{id} drained and deleted")).await;
        Ok(())
    }
}
