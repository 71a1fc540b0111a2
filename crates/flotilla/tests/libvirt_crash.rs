//! The real binary on the libvirt lab, killed with SIGKILL twice: once inside the scale-out that
//! makes a min-2 group's guests (after both domains booted, before the store knew them), once with
//! both members running. Each restart re-adopts the same two domains (same UUID, same libvirt id:
//! not re-made, not restarted), never a third; a foreign domain defined beside them (the lab's own
//! template, same name prefix) is never touched; `flotilla status --config` reports the host up
//! with its members, or down with the members it holds; SIGTERM with `--stop-members` leaves no
//! domain, overlay or seed ISO of ours.
#![cfg(feature = "libvirt")]

mod lab;
mod support;

use std::time::Duration;

use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;
use lab::*;
use support::{signal, wait_until, Env};

/// Ports for this test's guests (two per guest): a range no other test uses.
const PORTS: (u16, u16) = (24000, 24019);

fn status_with_config(env: &Env, cfg: &str, output: &str) -> String {
    env.ok(&["status", "--config", cfg, "--output", output])
}

fn identities(names: &[&str]) -> Vec<(String, String)> {
    names.iter().map(|n| identity(n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_twice_readopts_the_same_domains_and_leaves_a_foreign_one_alone() {
    require_lab!(Lab::Libvirt);
    let group = unique("crash");
    // Dropped last: after the env has killed any controller still running.
    let _domains = DomainGuard::new(&group);
    let mut env = Env::serial();
    let t0 = tokio::time::Instant::now();
    let (m1, m2) = (format!("{group}_1"), format!("{group}_2"));
    let foreign = format!("{group}_9");
    let ours = [m1.as_str(), m2.as_str()];

    // A foreign domain with our prefix, defined from the lab's template (its metadata is the lab's,
    // not ours), not started.
    let foreign_dir = env.path().join("foreign");
    std::fs::create_dir_all(&foreign_dir).unwrap();
    define_foreign(&foreign, &foreign_dir, (24098, 24099));
    let foreign_uuid = uuid(&foreign);

    let cfg = env.file("crash.yaml", &config(&group, 2, PORTS, "#!/bin/sh\necho crash-test", ""));
    let cfg = cfg.to_str().unwrap();

    // 1. kill -9 inside the first scale-out: both domains are up, the store does not know them.
    let pid = env.spawn(&["run", "-c", cfg], "run1.log", Some("scale-out:after-create"));
    let code = env.reap(pid, Duration::from_secs(180)).await;
    let boot = t0.elapsed();
    assert_eq!(code, Some(128 + 9), "killed by its failpoint:\n{}", env.log("run1.log"));
    eprintln!("start to both guests serving (then kill -9): {:.1}s", boot.as_secs_f64());
    for (member, secs) in serving_times(&env.log("run1.log")) {
        eprintln!("{member}: define to /healthz answering {secs:.1}s (two guests booting at once)");
    }
    assert_eq!(domains_with_prefix(&group), [m1.clone(), m2.clone(), foreign.clone()]);
    for m in ours {
        assert_eq!(domstate(m).as_deref(), Some("running"), "{m} outlives the controller");
    }
    let st = env.status();
    assert!(st["groups"][0]["pending_operation"].is_string(), "the intent was stored first: {st}");
    let ids = identities(&ours);

    // 2. Restart: the pending scale-out resumes and adopts both domains by name.
    let pid = env.spawn(&["run", "-c", cfg], "run2.log", None);
    wait_until(Duration::from_secs(60), "the two members adopted", || {
        names_in(&members(&env, &group), "running") == [m1.clone(), m2.clone()]
    })
    .await;
    wait_until(Duration::from_secs(30), "samples of both", || env.log("run2.log").contains("members 2/2")).await;
    let log = env.log("run2.log");
    assert!(log.contains("resuming unfinished operation"), "{log}");
    assert_eq!(identities(&ours), ids, "the same domains, neither re-made nor restarted");
    assert!(env.status()["groups"][0]["pending_operation"].is_null());

    // 3. kill -9 with both members running.
    signal(pid, nix::sys::signal::Signal::SIGKILL);
    assert_eq!(env.reap(pid, Duration::from_secs(10)).await, Some(128 + 9));
    assert_eq!(identities(&ours), ids, "the domains outlive the controller");
    for m in members(&env, &group) {
        let addr = m["address"].as_str().unwrap();
        let body = get(addr, "/healthz").await.unwrap_or_default();
        assert!(body.starts_with("HTTP/1.") && body.trim_end().ends_with("ok"), "{} /healthz: {body:?}", m["name"]);
    }

    // `status --config` asks the host: up, with our two members (not the foreign domain).
    let st: serde_json::Value = serde_json::from_str(&status_with_config(&env, cfg, "json")).unwrap();
    let hosts = st["hosts"].as_array().unwrap_or_else(|| panic!("no hosts in {st}"));
    assert_eq!(hosts.len(), 1, "{st}");
    assert_eq!((&hosts[0]["name"], &hosts[0]["uri"], &hosts[0]["up"]), (&"lab".into(), &LAB_URI.into(), &true.into()));
    assert_eq!(hosts[0]["members"], 2, "{st}");
    assert_eq!(hosts[0]["member_names"], serde_json::json!([m1, m2]));
    assert!(hosts[0]["last_error"].is_null(), "{st}");
    assert_eq!(st["groups"][0]["members"].as_array().unwrap().len(), 2, "the usual fields are still there: {st}");
    let out = status_with_config(&env, cfg, "text");
    assert!(out.contains("host lab qemu:///system up (2 members)\n"), "{out}");
    // The same host name on a URI that refuses connections: down, holding the members its
    // records name.
    let dead_cfg = std::fs::read_to_string(cfg).unwrap().replace(LAB_URI, "qemu+tcp://127.0.0.1:1/system");
    let dead_cfg = env.file("dead.yaml", &dead_cfg);
    let out = status_with_config(&env, dead_cfg.to_str().unwrap(), "text");
    assert!(out.contains("host lab qemu+tcp://127.0.0.1:1/system DOWN: "), "{out}");
    assert!(out.contains("(2 members unreachable)\n"), "{out}");
    // without --config, no hosts (the provider is not asked)
    assert!(env.status().get("hosts").is_none());

    // 4. Restart again (this time to stop the members on SIGTERM): the same two, no third.
    let pid = env.spawn(&["run", "-c", cfg, "--stop-members"], "run3.log", None);
    wait_until(Duration::from_secs(30), "samples after the second restart", || {
        env.log("run3.log").contains("members 2/2")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = env.log("run3.log");
    assert!(!log.contains("SCALE UP") && !log.contains("resuming"), "nothing to do after adoption:\n{log}");
    assert_eq!(identities(&ours), ids, "re-adopted, not re-made or restarted");
    assert_eq!(domains_with_prefix(&group), [m1.clone(), m2.clone(), foreign.clone()], "no third domain");
    assert_eq!(env.member_names(&group), [m1.clone(), m2.clone()]);

    // 5. SIGTERM + --stop-members: ours are gone with their files; the foreign domain stays.
    let t = tokio::time::Instant::now();
    assert_eq!(env.stop(pid).await, Some(0), "{}", env.log("run3.log"));
    eprintln!("stop with --stop-members (2 guests): {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(domains_with_prefix(&group), std::slice::from_ref(&foreign), "{}", env.log("run3.log"));
    let left = support::files_under(&env.path().join("state/libvirt"));
    assert!(left.is_empty(), "files of ours left: {left:?}");
    assert!(env.member_names(&group).is_empty());
    assert_eq!(domstate(&foreign).as_deref(), Some("shut off"));
    assert_eq!(uuid(&foreign), foreign_uuid, "the foreign domain was never touched");
    let out = status_with_config(&env, cfg, "text");
    assert!(out.contains("host lab qemu:///system up (0 members)\n"), "{out}");

    let (ok, out) = virsh(&["undefine", &foreign]);
    assert!(ok, "{out}");
    assert!(domains_with_prefix(&group).is_empty());
    eprintln!("libvirt_crash total: {:.1}s", t0.elapsed().as_secs_f64());
}
