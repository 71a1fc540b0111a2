//! The `Provider` on real Nova/Neutron, as the `demo` member user: create, a create interrupted
//! mid-flight and repeated (the controller's kill -9), adoption by a new provider, list cost,
//! delete releasing the floating IP. Plus Nova diagnostics as a metric source (admin).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use flotilla_model::{GroupId, InstanceId, InstanceSpec, InstanceState, Metric, MetricSource, Provider, Timestamp};
use flotilla_provider_openstack::{
    marks, AddressMode, Cloud, DiagnosticsSource, OpenStackProvider, OpenStackSettings, OpenStackTemplate, Service,
};
use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;

fn template(req: &flotilla_provider_openstack::DeployRequest) -> OpenStackTemplate {
    let mut t = OpenStackTemplate::new("cirros", "m1.tiny", req.network.clone());
    t.security_groups = vec![req.security_group.clone()];
    t.keypair = Some(req.keypair.clone());
    t.user_data = Some("#cloud-config\nruncmd: [\"echo hello\"]\n".into());
    t.service_port = 5000;
    t
}

fn provider(cloud: &Cloud, group: &str, t: &OpenStackTemplate, address: AddressMode) -> OpenStackProvider {
    let settings = OpenStackSettings {
        address,
        create_timeout: Duration::from_secs(120),
        delete_timeout: Duration::from_secs(60),
        ..OpenStackSettings::for_cloud(DEMO)
    };
    OpenStackProvider::with_cloud(cloud.clone(), settings, BTreeMap::from([(GroupId::new(group), t.clone())]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_create_is_idempotent_adopts_and_releases_fips_as_member_user() {
    require_lab!(Lab::OpenStack);
    let cloud = connect(DEMO).await;
    let p = prefix("prov");
    let dir = tempfile::tempdir().unwrap();
    let req = request(&p, &pubkey_file(dir.path(), KEY_1));
    let _guard = Guard::for_request(&cloud, &req);
    cloud.ensure_infra(&req, &|_| {}).await.expect("network objects as the demo user");
    let t = template(&req);
    let group = GroupId::new(&p);
    let spec = InstanceSpec { base_name: p.clone(), clone_base: format!("{p}_clone"), vcpus: 1 };
    let name = format!("{p}_1");

    // 1. A create interrupted after the server was requested (the controller dies: kill -9).
    let a = provider(&cloud, &p, &t, AddressMode::Floating);
    let (g2, s2, n2) = (group.clone(), spec.clone(), vec![name.clone()]);
    let task = tokio::spawn(async move { a.create(&g2, &s2, &n2).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while cloud.servers_named(&name).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the server never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
    let _ = task.await;

    // 2. A new provider (new process) retries the same name: the server is adopted, not duplicated.
    let b = provider(&cloud, &p, &t, AddressMode::Floating);
    let calls0 = cloud.api_calls();
    let started = tokio::time::Instant::now();
    let made = b.create(&group, &spec, std::slice::from_ref(&name)).await.expect("create (resumed)");
    eprintln!(
        "resumed create until Running with a FIP: {}, {} API calls",
        secs(started.elapsed()),
        cloud.api_calls() - calls0
    );
    assert_eq!(made.len(), 1);
    let m = &made[0];
    assert_eq!(m.id.as_str(), name);
    assert_eq!(m.state, InstanceState::Running);
    let fip = m.tag("floating_ip").expect("floating ip tag").to_string();
    assert_eq!(m.address.as_deref(), Some(format!("{fip}:5000").as_str()));
    assert_eq!(m.tag("ssh_address"), Some(format!("{fip}:22").as_str()));
    assert!(m.tag("fixed_ip").is_some_and(|ip| ip.starts_with("192.0.2.")));
    assert_eq!(m.tag("vcpus"), Some("1"));
    let server_id = m.tag("server_id").unwrap().to_string();
    // Same name again: nothing new.
    let again = b.create(&group, &spec, std::slice::from_ref(&name)).await.unwrap();
    assert_eq!(again[0].tag("server_id"), Some(server_id.as_str()));
    let servers = cloud.servers_named(&name).await.unwrap();
    assert_eq!(servers.len(), 1, "exactly one server named {name}");
    assert_eq!(servers[0].meta(marks::META_GROUP), Some(p.as_str()));
    assert_eq!(servers[0].meta(marks::META_INSTANCE), Some(name.as_str()));

    // 3. A scale-out create from scratch: seconds and API calls until Running.
    let name2 = format!("{p}_clone_1");
    let calls0 = cloud.api_calls();
    let started = tokio::time::Instant::now();
    let c = b.create(&group, &spec, std::slice::from_ref(&name2)).await.expect("scale-out create");
    eprintln!(
        "scale-out create (floating): {} until Running with its FIP, {} API calls",
        secs(started.elapsed()),
        cloud.api_calls() - calls0
    );
    assert_eq!(c[0].state, InstanceState::Running);

    // 4. A new provider on a new connection lists and adopts both; list cost of an idle group.
    let fresh = connect(DEMO).await;
    let d = provider(&fresh, &p, &t, AddressMode::Floating);
    let listed = d.list(Some(&group)).await.unwrap();
    let mut ids: Vec<&str> = listed.iter().map(|i| i.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, vec![name.as_str(), name2.as_str()]);
    assert!(listed.iter().all(|i| i.state == InstanceState::Running && i.address.is_some()));
    let everyone = d.list(None).await.unwrap();
    assert!(everyone.iter().filter(|i| i.group == group).count() == 2);
    // A listing longer than its page cap is an error, never the first pages alone.
    let mine = format!("^{p}_");
    let paged = [("name", mine.as_str()), ("limit", "1")];
    let e = fresh.list_servers_within(&paged, 1).await.unwrap_err();
    assert!(e.message.contains("more than 1 pages (1 servers so far): refusing a partial list"), "{e}");
    assert_eq!(fresh.list_servers_within(&paged, 5).await.unwrap().len(), 2);
    let calls0 = fresh.api_calls();
    for _ in 0..5 {
        d.list(Some(&group)).await.unwrap();
    }
    let per_list = (fresh.api_calls() - calls0) as f64 / 5.0;
    eprintln!("API calls per list of an idle group: {per_list}");
    assert!(per_list <= 1.0, "{per_list} calls per list");

    // 5. Delete releases the floating IP we allocated and waits until the server is gone.
    let calls0 = cloud.api_calls();
    let started = tokio::time::Instant::now();
    b.delete(&group, &[InstanceId::new(&name), InstanceId::new(&name2)]).await.expect("delete");
    eprintln!("delete of 2 members: {}, {} API calls", secs(started.elapsed()), cloud.api_calls() - calls0);
    assert!(cloud.get_server(&server_id).await.unwrap().is_none_or(|s| s.is_gone()));
    assert!(b.list(Some(&group)).await.unwrap().is_empty());
    let left = cloud.neutron_list("floatingips", &[("floating_ip_address", &fip)]).await.unwrap();
    assert!(left.is_empty(), "floating IP {fip} was released");
    assert!(cloud.our_floating_ips(Some(&p)).await.unwrap().is_empty());
    // Deleting what is gone is fine.
    b.delete(&group, &[InstanceId::new(&name)]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_source_samples_a_lab_server() {
    require_lab!(Lab::OpenStack);
    let cloud = connect(ADMIN).await;
    let p = prefix("diag");
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(&p, &pubkey_file(dir.path(), KEY_1));
    req.floating_ip = false;
    let _guard = Guard::for_request(&cloud, &req);
    cloud.ensure_infra(&req, &|_| {}).await.unwrap();
    let mut t = template(&req);
    t.server_group = Some(format!("{p}-spread"));
    let group = GroupId::new(&p);
    let prov = provider(&cloud, &p, &t, AddressMode::Fixed);
    let spec = InstanceSpec { base_name: p.clone(), ..Default::default() };
    let calls0 = cloud.api_calls();
    let started = tokio::time::Instant::now();
    let m = prov.create(&group, &spec, &[format!("{p}_1")]).await.unwrap();
    eprintln!(
        "scale-out create (fixed): {} until Running, {} API calls",
        secs(started.elapsed()),
        cloud.api_calls() - calls0
    );
    assert!(m[0].address.as_deref().is_some_and(|a| a.starts_with("192.0.2.") && a.ends_with(":5000")));
    assert!(m[0].tag("floating_ip").is_none());

    let src = DiagnosticsSource::new(cloud.clone());
    assert_eq!(src.name(), "nova-diagnostics");
    let s1 = src.sample(&group, &m, Timestamp(1_000)).await.unwrap();
    assert_eq!(s1.len(), 1, "one sample for the lab server: {s1:?}");
    assert!(s1[0].get(Metric::Cpu).is_some_and(|c| (0.0..=100.0).contains(&c)), "{s1:?}");
    assert!(s1[0].get(Metric::Mem).is_some_and(|c| (0.0..=100.0).contains(&c)), "{s1:?}");
    let s2 = src.sample(&group, &m, Timestamp(6_000)).await.unwrap();
    assert_eq!(s2.len(), 1);
    // The same through the provider's own connection.
    let s3 = prov.diagnostics_source().sample(&group, &m, Timestamp(7_000)).await.unwrap();
    assert_eq!(s3.len(), 1);
    prov.delete(&group, &[m[0].id.clone()]).await.unwrap();
    // The server group was made (soft-anti-affinity) and holds nothing now; remove it.
    let groups = cloud.get(Service::Compute, "/os-server-groups").await.unwrap();
    let sg = groups["server_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == format!("{p}-spread").as_str())
        .cloned();
    let sg = sg.expect("server group created");
    assert_eq!(sg["policy"], "soft-anti-affinity");
    cloud.delete(Service::Compute, &format!("/os-server-groups/{}", sg["id"].as_str().unwrap())).await.unwrap();
}
