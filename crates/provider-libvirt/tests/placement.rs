//! Placement across hosts: every strategy on `test:///default` stand-ins (no guest boots there),
//! a refusing URI skipped and reported down, and one real run over two `qemu:///system` entries.
#![cfg(feature = "libvirt")]

mod common;

use common::*;
use flotilla_model::{ErrorKind, GroupId, InstanceId, InstanceState, Provider};
use flotilla_provider_libvirt::{LibvirtProvider, Placement};
use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;

const SIM: &str = "test:///default";

fn host_of(list: &[flotilla_model::Instance], id: &str) -> String {
    list.iter().find(|i| i.id.as_str() == id).and_then(|i| i.tag("host")).unwrap_or("?").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_strategy_places_as_documented_and_skips_a_refusing_host() {
    require_lab!(Lab::Libvirt);
    let tag = unique("pl");
    let group = GroupId::new(&tag);
    let base = format!("vm-{tag}");
    let names = |n: usize| (1..=n).map(|i| format!("{base}_{i}")).collect::<Vec<_>>();

    for (strategy, hosts, max_a, want) in [
        (
            Placement::RoundRobin,
            vec![("sim-a", SIM), ("dead", DEAD_URI), ("sim-b", SIM)],
            None,
            vec!["sim-a", "sim-b", "sim-a", "sim-b"],
        ),
        (
            Placement::FillFirst,
            vec![("dead", DEAD_URI), ("sim-a", SIM), ("sim-b", SIM)],
            Some(2),
            vec!["sim-a", "sim-a", "sim-b", "sim-b"],
        ),
        (
            Placement::MostFree,
            vec![("sim-a", SIM), ("dead", DEAD_URI), ("sim-b", SIM)],
            None,
            vec!["sim-a", "sim-b", "sim-a", "sim-b"],
        ),
    ] {
        let state = tempfile::tempdir().unwrap();
        let mut s = settings(&hosts, (23300, 23339));
        s.placement = strategy;
        for h in s.hosts.iter_mut().filter(|h| h.name == "sim-a") {
            h.max_members = max_a;
        }
        let p = LibvirtProvider::new(s, state.path(), templates(&group, lab_template())).unwrap();
        // one member first, then three in one call: both paths count the members placed so far
        let all = names(4);
        let mut made = p.create(&group, &spec(&base), &all[..1]).await.unwrap();
        made.extend(p.create(&group, &spec(&base), &all[1..]).await.unwrap());
        let placed: Vec<String> = all.iter().map(|n| host_of(&made, n)).collect();
        assert_eq!(placed, want, "{strategy:?}");
        assert!(made.iter().all(|i| i.state == InstanceState::Running));

        let listed = p.list(Some(&group)).await.unwrap();
        let placed: Vec<String> = all.iter().map(|n| host_of(&listed, n)).collect();
        assert_eq!(placed, want, "{strategy:?}: list agrees");
        let ports: std::collections::BTreeSet<&str> = listed.iter().filter_map(|i| i.address.as_deref()).collect();
        assert_eq!(ports.len(), 4, "every member has its own forwarded ports");

        let st = p.hosts_status();
        let dead = st.iter().find(|h| h.name == "dead").unwrap();
        assert!(!dead.up && dead.contacted, "{dead:?}");
        assert!(dead.last_error.as_deref().unwrap_or("").contains("127.0.0.1:1"), "{dead:?}");
        let count = |n: &str| st.iter().find(|h| h.name == n).unwrap().members;
        assert_eq!(
            (count("sim-a"), count("sim-b")),
            (want.iter().filter(|h| **h == "sim-a").count(), want.iter().filter(|h| **h == "sim-b").count())
        );

        let ids: Vec<InstanceId> = all.iter().map(InstanceId::new).collect();
        p.delete(&group, &ids).await.unwrap();
        assert!(p.list(Some(&group)).await.unwrap().is_empty());
        assert_eq!(std::fs::read_dir(state.path().join("libvirt")).unwrap().count(), 0, "no member files left");
    }

    // fill-first with every host full: Quota, nothing made
    let state = tempfile::tempdir().unwrap();
    let mut s = settings(&[("sim-a", SIM)], (23300, 23339));
    s.placement = Placement::FillFirst;
    s.hosts[0].max_members = Some(1);
    let p = LibvirtProvider::new(s, state.path(), templates(&group, lab_template())).unwrap();
    let e = p.create(&group, &spec(&base), &names(2)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Quota, "{e}");
    assert!(e.message.contains("sim-a: full (1/1 members)"), "{e}");
    assert_eq!(p.list(Some(&group)).await.unwrap().len(), 1, "the first one fit");
    assert!(!state.path().join("libvirt").join(format!("{base}_2")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_lab_hosts_round_robin_skipping_a_refusing_one() {
    require_lab!(Lab::Libvirt);
    let tag = unique("pq");
    let group = GroupId::new(&tag);
    let base = format!("vm-{tag}");
    let _cleanup = Cleanup::new(&base, &[LAB_URI]);
    let state = tempfile::tempdir().unwrap();
    let s = settings(&[("lab-a", LAB_URI), ("dead", DEAD_URI), ("lab-b", LAB_URI)], (23400, 23439));
    let p = LibvirtProvider::new(s.clone(), state.path(), templates(&group, lab_template())).unwrap();
    let names = vec![format!("{base}_1"), format!("{base}_2")];
    let t0 = tokio::time::Instant::now();
    let made = p.create(&group, &spec(&base), &names).await.unwrap();
    for m in &made {
        eprintln!(
            "{} on {}: serving {} ms after define (2 booting at once)",
            m.id,
            m.tag("host").unwrap(),
            m.tag("ready_ms").unwrap()
        );
    }
    eprintln!("create of 2: {:.1}s", t0.elapsed().as_secs_f64());
    assert_eq!(host_of(&made, &names[0]), "lab-a");
    assert_eq!(host_of(&made, &names[1]), "lab-b");
    for m in &made {
        assert!(healthz(m.address.as_deref().unwrap()).await.contains("200"));
    }
    // (member counts are of every group: other users of this libvirtd may have members too)
    let st = p.hosts_status();
    assert_eq!(
        st.iter().map(|h| (h.name.as_str(), h.up)).collect::<Vec<_>>(),
        [("lab-a", true), ("dead", false), ("lab-b", true)]
    );
    assert!(st[0].members >= 1 && st[2].members >= 1, "{st:?}");
    assert!(st[1].last_error.is_some(), "{st:?}");

    // a restarted controller attributes each domain to its host entry by the metadata
    let p2 = LibvirtProvider::new(s.clone(), state.path(), templates(&group, lab_template())).unwrap();
    let listed = p2.list(Some(&group)).await.unwrap();
    assert_eq!((host_of(&listed, &names[0]), host_of(&listed, &names[1])), ("lab-a".into(), "lab-b".into()));

    let t1 = tokio::time::Instant::now();
    p.delete(&group, &names.iter().map(InstanceId::new).collect::<Vec<_>>()).await.unwrap();
    eprintln!("delete of 2: {:.1}s", t1.elapsed().as_secs_f64());
    assert!(domains_with_prefix(LAB_URI, &base).is_empty());
}
