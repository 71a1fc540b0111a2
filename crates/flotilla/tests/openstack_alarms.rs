//! Seed 003 on the real lab: Aodh evaluates PromQL against Prometheus (the lab's extras), and its
//! alarms' `http://` actions call a Flotilla receiver, which scales a Flotilla group of Nova
//! servers. Measures the time from the metric step to the new server ACTIVE, and back. Nothing
//! here sends a packet anywhere but 127.0.0.1.

#[path = "../../provider-openstack/tests/common/mod.rs"]
mod oscommon;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use flotilla_provider_openstack::{Cloud, Service};
use flotilla_testkit::lab::{Lab, EXTRAS_PORTS};
use flotilla_testkit::require_lab;
use oscommon::*;
use support::{call, Env};

const ADMIN: &str = "admin-token-0123456789abcdef";

/// Sets a series in the lab's exporter (Prometheus scrapes it every second).
async fn series(line: &str) {
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/metrics", EXTRAS_PORTS.exporter);
    let r = http.post(url).body(line.to_string()).send().await.expect("the lab's exporter");
    assert!(r.status().is_success(), "{line}: {}", r.status());
}

async fn prometheus_has(query: &str) -> bool {
    let url = format!("http://127.0.0.1:{}/api/v1/query", EXTRAS_PORTS.prometheus);
    let r = reqwest::Client::new().get(url).query(&[("query", query)]).send().await;
    let Ok(r) = r else { return false };
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    v["data"]["result"].as_array().is_some_and(|a| !a.is_empty())
}

async fn servers(cloud: &Cloud, group: &str) -> Vec<(String, String)> {
    let mut s: Vec<(String, String)> =
        cloud.our_servers(group).await.unwrap().into_iter().map(|s| (s.name, s.status)).collect();
    s.sort();
    s
}

async fn wait_for(cloud: &Cloud, group: &str, active: usize, env: &Env, limit: Duration) -> Duration {
    let t0 = tokio::time::Instant::now();
    loop {
        let s = servers(cloud, group).await;
        if s.len() == active && s.iter().all(|(_, st)| st == "ACTIVE") {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < limit, "wanted {active} ACTIVE, have {s:?}\n{}", env.log("run.log"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn config(env: &Env, p: &str, api: SocketAddr, net: &str, sg: &str) -> std::path::PathBuf {
    let tokens = env.private_file("api.tokens", &format!("admin {ADMIN}\n"));
    env.file(
        "alarms.yaml",
        &format!(
            r#"
provider:
  kind: openstack
  openstack:
    cloud: {DEMO}
    clouds_file: {clouds}
    poll_interval: 250ms
    create_timeout: 120s
api:
  listen: {api}
  tokens_file: {tokens}
groups:
  - name: {p}
    mode: scale
    min: 1
    max: 3
    interval: 1s
    cooldown_up: 0s
    cooldown_down: 0s
    drain_timeout: 1s
    alarms:
      - {{name: cpu-high, kind: external}}
      - {{name: cpu-low, kind: external}}
    policy:
      kind: alarm
      rules:
        - {{alarm: cpu-high, adjustment: 1, cooldown: 0s}}
        - {{alarm: cpu-low, adjustment: -1, cooldown: 0s}}
    template:
      openstack:
        image: cirros
        flavor: m1.tiny
        network: {net}
        security_groups: [{sg}]
"#,
            clouds = clouds_yaml().display(),
            tokens = tokens.display(),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aodh_alarms_scale_a_nova_group_through_flotilla_receivers() {
    require_lab!(Lab::OpenStackExtras);
    let mut env = Env::new();
    let cloud = connect(DEMO).await;
    let p = prefix("alm");
    let req = request(&p, &pubkey_file(env.path(), KEY_1));
    let mut guard = Guard::for_request(&cloud, &req);
    cloud.ensure_infra(&req, &|_| {}).await.expect("network objects");
    let project = cloud.project_id().await.unwrap();
    // Aodh adds the owner's project to a non-admin alarm's query, and needs the name known first.
    let metric = |v: &str| format!("lab_cpu_util{{project=\"{project}\",server_group=\"{p}\"}} {v}");
    series(&metric("50")).await;
    let query = format!("avg(lab_cpu_util{{server_group=\"{p}\"}})");
    let t0 = tokio::time::Instant::now();
    while !prometheus_has(&query).await {
        assert!(t0.elapsed() < Duration::from_secs(30), "the series never reached Prometheus");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let api = support::free_port();
    let cfg = config(&env, &p, api, &req.network, &req.security_group);
    let log = std::fs::File::create(env.path().join("run.log")).unwrap();
    let mut c = env.cmd(&["run", "-c", cfg.to_str().unwrap()]);
    c.stdout(log.try_clone().unwrap()).stderr(log);
    let run = env.adopt(c.spawn().unwrap());
    wait_for(&cloud, &p, 1, &env, Duration::from_secs(90)).await;

    let auth = format!("Bearer {ADMIN}");
    let r = call(api, "GET", &format!("/api/v1/groups/{p}/receivers"), &[("Authorization", &auth)], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let url = |alarm: &str| {
        r.body.as_array().unwrap().iter().find(|x| x["alarm"] == alarm).unwrap()["url"].as_str().unwrap().to_string()
    };
    for (name, op, threshold) in [("cpu-high", "gt", 70), ("cpu-low", "lt", 20)] {
        let body = serde_json::json!({
            "name": format!("{p}-{name}"), "type": "prometheus",
            "prometheus_rule": {"query": query, "comparison_operator": op, "threshold": threshold},
            "alarm_actions": [url(name)], "ok_actions": [url(name)], "repeat_actions": false,
        });
        let a = cloud.post(Service::Alarming, "/alarms", &body).await.expect("an Aodh alarm");
        guard.extra_alarms.push(a.body["alarm_id"].as_str().unwrap().to_string());
    }
    // Both alarms evaluate to ok at 50, and say so to their receivers.
    let alarms_ok = || async {
        let r = call(api, "GET", &format!("/api/v1/groups/{p}/alarms"), &[("Authorization", &auth)], None).await;
        r.body.as_array().is_some_and(|a| a.iter().all(|x| x["state"] == "ok"))
    };
    let t0 = tokio::time::Instant::now();
    while !alarms_ok().await {
        assert!(t0.elapsed() < Duration::from_secs(60), "Aodh never reported ok\n{}", env.log("run.log"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The step: high load. Aodh fires, its POST reaches the receiver, the group grows.
    let step = tokio::time::Instant::now();
    series(&metric("85")).await;
    wait_for(&cloud, &p, 2, &env, Duration::from_secs(90)).await;
    let out = step.elapsed();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(servers(&cloud, &p).await.len(), 2, "one transition, one server\n{}", env.log("run.log"));

    // Low load: the low alarm fires and one server goes.
    let step = tokio::time::Instant::now();
    series(&metric("10")).await;
    wait_for(&cloud, &p, 1, &env, Duration::from_secs(90)).await;
    let back = step.elapsed();
    eprintln!(
        "Aodh -> Flotilla receiver -> Nova: metric step to a second server ACTIVE {:.1} s; back to one {:.1} s",
        out.as_secs_f64(),
        back.as_secs_f64()
    );

    let ev = call(api, "GET", &format!("/api/v1/events?group={p}&limit=200"), &[("Authorization", &auth)], None).await;
    let aodh = ev.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message"].as_str().unwrap_or("").contains("-> alarm: Aodh alarm"))
        .count();
    assert_eq!(aodh, 2, "high then low went to alarm, by Aodh's word: {}", ev.body);
    series(&metric("delete")).await;
    assert_eq!(env.stop(run).await, Some(0), "{}", env.log("run.log"));
    guard.extra_servers = cloud.our_servers(&p).await.unwrap().into_iter().map(|s| s.id).collect();
}
