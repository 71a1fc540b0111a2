//! A quota refusal on the real OpenStack lab pauses only that group, says why in `flotilla
//! status`, and leaves nothing half-made (no extra server, no orphan floating IP). Its own test
//! binary: it lowers the member project's quota, which the other lab tests must not see.

#[path = "../../provider-openstack/tests/common/mod.rs"]
mod oscommon;
mod support;

use std::time::Duration;

use flotilla_provider_openstack::Service;
use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;
use oscommon::*;
use support::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_exceeded_pauses_the_group_with_the_reason_in_status() {
    require_lab!(Lab::OpenStack);
    let mut env = Env::new();
    let admin = connect(ADMIN).await;
    let demo = connect(DEMO).await;
    let p = prefix("quota");
    let req = request(&p, &pubkey_file(env.path(), KEY_1));
    let _guard = Guard::for_request(&demo, &req);
    demo.ensure_infra(&req, &|_| {}).await.unwrap();
    let project = demo.project_id().await.unwrap();
    let used = demo.limits().await.unwrap().used_instances.max(0);
    // Room for one more server: a group of min 2 gets its first member and is refused the second.
    let _restore = QuotaGuard::lower(&admin, &project, Service::Compute, "instances", used + 1).await;

    let cfg = env.file(
        "quota.yaml",
        &format!(
            r#"
provider:
  kind: openstack
  openstack: {{ cloud: {DEMO}, clouds_file: {clouds}, address: floating, poll_interval: 500ms }}
groups:
  - name: {p}
    mode: scale
    min: 2
    max: 2
    interval: 1s
    policy: {{ metric: cpu, high: 80, low: 20 }}
    template:
      openstack: {{ image: cirros, flavor: m1.tiny, network: {net}, security_groups: [{sg}] }}
"#,
            clouds = clouds_yaml().display(),
            net = req.network,
            sg = req.security_group
        ),
    );
    let run = env.spawn(&["run", "-c", cfg.to_str().unwrap()], "run.log", None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let reason = loop {
        let st = env.status();
        let events = st["groups"][0]["events"].as_array().cloned().unwrap_or_default();
        if let Some(e) = events.iter().find(|e| e["message"].as_str().is_some_and(|m| m.starts_with("group paused"))) {
            break e["message"].as_str().unwrap().to_string();
        }
        assert!(tokio::time::Instant::now() < deadline, "no pause recorded: {st}\n{}", env.log("run.log"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("status says: {reason}");
    assert!(reason.starts_with("group paused for 300s: quota: ") && reason.contains("uota"), "{reason}");
    // Nothing half-made: no server beyond what the quota allowed, every floating IP of ours attached.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let servers = demo.our_servers(&p).await.unwrap();
    assert!(servers.len() <= 1, "{:?}", servers.iter().map(|s| &s.name).collect::<Vec<_>>());
    let fips = demo.our_floating_ips(Some(&p)).await.unwrap();
    assert_eq!(fips.len(), servers.len(), "no orphan floating IP");
    assert!(fips.iter().all(|f| !f.field("port_id").is_null()), "every floating IP of ours is attached");
    // Paused, not crashed: the daemon is still running and stops cleanly.
    assert_eq!(env.stop(run).await, Some(0), "{}", env.log("run.log"));
}
