//! [`EmbeddedBalancer`]: many groups, each with its own [`GroupBalancer`], behind the model's
//! `Balancer` and `MetricSource` seams.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_model::{
    Backend, Balancer, DrainReport, GroupId, Instance, InstanceId, MetricSource, Sample, SeamError, Timestamp,
    Unhealthy,
};

use crate::config::LbConfig;
use crate::group::GroupBalancer;

/// The embedded balancer of the daemon: one listener per registered group.
#[derive(Default)]
pub struct EmbeddedBalancer {
    groups: RwLock<HashMap<GroupId, Arc<GroupBalancer>>>,
}

impl EmbeddedBalancer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds the group's listener and returns its address. Registering a registered group again
    /// returns the existing address (the new config is ignored).
    pub async fn register(&self, group: GroupId, cfg: LbConfig) -> std::io::Result<SocketAddr> {
        if let Some(g) = self.group(&group) {
            return Ok(g.local_addr());
        }
        let g = GroupBalancer::bind(group.0.clone(), cfg).await?;
        let existing = {
            let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
            match groups.get(&group) {
                Some(e) => Some(e.local_addr()),
                None => {
                    groups.insert(group, g.clone());
                    None
                }
            }
        };
        match existing {
            Some(addr) => {
                g.shutdown().await; // lost a registration race
                Ok(addr)
            }
            None => Ok(g.local_addr()),
        }
    }

    pub fn group(&self, group: &GroupId) -> Option<Arc<GroupBalancer>> {
        self.groups.read().unwrap_or_else(|e| e.into_inner()).get(group).cloned()
    }

    pub fn groups(&self) -> Vec<GroupId> {
        let mut ids: Vec<GroupId> = self.groups.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Shuts every group down (each lets in-flight requests finish, bounded).
    pub async fn shutdown(&self) {
        let groups: Vec<Arc<GroupBalancer>> =
            self.groups.write().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, g)| g).collect();
        for g in groups {
            g.shutdown().await;
        }
    }

    fn registered(&self, group: &GroupId) -> Result<Arc<GroupBalancer>, SeamError> {
        self.group(group).ok_or_else(|| SeamError::invalid(format!("group {group} has no balancer registered")))
    }
}

impl std::fmt::Debug for EmbeddedBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBalancer").field("groups", &self.groups()).finish()
    }
}

fn address_of(group: &GroupId, backend: &Backend) -> Result<SocketAddr, SeamError> {
    backend.address.parse().map_err(|e| {
        SeamError::invalid(format!(
            "backend {} of group {group}: address {:?} is not ip:port",
            backend.id, backend.address
        ))
        .with_source(e)
    })
}

#[async_trait]
impl Balancer for EmbeddedBalancer {
    async fn add(&self, group: &GroupId, backend: Backend) -> Result<(), SeamError> {
        let g = self.registered(group)?;
        let addr = address_of(group, &backend)?;
        g.add_backend(backend.id.0, addr, backend.weight.max(1));
        Ok(())
    }

    async fn sync(&self, group: &GroupId, wanted: &[Backend]) -> Result<(), SeamError> {
        let g = self.registered(group)?;
        // Every address is checked before anything changes: a bad one changes nothing.
        let wanted = wanted
            .iter()
            .map(|b| Ok((b.id.0.clone(), address_of(group, b)?, b.weight.max(1))))
            .collect::<Result<Vec<_>, SeamError>>()?;
        g.sync_backends(&wanted);
        Ok(())
    }

    async fn wait_healthy(&self, group: &GroupId, id: &InstanceId, timeout: Duration) -> Result<bool, SeamError> {
        Ok(self.registered(group)?.wait_healthy(id.as_str(), timeout).await)
    }

    async fn drain(&self, group: &GroupId, id: &InstanceId, timeout: Duration) -> Result<DrainReport, SeamError> {
        Ok(self.registered(group)?.drain(id.as_str(), timeout).await)
    }

    async fn remove(&self, group: &GroupId, id: &InstanceId) -> Result<(), SeamError> {
        self.registered(group)?.remove_backend(id.as_str());
        Ok(())
    }

    async fn unhealthy(&self, group: &GroupId, now: Timestamp) -> Result<Vec<Unhealthy>, SeamError> {
        Ok(self
            .registered(group)?
            .backends()
            .into_iter()
            .filter(|b| !b.draining)
            .filter_map(|b| Some(Unhealthy { since: now.minus(b.unhealthy_for?), id: InstanceId::new(b.id) }))
            .collect())
    }
}

#[async_trait]
impl MetricSource for EmbeddedBalancer {
    fn name(&self) -> &str {
        "lb"
    }

    /// One sample per member the group's balancer knows; unregistered group: no samples.
    async fn sample(&self, group: &GroupId, members: &[Instance], now: Timestamp) -> Result<Vec<Sample>, SeamError> {
        Ok(self.group(group).map(|g| g.samples(members, now)).unwrap_or_default())
    }
}
