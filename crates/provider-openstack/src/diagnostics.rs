//! [`DiagnosticsSource`]: CPU and memory of members from Nova's hypervisor view
//! (`GET /servers/{id}/diagnostics`). Best effort: a member it cannot read is left out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use flotilla_model::{ErrorKind, GroupId, Instance, InstanceId, Metric, MetricSource, Sample, SeamError, Timestamp};
use serde_json::Value;

use crate::client::{enc, Cloud, Service};
use crate::provider::LazyCloud;

enum Handle {
    Ready(Cloud),
    Lazy(Arc<LazyCloud>),
}

/// Reads `/servers/{server_id}/diagnostics` of each running member (the `server_id` tag the
/// provider sets). CPU %: the driver's `utilisation` when it reports one, else the change of the
/// summed `cpu_details[].time` (ns) between two samples over the wall time × vCPUs. Memory %:
/// `memory_details.used / maximum`. Nova's default policy allows this to admins only: a 403 is
/// logged once and the source then returns no samples.
pub struct DiagnosticsSource {
    cloud: Handle,
    /// Per member: (server id, summed CPU ns, when in ms).
    prev: tokio::sync::Mutex<HashMap<InstanceId, (String, f64, u64)>>,
    forbidden: AtomicBool,
}

/// What one diagnostics document says.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Diagnostics {
    /// Summed CPU time, ns.
    pub cpu_time_ns: Option<f64>,
    /// Driver-computed CPU utilisation %, averaged over vCPUs.
    pub cpu_utilisation: Option<f64>,
    pub num_cpus: Option<u32>,
    /// Memory used %.
    pub mem_percent: Option<f64>,
}

impl Diagnostics {
    /// Reads the 2.48+ standard form and, failing that, the legacy libvirt keys.
    pub fn parse(v: &Value) -> Diagnostics {
        let mut d = Diagnostics::default();
        if let Some(cpus) = v["cpu_details"].as_array() {
            let times: Vec<f64> = cpus.iter().filter_map(|c| c["time"].as_f64()).collect();
            if !times.is_empty() {
                d.cpu_time_ns = Some(times.iter().sum());
            }
            let utils: Vec<f64> = cpus.iter().filter_map(|c| c["utilisation"].as_f64()).collect();
            if !utils.is_empty() {
                d.cpu_utilisation = Some(utils.iter().sum::<f64>() / utils.len() as f64);
            }
            d.num_cpus = v["num_cpus"].as_u64().map(|n| n as u32).or(Some(cpus.len() as u32)).filter(|n| *n > 0);
            let max = v["memory_details"]["maximum"].as_f64().unwrap_or(0.0);
            if let Some(used) = v["memory_details"]["used"].as_f64() {
                if max > 0.0 {
                    d.mem_percent = Some((used / max * 100.0).clamp(0.0, 100.0));
                }
            }
        } else if let Some(o) = v.as_object() {
            // Legacy: cpu0_time (ns), memory (KiB), memory-rss / memory-actual (KiB).
            let times: Vec<f64> = o
                .iter()
                .filter(|(k, _)| k.starts_with("cpu") && k.ends_with("_time"))
                .filter_map(|(_, x)| x.as_f64())
                .collect();
            if !times.is_empty() {
                d.cpu_time_ns = Some(times.iter().sum());
                d.num_cpus = Some(times.len() as u32);
            }
            let max = o.get("memory").and_then(Value::as_f64).unwrap_or(0.0);
            if let (Some(rss), true) = (o.get("memory-rss").and_then(Value::as_f64), max > 0.0) {
                d.mem_percent = Some((rss / max * 100.0).clamp(0.0, 100.0));
            }
        }
        d
    }
}

impl DiagnosticsSource {
    pub fn new(cloud: Cloud) -> Self {
        DiagnosticsSource::with(Handle::Ready(cloud))
    }

    pub(crate) fn lazy(cloud: Arc<LazyCloud>) -> Self {
        DiagnosticsSource::with(Handle::Lazy(cloud))
    }

    fn with(cloud: Handle) -> Self {
        DiagnosticsSource { cloud, prev: tokio::sync::Mutex::new(HashMap::new()), forbidden: AtomicBool::new(false) }
    }

    async fn cloud(&self) -> Result<&Cloud, SeamError> {
        match &self.cloud {
            Handle::Ready(c) => Ok(c),
            Handle::Lazy(l) => l.get().await,
        }
    }

    /// One member's diagnostics.
    pub async fn read(&self, server_id: &str) -> Result<Diagnostics, SeamError> {
        let cloud = self.cloud().await?;
        let v = cloud.get(Service::Compute, &format!("/servers/{}/diagnostics", enc(server_id))).await?;
        Ok(Diagnostics::parse(&v))
    }
}

#[async_trait]
impl MetricSource for DiagnosticsSource {
    fn name(&self) -> &str {
        "nova-diagnostics"
    }

    async fn sample(&self, group: &GroupId, members: &[Instance], now: Timestamp) -> Result<Vec<Sample>, SeamError> {
        if self.forbidden.load(Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut prev = self.prev.lock().await;
        prev.retain(|id, _| members.iter().any(|m| &m.id == id));
        for m in members.iter().filter(|m| m.is_running()) {
            let Some(sid) = m.tag("server_id") else { continue };
            let d = match self.read(sid).await {
                Ok(d) => d,
                Err(e) if e.kind == ErrorKind::Invalid && e.message.contains("HTTP 403") => {
                    tracing::warn!(%group, error = %e, "Nova diagnostics are not allowed for these credentials (admin only by default): no samples from nova-diagnostics");
                    self.forbidden.store(true, Ordering::Relaxed);
                    return Ok(Vec::new());
                }
                Err(e) => {
                    tracing::debug!(member = %m.id, error = %e, "no diagnostics");
                    continue;
                }
            };
            let mut s = Sample::new(m.id.clone(), now);
            let vcpus = d.num_cpus.or_else(|| m.tag("vcpus").and_then(|v| v.parse().ok())).unwrap_or(1).max(1);
            let cpu = match (d.cpu_utilisation, d.cpu_time_ns, prev.get(&m.id)) {
                (Some(u), _, _) => Some(u),
                (None, Some(t), Some((psid, pt, pat))) if psid == sid && now.0 > *pat && t >= *pt => {
                    let wall_ns = (now.0 - pat) as f64 * 1e6;
                    Some(((t - pt) / (wall_ns * vcpus as f64) * 100.0).clamp(0.0, 100.0))
                }
                _ => None,
            };
            if let Some(t) = d.cpu_time_ns {
                prev.insert(m.id.clone(), (sid.to_string(), t, now.0));
            }
            if let Some(c) = cpu {
                s.set(Metric::Cpu, c);
            }
            if let Some(mem) = d.mem_percent {
                s.set(Metric::Mem, mem);
            }
            if !s.values.is_empty() {
                out.push(s);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_both_forms() {
        let d = Diagnostics::parse(&json!({
            "cpu_details": [{"id": 0, "time": 17300000000u64, "utilisation": 15}],
            "memory_details": {"maximum": 524288, "used": 131072}, "num_cpus": 1
        }));
        assert_eq!(d.cpu_time_ns, Some(17.3e9));
        assert_eq!(d.cpu_utilisation, Some(15.0));
        assert_eq!(d.mem_percent, Some(25.0));
        let l = Diagnostics::parse(&json!({"cpu0_time": 1e9, "cpu1_time": 3e9, "memory": 2048, "memory-rss": 512}));
        assert_eq!(l.cpu_time_ns, Some(4e9));
        assert_eq!(l.num_cpus, Some(2));
        assert_eq!(l.mem_percent, Some(25.0));
    }
}
