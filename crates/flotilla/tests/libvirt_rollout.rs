//! Rolling replacement on real libvirt guests behind the embedded balancer: a group of n = 2 made
//! from template v1 runs under one controller; the controller is stopped (SIGTERM, members kept)
//! and started on a config whose template differs (the guest's user-data), so the new controller
//! re-adopts both guests and replaces them one at a time (`max_unavailable: 1`), each new guest
//! healthy behind the balancer before an old one drains. Throughout, a steady request stream goes
//! through the balancer: no request may fail, and at least n − 1 = 1 member must be serving at
//! every poll. The test prints what it measured (boot-to-serving, per-member replacement time,
//! request counts) so the figures can be quoted.
#![cfg(feature = "libvirt")]

mod lab;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use flotilla_loadgen::{Load, LoadSpec};
use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;
use lab::*;
use serde_json::Value;
use support::{wait_until, Env};

/// Ports for this test's guests (two per guest; three guests exist during a replacement).
const PORTS: (u16, u16) = (24100, 24139);
const N: usize = 2;
/// The request stream: 10 req/s of 10 ms of guest CPU each (a light, steady load: the guests are
/// TCG-emulated on a 2-core machine, and a third one boots during each replacement).
const PATH: &str = "/cgi-bin/work?ms=10";
const RATE: f64 = 10.0;
const DAY_MS: u64 = 86_400_000;

/// The group config; `version` goes into the guest's user-data (so into the template version) and
/// into `/version` on the guest's web server.
fn yaml(group: &str, listen: SocketAddr, version: &str) -> String {
    let extra = format!(
        r#"    replacement: {{ strategy: rolling, max_unavailable: 1 }}
    balancer:
      listen: {listen}
      health: {{ path: /healthz, interval: 500ms, timeout: 2s, rise: 1, fall: 3 }}
      queue_timeout: 60s"#
    );
    config(group, N as u32, PORTS, &format!("#!/bin/sh\necho {version} > /www/version"), &extra)
}

/// (name, address, template tag) of the members in state `running`.
fn running(st: &Value, group: &str) -> Vec<(String, String, String)> {
    let Some(g) = group_of(st, group) else { return Vec::new() };
    g["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "running")
        .map(|m| {
            let s = |v: &Value| v.as_str().unwrap_or("").to_string();
            (s(&m["name"]), s(&m["address"]), s(&m["tags"]["template"]))
        })
        .collect()
}

/// How many of these members answer `/healthz` directly just now.
async fn answering(members: &[(String, String, String)]) -> usize {
    let mut n = 0;
    for (_, addr, _) in members {
        if get(addr, "/healthz").await.is_some_and(|b| b.starts_with("HTTP/1.") && b.trim_end().ends_with("ok")) {
            n += 1;
        }
    }
    n
}

async fn version_of(addr: &str) -> Option<String> {
    let body = get(addr, "/version").await?;
    body.lines()
        .next()
        .is_some_and(|l| l.starts_with("HTTP/1.") && l.contains(" 200 "))
        .then(|| body.rsplit("\r\n\r\n").next().unwrap_or("").trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_change_rolls_libvirt_guests_without_dropping_a_request() {
    require_lab!(Lab::Libvirt);
    let group = unique("roll");
    let _domains = DomainGuard::new(&group); // dropped after the env (which kills the controller)
    let mut env = Env::serial();
    let t0 = tokio::time::Instant::now();
    let listen = support::free_port();

    // v1: two guests.
    let v1 = env.file("v1.yaml", &yaml(&group, listen, "v1"));
    let pid = env.spawn(&["run", "-c", v1.to_str().unwrap()], "run1.log", None);
    wait_until(Duration::from_secs(180), "two v1 members", || names_in(&members(&env, &group), "running").len() == N)
        .await;
    eprintln!("v1: {N} guests serving {:.1}s after the controller started", t0.elapsed().as_secs_f64());
    let warm = Load::run_for(LoadSpec::open(listen, PATH, 4, RATE), Duration::from_secs(8)).await;
    eprintln!(
        "v1 through the balancer: {}; latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        warm.summary(),
        warm.latency_ms(50.0).unwrap_or(0.0),
        warm.latency_ms(99.0).unwrap_or(0.0),
        warm.latency_ms(100.0).unwrap_or(0.0)
    );
    assert_eq!((warm.failures, warm.server_errors()), (0, 0), "{}", warm.summary());
    let st = status_async(&env).await;
    let before = running(&st, &group);
    assert_eq!(before.len(), N);
    for (name, addr, _) in &before {
        assert!(warm.by_backend.contains_key(name), "{name} served nothing: {}", warm.summary());
        // user-data runs in the background at boot: give it a moment
        let mut v = None;
        for _ in 0..40 {
            v = version_of(addr).await;
            if v.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(v.as_deref(), Some("v1"), "{name}");
    }
    let v1_tag = before[0].2.clone();
    assert!(!v1_tag.is_empty() && before.iter().all(|m| m.2 == v1_tag), "{before:?}");

    // The controller stops; the guests keep running.
    assert_eq!(env.stop(pid).await, Some(0), "{}", env.log("run1.log"));
    let kept: Vec<String> = before.iter().map(|m| m.0.clone()).collect();
    assert_eq!(domains_with_prefix(&group), kept, "members kept on SIGTERM");

    // v2: another user-data, so another template version. The new controller adopts and rolls.
    let v2 = env.file("v2.yaml", &yaml(&group, listen, "v2"));
    let restart = tokio::time::Instant::now();
    let pid = env.spawn(&["run", "-c", v2.to_str().unwrap(), "--stop-members"], "run2.log", None);
    wait_until(Duration::from_secs(15), "the balancer", || std::net::TcpStream::connect(listen).is_ok()).await;
    let load = Load::start(LoadSpec::open(listen, PATH, 8, RATE));

    let mut fewest_serving = usize::MAX;
    let mut most_guests = 0;
    let mut polls = 0;
    // op id -> (first seen, last seen), from the status's pending operation
    let mut ops: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let deadline = restart + Duration::from_secs(240);
    let done = loop {
        let st = status_async(&env).await;
        let now = running(&st, &group);
        let serving = answering(&now).await;
        fewest_serving = fewest_serving.min(serving);
        most_guests = most_guests.max(domains_with_prefix(&group).len());
        polls += 1;
        let at = restart.elapsed().as_secs_f64();
        if let Some(op) = group_of(&st, &group).and_then(|g| g["pending_operation"].as_str()) {
            let id = op.split(' ').next().unwrap_or("").to_string();
            ops.entry(id).and_modify(|e| e.1 = at).or_insert((at, at));
        }
        let pending = group_of(&st, &group).is_some_and(|g| !g["pending_operation"].is_null());
        let snap = load.snapshot();
        assert_eq!((snap.failures, snap.server_errors()), (0, 0), "during the rollout: {}", snap.summary());
        if !pending && now.len() == N && now.iter().all(|m| !kept.contains(&m.0) && m.2 != v1_tag && !m.2.is_empty()) {
            break st;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rollout not done after 240s: {now:?}\n{}",
            env.log("run2.log")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let rollout = restart.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await; // the new members alone serve for a while
    let report = load.stop().await;

    // What was measured: each batch from its ROLLOUT decision (log) to the new guest answering
    // (provider log), to it being healthy behind the balancer (member-up event), to the old one
    // drained and deleted (the "replaced" event).
    let after = running(&done, &group);
    let v2_tag = after[0].2.clone();
    let g = group_of(&done, &group).unwrap();
    let events = g["events"].as_array().unwrap();
    let event_at = |kind: &str, needle: &str| {
        events
            .iter()
            .find(|e| e["kind"] == kind && e["message"].as_str().unwrap_or("").contains(needle))
            .map(|e| e["at_ms"].as_u64().unwrap() % DAY_MS)
    };
    let log2 = env.log("run2.log");
    let booted: BTreeMap<String, f64> = serving_times(&log2).into_iter().collect();
    for (name, secs) in serving_times(&env.log("run1.log")) {
        eprintln!("{name} (v1): define to /healthz answering {secs:.1}s (two booting at once)");
    }
    eprintln!(
        "rollout: {N} members replaced in {:.1}s after the restart ({polls} polls; at most {most_guests} guests at once)",
        rollout.as_secs_f64()
    );
    let since = |a: u64, b: u64| ((b + DAY_MS - a) % DAY_MS) as f64 / 1000.0;
    let mut span: Option<(u64, u64)> = None;
    for line in log2.lines().filter(|l| l.contains("ROLLOUT:")) {
        let Some(begin) = log_time_ms(line) else { continue };
        let pair: Vec<&str> = line.rsplit("; ").next().unwrap_or("").split_whitespace().collect();
        let (old, new) = (pair.first().copied().unwrap_or("?"), pair.get(2).copied().unwrap_or("?"));
        let up = event_at("member-up", &format!("member {new} serving"));
        let end = event_at("info", &format!("replaced {old} with {new} "));
        let boot = booted.get(new).map_or("-".to_string(), |s| format!("{s:.1}s"));
        let fmt = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.1}s", since(a, b)),
            _ => "-".into(),
        };
        eprintln!(
            "  {new} replaced {old}: new guest answering after {boot}, healthy in the balancer after {}, \
             {old} drained and deleted {} later; batch total {}",
            fmt(Some(begin), up),
            fmt(up, end),
            fmt(Some(begin), end)
        );
        if let Some(end) = end {
            span = Some(span.map_or((begin, end), |(b, _)| (b, end)));
        }
    }
    if let Some((b, e)) = span {
        eprintln!("  first decision to last batch done: {:.1}s", since(b, e));
    }
    for (id, (first, last)) in &ops {
        eprintln!("  operation {id} pending from +{first:.1}s to +{last:.1}s (polled)");
    }
    eprintln!("requests through the balancer during the rollout: {}", report.summary());
    eprintln!(
        "latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; fewest members serving at a poll: {fewest_serving}",
        report.latency_ms(50.0).unwrap_or(0.0),
        report.latency_ms(99.0).unwrap_or(0.0),
        report.latency_ms(100.0).unwrap_or(0.0)
    );

    // What must hold.
    assert_eq!(report.failures, 0, "failed requests: {:?}\n{}", report.failure_reasons, report.summary());
    assert_eq!(report.server_errors(), 0, "5xx: {}", report.summary());
    assert!(report.ok() as f64 >= RATE * rollout.as_secs_f64() * 0.8, "the stream kept up: {}", report.summary());
    assert!(fewest_serving >= N - 1, "only {fewest_serving} member(s) serving at one poll");
    assert!(after.iter().all(|m| m.2 == v2_tag), "all on the new version: {after:?}");
    let log = env.log("run2.log");
    assert_eq!(log.matches("ROLLOUT").count(), N, "one batch per member:\n{log}");
    assert_eq!(ops.len(), N, "one replace operation per member: {ops:?}");
    // Old and new guests both served the stream; the new ones run the v2 user-data.
    assert!(kept.iter().any(|n| report.by_backend.contains_key(n)), "{}", report.summary());
    for (name, addr, _) in &after {
        assert!(report.by_backend.contains_key(name), "{name} served nothing: {}", report.summary());
        assert_eq!(version_of(addr).await.as_deref(), Some("v2"), "{name}");
    }

    // SIGTERM with --stop-members: nothing of ours is left.
    assert_eq!(env.stop(pid).await, Some(0), "{}", env.log("run2.log"));
    assert!(domains_with_prefix(&group).is_empty(), "{}", env.log("run2.log"));
    let left = support::files_under(&env.path().join("state/libvirt"));
    assert!(left.is_empty(), "files left: {left:?}");
    eprintln!("libvirt_rollout total: {:.1}s", t0.elapsed().as_secs_f64());
}
