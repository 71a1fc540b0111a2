//! Groups with a `balancer:` section get the embedded balancer; groups without one have no
//! traffic to route, so their balancer calls are recorded and otherwise do nothing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flotilla_lb::{EmbeddedBalancer, RecordingBalancer};
use flotilla_model::{Backend, Balancer, DrainReport, GroupId, InstanceId, SeamError, Timestamp, Unhealthy};

pub struct BalancerRouter {
    pub embedded: Arc<EmbeddedBalancer>,
    pub unrouted: RecordingBalancer,
}

impl BalancerRouter {
    fn pick(&self, group: &GroupId) -> &dyn Balancer {
        if self.embedded.group(group).is_some() {
            self.embedded.as_ref()
        } else {
            &self.unrouted
        }
    }
}

#[async_trait]
impl Balancer for BalancerRouter {
    async fn add(&self, group: &GroupId, backend: Backend) -> Result<(), SeamError> {
        self.pick(group).add(group, backend).await
    }
    async fn wait_healthy(&self, group: &GroupId, id: &InstanceId, timeout: Duration) -> Result<bool, SeamError> {
        self.pick(group).wait_healthy(group, id, timeout).await
    }
    async fn drain(&self, group: &GroupId, id: &InstanceId, timeout: Duration) -> Result<DrainReport, SeamError> {
        self.pick(group).drain(group, id, timeout).await
    }
    async fn remove(&self, group: &GroupId, id: &InstanceId) -> Result<(), SeamError> {
        self.pick(group).remove(group, id).await
    }
    async fn unhealthy(&self, group: &GroupId, now: Timestamp) -> Result<Vec<Unhealthy>, SeamError> {
        self.pick(group).unhealthy(group, now).await
    }
    async fn sync(&self, group: &GroupId, wanted: &[Backend]) -> Result<(), SeamError> {
        self.pick(group).sync(group, wanted).await
    }
}
