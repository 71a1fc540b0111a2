//! Autoscaling groups on the real OpenStack lab, through `flotilla run`: seed 000's handover with a
//! controller `kill -9` while the clone is being created, and seed 002's group grown from a golden
//! image. The lab has no data plane (servers go ACTIVE but nothing boots), so the samples come
//! from the push endpoint, the way an outside monitor would send them. Runs as the member user.
//! The lab's floating IPs are API data only: nothing here sends a packet to them.

#[path = "../../provider-openstack/tests/common/mod.rs"]
mod oscommon;
mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use flotilla_provider_openstack::{Cloud, DeployRequest};
use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;
use oscommon::*;
use support::{signal, Env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "ft-push-token-0123456789";

/// Pushes `cpu` (and optionally `requests`) for each named member; returns the HTTP status.
async fn push(addr: SocketAddr, group: &str, members: &[&str], metric: &str, value: f64) -> u16 {
    let samples: Vec<serde_json::Value> =
        members.iter().map(|m| serde_json::json!({ "member": m, metric: value, "mem": 20.0 })).collect();
    let body = serde_json::json!({ "samples": samples }).to_string();
    let req = format!(
        "POST /v1/groups/{group}/samples HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else { return 0 };
    if s.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply).await;
    reply.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The network objects a group's servers use (made once, by the library, as `deploy` would).
async fn infra(cloud: &Cloud, p: &str, dir: &std::path::Path) -> (DeployRequest, Guard) {
    let req = request(p, &pubkey_file(dir, KEY_1));
    let guard = Guard::for_request(cloud, &req);
    cloud.ensure_infra(&req, &|_| {}).await.expect("network objects");
    (req, guard)
}

fn config(p: &str, req: &DeployRequest, push: SocketAddr, policy: &str, image: &str, mode: &str) -> String {
    format!(
        r#"
provider:
  kind: openstack
  openstack:
    cloud: {DEMO}
    clouds_file: {clouds}
    address: floating
    poll_interval: 500ms
    create_timeout: 120s
metrics:
  sources: [push]
  push:
    listen: {push}
    token_env: FT_PUSH_TOKEN
    max_age: 5s
groups:
  - name: {p}
    mode: {mode}
    min: 1
    max: 2
    interval: 1s
    stale_after: 5s
    cooldown_up: 0s
    cooldown_down: 0s
    policy: {policy}
    template:
      openstack:
        image: {image}
        flavor: m1.tiny
        network: {net}
        security_groups: [{sg}]
"#,
        clouds = clouds_yaml().display(),
        net = req.network,
        sg = req.security_group,
    )
}

/// Names of the group's servers, and our floating IPs of the group as (address, attached).
async fn look(cloud: &Cloud, group: &str) -> (Vec<String>, Vec<(String, bool)>) {
    let mut names: Vec<String> = cloud.our_servers(group).await.unwrap().into_iter().map(|s| s.name).collect();
    names.sort();
    let fips = cloud
        .our_floating_ips(Some(group))
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.str("floating_ip_address").unwrap_or_default().to_string(), !f.field("port_id").is_null()))
        .collect();
    (names, fips)
}

fn spawn(env: &mut Env, cfg: &std::path::Path, log: &str) -> u32 {
    let log_file = std::fs::File::create(env.path().join(log)).unwrap();
    let mut c = env.cmd(&["run", "-c", cfg.to_str().unwrap()]);
    c.env("FT_PUSH_TOKEN", TOKEN).stdout(log_file.try_clone().unwrap()).stderr(log_file);
    env.adopt(c.spawn().expect("spawn flotilla run"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_on_nova_survives_kill_9_mid_clone_without_duplicates_or_orphan_fips() {
    require_lab!(Lab::OpenStack);
    let mut env = Env::new();
    let cloud = connect(DEMO).await;
    let p = prefix("grp");
    let (req, _guard) = infra(&cloud, &p, env.path()).await;
    let addr: SocketAddr = ([127, 0, 0, 1], support::free_port().port()).into();
    let policy = "{metric: cpu, high: 80, low: 20, min_up: 3, min_down: 3}";
    let cfg = env.file("nova.yaml", &config(&p, &req, addr, policy, "cirros", "handover"));
    let base = format!("{p}_1");
    let clone = format!("{p}_clone_1");

    let started = tokio::time::Instant::now();
    let run1 = spawn(&mut env, &cfg, "run1.log");
    let deadline = started + Duration::from_secs(90);
    loop {
        let (names, fips) = look(&cloud, &p).await;
        if names == [base.clone()] && fips.len() == 1 && fips[0].1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "baseline never came up: {names:?} {fips:?}\n{}",
            env.log("run1.log")
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("baseline ACTIVE with a floating IP {:.1} s after start", started.elapsed().as_secs_f64());

    // Sustained high on the baseline: the controller starts the clone. The moment Nova shows it
    // (before it is ACTIVE and has its floating IP), the controller is killed with SIGKILL.
    let breach = tokio::time::Instant::now();
    let mut seen_max = 1;
    loop {
        assert_eq!(push(addr, &p, &[&base], "cpu", 95.0).await, 202, "{}", env.log("run1.log"));
        let (names, _) = look(&cloud, &p).await;
        seen_max = seen_max.max(names.len());
        if names.contains(&clone) {
            break;
        }
        assert!(breach.elapsed() < Duration::from_secs(60), "no clone: {names:?}\n{}", env.log("run1.log"));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let status = cloud.our_servers(&p).await.unwrap().into_iter().find(|s| s.name == clone).unwrap().status;
    signal(run1, nix::sys::signal::Signal::SIGKILL);
    assert_eq!(env.reap(run1, Duration::from_secs(10)).await, Some(137));
    eprintln!("killed -9 {:.1} s after the breach began, clone status {status}", breach.elapsed().as_secs_f64());

    // Restart: the pending scale-out is resumed by adopting the clone, not by making another.
    let run2 = spawn(&mut env, &cfg, "run2.log");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        push(addr, &p, &[&base, &clone], "cpu", 50.0).await;
        let (names, fips) = look(&cloud, &p).await;
        seen_max = seen_max.max(names.len());
        if names == [base.clone(), clone.clone()] && fips.len() == 2 && fips.iter().all(|f| f.1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "clone not adopted: {names:?} {fips:?}\n{}",
            env.log("run2.log")
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("after restart: both ACTIVE with floating IPs {:.1} s after the breach", breach.elapsed().as_secs_f64());

    // Sustained low: the baseline is deleted (its floating IP released), the clone kept.
    let low = tokio::time::Instant::now();
    loop {
        push(addr, &p, &[&base, &clone], "cpu", 5.0).await;
        let (names, fips) = look(&cloud, &p).await;
        seen_max = seen_max.max(names.len());
        if names == [clone.clone()] && fips.len() == 1 {
            break;
        }
        assert!(low.elapsed() < Duration::from_secs(90), "no handover: {names:?} {fips:?}\n{}", env.log("run2.log"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("handover done {:.1} s after the load dropped", low.elapsed().as_secs_f64());
    let (names, fips) = look(&cloud, &p).await;
    assert_eq!(names, std::slice::from_ref(&clone));
    assert_eq!(fips.len(), 1, "no orphan floating IP: {fips:?}");
    assert!(fips[0].1, "the clone's floating IP is attached");
    assert_eq!(seen_max, 2, "never more than two servers (no duplicate clone)");
    let all: BTreeSet<String> = cloud.list_servers(&[]).await.unwrap().into_iter().map(|s| s.name).collect();
    assert!(!all.iter().any(|n| n.starts_with(&format!("{p}_clone_2"))), "{all:?}");
    let st = env.status();
    assert_eq!(st["groups"][0]["primary"], clone.as_str(), "{st}");
    assert_eq!(env.stop(run2).await, Some(0), "{}", env.log("run2.log"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_group_grows_from_a_golden_image_on_request_count() {
    require_lab!(Lab::OpenStack);
    let mut env = Env::new();
    let cloud = connect(DEMO).await;
    let p = prefix("gold");
    let (mut req, mut guard) = infra(&cloud, &p, env.path()).await;
    // The source server and its golden image, as `deploy` and `image golden` make them.
    req.floating_ip = false;
    let rep = cloud.deploy(&req, &|_| {}).await.expect("deploy the source server");
    let golden = format!("{p}-golden");
    let g = cloud.golden_image(&rep.server, &golden, Duration::from_secs(120), &|_| {}).await.expect("golden");
    guard.extra_images.push(g.image_id.clone());
    assert_eq!(g.server_status, "ACTIVE");

    let group = format!("{p}-web");
    let _group_guard = Guard::new(&cloud, &group);
    let addr: SocketAddr = ([127, 0, 0, 1], support::free_port().port()).into();
    let cfg = env.file(
        "seed002.yaml",
        &config(&group, &req, addr, "{kind: requests, requests: 10, window: 60s}", &golden, "scale"),
    );
    let out = env.cmd(&["config", "check", cfg.to_str().unwrap()]).env("FT_PUSH_TOKEN", TOKEN).output().unwrap();
    assert!(out.status.success() && support::text(&out.stdout).contains(": ok"), "{}", support::text(&out.stderr));
    let run = spawn(&mut env, &cfg, "run.log");
    let first = format!("{group}_1");
    let second = format!("{group}_2");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while look(&cloud, &group).await.0 != [first.clone()] {
        assert!(tokio::time::Instant::now() < deadline, "{}", env.log("run.log"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // 4 requests counted: below the trigger, nothing happens.
    for _ in 0..3 {
        push(addr, &group, &[&first], "requests", 4.0).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(look(&cloud, &group).await.0, std::slice::from_ref(&first));
    // Request number 10 within the window: one more member, from the golden image.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        push(addr, &group, &[&first], "requests", 12.0).await;
        let (names, fips) = look(&cloud, &group).await;
        if names == [first.clone(), second.clone()] && fips.len() == 2 && fips.iter().all(|f| f.1) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{names:?}\n{}", env.log("run.log"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for s in cloud.our_servers(&group).await.unwrap() {
        assert_eq!(s.image_id(), Some(g.image_id.as_str()), "{} boots from the golden image", s.name);
    }
    // max: 2 holds however many more requests come.
    for _ in 0..4 {
        push(addr, &group, &[&first, &second], "requests", 50.0).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(look(&cloud, &group).await.0.len(), 2);
    assert_eq!(env.stop(run).await, Some(0), "{}", env.log("run.log"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_watch_on_nova_clones_then_hands_over() {
    require_lab!(Lab::OpenStack);
    let mut env = Env::new();
    let cloud = connect(DEMO).await;
    let p = prefix("watch");
    let (req, _guard) = infra(&cloud, &p, env.path()).await;
    let rep = cloud.deploy(&req, &|_| {}).await.expect("deploy the baseline");
    let base = rep.server.clone();
    let clone = format!("{p}_clone_1");
    let addr: SocketAddr = ([127, 0, 0, 1], support::free_port().port()).into();
    let port = addr.to_string();
    let args = [
        "watch",
        "--os-cloud",
        DEMO,
        "--server",
        &base,
        "--high",
        "80",
        "--low",
        "20",
        "--min-up",
        "3",
        "--min-down",
        "3",
        "--interval",
        "1",
        "--metric",
        "cpu",
        "--source",
        "push",
        "--push-listen",
        &port,
    ];
    let log_file = std::fs::File::create(env.path().join("watch.log")).unwrap();
    let mut c = env.cmd(&args);
    c.env("OS_CLIENT_CONFIG_FILE", clouds_yaml())
        .env("FLOTILLA_PUSH_TOKEN", TOKEN)
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
    let watch = env.adopt(c.spawn().unwrap());

    // Sustained high: `<base>_clone_N` is created, with a floating IP like the baseline's.
    let breach = tokio::time::Instant::now();
    loop {
        push(addr, &p, &[&base], "cpu", 97.0).await;
        let (names, fips) = look(&cloud, &p).await;
        if names == [base.clone(), clone.clone()] && fips.len() == 2 && fips.iter().all(|f| f.1) {
            break;
        }
        assert!(breach.elapsed() < Duration::from_secs(90), "{names:?} {fips:?}\n{}", env.log("watch.log"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("watch: breach to clone ACTIVE with a floating IP {:.1} s", breach.elapsed().as_secs_f64());
    // Sustained low: the baseline is deleted with its floating IP; the clone is kept.
    let low = tokio::time::Instant::now();
    loop {
        push(addr, &p, &[&base, &clone], "cpu", 3.0).await;
        let (names, fips) = look(&cloud, &p).await;
        if names == std::slice::from_ref(&clone) && fips.len() == 1 {
            break;
        }
        assert!(low.elapsed() < Duration::from_secs(90), "{names:?} {fips:?}\n{}", env.log("watch.log"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let log = env.log("watch.log");
    assert!(log.contains("SCALE UP"), "{log}");
    assert!(log.contains(&format!("deleting baseline {base} and proceeding with clone {clone}")), "{log}");
    assert_eq!(env.stop(watch).await, Some(0), "{}", env.log("watch.log"));
}
