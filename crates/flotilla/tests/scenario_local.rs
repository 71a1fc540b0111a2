//! The seed timeline on the local provider with real member processes and the real binary:
//! spike → exactly one clone; 50/50 → no further action; load stopped → handover; never more than
//! `max` members; members survive a controller restart and are re-adopted, not duplicated.

mod support;

use std::time::Duration;

use support::{wait_until, Env, FAST_HANDOVER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_timeline_with_run_load_and_restart() {
    let mut env = Env::serial();
    let cfg = env.file("flotilla.yaml", FAST_HANDOVER);
    let cfg = cfg.to_str().unwrap();
    let daemon = env.spawn(&["run", "-c", cfg], "run1.log", None);

    wait_until(Duration::from_secs(30), "the baseline", || env.member_names("vm-test") == ["vm-test_1"]).await;

    // The seed's load script: spike until a clone runs, then ~50/50.
    let out = env.ok(&["load", "--group", "vm-test", "--wait", "60s"]);
    assert!(out.contains("spike: 100% CPU on vm-test_1"), "{out}");
    assert!(out.contains("split: 50% CPU on each of vm-test_1, vm-test_clone_1"), "{out}");

    // Hold the split: nothing changes, and we never exceed max = 2.
    for _ in 0..16 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(env.member_names("vm-test"), ["vm-test_1", "vm-test_clone_1"], "{}", env.log("run1.log"));
    }

    env.ok(&["load", "--group", "vm-test", "--stop"]);
    wait_until(Duration::from_secs(30), "the handover", || env.member_names("vm-test") == ["vm-test_clone_1"]).await;
    let log = env.log("run1.log");
    assert!(log.contains("[metrics] cpu="), "{log}");
    assert!(log.contains("SCALE UP"), "{log}");
    assert!(log.contains("deleting baseline vm-test_1 and proceeding with clone vm-test_clone_1"), "{log}");
    assert_eq!(log.matches("SCALE UP").count(), 2, "baseline + exactly one clone:\n{log}");
    assert_eq!(log.matches("SCALE DOWN").count(), 1, "{log}");
    // The baseline's process is really gone; only the clone runs.
    assert_eq!(env.live_member_names(), ["vm-test_clone_1"]);

    let st = env.status();
    assert_eq!(st["groups"][0]["primary"], "vm-test_clone_1");
    let text = env.ok(&["status"]);
    assert!(text.contains("group vm-test (1 member(s), primary vm-test_clone_1)"), "{text}");
    assert!(text.contains("deleted baseline vm-test_1; vm-test_clone_1 is the new primary"), "{text}");

    // SIGTERM: clean exit, members keep running.
    assert_eq!(env.stop(daemon).await, Some(0));
    assert_eq!(env.live_member_names(), ["vm-test_clone_1"]);

    // A new controller adopts the running member: no new member, same process.
    let pids_before = env.member_pids();
    let daemon = env.spawn(&["run", "-c", cfg, "--stop-members"], "run2.log", None);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.member_names("vm-test"), ["vm-test_clone_1"]);
    assert_eq!(env.member_pids(), pids_before, "{}", env.log("run2.log"));
    assert!(!env.log("run2.log").contains("SCALE UP"), "{}", env.log("run2.log"));

    // --stop-members: shutdown deletes them.
    assert_eq!(env.stop(daemon).await, Some(0));
    assert!(env.live_member_names().is_empty());
    assert!(env.member_names("vm-test").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_end_to_end_and_leaves_nothing_behind() {
    let env = Env::serial();
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    // The dashboard's default port is taken (by us here, or by anything): the demo still runs, and
    // its dashboard moves to a free port.
    let _held = std::net::TcpListener::bind("127.0.0.1:8001");
    let out = env.run(&["demo", "--split-secs", "6", "--listen", &listen]);
    let stdout = support::text(&out.stdout);
    let stderr = support::text(&out.stderr);
    assert!(out.status.success(), "demo failed\n{stdout}\n{stderr}");
    assert!(stdout.contains("[demo] 127.0.0.1:8001 is taken"), "{stdout}");
    let dashboard = stdout.lines().find(|l| l.starts_with("[demo] dashboard: http://127.0.0.1:")).expect(&stdout);
    assert!(!dashboard.contains(":8001/"), "{dashboard}");
    assert!(
        stdout.contains("handover complete: vm-test_1 drained and deleted, vm-test_clone_1 is the primary"),
        "{stdout}"
    );
    assert!(stdout.contains("Timeline:"), "{stdout}");
    // The load went through the balancer and was split across both members, none of it failed.
    let split = stdout.lines().find(|l| l.contains("requests per member during the split")).expect(&stdout);
    assert!(split.contains("vm-test_1=") && split.contains("vm-test_clone_1="), "{split}");
    assert!(stdout.contains("heavy load:") && stdout.contains("0 5xx, 0 failed"), "{stdout}");
    assert!(!stdout.contains("trickle load: 0 requests"), "{stdout}");
    assert!(stderr.contains("SCALE DOWN"), "{stderr}");
    assert!(env.live_member_names().is_empty(), "demo stops its members");
    // The timeline has exactly one scale-out beyond the baseline and one handover, each after
    // the decision that explains it.
    let timeline = &stdout[stdout.find("Timeline:").unwrap()..];
    let kinds: Vec<&str> = timeline.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "scale-out").count(), 2, "{timeline}");
    assert_eq!(kinds.iter().filter(|k| **k == "handover").count(), 1, "{timeline}");
    assert!(timeline.contains("decision    handover: hand over from vm-test_1 to vm-test_clone_1"), "{timeline}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_deploy_cleanup_seed_cli() {
    let mut env = Env::serial();
    let out = env.ok(&["deploy", "--name", "VM-test"]);
    assert!(out.contains("VM-test_1 is running at http://127.0.0.1:"), "{out}");
    // Deploy is idempotent apart from the next numbered member.
    let out = env.ok(&["deploy", "--name", "VM-test"]);
    assert!(out.contains("VM-test_2 is running"), "{out}");
    assert_eq!(env.member_names("VM-test"), ["VM-test_1", "VM-test_2"]);
    env.ok(&["cleanup", "VM-test_2", "--yes"]);
    assert_eq!(env.live_member_names(), ["VM-test_1"]);

    let watch = env.spawn(
        &[
            "watch",
            "--server",
            "VM-test_1",
            "--clone",
            "legacy",
            "--high",
            "80",
            "--low",
            "20",
            "--min-up",
            "3",
            "--min-down",
            "3",
            "--interval",
            "0.5",
            "--metric",
            "max",
        ],
        "watch.log",
        None,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = env.ok(&["load", "--group", "VM-test", "--wait", "60s"]);
    assert!(out.contains("VM-test_clone_1"), "{out}");
    env.ok(&["load", "--group", "VM-test", "--stop"]);
    wait_until(Duration::from_secs(30), "the handover", || env.member_names("VM-test") == ["VM-test_clone_1"]).await;
    let log = env.log("watch.log");
    assert!(log.contains("[metrics] cpu=") && log.contains("-> max="), "{log}");
    assert!(log.contains("SCALE UP"), "{log}");
    assert!(
        log.contains("SCALE DOWN: ")
            && log.contains("deleting baseline VM-test_1 and proceeding with clone VM-test_clone_1"),
        "{log}"
    );
    assert_eq!(env.stop(watch).await, Some(0));

    // Cleanup takes only this prefix's members, and says so when there are none.
    env.ok(&["deploy", "--name", "other"]);
    let out = env.ok(&["cleanup", "VM-test", "--yes"]);
    assert!(out.contains("VM-test_clone_1"), "{out}");
    assert_eq!(env.live_member_names(), ["other_1"]);
    let out = env.ok(&["cleanup", "VM-test", "--yes"]);
    assert!(out.contains("nothing to clean up"), "{out}");
    // Without --yes and without a terminal, cleanup refuses (exit 2) and deletes nothing.
    let out = env.run(&["cleanup", "other"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(env.live_member_names(), ["other_1"]);
    env.ok(&["cleanup", "other", "--yes"]);
    assert!(env.live_member_names().is_empty());
}

#[test]
fn json_logs_are_one_json_object_per_line() {
    let env = Env::new();
    let out = env.run(&["--log-format", "json", "deploy", "--name", "j"]);
    assert!(out.status.success(), "{}", support::text(&out.stderr));
    let stderr = support::text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
    env.ok(&["cleanup", "j", "--yes"]);
    assert!(env.live_member_names().is_empty());
}

/// `deploy --config` and `cleanup --config` only change members: they build the config's provider
/// but none of its metric sources, so a push endpoint the running daemon already listens on (here:
/// a port this test holds) does not stop them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbs_with_a_config_take_no_listener_of_the_daemon() {
    let env = Env::new();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let token = env.file("push.token", "0123456789abcdef-token\n");
    let cfg = env.file(
        "c.yaml",
        &format!(
            "metrics:\n  sources: [local, push]\n  push: {{ listen: 127.0.0.1:{port}, token_file: {} }}\n\
             groups:\n  - name: cfg\n",
            token.display()
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let out = env.ok(&["deploy", "--config", cfg, "--name", "cfg"]);
    assert!(out.contains("cfg_1 is running at http://127.0.0.1:"), "{out}");
    let out = env.ok(&["cleanup", "--config", cfg, "cfg", "--yes"]);
    assert!(out.contains("deleted cfg_1"), "{out}");
    assert!(env.live_member_names().is_empty());
    drop(held);
}
