//! kill -9 of the controller at several points inside a scale-out and inside a handover; after a
//! restart exactly the expected members exist, with no orphan process and no duplicate.

mod support;

use std::time::Duration;

use support::{wait_until, Env, FAST_HANDOVER};

/// The min-2 group's first pass is a scale-out of two members: crash inside it.
const MIN_TWO: &str = r#"
groups:
  - name: web
    mode: scale
    min: 2
    max: 4
    interval: 500ms
    policy: { high: 80, low: 20, min_up: 3, min_down: 3 }
"#;

async fn crash_in_scale_out(point: &str) {
    let mut env = Env::serial();
    let cfg = env.file("f.yaml", MIN_TWO);
    let cfg = cfg.to_str().unwrap();
    let pid = env.spawn(&["run", "-c", cfg], "crash.log", Some(point));
    let code = env.reap(pid, Duration::from_secs(60)).await;
    assert_eq!(code, Some(128 + 9), "killed by its failpoint {point}:\n{}", env.log("crash.log"));
    let st = env.status();
    assert!(st["groups"][0]["pending_operation"].is_string(), "intent was stored before the crash: {st}");

    let pid = env.spawn(&["run", "-c", cfg], "after.log", None);
    wait_until(Duration::from_secs(30), "recovery", || env.member_names("web") == ["web_1", "web_2"]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.member_names("web"), ["web_1", "web_2"], "{}", env.log("after.log"));
    assert_eq!(env.live_member_names(), ["web_1", "web_2"], "no orphan, no duplicate");
    assert!(env.status()["groups"][0]["pending_operation"].is_null());
    assert!(env.log("after.log").contains("resuming unfinished operation"), "{}", env.log("after.log"));
    assert_eq!(env.stop(pid).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_scale_out_intent_is_stored() {
    crash_in_scale_out("scale-out:after-begin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_members_were_created() {
    crash_in_scale_out("scale-out:after-create").await;
}

async fn crash_in_handover(point: &str) {
    let mut env = Env::serial();
    let cfg = env.file("f.yaml", FAST_HANDOVER);
    let cfg = cfg.to_str().unwrap();
    let pid = env.spawn(&["run", "-c", cfg], "crash.log", Some(point));
    wait_until(Duration::from_secs(30), "the baseline", || env.member_names("vm-test") == ["vm-test_1"]).await;
    env.ok(&["load", "--group", "vm-test", "--wait", "60s"]);
    env.ok(&["load", "--group", "vm-test", "--stop"]);
    let code = env.reap(pid, Duration::from_secs(60)).await;
    assert_eq!(code, Some(128 + 9), "killed by its failpoint {point}:\n{}", env.log("crash.log"));

    let pid = env.spawn(&["run", "-c", cfg], "after.log", None);
    wait_until(Duration::from_secs(30), "the resumed handover", || env.member_names("vm-test") == ["vm-test_clone_1"])
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.member_names("vm-test"), ["vm-test_clone_1"], "{}", env.log("after.log"));
    assert_eq!(env.live_member_names(), ["vm-test_clone_1"], "baseline process gone, clone kept");
    assert_eq!(env.status()["groups"][0]["primary"], "vm-test_clone_1");
    assert_eq!(env.stop(pid).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_handover_intent_is_stored() {
    crash_in_handover("handover:after-begin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_clone_became_primary() {
    crash_in_handover("handover:after-primary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_baseline_was_drained() {
    crash_in_handover("retire:after-drain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_baseline_was_deleted() {
    crash_in_handover("retire:after-delete").await;
}
