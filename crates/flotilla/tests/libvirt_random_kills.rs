//! R1 on the libvirt lab: a real `flotilla run` on real guests, restarted with configs that ask for
//! another size or another template (a rolling replacement), and kill -9'd at random moments,
//! mostly while a guest boots, drains or is deleted. At the end, once a last run converged: no
//! domain of the group that Flotilla does not know (orphan), no member without its domain (lost),
//! every member running on the newest template, and no state files of a deleted member left.
//!
//! `FLOTILLA_LIBVIRT_KILLS` sets the number of kills (default 5); `FLOTILLA_KILL_SEED` replays a run.
#![cfg(feature = "libvirt")]

mod lab;
mod support;

use std::time::Duration;

use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;
use lab::*;
use support::{duplicates, Env, Rng};

/// Ports for this test's guests: two per guest, at most three guests at once.
const PORTS: (u16, u16) = (24300, 24339);

fn yaml(group: &str, n: u32, version: u32) -> String {
    config(
        group,
        n,
        PORTS,
        &format!("#!/bin/sh\necho v{version} > /www/version"),
        "    replacement: { strategy: rolling, max_unavailable: 1 }",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kills_on_libvirt_lose_no_guest_and_orphan_none() {
    require_lab!(Lab::Libvirt);
    let kills: u64 = std::env::var("FLOTILLA_LIBVIRT_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let (mut rng, seed) = Rng::from_env("libvirt random kills");
    let group = unique("kill");
    let _domains = DomainGuard::new(&group); // dropped after the env (which kills the controller)
    let mut env = Env::serial();
    let (mut n, mut version) = (1, 1);
    let mut in_flight = 0;
    for k in 0..kills {
        // Every run asks for something: every third a new template, else another size (1 or 2).
        if k % 3 == 2 {
            version += 1;
        } else {
            n = if n == 1 { 2 } else { 1 };
        }
        let cfg = env.file("f.yaml", &yaml(&group, n, version));
        let log = format!("run-{k}.log");
        let pid = env.spawn(&["run", "-c", cfg.to_str().unwrap()], &log, None);
        // A guest boots in ~8 s here: kill anywhere from before the first create to after it serves.
        tokio::time::sleep(Duration::from_millis(500 + rng.below(14_500))).await;
        support::signal(pid, nix::sys::signal::Signal::SIGKILL);
        let code = env.reap(pid, Duration::from_secs(30)).await;
        assert_eq!(code, Some(128 + 9), "run {k} (seed {seed}) ended before its kill:\n{}", env.log(&log));
        let st = status_async(&env).await;
        if group_of(&st, &group).is_some_and(|g| g["pending_operation"].is_string()) {
            in_flight += 1;
        }
        eprintln!("kill {k}: asked for {n} guest(s) of v{version}; domains now {:?}", domains_with_prefix(&group));
    }

    let cfg = env.file("f.yaml", &yaml(&group, n, version));
    let started = tokio::time::Instant::now();
    let pid = env.spawn(&["run", "-c", cfg.to_str().unwrap()], "last.log", None);
    let mut last = String::new();
    let settled = tokio::time::timeout(Duration::from_secs(300), async {
        loop {
            let st = status_async(&env).await;
            let members = group_of(&st, &group).map(|g| g["members"].as_array().cloned().unwrap_or_default());
            let members = members.unwrap_or_default();
            let mut names: Vec<String> = members.iter().map(|m| m["name"].as_str().unwrap_or("").to_string()).collect();
            names.sort();
            let versions: Vec<&str> = members.iter().map(|m| m["tags"]["template"].as_str().unwrap_or("-")).collect();
            last = format!("members {names:?} versions {versions:?} domains {:?}", domains_with_prefix(&group));
            if names.len() == n as usize
                && group_of(&st, &group).is_some_and(|g| g["pending_operation"].is_null())
                && members.iter().all(|m| m["state"] == "running")
                && versions.windows(2).all(|w| w[0] == w[1])
                && domains_with_prefix(&group) == names
            {
                return names;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;
    let Ok(names) = settled else {
        panic!("no convergence in 300 s (seed {seed}): {last}\n{}", env.log("last.log"));
    };
    let converged = started.elapsed().as_secs_f64();
    // Each guest answers as the newest version.
    for m in group_of(&status_async(&env).await, &group).unwrap()["members"].as_array().unwrap() {
        let addr = m["address"].as_str().unwrap();
        let mut v = None;
        for _ in 0..40 {
            v = get(addr, "/version").await.and_then(|b| b.rsplit("\r\n\r\n").next().map(|s| s.trim().to_string()));
            if v.as_deref() == Some(&format!("v{version}")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(v, Some(format!("v{version}")), "{} serves another template", m["name"]);
    }
    assert!(duplicates(&names).is_empty());
    // No state files of a member that is gone.
    let dirs: Vec<String> = std::fs::read_dir(env.path().join("state/libvirt"))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let stray: Vec<&String> = dirs.iter().filter(|d| d.starts_with(&group) && !names.contains(d)).collect();
    assert!(stray.is_empty(), "files of deleted members left: {stray:?} (members {names:?})");
    eprintln!(
        "libvirt random kills: {kills} kills ({in_flight} with an operation in flight), seed {seed}; converged in \
         {converged:.1}s to {names:?} (v{version}); orphans 0, lost 0, duplicates 0"
    );
    assert_eq!(env.stop(pid).await, Some(0));
}
