//! [`DomainStatsSource`]: member CPU and memory from the hypervisor, no guest login needed.
//!
//! **Why per-domain calls and not the bulk stats API.** `virConnectGetAllDomainStats` (`virsh
//! domstats`) would read every member in one round trip, but the `virt` crate 0.5's
//! `Connect::get_all_domain_stats` returns untyped raw records and frees only the array, never the
//! records, so every call leaks; using `virt::sys` directly needs `unsafe`, which this workspace
//! forbids. So this source makes the safe per-domain calls instead, per member, all of one host's
//! members in one blocking task: `virDomainGetInfo` (`info().cpu_time`, ns, and the vCPU count) and
//! `virDomainMemoryStats` (`memory_stats(0)`, balloon values in KiB).
//!
//! **Maths.**
//! - CPU % = Δ`cpu_time` / (Δwall × vCPUs) × 100, over the interval since this source's previous
//!   reading of the same domain (matched by UUID), capped at 100. `cpu_time` counts the whole QEMU
//!   process (vCPU and I/O threads), so it can read slightly above the guest's own view. The wall
//!   interval is measured on a monotonic clock right after each reading. The first reading of a
//!   member (or the first after its domain restarted) gives no sample: it needs a delta.
//! - Mem % = (1 − `usable` / `available`) × 100 from the balloon driver's stats: `available` is
//!   the memory the guest sees (its MemTotal), `usable` what it could still use without swapping
//!   (≈ MemAvailable), so this is the seed's `(MemTotal − MemAvailable) / MemTotal`. Guests whose
//!   balloon driver reports no `usable` fall back to `(available − unused) / available` (MemFree
//!   based; counts the page cache as used). No balloon stats: no memory value.
//! - Block I/O (bytes/s of rd+wr) is not reported: [`flotilla_model::Metric`] has no I/O variant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_model::{GroupId, Instance, InstanceId, Metric, MetricSource, Sample, SeamError, Timestamp};
use virt::sys;

use crate::host::{is_no_domain, Host};
use crate::provider::Inner;

/// CPU busy % of a domain over an interval; `None` when there is no usable interval.
pub fn cpu_percent(prev_ns: u64, cur_ns: u64, wall: Duration, vcpus: u32) -> Option<f64> {
    if cur_ns < prev_ns || wall.is_zero() || vcpus == 0 {
        return None;
    }
    let pct = (cur_ns - prev_ns) as f64 / (wall.as_nanos() as f64 * f64::from(vcpus)) * 100.0;
    Some(pct.clamp(0.0, 100.0))
}

/// Memory used % from balloon stats `(tag, KiB)`; see the module docs for the formula.
pub fn mem_percent(stats: &[(u32, u64)]) -> Option<f64> {
    let get = |tag: u32| stats.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v);
    let available = get(sys::VIR_DOMAIN_MEMORY_STAT_AVAILABLE).filter(|a| *a > 0)? as f64;
    let free = match get(sys::VIR_DOMAIN_MEMORY_STAT_USABLE) {
        Some(u) => u as f64,
        None => get(sys::VIR_DOMAIN_MEMORY_STAT_UNUSED)? as f64,
    };
    Some(((1.0 - free / available) * 100.0).clamp(0.0, 100.0))
}

/// One reading of one domain.
#[derive(Debug, Clone)]
struct Reading {
    id: InstanceId,
    uuid: String,
    cpu_ns: u64,
    vcpus: u32,
    at: tokio::time::Instant,
    mem: Vec<(u32, u64)>,
}

#[derive(Debug, Clone)]
struct Prev {
    uuid: String,
    cpu_ns: u64,
    at: tokio::time::Instant,
}

/// Member CPU and memory from libvirt domain stats. Shares the provider's connections.
pub struct DomainStatsSource {
    inner: Arc<Inner>,
    prev: Mutex<HashMap<(GroupId, InstanceId), Prev>>,
}

impl DomainStatsSource {
    pub fn new(provider: &crate::LibvirtProvider) -> Self {
        DomainStatsSource { inner: provider.inner.clone(), prev: Mutex::new(HashMap::new()) }
    }

    fn read_host(
        host: &Arc<Host>,
        items: Vec<(InstanceId, Option<String>)>,
    ) -> impl std::future::Future<Output = Result<Vec<Reading>, SeamError>> + Send + 'static {
        let host = host.clone();
        async move {
            host.call("read domain stats", move |c| {
                let mut out = Vec::new();
                let mut last_err = None;
                for (id, uuid) in items {
                    let one = (|| -> Result<Option<Reading>, virt::error::Error> {
                        let dom = c.lookup_domain_by_name(id.as_str())?;
                        let u = dom.uuid_string()?;
                        if uuid.as_ref().is_some_and(|want| *want != u) || !dom.is_active()? {
                            return Ok(None); // another domain under the name now, or not running
                        }
                        let info = dom.info()?;
                        let at = tokio::time::Instant::now();
                        let mem =
                            dom.memory_stats(0).map(|v| v.iter().map(|m| (m.tag, m.val)).collect()).unwrap_or_default();
                        Ok(Some(Reading {
                            id: id.clone(),
                            uuid: u,
                            cpu_ns: info.cpu_time,
                            vcpus: info.nr_virt_cpu,
                            at,
                            mem,
                        }))
                    })();
                    match one {
                        Ok(Some(r)) => out.push(r),
                        Ok(None) => {}
                        Err(e) if is_no_domain(&e) => {}
                        Err(e) => last_err = Some(e),
                    }
                }
                // Per-member failures leave the member out; a dead connection fails the call (and
                // marks the host down).
                match last_err {
                    Some(e) if out.is_empty() && !c.is_alive().unwrap_or(false) => Err(e),
                    _ => Ok(out),
                }
            })
            .await
        }
    }
}

#[async_trait]
impl MetricSource for DomainStatsSource {
    fn name(&self) -> &str {
        "libvirt"
    }

    async fn sample(&self, group: &GroupId, members: &[Instance], now: Timestamp) -> Result<Vec<Sample>, SeamError> {
        let mut by_host: HashMap<usize, Vec<(InstanceId, Option<String>)>> = HashMap::new();
        for m in members {
            let Some(h) = m.tag("host").and_then(|n| self.inner.hosts.iter().find(|h| h.name == n)) else {
                continue;
            };
            by_host.entry(h.index).or_default().push((m.id.clone(), m.tag("uuid").map(str::to_string)));
        }
        let mut jobs = tokio::task::JoinSet::new();
        for (i, items) in by_host {
            jobs.spawn(Self::read_host(&self.inner.hosts[i], items));
        }
        let mut readings = Vec::new();
        while let Some(r) = jobs.join_next().await {
            match r {
                Ok(Ok(v)) => readings.extend(v),
                Ok(Err(e)) => tracing::debug!(error = %e, "domain stats: host skipped"),
                Err(e) => tracing::warn!(error = %e, "domain stats task failed"),
            }
        }
        let mut prev = self.prev.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for r in readings {
            let key = (group.clone(), r.id.clone());
            let before = prev.insert(key, Prev { uuid: r.uuid.clone(), cpu_ns: r.cpu_ns, at: r.at });
            let Some(before) = before.filter(|b| b.uuid == r.uuid) else { continue };
            let Some(cpu) = cpu_percent(before.cpu_ns, r.cpu_ns, r.at.saturating_duration_since(before.at), r.vcpus)
            else {
                continue;
            };
            let mut s = Sample::new(r.id.clone(), now).with(Metric::Cpu, cpu);
            if let Some(m) = mem_percent(&r.mem) {
                s.set(Metric::Mem, m);
            }
            out.push(s);
        }
        // forget members of this group that are gone
        prev.retain(|(g, id), _| g != group || members.iter().any(|m| &m.id == id));
        out.sort_by(|a, b| a.instance.cmp(&b.instance));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AVAILABLE: u32 = sys::VIR_DOMAIN_MEMORY_STAT_AVAILABLE;
    const USABLE: u32 = sys::VIR_DOMAIN_MEMORY_STAT_USABLE;
    const UNUSED: u32 = sys::VIR_DOMAIN_MEMORY_STAT_UNUSED;

    #[test]
    fn cpu_from_cpu_time_deltas() {
        // the lab's `yes` reading: 10.024867 s of cpu.time over 10.038 s wall, 1 vCPU
        let p = cpu_percent(7_800_356_000, 17_825_223_000, Duration::from_millis(10_038), 1).unwrap();
        assert!((p - 99.87).abs() < 0.05, "{p}");
        // idle: 0.108 s over 10.145 s
        let p = cpu_percent(0, 108_000_000, Duration::from_millis(10_145), 1).unwrap();
        assert!((p - 1.06).abs() < 0.01, "{p}");
        // two vCPUs, one busy
        assert_eq!(cpu_percent(0, 5_000_000_000, Duration::from_secs(5), 2), Some(50.0));
        // capped, and no interval / reset counters give nothing
        assert_eq!(cpu_percent(0, 6_000_000_000, Duration::from_secs(5), 1), Some(100.0));
        assert_eq!(cpu_percent(5, 4, Duration::from_secs(5), 1), None);
        assert_eq!(cpu_percent(0, 4, Duration::ZERO, 1), None);
        assert_eq!(cpu_percent(0, 4, Duration::from_secs(1), 0), None);
    }

    #[test]
    fn mem_from_balloon_stats() {
        // the lab's idle guest: available 81904, usable 49480, unused 42460
        let m = mem_percent(&[(UNUSED, 42460), (AVAILABLE, 81904), (USABLE, 49480)]).unwrap();
        assert!((m - 39.59).abs() < 0.01, "{m}");
        let m = mem_percent(&[(UNUSED, 42460), (AVAILABLE, 81904)]).unwrap();
        assert!((m - 48.16).abs() < 0.01, "{m}");
        assert_eq!(mem_percent(&[(USABLE, 1)]), None);
        assert_eq!(mem_percent(&[(AVAILABLE, 0), (USABLE, 0)]), None);
        assert_eq!(mem_percent(&[]), None);
    }
}
