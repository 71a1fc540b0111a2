//! Bad input gives a clear error naming the field, and nothing is left half-created: no domain, no
//! member directory.
#![cfg(feature = "libvirt")]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use flotilla_model::{ErrorKind, GroupId, Provider};
use flotilla_provider_libvirt::{LibvirtProvider, LibvirtSettings, LibvirtTemplate};
use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;

const SIM: &str = "test:///default";

/// Nothing of the group exists: no domain with the prefix, no member files.
fn assert_nothing_left(state: &Path, prefix: &str) {
    assert!(
        domains_with_prefix(LAB_URI, prefix).is_empty(),
        "domains left: {:?}",
        domains_with_prefix(LAB_URI, prefix)
    );
    let dir = state.join("libvirt");
    let left: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "files left in {}: {left:?}", dir.display());
}

fn paths(v: &[(String, String)]) -> Vec<&str> {
    v.iter().map(|(p, _)| p.as_str()).collect()
}

async fn create_err(
    s: LibvirtSettings,
    state: &Path,
    group: &GroupId,
    t: LibvirtTemplate,
    name: &str,
) -> flotilla_model::SeamError {
    let p = LibvirtProvider::new(s, state, templates(group, t)).unwrap();
    p.create(group, &spec(name), &[name.to_string()]).await.unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_problems_name_the_field_and_create_nothing() {
    require_lab!(Lab::Libvirt);
    let tag = unique("bt");
    let group = GroupId::new(&tag);
    let name = format!("vm-{tag}_1");
    let _cleanup = Cleanup::new(&format!("vm-{tag}"), &[LAB_URI]);
    let state = tempfile::tempdir().unwrap();
    let s = settings(&[("lab", LAB_URI)], (23600, 23639));

    // no image file
    let mut t = lab_template();
    t.image = "/nonexistent/flotilla/base.qcow2".into();
    let v = t.validate(2, &s);
    assert_eq!(paths(&v), ["image"], "{v:?}");
    assert!(v[0].1.contains("/nonexistent/flotilla/base.qcow2: no such file"), "{v:?}");
    let e = create_err(s.clone(), state.path(), &group, t, &name).await;
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert!(e.message.contains("template.libvirt.image: /nonexistent/flotilla/base.qcow2: no such file"), "{e}");
    assert_nothing_left(state.path(), &name);

    // a domain XML template without a disk
    let xml = state.path().join("nodisk.xml");
    std::fs::write(&xml, flotilla_provider_libvirt::xml::BUILTIN_QEMU_TEMPLATE.replace("@DISK@", "/srv/shared.qcow2"))
        .unwrap();
    let mut t = lab_template();
    t.domain_xml = Some(xml.clone());
    let v = t.validate(2, &s);
    assert_eq!(paths(&v), ["domain_xml"], "{v:?}");
    assert!(v[0].1.contains("no @DISK@ placeholder"), "{v:?}");
    let e = create_err(s.clone(), state.path(), &group, t, &name).await;
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert!(e.message.contains("template.libvirt.domain_xml") && e.message.contains("@DISK@"), "{e}");
    std::fs::remove_file(&xml).unwrap();
    assert_nothing_left(state.path(), &name);

    // user_data and user_data_file both set
    let ud = state.path().join("user-data");
    std::fs::write(&ud, "#cloud-config\n").unwrap();
    let mut t = lab_template();
    t.user_data = Some("#!/bin/sh\necho hi\n".into());
    t.user_data_file = Some(ud.clone());
    let v = t.validate(2, &s);
    assert_eq!(paths(&v), ["user_data"], "{v:?}");
    assert!(v[0].1.contains("not both"));
    let e = create_err(s.clone(), state.path(), &group, t, &name).await;
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert!(e.message.contains("template.libvirt.user_data: set `user_data` or `user_data_file`, not both"), "{e}");
    std::fs::remove_file(&ud).unwrap();
    assert_nothing_left(state.path(), &name);

    // an environment variable the user-data needs is not set
    let mut t = lab_template();
    t.user_data = Some("#!/bin/sh\necho ${FLOTILLA_LIBVIRT_TEST_UNSET}\n".into());
    let e = create_err(s.clone(), state.path(), &group, t, &name).await;
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert!(e.message.contains("template.libvirt.user_data: ${FLOTILLA_LIBVIRT_TEST_UNSET} is not set"), "{e}");
    assert_nothing_left(state.path(), &name);

    // a group without a template
    let p = LibvirtProvider::new(s.clone(), state.path(), Default::default()).unwrap();
    let e = p.create(&group, &spec(&name), std::slice::from_ref(&name)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert!(e.message.contains("no libvirt template"), "{e}");
    assert_nothing_left(state.path(), &name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_uri_is_named_and_nothing_is_made() {
    require_lab!(Lab::Libvirt);
    let tag = unique("bu");
    let group = GroupId::new(&tag);
    let name = format!("vm-{tag}_1");
    let state = tempfile::tempdir().unwrap();
    let s = settings(&[("far", DEAD_URI)], (23640, 23679));
    let p = LibvirtProvider::new(s, state.path(), templates(&group, lab_template())).unwrap();
    let e = p.create(&group, &spec(&name), std::slice::from_ref(&name)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.message.contains("host `far` (hosts[0].uri = qemu+tcp://127.0.0.1:1/system)"), "{e}");
    assert!(e.message.contains("Connection refused"), "{e}");
    let e = p.list(Some(&group)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(e.message.contains("hosts[0].uri = qemu+tcp://127.0.0.1:1/system"), "{e}");
    let st = p.hosts_status();
    assert!(!st[0].up && st[0].last_error.as_deref().is_some_and(|m| m.contains("Connection refused")), "{st:?}");
    assert_nothing_left(state.path(), &name);

    // and a URI that is not one at all is caught by validation, naming the field
    let mut s = settings(&[("ok", LAB_URI), ("typo", "qemu/system")], (23640, 23679));
    let v = s.validate();
    assert_eq!(paths(&v), ["hosts[1].uri"], "{v:?}");
    s.hosts.clear();
    let e = LibvirtProvider::new(s, state.path(), Default::default()).err().unwrap();
    assert!(e.message.contains("provider.hosts: at least one host"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_range_smaller_than_two_per_member() {
    require_lab!(Lab::Libvirt);
    let tag = unique("bp");
    let group = GroupId::new(&tag);
    let base = format!("vm-{tag}");
    let state = tempfile::tempdir().unwrap();
    let s = settings(&[("sim", SIM)], (23680, 23682)); // 3 ports: room for 1 member
    let v = lab_template().validate(2, &s);
    assert_eq!(paths(&v), ["max"], "{v:?}");
    assert!(v[0].1.contains("max is 2") && v[0].1.contains("23680-23682") && v[0].1.contains("room for 1"), "{v:?}");
    let v = s.validate_pool_for(2);
    assert_eq!(paths(&v), ["ports"], "{v:?}");

    // at run time the second member finds no ports: Quota, and nothing of it is made
    let p = LibvirtProvider::new(s, state.path(), templates(&group, lab_template())).unwrap();
    let names = vec![format!("{base}_1"), format!("{base}_2")];
    let e = p.create(&group, &spec(&base), &names).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Quota, "{e}");
    assert!(e.message.contains("provider.ports 23680-23682"), "{e}");
    let listed = p.list(Some(&group)).await.unwrap();
    assert_eq!(listed.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [names[0].as_str()]);
    assert!(!state.path().join("libvirt").join(&names[1]).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_after_define_are_rolled_back() {
    require_lab!(Lab::Libvirt);
    let tag = unique("bf");
    let group = GroupId::new(&tag);
    let name = format!("vm-{tag}_1");
    let _cleanup = Cleanup::new(&format!("vm-{tag}"), &[LAB_URI]);
    let state = tempfile::tempdir().unwrap();

    // QEMU cannot start: the "kernel" is not one
    let s = settings(&[("lab", LAB_URI)], (23700, 23739));
    let mut t = lab_template();
    t.kernel = Some(format!("{BUILD}/id_ed25519.pub").into());
    assert!(t.validate(1, &s).is_empty());
    let e = create_err(s.clone(), state.path(), &group, t, &name).await;
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    eprintln!("start failure: {e}");
    assert!(
        e.message.contains(&format!("start {name}")) && e.message.contains("domain undefined, files removed"),
        "{e}"
    );
    assert_nothing_left(state.path(), &name);

    // the guest boots but its service never answers (wrong guest port): removed after start_timeout
    let mut s = s;
    s.start_timeout = Duration::from_secs(15);
    let mut t = lab_template();
    t.service_port = 9999;
    let t0 = tokio::time::Instant::now();
    let e = create_err(s, state.path(), &group, t, &name).await;
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    eprintln!("never serving: {e}");
    assert!(
        e.message.contains("no 200 from /healthz within 15s") && e.message.contains("domain and files removed"),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(40));
    assert_nothing_left(state.path(), &name);
}
