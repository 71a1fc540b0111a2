//! Real lab: DomainStatsSource reads an idle guest below 10 % CPU and a guest running `yes` above
//! 90 %, from cpu.time deltas; memory % from the balloon; no sample on the first reading. That this
//! source and the in-guest SSH sampler agree on a loaded guest is checked where both are
//! dependencies: `crates/flotilla/tests/libvirt_metrics.rs`.
#![cfg(feature = "libvirt")]

mod common;

use std::time::Duration;

use common::*;
use flotilla_model::{Clock, GroupId, Metric, MetricSource, Provider, SystemClock};
use flotilla_provider_libvirt::{DomainStatsSource, LibvirtProvider};
use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_guest_is_low_and_a_guest_running_yes_is_high() {
    require_lab!(Lab::Libvirt);
    let tag = unique("mx");
    let group = GroupId::new(&tag);
    let base = format!("vm-{tag}");
    let _cleanup = Cleanup::new(&base, &[LAB_URI]);
    let state = tempfile::tempdir().unwrap();
    let p = LibvirtProvider::new(
        settings(&[("lab", LAB_URI)], (23200, 23239)),
        state.path(),
        templates(&group, lab_template()),
    )
    .unwrap();
    let name = format!("{base}_1");
    let members = p.create(&group, &spec(&base), std::slice::from_ref(&name)).await.unwrap();
    eprintln!("boot-to-serving: {} ms", members[0].tag("ready_ms").unwrap());
    let src = DomainStatsSource::new(&p);
    assert_eq!(src.name(), "libvirt");
    let clock = SystemClock;

    // let the guest settle (user-data, first balloon stats) before measuring idle
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first = src.sample(&group, &members, clock.now()).await.unwrap();
    assert!(first.is_empty(), "the first reading needs a delta: {first:?}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = src.sample(&group, &members, clock.now()).await.unwrap();
    assert_eq!(idle.len(), 1, "{idle:?}");
    let idle_cpu = idle[0].get(Metric::Cpu).unwrap();
    let mem = idle[0].get(Metric::Mem);
    eprintln!("idle: cpu {idle_cpu:.2}% mem {mem:?}%");
    assert!(idle_cpu < 10.0, "idle guest {idle_cpu}%");
    let mem = mem.expect("balloon stats give memory %");
    assert!(mem > 0.0 && mem < 100.0, "{mem}");

    let (ok, out) = ssh(members[0].tag("ssh_address").unwrap(), "setsid yes >/dev/null 2>&1 </dev/null &");
    assert!(ok, "ssh: {out}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = src.sample(&group, &members, clock.now()).await.unwrap(); // window starts with yes running
                                                                      // cpu.time is the CPU the guest actually got: on this 2-core machine other work (builds, other
                                                                      // guests) can take part of its core, so take the best of a few 5 s windows.
    let mut readings = Vec::new();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let busy = src.sample(&group, &members, clock.now()).await.unwrap();
        let cpu = busy[0].get(Metric::Cpu).unwrap();
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        eprintln!("running yes: cpu {cpu:.2}% mem {:?}% (host loadavg {})", busy[0].get(Metric::Mem), load.trim());
        readings.push(cpu);
        if cpu > 90.0 {
            break;
        }
    }
    let best = readings.iter().cloned().fold(0.0, f64::max);
    assert!(best > 90.0, "busy guest: {readings:?}");

    // a member the source does not know the domain of is absent, not an error
    let mut ghost = members[0].clone();
    ghost.id = flotilla_model::InstanceId::new(format!("{base}_404"));
    let only = src.sample(&group, &[ghost], clock.now()).await.unwrap();
    assert!(only.is_empty());

    let t = tokio::time::Instant::now();
    p.delete(&group, &[members[0].id.clone()]).await.unwrap();
    eprintln!("delete of a busy guest: {:.1}s", t.elapsed().as_secs_f64());
    assert!(!domain_exists(LAB_URI, &name));
}
