//! R1, random kills: a real `flotilla run` on local members, restarted with configs that ask for
//! scale-outs, scale-ins, handovers and rolling replacements, and kill -9'd at random moments in between.
//! After every kill: no member name has two processes. At the end, once a last run converged:
//! no orphan process, no duplicate, no lost member, every member on the newest template.
//!
//! `FLOTILLA_KILLS` sets the number of kills (default 30, the full run 100); `FLOTILLA_KILL_SEED`
//! replays a run (the seed is printed).

mod support;

use std::time::Duration;

use support::{duplicates, wait_until, Env, Rng};

/// The group as one run sees it: `min` members, made with `vcpus` (a change of vcpus is a new
/// template version, so the run rolls every member over to it, one at a time). Idle members are
/// always "low", so a run above `min` scales in, three samples at a time; in handover mode (at
/// most 2 members) it trims to two, then retires the primary and hands over to the clone.
fn config(mode: &str, min: u32, vcpus: u32) -> String {
    let max = if mode == "handover" { 2 } else { 4 };
    format!(
        r#"
groups:
  - name: web
    mode: {mode}
    min: {min}
    max: {max}
    interval: 200ms
    cooldown_up: 0s
    cooldown_down: 0s
    drain_timeout: 1s
    policy: {{ metric: cpu, high: 100, low: 99, min_up: 10000, min_down: 3 }}
    template: {{ vcpus: {vcpus} }}
    replacement: {{ strategy: rolling, max_unavailable: 1 }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kills_lose_nothing_and_duplicate_nothing() {
    let kills: u64 = std::env::var("FLOTILLA_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let (mut rng, seed) = Rng::from_env("random kills");
    eprintln!("random kills: {kills} kills");
    let mut env = Env::serial();
    let (mut mode, mut min, mut vcpus) = ("scale", 2, 1);
    let mut killed_in_flight = 0;
    for k in 0..kills {
        // Each run asks for something: another size, (every fourth) a new template, or (every
        // fifth) handover mode.
        mode = "scale";
        if k % 5 == 4 {
            (mode, min) = ("handover", 1);
        } else if k % 4 == 3 {
            vcpus = if vcpus == 1 { 2 } else { 1 };
        } else {
            min = 1 + rng.below(4) as u32;
        }
        let cfg = env.file("f.yaml", &config(mode, min, vcpus));
        let log = format!("run-{k}.log");
        let pid = env.spawn(&["run", "-c", cfg.to_str().unwrap()], &log, None);
        // A handover needs a trim to two and three low samples first: give those runs longer.
        let span = if mode == "handover" { 2500 } else { 900 };
        tokio::time::sleep(Duration::from_millis(100 + rng.below(span))).await;
        support::signal(pid, nix::sys::signal::Signal::SIGKILL);
        let code = env.reap(pid, Duration::from_secs(30)).await;
        assert_eq!(code, Some(128 + 9), "run {k} (seed {seed}) ended before its kill:\n{}", env.log(&log));
        let st = env.status();
        if st["groups"][0]["pending_operation"].is_string() {
            killed_in_flight += 1;
        }
        let live = env.live_member_names();
        assert!(duplicates(&live).is_empty(), "kill {k} (seed {seed}): two processes of {:?}", duplicates(&live));
    }

    // A last run converges: `min` members, all of the newest template, each exactly once.
    let cfg = env.file("f.yaml", &config(mode, min, vcpus));
    let started = tokio::time::Instant::now();
    let pid = env.spawn(&["run", "-c", cfg.to_str().unwrap()], "last.log", None);
    let want_version = {
        // The version every member must carry once the rollout is done: what a fresh member gets.
        let mut v = String::new();
        wait_until(Duration::from_secs(120), "convergence", || {
            let st = env.status();
            let members = st["groups"][0]["members"].as_array().cloned().unwrap_or_default();
            let versions: Vec<String> =
                members.iter().map(|m| m["tags"]["template"].as_str().unwrap_or("-").to_string()).collect();
            let settled = members.len() == min as usize
                && st["groups"][0]["pending_operation"].is_null()
                && members.iter().all(|m| m["state"] == "running")
                && versions.windows(2).all(|w| w[0] == w[1])
                && env.live_member_names() == env.member_names("web");
            if settled {
                v = versions.first().cloned().unwrap_or_default();
            }
            settled
        })
        .await;
        v
    };
    let converged = started.elapsed();
    for line in env.log("last.log").lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).take(20) {
        eprintln!("last run: {line}");
    }
    let live = env.live_member_names();
    let known = env.member_names("web");
    // What the kills interrupted or let finish, by kind (each run logs the actions it began).
    let logs: Vec<String> = (0..kills).map(|k| env.log(&format!("run-{k}.log"))).collect();
    let begun = |label: &str| logs.iter().map(|l| l.matches(label).count()).sum::<usize>();
    eprintln!(
        "actions begun across the killed runs: {} scale-outs, {} scale-ins, {} handovers, {} rollout batches",
        begun("SCALE UP"),
        begun("SCALE IN"),
        begun("SCALE DOWN"),
        begun("ROLLOUT")
    );
    assert!(begun("SCALE DOWN") > 0 || kills < 10, "no handover was ever begun");
    eprintln!(
        "random kills: {kills} kills ({killed_in_flight} with an operation in flight); converged in {:.1}s to {known:?} \
         (template {want_version}); orphans 0, duplicates 0, lost 0",
        converged.as_secs_f64()
    );
    assert_eq!(live, known, "no orphan process, no member without its process");
    assert!(duplicates(&live).is_empty());
    assert_eq!(env.stop(pid).await, Some(0));
}
