//! Provider calls, timed and counted for `/metrics`: a wrapper around whatever provider is
//! configured (outside the fault injector, so injected faults count as the errors they are).

use std::sync::Arc;

use async_trait::async_trait;
use flotilla_model::{GroupId, Instance, InstanceId, InstanceSpec, Provider, SeamError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// Labels of a provider call: the provider and the call (`list`, `create`, `delete`).
pub type CallLabels = Vec<(String, String)>;

/// Latency (seconds) and errors of provider calls, shared with the exporter.
#[derive(Clone)]
pub struct ProviderCalls {
    pub seconds: Family<CallLabels, Histogram, fn() -> Histogram>,
    pub errors: Family<CallLabels, Counter>,
}

/// 5 ms to 80 s: a local list takes milliseconds, a cloud create a minute.
fn call_histogram() -> Histogram {
    Histogram::new([0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0])
}

impl Default for ProviderCalls {
    fn default() -> Self {
        ProviderCalls { seconds: Family::new_with_constructor(call_histogram), errors: Family::default() }
    }
}

struct Metered {
    inner: Arc<dyn Provider>,
    calls: ProviderCalls,
}

/// `inner`, with every call recorded in `calls`.
pub fn wrap(inner: Arc<dyn Provider>, calls: ProviderCalls) -> Arc<dyn Provider> {
    Arc::new(Metered { inner, calls })
}

impl Metered {
    async fn time<T>(
        &self,
        call: &str,
        f: impl std::future::Future<Output = Result<T, SeamError>>,
    ) -> Result<T, SeamError> {
        let labels =
            vec![("provider".to_string(), self.inner.name().to_string()), ("call".to_string(), call.to_string())];
        let started = tokio::time::Instant::now();
        let out = f.await;
        self.calls.seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        // Every call's error count exists from its first call (at 0), so a rate over it is defined.
        let errors = self.calls.errors.get_or_create(&labels);
        if out.is_err() {
            errors.inc();
        }
        out
    }
}

#[async_trait]
impl Provider for Metered {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn list(&self, group: Option<&GroupId>) -> Result<Vec<Instance>, SeamError> {
        self.time("list", self.inner.list(group)).await
    }
    async fn create(&self, group: &GroupId, spec: &InstanceSpec, names: &[String]) -> Result<Vec<Instance>, SeamError> {
        self.time("create", self.inner.create(group, spec, names)).await
    }
    async fn delete(&self, group: &GroupId, ids: &[InstanceId]) -> Result<(), SeamError> {
        self.time("delete", self.inner.delete(group, ids)).await
    }
}
