//! The seam traits. Small, async, object-safe; every adapter implements one of them.

use std::time::Duration;

use async_trait::async_trait;

use crate::{
    AlarmStatus, Event, EventFilter, GroupControls, GroupId, Instance, InstanceId, InstanceSpec, OpId, OpKind, OpState,
    Operation, PolicyState, Sample, SeamError, Timestamp,
};

/// Makes and removes members. Only `provider-*` crates talk to clouds or spawn members.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Short name for logs (`local`, `libvirt`, `openstack`).
    fn name(&self) -> &str;

    /// Flotilla's own members, of one group or of all groups. Never lists what Flotilla did not make.
    async fn list(&self, group: Option<&GroupId>) -> Result<Vec<Instance>, SeamError>;

    /// Creates one member per name. Names are idempotency keys: a member that already exists under a
    /// name is returned as it is, never created twice. Returns when the members are Running (their
    /// service answers) or with an error; a member that could not start is cleaned up, not orphaned.
    async fn create(&self, group: &GroupId, spec: &InstanceSpec, names: &[String]) -> Result<Vec<Instance>, SeamError>;

    /// Deletes the named members. Deleting a member that is already gone is not an error.
    async fn delete(&self, group: &GroupId, ids: &[InstanceId]) -> Result<(), SeamError>;
}

/// Reads metrics of members. Keeps whatever per-member state its maths needs (previous counters).
#[async_trait]
pub trait MetricSource: Send + Sync {
    fn name(&self) -> &str;

    /// One sample per member it could read; a member it could not read is simply absent (missing
    /// data never scales in).
    async fn sample(&self, group: &GroupId, members: &[Instance], now: Timestamp) -> Result<Vec<Sample>, SeamError>;

    /// The member is gone: drop what is kept about it (a pinned host key, pushed values), so
    /// nothing of it is ever read as another member's. Nothing to drop by default.
    async fn forget(&self, _group: &GroupId, _member: &Instance) {}
}

/// A member as the balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub id: InstanceId,
    pub address: String,
    /// Share of traffic under weighted selection (at least 1); the controller uses the member's vCPUs.
    pub weight: u32,
}

/// How a drain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// All in-flight requests finished before the deadline.
    pub completed: bool,
    /// Requests still in flight when the deadline passed.
    pub inflight_left: u32,
    pub waited: Duration,
}

/// A backend failing its health check, as the balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    pub id: InstanceId,
    /// Since when it has not served: when it was added (never healthy yet) or when it was last
    /// taken out of rotation by a failed check.
    pub since: Timestamp,
}

/// Routes traffic to a group's members: add after healthy, drain before delete.
#[async_trait]
pub trait Balancer: Send + Sync {
    /// Registers a backend; it gets traffic only once its health check passes.
    async fn add(&self, group: &GroupId, backend: Backend) -> Result<(), SeamError>;

    /// Waits until the backend is healthy and serving; false if `timeout` passed first.
    async fn wait_healthy(&self, group: &GroupId, id: &InstanceId, timeout: Duration) -> Result<bool, SeamError>;

    /// Stops new requests to the backend and waits for in-flight ones to finish, up to `timeout`.
    async fn drain(&self, group: &GroupId, id: &InstanceId, timeout: Duration) -> Result<DrainReport, SeamError>;

    /// Forgets the backend (after it was drained and deleted).
    async fn remove(&self, group: &GroupId, id: &InstanceId) -> Result<(), SeamError>;

    /// Makes the group's backends exactly `wanted`, the members that should serve: adds the
    /// missing ones (each serves once its health check passes), updates weights and addresses,
    /// forgets the backends not wanted, and returns to service a wanted backend left draining (a
    /// retire whose delete failed: the member still exists), through a fresh health check. The
    /// controller calls it on every pass, so the balancer never keeps a copy that drifted.
    async fn sync(&self, group: &GroupId, wanted: &[Backend]) -> Result<(), SeamError>;

    /// The group's backends that fail their health check now (not those draining), with since
    /// when, on the caller's clock (`now`). A balancer without health checks reports none.
    async fn unhealthy(&self, group: &GroupId, now: Timestamp) -> Result<Vec<Unhealthy>, SeamError>;
}

/// Durable state, in domain terms. One trait, several backends (SQLite now, PostgreSQL later).
#[async_trait]
pub trait Store: Send + Sync {
    /// Registers a group (idempotent).
    async fn ensure_group(&self, group: &GroupId) -> Result<(), SeamError>;
    async fn groups(&self) -> Result<Vec<GroupId>, SeamError>;

    /// The handover-mode primary (the baseline): `None` until set.
    async fn primary(&self, group: &GroupId) -> Result<Option<InstanceId>, SeamError>;
    async fn set_primary(&self, group: &GroupId, id: Option<&InstanceId>) -> Result<(), SeamError>;

    /// Reserves `count` member numbers under `base` (`<base>_N`): the first one past both every
    /// number reserved before and `in_use` (the highest that exists now). A number is never handed
    /// out twice, even after its member is gone, so a new member never inherits an old one's
    /// pinned host key or pushed values.
    async fn reserve_numbers(&self, base: &str, in_use: u64, count: u32) -> Result<u64, SeamError>;

    async fn upsert_instance(&self, instance: &Instance) -> Result<(), SeamError>;
    async fn remove_instance(&self, group: &GroupId, id: &InstanceId) -> Result<(), SeamError>;
    async fn instances(&self, group: &GroupId) -> Result<Vec<Instance>, SeamError>;

    /// Appends samples and trims the group's window to the newest `keep`.
    async fn push_samples(&self, group: &GroupId, samples: &[Sample], keep: usize) -> Result<(), SeamError>;
    /// Newest first, at most `limit`.
    async fn samples(&self, group: &GroupId, limit: usize) -> Result<Vec<Sample>, SeamError>;

    /// What an operator set on the group; the default (nothing) for a group never set.
    async fn controls(&self, group: &GroupId) -> Result<GroupControls, SeamError>;
    /// Replaces the group's controls (NotFound for a group never registered).
    async fn save_controls(&self, group: &GroupId, controls: &GroupControls) -> Result<(), SeamError>;

    async fn policy_state(&self, group: &GroupId) -> Result<PolicyState, SeamError>;
    async fn save_policy_state(&self, group: &GroupId, state: &PolicyState) -> Result<(), SeamError>;

    async fn record_event(&self, event: &Event) -> Result<(), SeamError>;
    /// Newest first, at most `limit`; all groups when `group` is `None`.
    async fn events(&self, group: Option<&GroupId>, limit: usize) -> Result<Vec<Event>, SeamError> {
        self.find_events(&EventFilter { group: group.cloned(), ..EventFilter::default() }, limit).await
    }
    /// The events `filter` matches, newest first (by time, then by order of recording), at most
    /// `limit`: the filter is the store's to apply, so a page costs its size, not the history's.
    async fn find_events(&self, filter: &EventFilter, limit: usize) -> Result<Vec<Event>, SeamError>;

    /// Writes the intent (state Pending) and returns it with its id. Refuses (Conflict) if the group
    /// already has a pending operation: one change per group at a time.
    async fn begin_operation(&self, group: &GroupId, kind: &OpKind, now: Timestamp) -> Result<Operation, SeamError>;
    async fn finish_operation(&self, id: OpId, state: &OpState, now: Timestamp) -> Result<(), SeamError>;
    /// Pending operations of all groups, oldest first.
    async fn unfinished_operations(&self) -> Result<Vec<Operation>, SeamError>;
    /// Newest first, at most `limit`.
    async fn operations(&self, group: &GroupId, limit: usize) -> Result<Vec<Operation>, SeamError>;

    /// The last known state of each of the group's alarms, by name.
    async fn alarm_states(&self, group: &GroupId) -> Result<Vec<AlarmStatus>, SeamError>;
    /// Replaces the stored state of the alarm `status.name` (NotFound for a group never registered).
    async fn save_alarm_state(&self, group: &GroupId, status: &AlarmStatus) -> Result<(), SeamError>;
    /// Notes a signal's unique `key` at `now`: false if it was noted before (a replay). Keys older
    /// than `keep` are forgotten.
    async fn note_signal(&self, key: &str, now: Timestamp, keep: Duration) -> Result<bool, SeamError>;
}
