//! `cleanup` deletes only what Flotilla made: an untagged server named like ours and an untagged
//! free floating IP beside them survive.

mod common;

use common::*;
use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_ours_and_leaves_untagged_resources() {
    require_lab!(Lab::OpenStack);
    let cloud = connect(ADMIN).await;
    let p = prefix("clean");
    let dir = tempfile::tempdir().unwrap();
    let req = request(&p, &pubkey_file(dir.path(), KEY_1));
    let mut guard = Guard::for_request(&cloud, &req);
    let rep = cloud.deploy(&req, &|_| {}).await.expect("deploy");
    let our_fip = rep.floating_ip.clone().expect("fip");

    // Beside ours, made directly through the API without any mark.
    let (stranger, stray_fip) = strangers(&cloud, &mut guard, &p, &req.network).await;
    cloud.wait_server(&stranger, std::time::Duration::from_secs(60), |s| s.status == "ACTIVE", &|_| {}).await.unwrap();

    let plan = cloud.plan_cleanup(&p, true).await.unwrap();
    assert_eq!(plan.servers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), vec![rep.server.clone()]);
    assert_eq!(plan.floating_ips.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>(), vec![our_fip.clone()]);
    let done = cloud.execute_cleanup(&plan, std::time::Duration::from_secs(60), &|_| {}).await.unwrap();
    eprintln!("cleanup of 1 server + 1 FIP: {}, {} API calls", secs(done.elapsed), done.api_calls);

    assert!(cloud.get_server(&rep.server_id).await.unwrap().is_none_or(|s| s.is_gone()), "our server is gone");
    let fips = cloud.neutron_list("floatingips", &[("floating_ip_address", &our_fip)]).await.unwrap();
    assert!(fips.is_empty(), "our floating IP is released");
    let s = cloud.get_server(&stranger).await.unwrap().expect("the untagged server is untouched");
    assert_eq!(s.status, "ACTIVE");
    let f = cloud.neutron_list("floatingips", &[("id", &stray_fip)]).await.unwrap();
    assert_eq!(f.len(), 1, "the untagged floating IP is untouched");
    // A second cleanup finds nothing of ours.
    assert!(cloud.plan_cleanup(&p, true).await.unwrap().is_empty());
}
