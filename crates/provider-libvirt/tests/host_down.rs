//! Real lab: a host that goes down (its connection cut, its guest still running) is skipped by
//! placement, its member is reported failed (not forgotten, not deleted, not created twice), also
//! by a controller restarted meanwhile; when it comes back the provider reconnects by itself.
#![cfg(feature = "libvirt")]

mod common;

use std::time::Duration;

use common::*;
use flotilla_model::{ErrorKind, GroupId, InstanceId, InstanceState, Provider};
use flotilla_provider_libvirt::LibvirtProvider;
use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;

const SIM: &str = "test:///default";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_going_down_and_coming_back() {
    require_lab!(Lab::Libvirt);
    let tag = unique("hd");
    let group = GroupId::new(&tag);
    let base = format!("vm-{tag}");
    let _cleanup = Cleanup::new(&base, &[LAB_URI]);
    let state = tempfile::tempdir().unwrap();
    let proxy = LibvirtProxy::start(23590).await;
    let s = settings(&[("sim", SIM), ("lab", &proxy.uri())], (23500, 23539));
    let p = LibvirtProvider::new(s.clone(), state.path(), templates(&group, lab_template())).unwrap();
    let names: Vec<String> = (1..=3).map(|i| format!("{base}_{i}")).collect();

    // round-robin: sim, lab (a real guest, through the proxy)
    let made = p.create(&group, &spec(&base), &names[..2]).await.unwrap();
    assert_eq!(made[0].tag("host"), Some("sim"));
    assert_eq!(made[1].tag("host"), Some("lab"));
    assert!(healthz(made[1].address.as_deref().unwrap()).await.contains("200"));

    // cut the connection: the guest keeps running
    proxy.stop().await;
    let listed = p.list(Some(&group)).await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0].state, InstanceState::Running);
    // Cannot tell, not failed: the guest may well serve; nothing repairs it by deletion.
    match &listed[1].state {
        InstanceState::Unknown(why) => assert!(
            why.starts_with("host down: host `lab` (hosts[1].uri = qemu+tcp://127.0.0.1:23590/system)"),
            "{why}"
        ),
        s => panic!("{s:?}"),
    }
    assert_eq!(listed[1].tag("uuid"), made[1].tag("uuid"), "the last known view");
    let st = p.hosts_status();
    assert!(!st[1].up && st[1].last_error.is_some(), "{st:?}");
    assert!(st[0].up);

    // not created twice, not deleted, and new members go elsewhere
    let e = p.create(&group, &spec(&base), &names[1..2]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    let e = p.delete(&group, &[InstanceId::new(&names[1])]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(domain_exists(LAB_URI, &names[1]));
    let third = p.create(&group, &spec(&base), &names[2..]).await.unwrap();
    assert_eq!(third[0].tag("host"), Some("sim"), "the down host is skipped");

    // a controller restarted while the host is down still reports its member (from member.json)
    let p2 = LibvirtProvider::new(s.clone(), state.path(), templates(&group, lab_template())).unwrap();
    let listed2 = p2.list(Some(&group)).await.unwrap();
    let m = listed2.iter().find(|i| i.id.as_str() == names[1]).expect("member of the down host is listed");
    assert!(matches!(&m.state, InstanceState::Unknown(w) if w.contains("host down")), "{m:?}");
    drop(p2);

    // back up: the provider reconnects after its backoff
    let proxy = LibvirtProxy::start(proxy.port).await;
    let t0 = tokio::time::Instant::now();
    loop {
        let l = p.list(Some(&group)).await.unwrap();
        let m = l.iter().find(|i| i.id.as_str() == names[1]).unwrap();
        if m.state == InstanceState::Running {
            eprintln!("reconnected after {:.1}s", t0.elapsed().as_secs_f64());
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(70), "no reconnect: {m:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(p.hosts_status()[1].up);

    let t1 = tokio::time::Instant::now();
    p.delete(&group, &names.iter().map(InstanceId::new).collect::<Vec<_>>()).await.unwrap();
    eprintln!("delete of 3 (1 real): {:.1}s", t1.elapsed().as_secs_f64());
    assert!(p.list(Some(&group)).await.unwrap().is_empty());
    assert!(!domain_exists(LAB_URI, &names[1]));
    drop(proxy);
}
