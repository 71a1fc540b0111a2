use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_model::{
    Balancer, Clock, Decision, Evaluation, EventKind, GroupControls, GroupId, GroupSpec, Instance, MetricChoice,
    MetricSource, Mode, OpState, OperatorRequest, PolicySpec, Provider, SeamError, Store, TargetMetric, Timestamp,
};
use flotilla_policy::operator::{self, Answer};
use flotilla_policy::{policy_for, GroupView, Policy};

use crate::backoff::Backoff;

/// A named point inside an operation where a test can crash the process (kill -9 itself).
pub type Failpoint = Arc<dyn Fn(&str) + Send + Sync>;

/// Every named point inside an operation where a [`Failpoint`] is called (ARCHITECTURE.md lists
/// them; the tidy test keeps the two in step).
pub const FAILPOINTS: &[&str] = &[
    "scale-out:after-begin",
    "scale-out:after-create",
    "scale-in:after-begin",
    "stop:after-begin",
    "handover:after-begin",
    "handover:after-primary",
    "replace:after-begin",
    "replace:after-create",
    "replace:after-serving",
    "retire:after-drain",
    "retire:after-delete",
];

/// Knobs that are not per group.
#[derive(Clone)]
pub struct Options {
    /// Samples kept per group in the store.
    pub sample_window: usize,
    /// How long a new member may take to pass the balancer's health check.
    pub healthy_timeout: Duration,
    /// Called with a point's name at each failpoint; the binary wires it to `FLOTILLA_FAILPOINT`.
    pub failpoint: Option<Failpoint>,
}

impl Default for Options {
    fn default() -> Self {
        Options { sample_window: 600, healthy_timeout: Duration::from_secs(60), failpoint: None }
    }
}

/// Everything the controller is built from: the seams, a clock and the groups.
pub struct ControllerParts {
    pub store: Arc<dyn Store>,
    pub provider: Arc<dyn Provider>,
    pub sources: Vec<Arc<dyn MetricSource>>,
    pub balancer: Arc<dyn Balancer>,
    pub clock: Arc<dyn Clock>,
    pub groups: Vec<GroupSpec>,
    pub options: Options,
}

/// What one reconcile did, for callers that drive it by hand (tests, `watch`).
#[derive(Debug, Clone)]
pub struct ReconcileOutcome {
    pub evaluation: Option<Evaluation>,
    /// An operation left over from before (a crash) was finished first.
    pub resumed: bool,
    /// The decision was carried out (an operation ran to Done).
    pub applied: bool,
}

/// In-memory view of a group for status reporting.
#[derive(Debug, Clone, Default)]
pub struct GroupStatus {
    pub last: Option<Evaluation>,
    pub last_error: Option<String>,
    pub paused_until: Option<Timestamp>,
    /// Paused or dry-run: the action last held back (recorded as an event when it changes).
    pub held_back: Option<String>,
    /// What the last decision saw, member by member.
    pub inputs: Vec<MemberInput>,
    /// The last decision's numbers in one line (the `[metrics]` log line).
    pub summary: Option<String>,
    /// The last decision's outcome and reason kind: a decision event is recorded when it changes.
    pub decision_key: Option<String>,
}

/// One running member's readings at a pass: each metric with its age, and whether the sample was
/// fresh enough to count.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberInput {
    pub member: flotilla_model::InstanceId,
    /// (metric, value, age in ms at the pass).
    pub values: Vec<(flotilla_model::Metric, f64, u64)>,
    pub fresh: bool,
}

pub(crate) struct Slot {
    pub spec: GroupSpec,
    pub policy: Box<dyn Policy>,
    pub status: Mutex<GroupStatus>,
    pub backoff: Mutex<Backoff>,
    pub counters: Mutex<crate::GroupCounters>,
    /// Rings when an operator asks for something, so the next pass need not wait its interval.
    pub wake: tokio::sync::Notify,
}

/// Why an operator's request was not queued.
#[derive(Debug)]
pub enum RequestError {
    /// Another request is waiting for the group's next pass.
    Busy(OperatorRequest),
    Seam(SeamError),
}

/// The controller: one instance drives many groups.
pub struct Controller {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) sources: Vec<Arc<dyn MetricSource>>,
    pub(crate) balancer: Arc<dyn Balancer>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) options: Options,
    pub(crate) slots: BTreeMap<GroupId, Slot>,
    /// One control change at a time: each is a read-modify-write of the stored controls.
    pub(crate) controls_lock: tokio::sync::Mutex<()>,
    /// Counts what a watcher would want to see again (an event, a decision): live views wait on it.
    changes: tokio::sync::watch::Sender<u64>,
    /// Members' check-ins (`checkin.rs`), and when this daemon started (silence counts from then).
    pub(crate) checkins: crate::checkin::Checkins,
    pub(crate) started: Timestamp,
}

impl Controller {
    pub fn new(parts: ControllerParts) -> Arc<Self> {
        // Every source's error count starts at 0, so a rate over it is defined from the start.
        let counters = crate::GroupCounters {
            source_errors: parts.sources.iter().map(|s| (s.name().to_string(), 0)).collect(),
            ..Default::default()
        };
        let slots = parts
            .groups
            .into_iter()
            .map(|spec| {
                let slot = Slot {
                    policy: policy_for(&spec),
                    spec,
                    status: Mutex::new(GroupStatus::default()),
                    backoff: Mutex::new(Backoff::default()),
                    counters: Mutex::new(counters.clone()),
                    wake: tokio::sync::Notify::new(),
                };
                (slot.spec.id.clone(), slot)
            })
            .collect();
        Arc::new(Controller {
            store: parts.store,
            provider: parts.provider,
            sources: parts.sources,
            balancer: parts.balancer,
            clock: parts.clock.clone(),
            options: parts.options,
            slots,
            controls_lock: tokio::sync::Mutex::new(()),
            changes: tokio::sync::watch::Sender::new(0),
            checkins: Default::default(),
            started: parts.clock.now(),
        })
    }

    pub fn groups(&self) -> impl Iterator<Item = &GroupSpec> {
        self.slots.values().map(|s| &s.spec)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    /// The group's operator controls (pause, dry-run, protected members), as stored.
    pub async fn controls(&self, group: &GroupId) -> Result<GroupControls, SeamError> {
        self.slot(group)?;
        self.store.controls(group).await
    }

    /// Changes the group's operator controls with `change`, stores them and records the change as
    /// an event (`what` says it in words). Takes effect at the group's next pass.
    pub async fn update_controls(
        &self,
        group: &GroupId,
        what: &str,
        change: impl FnOnce(&mut GroupControls),
    ) -> Result<GroupControls, SeamError> {
        let spec = &self.slot(group)?.spec;
        let _one_at_a_time = self.controls_lock.lock().await;
        self.store.ensure_group(group).await?;
        let mut controls = self.store.controls(group).await?;
        change(&mut controls);
        self.store.save_controls(group, &controls).await?;
        tracing::info!(group = %group, "operator: {what}");
        self.event(spec, self.clock.now(), EventKind::Info, format!("operator: {what}")).await;
        Ok(controls)
    }

    /// Clears `request` (unless another replaced it meanwhile) and records what became of it.
    async fn answer_request(&self, spec: &GroupSpec, request: &OperatorRequest, what: &str) -> Result<(), SeamError> {
        self.update_controls(&spec.id, what, |c| {
            if c.request.as_ref() == Some(request) {
                c.request = None;
            }
        })
        .await
        .map(|_| ())
    }

    /// Queues an operator's one-shot request for the group's next pass (and wakes it). One at a
    /// time: while one waits, another is refused with the one waiting.
    pub async fn request(&self, group: &GroupId, request: OperatorRequest) -> Result<GroupControls, RequestError> {
        let mut waiting = None;
        let controls = self
            .update_controls(group, &format!("asked: {}", request.text()), |c| match &c.request {
                Some(r) => waiting = Some(r.clone()),
                None => c.request = Some(request),
            })
            .await
            .map_err(RequestError::Seam)?;
        if let Some(r) = waiting {
            return Err(RequestError::Busy(r));
        }
        self.wake(group);
        Ok(controls)
    }

    /// Starts a rolling replacement of every member running now (a batch at a time, like a
    /// template change).
    pub async fn replace_all(&self, group: &GroupId) -> Result<GroupControls, SeamError> {
        let now = self.clock.now();
        let controls =
            self.update_controls(group, "asked: rolling replacement", |c| c.replace_before = Some(now)).await?;
        self.wake(group);
        Ok(controls)
    }

    /// Runs the group's next pass now rather than at its interval.
    pub fn wake(&self, group: &GroupId) {
        if let Some(slot) = self.slots.get(group) {
            slot.wake.notify_one();
        }
    }

    /// The members the group's balancer sees failing their health check, and since when (none
    /// when it cannot tell, or the group has no balancer).
    pub async fn health_view(&self, group: &GroupId) -> Vec<flotilla_model::Unhealthy> {
        self.balancer.unhealthy(group, self.clock.now()).await.unwrap_or_default()
    }

    /// The controller's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Ticks whenever something a live view shows changed (an event was recorded, a pass decided).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The group's counters since start (decisions, operations, source failures).
    pub fn counters(&self, group: &GroupId) -> Option<crate::GroupCounters> {
        self.slots.get(group).map(|s| s.counters.lock().expect("counters lock").clone())
    }

    pub fn status(&self, group: &GroupId) -> Option<GroupStatus> {
        self.slots.get(group).map(|s| s.status.lock().expect("status lock").clone())
    }

    pub(crate) fn slot(&self, group: &GroupId) -> Result<&Slot, SeamError> {
        self.slots.get(group).ok_or_else(|| SeamError::bug(format!("unknown group {group}")))
    }

    pub(crate) fn failpoint(&self, name: &'static str) {
        debug_assert!(FAILPOINTS.contains(&name), "failpoint {name} is not in FAILPOINTS");
        if let Some(fp) = &self.options.failpoint {
            fp(name);
        }
    }

    /// Registers the groups in the store and finishes every operation a previous run left pending.
    pub async fn recover(&self) -> Result<usize, SeamError> {
        for id in self.slots.keys() {
            self.store.ensure_group(id).await?;
        }
        let pending = self.store.unfinished_operations().await?;
        let mut resumed = 0;
        for op in pending {
            let Some(slot) = self.slots.get(&op.group) else {
                tracing::warn!(group = %op.group, op = %op.id, kind = op.kind.as_str(),
                    "pending operation of a group that is no longer configured; marking it failed");
                let state = OpState::Failed("group no longer configured".into());
                self.store.finish_operation(op.id, &state, self.clock.now()).await?;
                continue;
            };
            if self.resume(&slot.spec, &op).await? {
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Finishes one operation a previous run (or pass) left pending; true if it completed. A step
    /// that fails marks it Failed (and says why) and the group's loop decides again from what
    /// exists; only the store failing is an error here. A stop is never resumed: the next run
    /// keeps the members that are left.
    async fn resume(&self, spec: &GroupSpec, op: &flotilla_model::Operation) -> Result<bool, SeamError> {
        if let flotilla_model::OpKind::Stop { .. } = op.kind {
            tracing::warn!(group = %op.group, op = %op.id, "an interrupted stop is not resumed; the members left keep running");
            let state = OpState::Failed("interrupted; a stop is not resumed (stop again to remove the rest)".into());
            self.store.finish_operation(op.id, &state, self.clock.now()).await?;
            return Ok(false);
        }
        tracing::info!(group = %op.group, op = %op.id, kind = op.kind.as_str(), "resuming unfinished operation");
        match self.execute(spec, op).await {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::warn!(group = %op.group, op = %op.id, error = %e, "could not resume; marked failed");
                let still_pending = self.store.unfinished_operations().await?.iter().any(|p| p.id == op.id);
                if still_pending {
                    return Err(e);
                }
                Ok(false)
            }
        }
    }

    /// One observe → decide → apply pass over one group.
    pub async fn reconcile(&self, group: &GroupId) -> Result<ReconcileOutcome, SeamError> {
        let slot = self.slot(group)?;
        let spec = &slot.spec;

        // An operation left pending (crash, or an error mid-way) is finished before anything new.
        let mut resumed = false;
        for op in self.store.unfinished_operations().await? {
            if &op.group == group {
                resumed |= self.resume(spec, &op).await?;
            }
        }

        let now = self.clock.now();
        let members = self.observe_members(spec, now).await?;
        self.sync_balancer(spec, &members).await?;
        let latest = self.sample(spec, &members, now).await;
        let primary = self.ensure_primary(spec, &members).await?;

        let state = self.store.policy_state(group).await?;
        let controls = self.store.controls(group).await?;
        let rollout_blocked = self.rollout_blocked(spec).await?;
        let unhealthy = self.unhealthy(spec, now).await;
        let health_blocked = self.health_blocked(spec, &members, now).await?;
        let replace_before = self.operator_rollout(spec, &controls, &members).await?;
        let alarms = if spec.alarms.is_empty() { Vec::new() } else { self.store.alarm_states(group).await? };
        let view = GroupView {
            spec,
            members: &members,
            latest: &latest,
            primary: primary.as_ref(),
            operation_pending: false,
            rollout_blocked,
            unhealthy: &unhealthy,
            protected: &controls.protected,
            health_blocked,
            replace_before,
            alarms: &alarms,
        };
        let (mut evaluation, mut new_state) = slot.policy.decide(&view, &state, now);
        // An operator's request goes before the policy's own decision (a pause keeps it waiting).
        if let Some(request) = controls.request.as_ref().filter(|_| !controls.paused) {
            match operator::answer(&view, request, &state, now) {
                Answer::Wait => {}
                Answer::Act(decision, st) => {
                    let how = if controls.dry_run {
                        format!("{} (dry run): would {}", request.text(), describe(&decision, false))
                    } else {
                        format!("{} carried out as: {}", request.text(), describe(&decision, false))
                    };
                    evaluation.decision = decision;
                    new_state = st;
                    // Cleared before the operation begins: a crash in between loses the request
                    // (the operator sees it is gone) rather than carrying it out twice.
                    self.answer_request(spec, request, &how).await?;
                }
                Answer::Done(why) => self.answer_request(spec, request, &format!("{}: {why}", request.text())).await?,
                Answer::Refused(why) => {
                    self.answer_request(spec, request, &format!("{} refused: {why}", request.text())).await?
                }
            }
        }
        log_evaluation(spec, &evaluation);
        self.explain(slot, spec, &evaluation, &members, &latest, now).await;

        // Paused or dry-run: an action is recorded, not carried out, and its counters and stamps
        // are not saved (it did not happen; the streak stays complete and says so again).
        let held = evaluation.decision.is_action() && (controls.paused || controls.dry_run);
        slot.counters.lock().expect("counters lock").decided(&evaluation.decision, held);
        self.hold_back(slot, spec, &controls, held.then_some(&evaluation.decision), now).await;
        if held {
            return Ok(ReconcileOutcome { evaluation: Some(evaluation), resumed, applied: false });
        }
        // Counters and cooldown stamps are saved before the operation is begun: a crash in between
        // loses one action (the streak is counted again) rather than repeating one.
        if new_state != state {
            self.store.save_policy_state(group, &new_state).await?;
        }
        let applied = match &evaluation.decision {
            Decision::Hold(_) => false,
            decision => {
                self.apply(spec, decision, &members, primary.as_ref()).await?;
                true
            }
        };
        Ok(ReconcileOutcome { evaluation: Some(evaluation), resumed, applied })
    }

    /// Keeps what the decision saw (for the API and the dashboard), and records a decision event
    /// when the outcome or the reason to hold changed: a group that holds for an hour says so
    /// once, not once per pass.
    async fn explain(
        &self,
        slot: &Slot,
        spec: &GroupSpec,
        evaluation: &Evaluation,
        members: &[Instance],
        latest: &[flotilla_model::Sample],
        now: Timestamp,
    ) {
        let inputs: Vec<MemberInput> = members
            .iter()
            .filter(|m| m.is_running())
            .map(|m| {
                let sample = latest.iter().find(|s| s.instance == m.id);
                let values = sample
                    .map(|s| {
                        s.values
                            .iter()
                            .map(|&(metric, v)| (metric, v, now.since(s.at_of(metric)).as_millis() as u64))
                            .collect()
                    })
                    .unwrap_or_default();
                let fresh = sample.is_some_and(|s| now.since(s.at) <= spec.stale_after);
                MemberInput { member: m.id.clone(), values, fresh }
            })
            .collect();
        let summary = metrics_line(spec, evaluation);
        let key = decision_key(&evaluation.decision);
        let data = decision_data(spec, evaluation, &inputs, &summary);
        let changed = {
            let mut st = slot.status.lock().expect("status lock");
            st.last = Some(evaluation.clone());
            st.inputs = inputs;
            st.summary = Some(summary.clone());
            let changed = st.decision_key.as_deref() != Some(key.as_str());
            st.decision_key = Some(key);
            changed
        };
        self.changed();
        if changed {
            let message = match &evaluation.decision {
                Decision::Hold(h) => format!("hold ({}): {summary}", hold_words(h)),
                d => format!("{}: {}; {summary}", crate::outcome(d), describe(d, true)),
            };
            self.event_with(spec, now, EventKind::Decision, message, Some(data)).await;
        }
    }

    /// Records an action a pause or dry-run held back, once per distinct action (a streak that
    /// stays complete would say it every pass), and forgets it when nothing is held back.
    async fn hold_back(
        &self,
        slot: &Slot,
        spec: &GroupSpec,
        controls: &GroupControls,
        decision: Option<&Decision>,
        now: Timestamp,
    ) {
        let why = if controls.paused { "paused" } else { "dry run" };
        // The same action with fresher numbers is not news: the key leaves the reason out.
        let key = decision.map(|d| format!("{why}: {}", describe(d, false)));
        let changed = {
            let mut st = slot.status.lock().expect("status lock");
            let changed = st.held_back != key;
            st.held_back = key;
            changed
        };
        if let (true, Some(d)) = (changed, decision) {
            let text = format!("{why}: would {}", describe(d, true));
            tracing::info!(group = %spec.id, "{}{}", why.to_uppercase(), &text[why.len()..]);
            self.event(spec, now, EventKind::Info, text).await;
        }
    }

    /// Handover mode needs a primary: [`Instance::primary`]'s rule, stored when it changes.
    async fn ensure_primary(
        &self,
        spec: &GroupSpec,
        members: &[Instance],
    ) -> Result<Option<flotilla_model::InstanceId>, SeamError> {
        let stored = self.store.primary(&spec.id).await?;
        let primary = Instance::primary(stored.as_ref(), members).map(|m| m.id.clone());
        if spec.mode == Mode::Handover && primary != stored {
            if let Some(id) = &primary {
                tracing::info!(group = %spec.id, primary = %id, "primary is now {id}");
            }
            self.store.set_primary(&spec.id, primary.as_ref()).await?;
        }
        Ok(primary)
    }
}

/// What makes two decisions the same for the event log: the outcome and, for a hold, its kind of
/// reason (a cooldown counting down is one cooldown).
fn decision_key(d: &Decision) -> String {
    match d {
        Decision::Hold(h) => format!("hold {}", hold_words(h)),
        other => describe(other, false),
    }
}

/// A reason to hold, in words.
pub fn hold_words(h: &flotilla_model::HoldReason) -> &'static str {
    use flotilla_model::HoldReason;
    match h {
        HoldReason::Steady => "steady",
        HoldReason::NoData => "no fresh data",
        HoldReason::Cooldown { .. } => "cooldown",
        HoldReason::InProgress => "a change in progress",
        HoldReason::AtBound => "at a bound",
    }
}

/// An action in words, for "would …" records; with its reason, or without (to tell one action
/// from another).
fn describe(d: &Decision, with_reason: bool) -> String {
    let ids = |v: &[flotilla_model::InstanceId]| v.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", ");
    let (what, reason) = match d {
        Decision::Hold(h) => (format!("hold ({h:?})"), None),
        Decision::ScaleOut { count, reason } => (format!("scale out by {count}"), Some(reason)),
        Decision::ScaleIn { victims, reason } => (format!("scale in, removing {}", ids(victims)), Some(reason)),
        Decision::Handover { retire, successor, reason } => {
            (format!("hand over from {retire} to {successor}"), Some(reason))
        }
        Decision::Replace { old, reason, .. } => (format!("replace {}", ids(old)), Some(reason)),
    };
    match reason {
        Some(r) if with_reason => format!("{what} ({r})"),
        _ => what,
    }
}

/// Logs the tick's [`metrics_line`].
fn log_evaluation(spec: &GroupSpec, e: &Evaluation) {
    tracing::info!(group = %spec.id, "{}", metrics_line(spec, e));
}

/// The metrics line of a tick, by policy kind. Threshold keeps the seed's `[metrics] cpu=… mem=… ->
/// max=…`; target tracking shows the per-member value against the target and the member count it
/// wants; request count the requests within the window against the trigger. Counters that the
/// tick's action reset are left out (the action's own line says why).
fn metrics_line(spec: &GroupSpec, e: &Evaluation) -> String {
    let fmt = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.1}"));
    let members = format!("members {}/{}", e.sampled, e.running);
    let acted = e.decision.is_action();
    match &spec.policy {
        PolicySpec::Threshold(t) => {
            let label = match t.metric {
                MetricChoice::Cpu => "cpu",
                MetricChoice::Mem => "mem",
                MetricChoice::Max => "max",
                MetricChoice::Rps => "rps",
            };
            let counts = if acted {
                String::new()
            } else {
                format!(", up {}/{}, down {}/{}", e.up_count, t.min_up, e.down_count, t.min_down)
            };
            format!("[metrics] cpu={} mem={} -> {label}={} ({members}{counts})", fmt(e.cpu), fmt(e.mem), fmt(e.value))
        }
        PolicySpec::TargetTracking(t) => {
            let label = match t.metric {
                TargetMetric::Cpu => "cpu",
                TargetMetric::Mem => "mem",
                TargetMetric::Rps => "rps",
            };
            let desired = e.desired.map_or_else(|| "n/a".to_string(), |d| d.to_string());
            let counts = if acted { String::new() } else { format!(", down {}/{}", e.down_count, t.scale_in_samples) };
            format!(
                "[metrics] per-member {label}={} target={} -> desired={desired} ({members}{counts})",
                fmt(e.value),
                t.target
            )
        }
        PolicySpec::RequestCount(r) => {
            let requests = e.value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.0}"));
            format!("[metrics] requests in {:?}={requests} (trigger {}, {members})", r.window, r.requests)
        }
        PolicySpec::Alarm(a) => {
            let firing = e.value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.0}"));
            format!("[metrics] rules whose alarm is in alarm={firing}/{} ({members})", a.rules.len())
        }
    }
}

/// A decision's event detail, for programs: what it saw (per member, each reading with its age),
/// the numbers it compared, the bounds and cooldown that shaped it, and what it decided.
fn decision_data(
    spec: &GroupSpec,
    evaluation: &Evaluation,
    inputs: &[MemberInput],
    summary: &str,
) -> serde_json::Value {
    use serde_json::json;
    let d = &evaluation.decision;
    let (reason, cooldown_remaining_ms) = match d {
        Decision::Hold(h @ flotilla_model::HoldReason::Cooldown { remaining_ms }) => {
            (hold_words(h).to_string(), Some(*remaining_ms))
        }
        Decision::Hold(h) => (hold_words(h).to_string(), None),
        Decision::ScaleOut { reason, .. }
        | Decision::ScaleIn { reason, .. }
        | Decision::Handover { reason, .. }
        | Decision::Replace { reason, .. } => (reason.clone(), None),
    };
    let inputs: Vec<serde_json::Value> = inputs
        .iter()
        .map(|i| {
            let values: serde_json::Map<String, serde_json::Value> = i
                .values
                .iter()
                .map(|(metric, value, age_ms)| {
                    (metric.as_str().to_string(), json!({ "value": value, "age_ms": age_ms }))
                })
                .collect();
            json!({ "member": i.member.as_str(), "fresh": i.fresh, "values": values })
        })
        .collect();
    json!({
        "outcome": crate::outcome(d),
        "reason": reason,
        "action": match d { Decision::Hold(_) => None, d => Some(describe(d, true)) },
        "numbers": summary,
        "policy": spec.policy.kind(),
        "value": evaluation.value,
        "cpu": evaluation.cpu,
        "mem": evaluation.mem,
        "desired": evaluation.desired,
        "sampled": evaluation.sampled,
        "running": evaluation.running,
        "up_count": evaluation.up_count,
        "down_count": evaluation.down_count,
        "min": spec.min,
        "max": spec.max,
        "cooldown_remaining_ms": cooldown_remaining_ms,
        "inputs": inputs,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flotilla_model::{
        Decision, Evaluation, GroupSpec, HoldReason, MetricChoice, PolicySpec, RequestCountSpec, TargetMetric,
        TargetSpec, Timestamp,
    };

    use super::metrics_line;

    fn eval(value: Option<f64>, desired: Option<u32>, decision: Decision) -> Evaluation {
        Evaluation {
            at: Timestamp(0),
            cpu: Some(91.24),
            mem: None,
            value,
            desired,
            sampled: 1,
            running: 2,
            up_count: 3,
            down_count: 1,
            decision,
        }
    }

    #[test]
    fn one_line_per_kind() {
        let hold = Decision::Hold(HoldReason::Steady);
        let out = Decision::ScaleOut { count: 1, reason: "x".into() };
        let mut spec = GroupSpec::example("g");
        #[rustfmt::skip]
        let threshold = [
            (eval(Some(91.24), None, hold.clone()),
             "[metrics] cpu=91.2 mem=n/a -> max=91.2 (members 1/2, up 3/4, down 1/4)"),
            (eval(Some(91.24), None, out.clone()), "[metrics] cpu=91.2 mem=n/a -> max=91.2 (members 1/2)"),
            (eval(None, None, Decision::Hold(HoldReason::NoData)),
             "[metrics] cpu=91.2 mem=n/a -> max=n/a (members 1/2, up 3/4, down 1/4)"),
        ];
        for (e, want) in threshold {
            assert_eq!(metrics_line(&spec, &e), want);
        }
        spec.policy.threshold_mut().unwrap().metric = MetricChoice::Rps;
        assert_eq!(
            metrics_line(&spec, &eval(Some(120.0), None, out.clone())),
            "[metrics] cpu=91.2 mem=n/a -> rps=120.0 (members 1/2)"
        );

        spec.policy =
            PolicySpec::TargetTracking(TargetSpec { metric: TargetMetric::Rps, target: 50.0, scale_in_samples: 3 });
        assert_eq!(
            metrics_line(&spec, &eval(Some(42.5), Some(2), hold.clone())),
            "[metrics] per-member rps=42.5 target=50 -> desired=2 (members 1/2, down 1/3)"
        );
        assert_eq!(
            metrics_line(&spec, &eval(Some(120.0), Some(5), out.clone())),
            "[metrics] per-member rps=120.0 target=50 -> desired=5 (members 1/2)"
        );
        assert_eq!(
            metrics_line(&spec, &eval(None, None, Decision::Hold(HoldReason::NoData))),
            "[metrics] per-member rps=n/a target=50 -> desired=n/a (members 1/2, down 1/3)"
        );

        spec.policy = PolicySpec::RequestCount(RequestCountSpec { requests: 10, window: Duration::from_secs(60) });
        assert_eq!(
            metrics_line(&spec, &eval(Some(7.0), None, hold)),
            "[metrics] requests in 60s=7 (trigger 10, members 1/2)"
        );
        assert_eq!(
            metrics_line(&spec, &eval(None, None, Decision::Hold(HoldReason::NoData))),
            "[metrics] requests in 60s=n/a (trigger 10, members 1/2)"
        );
    }
}
