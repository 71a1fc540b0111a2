//! The seed-000 scenario on real libvirt guests (the lab of ../shared/libvirt-lab): `flotilla demo
//! --provider libvirt` boots a baseline guest, drives requests through the balancer until a clone
//! boots and joins, holds the split, then hands over. The demo itself fails on any failed request
//! or 5xx; here we also check the split, the timeline, and that no domain or overlay is left.
#![cfg(feature = "libvirt")]

mod support;

use std::process::Command;

use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;
use support::{text, Env};

fn domains() -> String {
    let out = Command::new("virsh").args(["-c", "qemu:///system", "list", "--all", "--name"]).output().unwrap();
    text(&out.stdout)
}

#[test]
fn seed_000_on_libvirt_guests_drops_no_request() {
    require_lab!(Lab::Libvirt);
    let env = Env::serial();
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let api = support::free_port().to_string();
    let out = env.run(&[
        "demo",
        "--provider",
        "libvirt",
        "--listen",
        &listen.to_string(),
        "--split-secs",
        "6",
        "--api",
        &api,
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "demo failed: {}\n{stdout}\n{}", out.status, text(&out.stderr));
    println!("{stdout}");
    for line in [
        "clone joined; the balancer now splits the same load across vm-test_1 and vm-test_clone_1",
        "handover complete: vm-test_1 drained and deleted, vm-test_clone_1 is the primary",
        "member-gone vm-test_1 drained and deleted",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
    // Both guests served during the split.
    let split = stdout.lines().find(|l| l.contains("requests per member during the split")).unwrap();
    for member in ["vm-test_1=", "vm-test_clone_1="] {
        let n: u64 = split.split(member).nth(1).and_then(|r| r.split(',').next()).unwrap().trim().parse().unwrap();
        assert!(n > 0, "{member} got no request: {split}");
    }
    // Nothing left: no domain of the demo, no overlay.
    let left = domains();
    assert!(!left.lines().any(|d| d.starts_with("vm-test_")), "domains left: {left}");
    let overlays = env.path().join("state/demo-libvirt/libvirt");
    let files = std::fs::read_dir(&overlays).map(|d| d.count()).unwrap_or(0);
    assert_eq!(files, 0, "overlays left in {}", overlays.display());
}
