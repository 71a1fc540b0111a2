//! A real lab guest sampled over SSH: idle and loaded CPU, memory, one TCP connection for many
//! samples, and what sampling costs (this process's CPU, the guest's CPU, latency).

mod common;

use std::time::Duration;

use common::*;
use flotilla_metrics_ssh::{SampleReport, SshSampler};
use flotilla_model::{Metric, MetricSource};
use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;

fn only_sample(r: &SampleReport) -> (f64, f64) {
    assert!(r.failures.is_empty(), "failures: {:?}", r.failures);
    assert_eq!(r.samples.len(), 1, "{r:?}");
    let s = &r.samples[0];
    (s.get(Metric::Cpu).unwrap(), s.get(Metric::Mem).unwrap())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_cpu_idle_and_loaded_memory_one_session_and_cost() {
    require_lab!(Lab::Libvirt);
    let guest = Guest::boot("metrics");
    let pins = tempfile::tempdir().unwrap();
    let sampler = SshSampler::new(settings(), pins.path()).unwrap();
    assert_eq!(sampler.name(), "ssh");
    let g = group();
    let m = member("vm-metrics", &guest.ssh_address());
    let members = [m.clone()];

    // First reading: counters only, no sample, no failure; the host key is pinned.
    let r = sampler.sample_report(&g, &members, now()).await;
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert!(r.samples.is_empty());
    assert_eq!(r.first_readings, std::slice::from_ref(&m.id));
    assert!(sampler.pin_path(&m.id).exists());

    // Idle guest (a few seconds after boot).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle_cpu, idle_mem) = only_sample(&sampler.sample_report(&g, &members, now()).await);
    eprintln!("idle guest: cpu {idle_cpu:.1} %, mem {idle_mem:.1} %");
    assert!(idle_cpu < 10.0, "idle guest reads {idle_cpu} % CPU");
    assert!(idle_mem > 0.0 && idle_mem < 100.0, "mem {idle_mem}");

    // Session reuse: 20 samples (through the MetricSource seam) on the one connection.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = sampler.sample(&g, &members, now()).await.unwrap();
        assert_eq!(s.len(), 1, "every sample after the first reading gives a value");
    }
    assert_eq!(sampler.connections_opened(), 1, "22 samples, one TCP connection");

    // Cost: the guest's idle CPU rate first (libvirt cpu.time, nothing sampling), then 100
    // back-to-back samples.
    let idle_ns0 = guest.cpu_time_ns();
    let idle_t0 = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rate = (guest.cpu_time_ns() - idle_ns0) as f64 / idle_t0.elapsed().as_nanos() as f64;

    let guest_ns0 = guest.cpu_time_ns();
    let cpu_ms0 = process_cpu_ms();
    let t0 = tokio::time::Instant::now();
    let mut latencies_ms = Vec::with_capacity(100);
    let mut guest_busy = Vec::with_capacity(100);
    for _ in 0..100 {
        let t = tokio::time::Instant::now();
        let r = sampler.sample_report(&g, &members, now()).await;
        latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if let Some(s) = r.samples.first() {
            guest_busy.push(s.get(Metric::Cpu).unwrap());
        }
        assert!(r.failures.is_empty(), "{:?}", r.failures);
    }
    let wall = t0.elapsed();
    let cpu_ms = process_cpu_ms() - cpu_ms0;
    let guest_ns = guest.cpu_time_ns() - guest_ns0;
    let guest_extra_ms = (guest_ns as f64 - idle_rate * wall.as_nanos() as f64) / 1e6;
    latencies_ms.sort_by(f64::total_cmp);
    let mean = latencies_ms.iter().sum::<f64>() / latencies_ms.len() as f64;
    let busy_mean = guest_busy.iter().sum::<f64>() / guest_busy.len().max(1) as f64;
    eprintln!(
        "COST 100 samples in {:.2} s on one session: sampler process CPU {cpu_ms:.0} ms ({:.2} ms/sample); \
         latency mean {mean:.1} ms, p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms; guest QEMU cpu.time {:.0} ms \
         (idle rate {:.2} %), {guest_extra_ms:.0} ms above idle ({:.1} ms/sample); guest /proc/stat busy while \
         sampling back-to-back: {busy_mean:.1} %",
        wall.as_secs_f64(),
        cpu_ms / 100.0,
        percentile(&latencies_ms, 0.5),
        percentile(&latencies_ms, 0.95),
        latencies_ms[latencies_ms.len() - 1],
        guest_ns as f64 / 1e6,
        idle_rate * 100.0,
        guest_extra_ms / 100.0,
    );
    assert_eq!(sampler.connections_opened(), 1);

    // Load: `yes` in the guest (over the sampler's own session), then > 90 %.
    let out = sampler.run_command(&g, &m, "setsid yes >/dev/null 2>&1 </dev/null &").await.unwrap();
    assert_eq!(out.exit_status, Some(0), "{out:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    sampler.sample_report(&g, &members, now()).await;
    let ns0 = guest.cpu_time_ns();
    let t0 = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (busy_cpu, busy_mem) = only_sample(&sampler.sample_report(&g, &members, now()).await);
    let libvirt_cpu = (guest.cpu_time_ns() - ns0) as f64 / t0.elapsed().as_nanos() as f64 * 100.0;
    eprintln!(
        "loaded guest: cpu {busy_cpu:.1} % (libvirt cpu.time: {libvirt_cpu:.1} % of its vCPU), mem {busy_mem:.1} %"
    );
    assert!(busy_cpu > 90.0, "guest running `yes` reads {busy_cpu} % CPU");
    assert!(busy_mem > 0.0 && busy_mem < 100.0, "mem {busy_mem}");
    assert_eq!(sampler.connections_opened(), 1, "run_command used the sampling session too");

    // A member that leaves the list has its session closed and its state dropped.
    assert_eq!(sampler.tracked(), 1);
    assert!(sampler.sample(&g, &[], now()).await.unwrap().is_empty());
    assert_eq!(sampler.tracked(), 0);
}
