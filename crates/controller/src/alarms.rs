//! A group's alarms: states reported from outside (a receiver call) are stored, every transition
//! is an event, and a transition wakes the group so its `alarm` policy acts at once.

use std::time::Duration;

use flotilla_model::{AlarmState, AlarmStatus, EventKind, GroupId, SeamError};

use crate::Controller;

/// How long a receiver call's unique key is remembered, so a replay within it is refused.
pub const SIGNAL_MEMORY: Duration = Duration::from_secs(7 * 86_400);

/// What a report did.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmReport {
    pub status: AlarmStatus,
    /// The state before the report (`None`: never reported).
    pub previous: Option<AlarmState>,
}

impl AlarmReport {
    pub fn changed(&self) -> bool {
        self.previous != Some(self.status.state)
    }
}

impl Controller {
    /// Every declared alarm of the group with its last known state; one never evaluated nor
    /// reported has insufficient data since the controller started.
    pub async fn alarms(&self, group: &GroupId) -> Result<Vec<AlarmStatus>, SeamError> {
        let spec = &self.slot(group)?.spec;
        let stored = self.store.alarm_states(group).await?;
        Ok(spec
            .alarms
            .iter()
            .map(|def| {
                stored.iter().find(|a| a.name == def.name).cloned().unwrap_or_else(|| AlarmStatus {
                    name: def.name.clone(),
                    state: AlarmState::InsufficientData,
                    since: self.started,
                    updated: self.started,
                    reason: "not evaluated nor reported yet".into(),
                })
            })
            .collect())
    }

    /// Records the state of the group's alarm `name` (declared, else NotFound), reported from
    /// outside. A transition is an event (with `data`, e.g. Aodh's `reason_data`) and wakes the
    /// group; the same state again only updates the time.
    pub async fn report_alarm(
        &self,
        group: &GroupId,
        name: &str,
        state: AlarmState,
        reason: String,
        data: serde_json::Value,
    ) -> Result<AlarmReport, SeamError> {
        let spec = &self.slot(group)?.spec;
        if !spec.alarms.iter().any(|a| a.name == name) {
            return Err(SeamError::not_found(format!("group `{group}` has no alarm `{name}`")));
        }
        let now = self.clock.now();
        let _one_at_a_time = self.controls_lock.lock().await;
        self.store.ensure_group(group).await?;
        let previous = self.store.alarm_states(group).await?.into_iter().find(|a| a.name == name);
        let since = match &previous {
            Some(p) if p.state == state => p.since,
            _ => now,
        };
        let status = AlarmStatus { name: name.to_string(), state, since, updated: now, reason };
        self.store.save_alarm_state(group, &status).await?;
        let report = AlarmReport { previous: previous.map(|p| p.state), status };
        if report.changed() {
            let from = report.previous.map_or("(never reported)", AlarmState::as_str);
            let message = format!("alarm {name}: {from} -> {}: {}", state.as_str(), report.status.reason);
            tracing::info!(group = %group, "{message}");
            let data = serde_json::json!({
                "alarm": name,
                "previous": report.previous.map(AlarmState::as_str),
                "current": state.as_str(),
                "reason": report.status.reason,
                "detail": data,
            });
            self.event_with(spec, now, EventKind::Info, message, Some(data)).await;
            self.wake(group);
        }
        Ok(report)
    }

    /// Notes a receiver call's unique key: false if it was seen within [`SIGNAL_MEMORY`] (a replay).
    pub async fn note_signal(&self, key: &str) -> Result<bool, SeamError> {
        self.store.note_signal(key, self.clock.now(), SIGNAL_MEMORY).await
    }
}
