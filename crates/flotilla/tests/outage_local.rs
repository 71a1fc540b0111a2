//! R3 (issue 10): a metric source goes quiet and the group holds, through the real daemon and
//! real sources. The pushed source stops (its agent died): no scale-in for the whole outage, then
//! the same group with the pusher back scales in (the test can fail); a source that still reports
//! real high load (the member's own `/proc`) scales out while the pusher is silent. The balancer's
//! view restarts blind with the daemon: steady traffic after a restart is not read as a lull.
//! The in-guest SSH and libvirt sources: `libvirt_outage.rs` on the lab.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use flotilla_loadgen::{Load, LoadSpec};
use support::{wait_until, Env};

const TOKEN: &str = "outage-test-token-0123456789";

/// POSTs one pushed reading per member; panics unless the endpoint takes it.
async fn push_cpu(push: SocketAddr, group: &str, members: &[String], cpu: f64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let samples: Vec<String> = members.iter().map(|m| format!(r#"{{"member":"{m}","cpu":{cpu}}}"#)).collect();
    let body = format!(r#"{{"samples":[{}]}}"#, samples.join(","));
    let req = format!(
        "POST /v1/groups/{group}/samples HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(push).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 2"), "push refused: {out}");
}

/// Keeps checking for `span` that the group never has fewer than `floor` members.
async fn never_below(env: &Env, group: &str, floor: usize, span: Duration, what: &str) {
    let end = Instant::now() + span;
    while Instant::now() < end {
        let names = env.member_names(group);
        assert!(names.len() >= floor, "{what}: scaled in to {names:?}\n{}", env.log("run.log"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn config(env: &Env, push: SocketAddr, sources: &str) -> String {
    let token = env.file("push.token", &format!("{TOKEN}\n"));
    let yaml = format!(
        r#"
metrics:
  sources: [{sources}]
  push: {{ listen: {push}, token_file: {token} }}
groups:
  - name: web
    mode: scale
    min: 1
    max: 2
    interval: 500ms
    stale_after: 3s
    cooldown_up: 0s
    cooldown_down: 0s
    policy: {{ metric: cpu, high: 80, low: 20, min_up: 2, min_down: 3 }}
"#,
        token = token.display()
    );
    env.file("f.yaml", &yaml).to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_pusher_scales_nothing_in_and_one_that_reports_low_does() {
    let mut env = Env::serial();
    let push = support::free_port();
    let cfg = config(&env, push, "push");
    let daemon = env.spawn(&["run", "-c", &cfg], "run.log", None);
    wait_until(Duration::from_secs(30), "web_1", || env.member_names("web") == ["web_1"]).await;

    // High pushed load: the group grows to two.
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.member_names("web").len() < 2 {
        assert!(Instant::now() < deadline, "no scale-out on pushed load\n{}", env.log("run.log"));
        push_cpu(push, "web", &env.member_names("web"), 95.0).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_until(Duration::from_secs(30), "web_2 running", || env.running_members("web").len() == 2).await;
    let members = env.member_names("web");

    // One low reading, then the pusher dies: 8 s of silence (16 passes, more than five times
    // min_down) and the group keeps both members.
    push_cpu(push, "web", &members, 5.0).await;
    never_below(&env, "web", 2, Duration::from_secs(8), "pusher quiet").await;

    // Control: the pusher is back and reports low: now the group scales in.
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.member_names("web").len() > 1 {
        assert!(Instant::now() < deadline, "no scale-in on pushed low load\n{}", env.log("run.log"));
        push_cpu(push, "web", &env.member_names("web"), 5.0).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(env.log("run.log").matches("SCALE IN").count(), 1, "{}", env.log("run.log"));
    assert_eq!(env.stop(daemon).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_load_still_scales_out_while_the_pusher_is_quiet() {
    let mut env = Env::serial();
    let push = support::free_port();
    let cfg = config(&env, push, "local, push");
    let daemon = env.spawn(&["run", "-c", &cfg], "run.log", None);
    wait_until(Duration::from_secs(30), "web_1 running", || env.running_members("web").len() == 1).await;
    // The pusher said "idle" once and went quiet; the member's own /proc says it is busy.
    push_cpu(push, "web", &env.member_names("web"), 5.0).await;
    let (_, addr) = env.running_members("web").remove(0);
    let busy = support::raw_request(&addr, "POST", "/load?duty=1").await;
    assert!(busy.starts_with("HTTP/1.1 200"), "{busy}");
    wait_until(Duration::from_secs(30), "a scale-out on real load", || env.member_names("web").len() == 2).await;
    let log = env.log("run.log");
    assert!(log.contains("SCALE UP"), "{log}");
    assert_eq!(env.stop(daemon).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_traffic_after_a_restart_is_not_read_as_a_lull() {
    // Target 40 req/s per member, 100 req/s offered: three members is the steady state (2 read
    // 50 and want 3; 4 read 25 and want 3; 3 read 33 and hold). The restarted daemon's balancer
    // has watched each member for a moment, not its 10 s rate window.
    let mut env = Env::serial();
    let listen = support::free_port();
    let yaml = format!(
        r#"
groups:
  - name: api
    mode: scale
    min: 1
    max: 4
    interval: 500ms
    stale_after: 2s
    cooldown_up: 0s
    cooldown_down: 0s
    policy: {{ kind: target, metric: rps, target: 40, scale_in_samples: 3 }}
    balancer:
      listen: {listen}
      health: {{ path: /healthz, interval: 250ms, rise: 1, fall: 2 }}
"#
    );
    let cfg = env.file("f.yaml", &yaml);
    let cfg = cfg.to_str().unwrap();
    let daemon = env.spawn(&["run", "-c", cfg], "run.log", None);
    wait_until(Duration::from_secs(30), "api_1", || env.running_members("api").len() == 1).await;
    let load = Load::start(LoadSpec::open(listen, "/work?ms=1", 16, 100.0));
    let mut steady_since = Instant::now();
    let mut last = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while last != 3 || steady_since.elapsed() < Duration::from_secs(4) {
        assert!(Instant::now() < deadline, "never steady at 3 members\n{}", env.log("run.log"));
        let n = env.running_members("api").len();
        if n != last {
            (last, steady_since) = (n, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let before = env.member_names("api").len();

    assert_eq!(env.stop(daemon).await, Some(0), "members keep running");
    let daemon = env.spawn(&["run", "-c", cfg], "run2.log", None);
    // 10 s: a full rate window, 20 passes, more than six times scale_in_samples.
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let names = env.member_names("api");
        assert!(names.len() >= before, "scaled in after the restart: {names:?}\n{}", env.log("run2.log"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let report = load.stop().await;
    println!("through the restart: {}", report.summary());
    assert!(!env.log("run2.log").contains("SCALE IN"), "{}", env.log("run2.log"));
    assert_eq!(env.stop(daemon).await, Some(0));
}
