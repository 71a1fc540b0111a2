//! Errors name what is wrong, carry the kind the control loop acts on, and leave nothing behind.

mod common;

use std::collections::BTreeMap;

use common::*;
use flotilla_model::{ErrorKind, GroupId, InstanceSpec, Provider};
use flotilla_provider_openstack::{
    AddressMode, Cloud, CloudConfig, OpenStackProvider, OpenStackSettings, OpenStackTemplate, Service,
};
use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;

#[tokio::test]
async fn wrong_password_is_named() {
    require_lab!(Lab::OpenStack);
    let cfg = config(DEMO).with_password("certainly-not-the-password");
    let e = Cloud::connect(cfg).await.unwrap_err();
    eprintln!("wrong password: {e}");
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(e.message.contains("refused the credentials of user demo"), "{e}");
    assert!(e.message.contains("wrong username or password"), "{e}");
    assert!(e.message.contains("microstack-demo"), "{e}");
    assert!(!e.message.contains("certainly-not"), "the password must not be in the message: {e}");
}

#[tokio::test]
async fn unknown_cloud_lists_the_known_ones() {
    require_lab!(Lab::OpenStack);
    let e = CloudConfig::load_from(&clouds_yaml(), "nope").unwrap_err();
    eprintln!("unknown cloud: {e}");
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(e.message.contains("unknown cloud \"nope\""), "{e}");
    assert!(e.message.contains("microstack, microstack-demo"), "{e}");
    // Through the provider (lazy connect): the same message at the first call.
    let settings = OpenStackSettings { clouds_file: Some(clouds_yaml()), ..OpenStackSettings::for_cloud("nope") };
    assert!(settings.validate().is_empty());
    let p = OpenStackProvider::new(settings, BTreeMap::new());
    let e = p.list(None).await.unwrap_err();
    assert!(e.message.contains("unknown cloud \"nope\""), "{e}");
}

#[tokio::test]
async fn unreachable_keystone_names_the_url() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    // A clouds.yaml of our own: this needs no lab.
    let dir = tempfile::tempdir().unwrap();
    let clouds = dir.path().join("clouds.yaml");
    std::fs::write(
        &clouds,
        format!(
            "clouds:\n  gone:\n    auth:\n      auth_url: http://127.0.0.1:{port}/v3\n      username: u\n      password: p\n      project_name: p\n      user_domain_name: Default\n      project_domain_name: Default\n    region_name: RegionOne\n"
        ),
    )
    .unwrap();
    let cfg = CloudConfig::load_from(&clouds, "gone").unwrap();
    let e = Cloud::connect(cfg).await.unwrap_err();
    eprintln!("unreachable Keystone: {e}");
    assert_eq!(e.kind, ErrorKind::Transient);
    assert!(e.message.contains(&format!("cannot reach Keystone at http://127.0.0.1:{port}/v3")), "{e}");
}

#[tokio::test]
async fn token_is_reissued_once_on_401() {
    require_lab!(Lab::OpenStack);
    let cloud = connect(ADMIN).await;
    cloud.poison_token().await;
    let before = cloud.api_calls();
    cloud.list_servers(&[("name", "^no-such-server-at-all$")]).await.expect("the call succeeds after re-auth");
    assert_eq!(cloud.api_calls() - before, 3, "401, token, retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_exceeded_is_a_quota_error_and_creates_nothing() {
    require_lab!(Lab::OpenStack);
    let admin = connect(ADMIN).await;
    let demo = connect(DEMO).await;
    let p = prefix("quota");
    let dir = tempfile::tempdir().unwrap();
    let req = request(&p, &pubkey_file(dir.path(), KEY_1));
    let _guard = Guard::for_request(&demo, &req);
    demo.ensure_infra(&req, &|_| {}).await.unwrap();

    let project = demo.project_id().await.unwrap();
    let used = demo.limits().await.unwrap().used_instances.max(0);
    let restore = QuotaGuard::lower(&admin, &project, Service::Compute, "instances", used).await;

    // The provider: Nova refuses with 403 "Quota exceeded": kind Quota (pauses only this group).
    let mut t = OpenStackTemplate::new("cirros", "m1.tiny", req.network.clone());
    t.security_groups = vec![req.security_group.clone()];
    let settings = OpenStackSettings { address: AddressMode::Floating, ..OpenStackSettings::for_cloud(DEMO) };
    let prov = OpenStackProvider::with_cloud(demo.clone(), settings, BTreeMap::from([(GroupId::new(&p), t)]));
    let name = format!("{p}_1");
    let e = prov.create(&GroupId::new(&p), &InstanceSpec::default(), std::slice::from_ref(&name)).await.unwrap_err();
    eprintln!("quota (provider): {e}");
    assert_eq!(e.kind, ErrorKind::Quota, "{e}");
    assert!(e.message.contains("Quota exceeded for instances"), "{e}");
    assert!(e.message.contains(&format!("group {p}")), "{e}");
    assert!(demo.servers_named(&name).await.unwrap().is_empty(), "no server was made");
    assert!(demo.our_floating_ips(Some(&p)).await.unwrap().is_empty(), "no floating IP was made");

    // deploy checks the quota before it creates anything — not even the network of a new prefix.
    let p2 = prefix("quota");
    let req2 = request(&p2, &req.pubkey_file);
    let _guard2 = Guard::for_request(&demo, &req2);
    let e = demo.deploy(&req2, &|_| {}).await.unwrap_err();
    eprintln!("quota (deploy): {e}");
    assert_eq!(e.kind, ErrorKind::Quota, "{e}");
    assert!(e.message.contains("quota exceeded for instances"), "{e}");
    assert!(demo.find_network(&req2.network).await.unwrap().is_none(), "no network was made");
    assert!(demo.keypair(&req2.keypair).await.unwrap().is_none(), "no keypair was made");
    assert!(demo.our_servers(&p2).await.unwrap().is_empty());
    drop(restore);

    // Floating IPs exhausted: deploy refuses before creating anything; the provider's server,
    // created before Neutron said no, is deleted again (not left without its address).
    let used = demo.neutron_list("floatingips", &[("project_id", &project)]).await.unwrap().len() as i64;
    let _restore = QuotaGuard::lower(&admin, &project, Service::Network, "floatingip", used).await;
    let e = demo.deploy(&req2, &|_| {}).await.unwrap_err();
    eprintln!("quota (deploy, floating IPs): {e}");
    assert_eq!(e.kind, ErrorKind::Quota, "{e}");
    assert!(e.message.contains("quota exceeded for floating IPs"), "{e}");
    assert!(demo.find_network(&req2.network).await.unwrap().is_none(), "no network was made");
    let e = prov.create(&GroupId::new(&p), &InstanceSpec::default(), std::slice::from_ref(&name)).await.unwrap_err();
    eprintln!("quota (provider, floating IPs): {e}");
    assert_eq!(e.kind, ErrorKind::Quota, "{e}");
    assert!(e.message.contains("floatingip"), "{e}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !demo.servers_named(&name).await.unwrap().iter().all(|s| s.is_gone()) {
        assert!(tokio::time::Instant::now() < deadline, "the server without a floating IP was not deleted");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(demo.our_floating_ips(Some(&p)).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_flavor_network_are_named_and_nothing_is_made() {
    require_lab!(Lab::OpenStack);
    let cloud = connect(ADMIN).await;
    let p = prefix("miss");
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(&p, &pubkey_file(dir.path(), KEY_1));
    let _guard = Guard::for_request(&cloud, &req);

    req.image = format!("no-such-image-{p}");
    let e = cloud.deploy(&req, &|_| {}).await.unwrap_err();
    eprintln!("image not found: {e}");
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(e.message.contains(&format!("image \"no-such-image-{p}\" not found")), "{e}");
    req.image = "cirros".into();
    req.flavor = "m9.huge".into();
    let e = cloud.deploy(&req, &|_| {}).await.unwrap_err();
    eprintln!("flavor not found: {e}");
    assert!(e.message.contains("flavor \"m9.huge\" not found") && e.message.contains("m1.tiny"), "{e}");
    assert!(cloud.find_network(&req.network).await.unwrap().is_none(), "no network was made");
    assert!(cloud.keypair(&req.keypair).await.unwrap().is_none(), "no keypair was made");
    assert!(cloud.our_servers(&p).await.unwrap().is_empty());

    // The provider: a template naming a missing image / network.
    let group = GroupId::new(&p);
    for (t, needle) in [
        (
            OpenStackTemplate::new(format!("no-such-image-{p}"), "m1.tiny", "external"),
            format!("image \"no-such-image-{p}\" not found"),
        ),
        (
            OpenStackTemplate::new("cirros", "m1.tiny", format!("no-such-net-{p}")),
            format!("network \"no-such-net-{p}\" of group {p} not found"),
        ),
    ] {
        let prov = OpenStackProvider::with_cloud(
            cloud.clone(),
            OpenStackSettings::for_cloud(ADMIN),
            BTreeMap::from([(group.clone(), t)]),
        );
        let e = prov.create(&group, &InstanceSpec::default(), &[format!("{p}_1")]).await.unwrap_err();
        eprintln!("provider: {e}");
        assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
        assert!(e.message.contains(&needle), "{e}");
        assert!(cloud.servers_named(&format!("{p}_1")).await.unwrap().is_empty());
    }
    // No template at all for a group.
    let prov = OpenStackProvider::with_cloud(cloud.clone(), OpenStackSettings::for_cloud(ADMIN), BTreeMap::new());
    let e = prov.create(&group, &InstanceSpec::default(), &[format!("{p}_1")]).await.unwrap_err();
    assert!(e.message.contains("has no openstack template"), "{e}");
}
