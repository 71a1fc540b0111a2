//! The two CPU sources on one real, loaded lab guest, over the same windows: libvirt domain stats
//! (`DomainStatsSource`, the hypervisor's `cpu.time`) and the in-guest SSH sampler (`SshSampler`,
//! `/proc/stat`). This file lives in the binary's crate because it is the one crate that depends on
//! both adapters.
//!
//! **Why the raw readings may disagree, and what is asserted instead.** QEMU under TCG reports no
//! steal time to the guest. When the host's cores are contended, the guest's vCPU thread waits on
//! the host's run queue; the guest's clock keeps running, so `/proc/stat` inside a guest running
//! `yes` still reads ~100 %, while `cpu.time` counts only the time the thread actually ran (43–89 %
//! has been seen here while other builds ran). So each window also reads the vCPU thread's own
//! scheduler statistics on the host (`/proc/<qemu>/task/<tid>/schedstat`: time run, time waited
//! runnable) and the host's `/proc/stat`, and the test asserts, in every window:
//!
//! - the guest sees itself busy (> 90 %, the `yes` criterion);
//! - the sources agree once that run-queue wait is accounted for:
//!   |ssh − (libvirt + wait)| ≤ 10 points. This holds with or without contention, and still fails
//!   if either source computes its percentage wrong (a wrong vCPU count or interval, say);
//! - in a window where the vCPU thread waited ≤ 5 % (the host had a core for it), the plain check
//!   of the issue: |ssh − libvirt| ≤ 10 points.
//!
//! It takes up to 6 windows and stops after 2 uncontended ones. Measured here (2 cores): alone,
//! ssh 100.0 / libvirt 100.0 with the vCPU waiting 0–0.5 %; with two `yes` hogs on the host, ssh
//! 100.0 / libvirt 61.0–71.3 (raw difference up to 39 points) with the vCPU waiting 30.5–40.0 %,
//! libvirt + wait = 100.8–101.8 %. A host busy in every window leaves only the second check (it
//! says so in the output); that check alone already catches a source that computes wrong.
#![cfg(feature = "libvirt")]

mod lab;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_metrics_ssh::{SshSampler, SshSettings};
use flotilla_model::{Clock, GroupId, InstanceSpec, Metric, MetricSource, Provider, SystemClock};
use flotilla_provider_libvirt::{
    DomainStatsSource, HostSettings, LibvirtProvider, LibvirtSettings, LibvirtTemplate, Placement, PortRange,
};
use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;
use lab::*;

const WINDOW: Duration = Duration::from_secs(4);
const MAX_WINDOWS: usize = 6;
const CLEAN_WAIT_PCT: f64 = 5.0;

/// (run ns, run-queue wait ns) of the QEMU process's vCPU thread (`CPU 0/TCG`).
fn vcpu_schedstat(domain: &str) -> (u64, u64) {
    let pid = std::fs::read_to_string(format!("/run/libvirt/qemu/{domain}.pid")).expect("qemu pid file");
    let pid = pid.trim();
    let mut found = None;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("qemu threads").flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.starts_with("CPU ") {
            assert!(found.is_none(), "one vCPU expected in {domain}");
            let stat = std::fs::read_to_string(t.path().join("schedstat")).expect("schedstat");
            let f: Vec<u64> = stat.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            found = Some((f[0], f[1]));
        }
    }
    found.unwrap_or_else(|| panic!("no vCPU thread in qemu {pid} for {domain}"))
}

/// The host's (busy, total) jiffies over all CPUs, and the CPU count.
fn host_cpu() -> (u64, u64, usize) {
    let text = std::fs::read_to_string("/proc/stat").unwrap();
    let f: Vec<u64> = text.lines().next().unwrap().split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = f.iter().take(8).sum();
    let idle = f[3] + f[4];
    let cpus = text.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count();
    (total - idle, total, cpus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libvirt_and_ssh_cpu_agree_on_a_loaded_guest_once_run_queue_wait_is_counted() {
    require_lab!(Lab::Libvirt);
    let tag = unique("agree");
    let _domains = DomainGuard::new(&tag);
    let _serial = support::serial(); // no CPU-heavy test of this workspace runs meanwhile
    let state = tempfile::tempdir().unwrap();
    let group = GroupId::new(&tag);
    let mut tpl = LibvirtTemplate::new(format!("{BUILD}/base.qcow2"));
    tpl.kernel = Some(format!("{BUILD}/vmlinux").into());
    tpl.initrd = Some(format!("{BUILD}/initrd.img").into());
    tpl.ssh_authorized_key = Some(format!("{BUILD}/id_ed25519.pub"));
    let settings = LibvirtSettings {
        hosts: vec![HostSettings { name: "lab".into(), uri: LAB_URI.into(), max_members: None }],
        placement: Placement::RoundRobin,
        ports: Some(PortRange { first: 24200, last: 24219 }),
        addresses: None,
        start_timeout: Duration::from_secs(120),
        shutdown_timeout: Duration::from_secs(10),
    };
    let p = LibvirtProvider::new(settings, state.path(), BTreeMap::from([(group.clone(), tpl)])).unwrap();
    let spec = InstanceSpec { base_name: tag.clone(), clone_base: format!("{tag}_clone"), vcpus: 1 };
    let name = format!("{tag}_1");
    let members = p.create(&group, &spec, std::slice::from_ref(&name)).await.unwrap();
    let libvirt = DomainStatsSource::new(&p);
    let ssh = SshSampler::new(SshSettings::new(format!("{BUILD}/id_ed25519")), &state.path().join("pins")).unwrap();
    let clock = SystemClock;

    let out = ssh.run_command(&group, &members[0], "setsid yes >/dev/null 2>&1 </dev/null &").await.unwrap();
    assert_eq!(out.exit_status, Some(0), "{out:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Window boundaries: both sources read together, with the vCPU thread's and the host's counters.
    let mut prev = (vcpu_schedstat(&name), host_cpu());
    let (a, b) = tokio::join!(libvirt.sample(&group, &members, clock.now()), ssh.sample(&group, &members, clock.now()));
    assert!(a.unwrap().is_empty() && b.unwrap().is_empty(), "first readings give no sample");
    let mut t_prev = tokio::time::Instant::now();
    let (mut clean, mut windows) = (0, Vec::new());
    for _ in 0..MAX_WINDOWS {
        tokio::time::sleep(WINDOW).await;
        let now = (vcpu_schedstat(&name), host_cpu());
        let (a, b) =
            tokio::join!(libvirt.sample(&group, &members, clock.now()), ssh.sample(&group, &members, clock.now()));
        let wall_ns = t_prev.elapsed().as_nanos() as f64;
        t_prev = tokio::time::Instant::now();
        let cpu = |s: Vec<flotilla_model::Sample>| s.first().and_then(|s| s.get(Metric::Cpu)).expect("a CPU sample");
        let (lv, gs) = (cpu(a.unwrap()), cpu(b.unwrap()));
        let ((run0, wait0), (busy0, total0, cpus)) = prev;
        let ((run1, wait1), (busy1, total1, _)) = now;
        let run = (run1 - run0) as f64 / wall_ns * 100.0;
        let wait = (wait1 - wait0) as f64 / wall_ns * 100.0;
        let host_busy_cores = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64 * cpus as f64;
        prev = now;
        eprintln!(
            "window: ssh (guest /proc/stat) {gs:.1} %, libvirt (cpu.time) {lv:.1} %, difference {:.1}; vCPU thread \
             ran {run:.1} %, waited runnable {wait:.1} %; libvirt + wait = {:.1} %; host busy {host_busy_cores:.2} of \
             {cpus} cores",
            gs - lv,
            lv + wait
        );
        windows.push((gs, lv, wait));
        assert!(gs > 90.0, "the guest running `yes` reads {gs:.1} % over SSH");
        assert!(
            (gs - (lv + wait)).abs() <= 10.0,
            "the sources disagree beyond the host's run-queue wait: ssh {gs:.1} %, libvirt {lv:.1} %, wait {wait:.1} %"
        );
        if wait <= CLEAN_WAIT_PCT {
            assert!((gs - lv).abs() <= 10.0, "uncontended window, yet ssh {gs:.1} % vs libvirt {lv:.1} %");
            clean += 1;
            if clean == 2 {
                break;
            }
        }
    }
    if clean == 0 {
        eprintln!(
            "note: the host was contended in every window (vCPU run-queue wait > {CLEAN_WAIT_PCT} %): only the \
             wait-adjusted agreement was checked: (ssh, libvirt, wait) = {windows:?}"
        );
    }

    p.delete(&group, &[members[0].id.clone()]).await.unwrap();
    assert!(domains_with_prefix(&tag).is_empty());
    assert!(support::files_under(&state.path().join("libvirt")).is_empty());
}
