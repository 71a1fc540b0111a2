//! Real lab: create → list → a new provider (a restarted controller, with an empty state
//! directory: metadata alone) re-adopts → delete; nothing left; a foreign domain beside ours is
//! never listed, deleted, or created over.
#![cfg(feature = "libvirt")]

mod common;

use std::path::Path;

use common::*;
use flotilla_model::{ErrorKind, GroupId, InstanceId, InstanceState, Provider};
use flotilla_provider_libvirt::LibvirtProvider;
use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_readopt_delete_and_foreign_domains_are_untouched() {
    require_lab!(Lab::Libvirt);
    let tag = unique("lc");
    let group = GroupId::new(&tag);
    let base = format!("vm-{tag}");
    let _cleanup = Cleanup::new(&base, &[LAB_URI]);
    let state = tempfile::tempdir().unwrap();
    let name = format!("{base}_1");
    let foreign = format!("{base}_9");
    define_foreign(LAB_URI, &foreign, state.path());

    let s = settings(&[("lab", LAB_URI)], (23100, 23139));
    let p = LibvirtProvider::new(s.clone(), state.path(), templates(&group, lab_template())).unwrap();
    assert_eq!(p.name(), "libvirt");

    // create
    let t0 = tokio::time::Instant::now();
    let made = p.create(&group, &spec(&base), std::slice::from_ref(&name)).await.unwrap();
    let boot = t0.elapsed();
    assert_eq!(made.len(), 1);
    let m = &made[0];
    assert_eq!(m.id.as_str(), name);
    assert_eq!(m.state, InstanceState::Running);
    let addr = m.address.clone().unwrap();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    for t in ["host", "uri", "ssh_address", "vcpus", "uuid", "overlay", "seed", "fingerprint"] {
        assert!(m.tag(t).is_some(), "tag {t} missing: {:?}", m.tags);
    }
    assert_eq!(m.tag("host"), Some("lab"));
    assert_eq!(m.tag("uri"), Some(LAB_URI));
    assert_eq!(m.tag("vcpus"), Some("1"));
    let overlay = m.tag("overlay").unwrap().to_string();
    let seed = m.tag("seed").unwrap().to_string();
    assert!(Path::new(&overlay).exists() && Path::new(&seed).exists());
    // What may hold secrets is owner-only, and the seed's loose files are gone once packed.
    let dir = Path::new(&seed).parent().unwrap();
    for f in [Path::new(&seed).to_path_buf(), dir.join("domain.xml"), dir.join("member.json")] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    assert!(!dir.join("seed").exists(), "user-data is not left beside the ISO");
    assert!(healthz(&addr).await.contains("200"), "the member serves");
    let (ok, hostname) = ssh(m.tag("ssh_address").unwrap(), "hostname");
    assert!(ok && hostname.trim() == name, "ssh login with the template's key, hostname from meta-data: {hostname}");
    eprintln!(
        "boot-to-serving (define -> /healthz 200): {:.1}s (create call {:.1}s)",
        m.tag("ready_ms").unwrap().parse::<f64>().unwrap() / 1000.0,
        boot.as_secs_f64()
    );

    // list: ours only
    let listed = p.list(Some(&group)).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, m.id);
    assert_eq!(listed[0].state, InstanceState::Running);
    assert_eq!(listed[0].tag("uuid"), m.tag("uuid"));
    let all = p.list(None).await.unwrap();
    assert!(all.iter().all(|i| i.id.as_str() != foreign), "a foreign domain is never listed");

    // create again: idempotent, the same domain
    let again = p.create(&group, &spec(&base), std::slice::from_ref(&name)).await.unwrap();
    assert_eq!(again[0].tag("uuid"), m.tag("uuid"));

    // a create over the foreign name is refused, and it is left as it was
    let e = p.create(&group, &spec(&base), std::slice::from_ref(&foreign)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.message.contains("not Flotilla's"), "{e}");
    assert!(!state.path().join("libvirt").join(&foreign).exists());

    // restart: a new provider with an empty state directory adopts from metadata alone
    drop(p);
    let state2 = tempfile::tempdir().unwrap();
    let p2 = LibvirtProvider::new(s.clone(), state2.path(), templates(&group, lab_template())).unwrap();
    let adopted = p2.list(Some(&group)).await.unwrap();
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    assert_eq!(adopted[0].id, m.id);
    assert_eq!(adopted[0].state, InstanceState::Running);
    assert_eq!(adopted[0].address, m.address);
    assert_eq!(adopted[0].tag("uuid"), m.tag("uuid"));
    assert_eq!(adopted[0].tag("overlay"), Some(overlay.as_str()));
    assert_eq!(adopted[0].created_at, m.created_at);
    let st = p2.hosts_status();
    // (the count is of every group: other users of this libvirtd may have members on it too)
    assert!(st[0].up && st[0].members >= 1, "{st:?}");

    // deleting the foreign domain is refused
    let e = p2.delete(&group, &[InstanceId::new(&foreign)]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(domain_exists(LAB_URI, &foreign));

    // delete through the restarted provider
    let t1 = tokio::time::Instant::now();
    p2.delete(&group, std::slice::from_ref(&m.id)).await.unwrap();
    eprintln!("delete (ACPI shutdown -> undefine -> files): {:.1}s", t1.elapsed().as_secs_f64());
    assert!(!domain_exists(LAB_URI, &name), "domain gone");
    assert!(!Path::new(&overlay).exists(), "overlay gone");
    assert!(!Path::new(&seed).exists(), "ISO gone");
    assert!(!Path::new(&overlay).parent().unwrap().exists(), "member directory gone");
    assert!(p2.list(Some(&group)).await.unwrap().is_empty());
    // idempotent
    p2.delete(&group, std::slice::from_ref(&m.id)).await.unwrap();
    // the foreign domain is still there, untouched
    assert!(domain_exists(LAB_URI, &foreign));
    assert_eq!(virsh(LAB_URI, &["domstate", &foreign]).1.trim(), "shut off");
}
