//! One controller per state directory: a second daemon on the same directory is refused, naming
//! the first; a verb beside a running daemon leaves the daemon's pending operations alone.

mod support;

use std::time::Duration;

use support::{wait_until, Env};

const ONE: &str = r#"
groups:
  - name: web
    mode: scale
    min: 1
    max: 2
    interval: 500ms
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_controller_on_one_state_dir_is_refused() {
    let mut env = Env::new();
    let cfg = env.file("f.yaml", ONE);
    let cfg = cfg.to_str().unwrap();
    let pid = env.spawn(&["run", "-c", cfg], "first.log", None);
    wait_until(Duration::from_secs(30), "the first member", || env.member_names("web") == ["web_1"]).await;

    for (i, args) in [vec!["run", "-c", cfg], vec!["watch", "--server", "web_1", "--interval", "1"]].iter().enumerate()
    {
        let log = format!("refused-{i}.log");
        let second = env.spawn(args, &log, None);
        let code = env.reap(second, Duration::from_secs(20)).await;
        let err = env.log(&log);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(&format!("another flotilla (pid {pid}) is running with the state directory")), "{err}");
    }
    assert_eq!(env.live_member_names(), ["web_1"], "the first daemon's member is untouched");
    assert_eq!(env.stop(pid).await, Some(0));
    // Once it is gone, the directory is free again.
    let pid = env.spawn(&["run", "-c", cfg], "second.log", None);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!env.log("second.log").contains("another flotilla"), "{}", env.log("second.log"));
    assert_eq!(env.stop(pid).await, Some(0));
}

/// `flotilla status | head`: a reader that went away is no error (it used to panic, exit 101).
#[test]
fn status_into_a_closed_pipe_ends_quietly() {
    let env = Env::new();
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let out = env.cmd(&["status"]).stdout(std::process::Stdio::from(write)).output().unwrap();
    let err = support::text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
