//! `deploy` against the real lab: idempotent network objects, numbered servers, floating IPs,
//! snapshot retention, golden images.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::*;
use flotilla_provider_openstack::{marks, Progress};
use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_twice_creates_only_the_next_server() {
    require_lab!(Lab::OpenStack);
    let cloud = connect(ADMIN).await;
    let p = prefix("dep");
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(&p, &pubkey_file(dir.path(), KEY_1));
    req.router = Some(format!("{p}-router"));
    let _guard = Guard::for_request(&cloud, &req);

    let events = Mutex::new(Vec::new());
    let progress = |e: &Progress| events.lock().unwrap().push(e.clone());
    let first = cloud.deploy(&req, &progress).await.expect("first deploy");
    eprintln!(
        "deploy 1: {} in {}, {} API calls; created {:?}",
        first.server,
        secs(first.elapsed),
        first.api_calls,
        first.created
    );
    assert_eq!(first.server, format!("{p}_1"));
    assert!(first.fixed_ip.as_deref().is_some_and(|ip| ip.starts_with("192.0.2.")), "{first:?}");
    let fip = first.floating_ip.clone().expect("a floating IP");
    assert!(fip.starts_with("203.0.113."), "{fip}");
    assert!(first.ssh_commands[0].ends_with(&format!("cirros@{fip}")), "{:?}", first.ssh_commands);
    for what in ["network", "subnet", "router", "security group", "keypair", "server"] {
        assert!(first.created.iter().any(|c| c.starts_with(what)), "{what} not created: {:?}", first.created);
    }
    {
        let ev = events.lock().unwrap();
        assert!(
            ev.iter().any(|e| matches!(e, Progress::Waiting { what, .. } if what.starts_with("server"))),
            "no progress while waiting"
        );
        assert!(ev.iter().any(
            |e| matches!(e, Progress::Done { what, outcome } if what.starts_with("server") && outcome == "ACTIVE")
        ));
    }

    let second = cloud.deploy(&req, &|_| {}).await.expect("second deploy");
    eprintln!(
        "deploy 2: {} in {}, {} API calls; created {:?}",
        second.server,
        secs(second.elapsed),
        second.api_calls,
        second.created
    );
    assert_eq!(second.server, format!("{p}_2"));
    let created_kinds: Vec<&str> = second.created.iter().map(|c| c.split(' ').next().unwrap()).collect();
    assert!(
        created_kinds.iter().all(|k| *k == "server" || *k == "floating"),
        "the second run created more than a server and its floating IP: {:?}",
        second.created
    );
    assert_ne!(second.floating_ip, first.floating_ip);
    for what in ["network", "subnet", "router", "security group", "keypair"] {
        assert!(second.reused.iter().any(|c| c.starts_with(what)), "{what} not reused: {:?}", second.reused);
    }

    // Every network object exists exactly once.
    let nets = cloud.neutron_list("networks", &[("name", &req.network)]).await.unwrap();
    assert_eq!(nets.len(), 1);
    assert_eq!(cloud.neutron_list("subnets", &[("network_id", &nets[0].id)]).await.unwrap().len(), 1);
    assert_eq!(cloud.neutron_list("routers", &[("name", &req.router_name())]).await.unwrap().len(), 1);
    let sgs = cloud.neutron_list("security-groups", &[("name", &req.security_group)]).await.unwrap();
    assert_eq!(sgs.len(), 1);
    let rules = sgs[0].field("security_group_rules").as_array().unwrap().clone();
    let ingress: Vec<_> = rules.iter().filter(|r| r["direction"] == "ingress").collect();
    assert_eq!(ingress.len(), 2, "ICMP + TCP 22 only: {ingress:?}");
    assert!(ingress.iter().all(|r| r["remote_ip_prefix"] == "198.51.100.7/32"));
    assert!(cloud.keypair(&req.keypair).await.unwrap().is_some());
    let ours = cloud.our_servers(&p).await.unwrap();
    assert_eq!(ours.len(), 2);
    assert!(ours
        .iter()
        .all(|s| s.tags.contains(&marks::group_tag(&p)) && s.meta(marks::META_MANAGED) == Some("deploy")));

    // A free floating IP of ours is reused: the server of deploy 2 goes (its FIP stays, free).
    cloud.delete_server(&second.server_id).await.unwrap();
    cloud.wait_server_gone(&second.server_id, Duration::from_secs(60)).await.unwrap();
    let third = cloud.deploy(&req, &|_| {}).await.expect("third deploy");
    eprintln!(
        "deploy 3: {} in {}, {} API calls; reused {:?}",
        third.server,
        secs(third.elapsed),
        third.api_calls,
        third.reused
    );
    assert_eq!(third.server, format!("{p}_2"), "_2 is free again: the next free N");
    assert_eq!(third.floating_ip, second.floating_ip, "the free FIP of ours is reused");
    assert!(third.reused.iter().any(|r| r.starts_with("floating IP")), "{:?}", third.reused);
    assert!(third.created.iter().all(|c| c.starts_with("server")), "{:?}", third.created);

    // The same keypair name with another key is a clear error, and nothing new is made.
    let dir2 = tempfile::tempdir().unwrap();
    let mut other = req.clone();
    other.pubkey_file = pubkey_file(dir2.path(), KEY_2);
    let e = cloud.deploy(&other, &|_| {}).await.unwrap_err();
    assert!(e.message.contains("already exists with a different public key"), "{e}");
    assert_eq!(cloud.our_servers(&p).await.unwrap().len(), 2);

    // Cleanup: seconds and API calls for the closing note.
    let c = cloud.cleanup(&p, true, &|_| {}).await.unwrap();
    eprintln!(
        "cleanup: {} servers, {} FIPs in {}, {} API calls",
        c.deleted.servers.len(),
        c.deleted.floating_ips.len(),
        secs(c.elapsed),
        c.api_calls
    );
    assert_eq!(c.deleted.servers.len(), 2);
    assert_eq!(c.deleted.floating_ips.len(), 2);
    let left: Vec<(String, String, Option<String>)> =
        cloud.our_servers(&p).await.unwrap().into_iter().map(|s| (s.name, s.status, s.task_state)).collect();
    assert!(left.is_empty(), "still listed after cleanup: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_retention_keeps_exactly_n() {
    require_lab!(Lab::OpenStack);
    let cloud = connect(ADMIN).await;
    let p = prefix("snap");
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(&p, &pubkey_file(dir.path(), KEY_1));
    req.floating_ip = false;
    req.snapshot = true;
    req.retain = 2;
    let _guard = Guard::for_request(&cloud, &req);

    let rep = cloud.deploy(&req, &|_| {}).await.expect("deploy with snapshot");
    let (first_snap, _) = rep.snapshot.clone().expect("a snapshot");
    let server = cloud.find_server(&rep.server).await.unwrap();
    let mut names = vec![first_snap];
    for _ in 0..2 {
        // Snapshot names carry the second: keep them distinct.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (name, _, pruned) = cloud.snapshot_server(&server, &p, 2, Duration::from_secs(60), &|_| {}).await.unwrap();
        names.push(name);
        if names.len() == 3 {
            assert_eq!(pruned, vec![names[0].clone()], "the oldest snapshot goes");
        }
    }
    let left: Vec<String> = cloud.snapshots(&p).await.unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(left, vec![names[2].clone(), names[1].clone()], "exactly the newest 2 are kept");
    let c = cloud.cleanup(&p, true, &|_| {}).await.unwrap();
    assert_eq!(c.deleted.snapshots.len(), 2);
    assert!(cloud.snapshots(&p).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_image_ends_with_the_server_active_again() {
    require_lab!(Lab::OpenStack);
    let cloud = connect(ADMIN).await;
    let p = prefix("gold");
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(&p, &pubkey_file(dir.path(), KEY_1));
    req.floating_ip = false;
    let mut guard = Guard::for_request(&cloud, &req);
    let rep = cloud.deploy(&req, &|_| {}).await.expect("deploy");

    let image_name = format!("{p}-golden");
    let steps = Mutex::new(Vec::new());
    let g = cloud
        .golden_image(&rep.server, &image_name, Duration::from_secs(120), &|e| {
            if let Progress::Done { what, outcome } = e {
                steps.lock().unwrap().push(format!("{what}: {outcome}"));
            }
        })
        .await
        .expect("golden image");
    guard.extra_images.push(g.image_id.clone());
    eprintln!("golden image in {}, {} API calls: {:?}", secs(g.elapsed), g.api_calls, steps.lock().unwrap());
    assert!(!g.reused);
    assert_eq!(g.server_status, "ACTIVE");
    let steps = steps.lock().unwrap().clone();
    assert_eq!(steps.len(), 3, "stop, image, start: {steps:?}");
    assert!(steps[0].ends_with("SHUTOFF") && steps[1].ends_with("active") && steps[2].ends_with("ACTIVE"), "{steps:?}");
    let img = cloud.get_image(&g.image_id).await.unwrap().expect("image");
    assert_eq!(img.status, "active");
    assert_eq!(img.property(marks::META_MANAGED), Some("golden"));
    assert_eq!(cloud.find_server(&rep.server).await.unwrap().status, "ACTIVE");
    // Again: the image is found, nothing is stopped.
    let again = cloud.golden_image(&rep.server, &image_name, Duration::from_secs(60), &|_| {}).await.unwrap();
    assert!(again.reused);
    assert_eq!(again.image_id, g.image_id);
    // A group can be templated on the deployed server, then on the golden image.
    let mut t = cloud.template_of_server(&rep.server).await.unwrap();
    assert_eq!(t.flavor, "m1.tiny");
    assert_eq!(t.network, req.network);
    assert_eq!(t.security_groups, vec![req.security_group.clone()]);
    t.image = image_name.clone();
    assert_eq!(cloud.find_image(&t.image).await.unwrap().id, g.image_id);
    // Cleanup of the prefix never deletes the golden image.
    cloud.cleanup(&p, true, &|_| {}).await.unwrap();
    assert!(cloud.get_image(&g.image_id).await.unwrap().is_some());
}
