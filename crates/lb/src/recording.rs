//! [`RecordingBalancer`]: keeps the backend set the controller asked for and records every call,
//! so the controller's contract (add after healthy, drain before delete) is observable in tests
//! without sockets.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use flotilla_model::{Backend, Balancer, DrainReport, GroupId, InstanceId, SeamError, Timestamp, Unhealthy};

/// One call the controller made, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BalancerCall {
    Add(GroupId, Backend),
    WaitHealthy(GroupId, InstanceId),
    Drain(GroupId, InstanceId),
    Remove(GroupId, InstanceId),
}

/// Calls remembered (the newest; older ones are dropped in halves).
pub const MAX_CALLS: usize = 10_000;

/// backend id -> (address, draining)
type GroupBackends = BTreeMap<InstanceId, (String, bool)>;

/// Records calls and tracks which backends would receive traffic.
#[derive(Debug, Default)]
pub struct RecordingBalancer {
    calls: Mutex<Vec<BalancerCall>>,
    backends: Mutex<BTreeMap<GroupId, GroupBackends>>,
    /// Health a test set: backend id -> failing since.
    failing: Mutex<BTreeMap<InstanceId, Timestamp>>,
}

impl RecordingBalancer {
    pub fn new() -> Self {
        Self::default()
    }
    /// The newest calls, at most [`MAX_CALLS`].
    pub fn calls(&self) -> Vec<BalancerCall> {
        self.calls.lock().expect("balancer lock").clone()
    }
    /// Backends of a group that would get new requests (added and not draining).
    pub fn serving(&self, group: &GroupId) -> Vec<InstanceId> {
        let b = self.backends.lock().expect("balancer lock");
        b.get(group)
            .map(|m| m.iter().filter(|(_, (_, draining))| !draining).map(|(id, _)| id.clone()).collect())
            .unwrap_or_default()
    }
    /// Makes a backend fail its health check since `since` (`None`: healthy again). Reported by
    /// [`Balancer::unhealthy`] while the backend is registered and not draining.
    pub fn set_failing(&self, id: &InstanceId, since: Option<Timestamp>) {
        let mut failing = self.failing.lock().expect("balancer lock");
        match since {
            Some(t) => failing.insert(id.clone(), t),
            None => failing.remove(id),
        };
    }
    fn record(&self, call: BalancerCall) {
        let mut calls = self.calls.lock().expect("balancer lock");
        // It also stands in for groups without a balancer in a long-running daemon: keep the tail.
        if calls.len() >= MAX_CALLS {
            calls.drain(..MAX_CALLS / 2);
        }
        calls.push(call);
    }
}

#[async_trait]
impl Balancer for RecordingBalancer {
    async fn add(&self, group: &GroupId, backend: Backend) -> Result<(), SeamError> {
        tracing::debug!(group = %group, backend = %backend.id, address = %backend.address, "balancer: add");
        self.backends
            .lock()
            .expect("balancer lock")
            .entry(group.clone())
            .or_default()
            .insert(backend.id.clone(), (backend.address.clone(), false));
        self.record(BalancerCall::Add(group.clone(), backend));
        Ok(())
    }

    async fn wait_healthy(&self, group: &GroupId, id: &InstanceId, _timeout: Duration) -> Result<bool, SeamError> {
        self.record(BalancerCall::WaitHealthy(group.clone(), id.clone()));
        let known = self.backends.lock().expect("balancer lock").get(group).is_some_and(|m| m.contains_key(id));
        Ok(known)
    }

    async fn drain(&self, group: &GroupId, id: &InstanceId, _timeout: Duration) -> Result<DrainReport, SeamError> {
        tracing::debug!(group = %group, backend = %id, "balancer: drain");
        if let Some(entry) = self.backends.lock().expect("balancer lock").get_mut(group).and_then(|m| m.get_mut(id)) {
            entry.1 = true;
        }
        self.record(BalancerCall::Drain(group.clone(), id.clone()));
        Ok(DrainReport { completed: true, inflight_left: 0, waited: Duration::ZERO })
    }

    async fn remove(&self, group: &GroupId, id: &InstanceId) -> Result<(), SeamError> {
        if let Some(m) = self.backends.lock().expect("balancer lock").get_mut(group) {
            m.remove(id);
        }
        self.record(BalancerCall::Remove(group.clone(), id.clone()));
        Ok(())
    }

    async fn unhealthy(&self, group: &GroupId, _now: Timestamp) -> Result<Vec<Unhealthy>, SeamError> {
        let backends = self.backends.lock().expect("balancer lock");
        let failing = self.failing.lock().expect("balancer lock");
        Ok(backends
            .get(group)
            .into_iter()
            .flatten()
            .filter(|(_, (_, draining))| !draining)
            .filter_map(|(id, _)| Some(Unhealthy { id: id.clone(), since: *failing.get(id)? }))
            .collect())
    }

    /// The embedded balancer's semantics, through `add` and `remove` (so they are recorded):
    /// unwanted backends go, a wanted one left draining or moved is removed and added again.
    async fn sync(&self, group: &GroupId, wanted: &[Backend]) -> Result<(), SeamError> {
        let current = self.backends.lock().expect("balancer lock").get(group).cloned().unwrap_or_default();
        for (id, (address, draining)) in &current {
            let keep = wanted.iter().find(|b| &b.id == id);
            if keep.is_none_or(|b| *draining || &b.address != address) {
                self.remove(group, id).await?;
            }
        }
        for b in wanted {
            let known = self.backends.lock().expect("balancer lock").get(group).is_some_and(|m| m.contains_key(&b.id));
            if !known {
                self.add(group, b.clone()).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drained_backend_stops_serving_and_remove_forgets_it() {
        let lb = RecordingBalancer::new();
        let g = GroupId::new("g");
        let a = InstanceId::new("a");
        lb.add(&g, Backend { id: a.clone(), address: "127.0.0.1:1".into(), weight: 1 }).await.unwrap();
        assert!(lb.wait_healthy(&g, &a, Duration::from_secs(1)).await.unwrap());
        assert_eq!(lb.serving(&g), vec![a.clone()]);
        lb.drain(&g, &a, Duration::from_secs(1)).await.unwrap();
        assert!(lb.serving(&g).is_empty());
        lb.remove(&g, &a).await.unwrap();
        assert!(!lb.wait_healthy(&g, &a, Duration::from_secs(1)).await.unwrap());
        assert_eq!(lb.calls().len(), 5);
    }

    #[tokio::test]
    async fn the_call_log_is_bounded() {
        let lb = RecordingBalancer::new();
        let g = GroupId::new("g");
        for _ in 0..(MAX_CALLS + 10) {
            lb.remove(&g, &InstanceId::new("x")).await.unwrap();
        }
        assert!(lb.calls().len() <= MAX_CALLS);
        assert!(lb.calls().len() > MAX_CALLS / 2);
    }
}
