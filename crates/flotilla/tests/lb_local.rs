//! The balancer in front of real member processes, driven by the real controller: zero dropped
//! requests while the group scales out, scales in and hands over; a member killed with SIGKILL under
//! load; a long request that outlives its member's drain; the seed-002 request-count scenario.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use flotilla_loadgen::{Load, LoadReport, LoadSpec};
use support::{wait_until, Env};

fn group_yaml(name: &str, mode: &str, extra: &str, policy: &str, listen: SocketAddr) -> String {
    format!(
        r#"
groups:
  - name: {name}
    mode: {mode}
    interval: 500ms
    stale_after: 2s
    cooldown_up: 0s
    cooldown_down: 0s
    drain_timeout: 10s
{extra}
    policy: {policy}
    balancer:
      listen: {listen}
      health: {{ path: /healthz, interval: 250ms, rise: 1, fall: 2 }}
"#
    )
}

/// Addresses of the group's running members, from `flotilla status`.
fn member_addrs(env: &Env, group: &str) -> Vec<(String, String)> {
    env.running_members(group)
}

fn assert_no_drop(r: &LoadReport, min_rate: f64, what: &str) {
    println!("{what}: {}", r.summary());
    assert_eq!(r.failures, 0, "{what}: failed requests: {:?}\n{}", r.failure_reasons, r.summary());
    assert_eq!(r.server_errors(), 0, "{what}: 5xx: {}", r.summary());
    assert!(r.rate() >= min_rate, "{what}: only {:.0} req/s: {}", r.rate(), r.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_drop_while_scaling_out_and_in_three_times() {
    let mut env = Env::serial();
    let listen = support::free_port();
    let yaml = group_yaml(
        "web",
        "scale",
        "    min: 1\n    max: 3",
        "{ metric: cpu, high: 70, low: 20, min_up: 2, min_down: 2 }",
        listen,
    );
    let cfg = env.file("f.yaml", &yaml);
    let daemon = env.spawn(&["run", "-c", cfg.to_str().unwrap()], "run.log", None);
    wait_until(Duration::from_secs(30), "web_1", || member_addrs(&env, "web").len() == 1).await;

    let load = Load::start(LoadSpec::open(listen, "/", 32, 250.0));
    for round in 1..=3 {
        support::set_duty(&env, "web", Some(1.0)).await;
        wait_until(Duration::from_secs(30), "scale-out", || member_addrs(&env, "web").len() >= 2).await;
        support::set_duty(&env, "web", None).await;
        wait_until(Duration::from_secs(30), "scale-in", || member_addrs(&env, "web").len() == 1).await;
        let snap = load.snapshot();
        assert_eq!((snap.failures, snap.server_errors()), (0, 0), "round {round}: {}", snap.summary());
    }
    let report = load.stop().await;
    assert_no_drop(&report, 200.0, "scale out/in");
    // Every member that lived served traffic: the balancer really spread the load.
    assert!(report.by_backend.len() >= 4, "{}", report.summary());
    let log = env.log("run.log");
    assert_eq!(log.matches("SCALE IN").count(), 3, "{log}");
    assert_eq!(env.stop(daemon).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_drop_through_three_handovers() {
    let mut env = Env::serial();
    let listen = support::free_port();
    let yaml =
        group_yaml("vm-test", "handover", "", "{ metric: max, high: 70, low: 20, min_up: 2, min_down: 2 }", listen);
    let cfg = env.file("f.yaml", &yaml);
    let daemon = env.spawn(&["run", "-c", cfg.to_str().unwrap()], "run.log", None);
    wait_until(Duration::from_secs(30), "vm-test_1", || member_addrs(&env, "vm-test").len() == 1).await;

    let load = Load::start(LoadSpec::open(listen, "/", 32, 250.0));
    for round in 1..=3 {
        support::set_duty(&env, "vm-test", Some(1.0)).await;
        wait_until(Duration::from_secs(30), "a clone", || member_addrs(&env, "vm-test").len() == 2).await;
        support::set_duty(&env, "vm-test", None).await;
        let clone = format!("vm-test_clone_{round}");
        wait_until(Duration::from_secs(30), "the handover", || {
            member_addrs(&env, "vm-test").iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>() == [clone.as_str()]
        })
        .await;
    }
    let report = load.stop().await;
    assert_no_drop(&report, 200.0, "handover");
    let log = env.log("run.log");
    assert_eq!(log.matches("SCALE DOWN").count(), 3, "{log}");
    assert!(report.by_backend.contains_key("vm-test_1") && report.by_backend.contains_key("vm-test_clone_3"));
    assert_eq!(env.stop(daemon).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_killed_under_load_is_retried_elsewhere_and_replaced() {
    let mut env = Env::serial();
    let listen = support::free_port();
    let yaml = group_yaml(
        "web",
        "scale",
        "    min: 2\n    max: 3",
        "{ metric: cpu, high: 90, low: 1, min_up: 5, min_down: 50 }",
        listen,
    );
    let cfg = env.file("f.yaml", &yaml);
    let daemon = env.spawn(&["run", "-c", cfg.to_str().unwrap()], "run.log", None);
    wait_until(Duration::from_secs(30), "two members", || member_addrs(&env, "web").len() == 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Requests that take a while, so some are in flight on the member when it dies. Enough
    // workers that the rate holds even when latency grows on a busy machine.
    let load = Load::start(LoadSpec::open(listen, "/work?ms=2", 32, 220.0));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = env.status();
    let victim = &st["groups"][0]["members"][0];
    let pid: u32 = victim["tags"]["pid"].as_str().unwrap().parse().unwrap();
    let victim_name = victim["name"].as_str().unwrap().to_string();
    support::signal(pid, nix::sys::signal::Signal::SIGKILL);

    wait_until(Duration::from_secs(30), "a replacement", || {
        let names: Vec<String> = member_addrs(&env, "web").into_iter().map(|(n, _)| n).collect();
        names.len() == 2 && !names.contains(&victim_name)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    assert_no_drop(&report, 150.0, "member killed");
    assert!(report.by_backend.contains_key("web_3"), "the replacement serves: {}", report.summary());
    assert_eq!(env.stop(daemon).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_member_is_replaced_new_before_old_without_dropping_a_request() {
    // A member that exists but does not answer (SIGSTOP: a frozen guest) is Running to its
    // provider; only the balancer's health check can tell. Past its grace it is replaced.
    let mut env = Env::serial();
    let listen = support::free_port();
    let yaml = format!(
        r#"
groups:
  - name: web
    mode: scale
    min: 2
    max: 3
    interval: 500ms
    stale_after: 2s
    drain_timeout: 3s
    policy: {{ metric: cpu, high: 90, low: 1, min_up: 5, min_down: 50 }}
    balancer:
      listen: {listen}
      health: {{ path: /healthz, interval: 250ms, timeout: 500ms, rise: 1, fall: 2, grace: 2s, replace_after: 2s }}
"#
    );
    let cfg = env.file("f.yaml", &yaml);
    let daemon = env.spawn(&["run", "-c", cfg.to_str().unwrap()], "run.log", None);
    wait_until(Duration::from_secs(30), "two members", || member_addrs(&env, "web").len() == 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // both past their grace, and serving

    let load = Load::start(LoadSpec::open(listen, "/work?ms=2", 32, 150.0));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let st = env.status();
    let victim = &st["groups"][0]["members"][0];
    let pid: u32 = victim["tags"]["pid"].as_str().unwrap().parse().unwrap();
    let victim_name = victim["name"].as_str().unwrap().to_string();
    support::signal(pid, nix::sys::signal::Signal::SIGSTOP);

    wait_until(Duration::from_secs(40), "the hung member replaced", || {
        let names = env.member_names("web");
        names.len() == 2 && !names.contains(&victim_name)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = load.stop().await;
    // The requests the member held when it froze wait until it is killed (then are retried
    // elsewhere), tying up some of the load's workers: the rate dips, nothing fails.
    assert_no_drop(&report, 50.0, "member hung");
    assert!(report.by_backend.contains_key("web_3"), "the replacement serves: {}", report.summary());
    let log = env.log("run.log");
    assert!(log.contains(&format!("REPLACE UNHEALTHY: {victim_name} failing its health check")), "{log}");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    assert!(matches!(state, None | Some('Z')), "the hung member's process is gone: {stat}");
    assert_eq!(env.stop(daemon).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_request_outlives_its_members_drain() {
    let mut env = Env::serial();
    let listen = support::free_port();
    let yaml = group_yaml(
        "web",
        "scale",
        "    min: 1\n    max: 2",
        "{ metric: cpu, high: 70, low: 20, min_up: 2, min_down: 2 }",
        listen,
    );
    let cfg = env.file("f.yaml", &yaml);
    let daemon = env.spawn(&["run", "-c", cfg.to_str().unwrap()], "run.log", None);
    wait_until(Duration::from_secs(30), "web_1", || member_addrs(&env, "web").len() == 1).await;
    support::set_duty(&env, "web", Some(1.0)).await;
    wait_until(Duration::from_secs(30), "web_2", || member_addrs(&env, "web").len() == 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // web_2 passes its health check

    // One slow request per member (least-outstanding spreads them), then the load stops: the
    // scale-in drains web_1 while its request is still running.
    let slow = Load::start(LoadSpec::closed(listen, "/sleep?ms=4000", 2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    support::set_duty(&env, "web", None).await;
    wait_until(Duration::from_secs(30), "the scale-in", || member_addrs(&env, "web").len() == 1).await;
    let report = slow.stop().await;
    assert_eq!(report.failures, 0, "{:?}", report.failure_reasons);
    assert_eq!(report.ok(), report.sent, "{}", report.summary());
    assert!(report.by_backend.contains_key("web_1"), "the drained member finished its request: {}", report.summary());
    let log = env.log("run.log");
    assert!(log.contains("SCALE IN"), "{log}");
    assert_eq!(env.stop(daemon).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_request_count_scale_out_without_a_single_503() {
    let mut env = Env::serial();
    let listen = support::free_port();
    let yaml = group_yaml(
        "service",
        "scale",
        "    min: 1\n    max: 2",
        "{ kind: requests, requests: 10, window: 60s }",
        listen,
    );
    let cfg = env.file("f.yaml", &yaml);
    let daemon = env.spawn(&["run", "-c", cfg.to_str().unwrap()], "run.log", None);
    wait_until(Duration::from_secs(30), "service_1", || member_addrs(&env, "service").len() == 1).await;

    // The seed's client: a steady trickle of requests; request 10 triggers the scale-out.
    let load = Load::start(LoadSpec::open(listen, "/work?ms=20", 2, 5.0));
    wait_until(Duration::from_secs(30), "service_2", || member_addrs(&env, "service").len() == 2).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let report = load.stop().await;
    assert_eq!(report.statuses.keys().copied().collect::<Vec<_>>(), vec![200], "{}", report.summary());
    assert_eq!(report.failures, 0, "{}", report.summary());
    for member in ["service_1", "service_2"] {
        assert!(report.by_backend.get(member).is_some_and(|n| *n > 0), "{member} served: {}", report.summary());
    }
    let log = env.log("run.log");
    assert!(log.contains("SCALE UP"), "{log}");
    assert_eq!(env.stop(daemon).await, Some(0));
}

/// A template change rolls the group one member at a time: each new member serves before an old
/// one drains, so the group never has fewer than its 3 running members and no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_change_rolls_the_group_without_dropping_a_request() {
    let mut env = Env::serial();
    let listen = support::free_port();
    let yaml = |vcpus: u32| {
        group_yaml(
            "web",
            "scale",
            &format!("    min: 3\n    max: 4\n    template: {{ vcpus: {vcpus} }}\n    replacement: {{ strategy: rolling, max_unavailable: 1 }}"),
            "{ metric: cpu, high: 99, low: 0, min_up: 5, min_down: 5 }",
            listen,
        )
    };
    let v1 = env.file("v1.yaml", &yaml(1));
    let daemon = env.spawn(&["run", "-c", v1.to_str().unwrap()], "run1.log", None);
    wait_until(Duration::from_secs(30), "3 members", || member_addrs(&env, "web").len() == 3).await;
    assert_eq!(env.stop(daemon).await, Some(0));
    let before: Vec<String> = member_addrs(&env, "web").into_iter().map(|(n, _)| n).collect();

    // The members outlive the daemon; the new one adopts them, then rolls them.
    let v2 = env.file("v2.yaml", &yaml(2));
    let daemon = env.spawn(&["run", "-c", v2.to_str().unwrap()], "run2.log", None);
    wait_until(Duration::from_secs(15), "the balancer", || std::net::TcpStream::connect(listen).is_ok()).await;
    let load = Load::start(LoadSpec::open(listen, "/", 32, 250.0));
    let mut fewest = usize::MAX;
    wait_until(Duration::from_secs(60), "the rollout", || {
        let now = member_addrs(&env, "web");
        fewest = fewest.min(now.len());
        now.len() == 3 && now.iter().all(|(n, _)| !before.contains(n))
    })
    .await;
    let report = load.stop().await;
    assert_no_drop(&report, 200.0, "rollout");
    assert!(fewest >= 3, "only {fewest} members were running at one point");
    let log = env.log("run2.log");
    assert_eq!(log.matches("ROLLOUT").count(), 3, "{log}");
    // Old and new members both served during the rollout.
    assert!(before.iter().any(|n| report.by_backend.contains_key(n)), "{}", report.summary());
    assert_eq!(env.stop(daemon).await, Some(0));
}

/// `flotilla lb` in front of an ordinary web server (one with no `/healthz`) serves at once, as
/// HAProxy does without `check`; it used to wait for a health check that never passed and answer
/// 503 after 30 s. Asking for checks that cannot apply is a usage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flotilla_lb_serves_an_ordinary_web_server_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = server.local_addr().unwrap().to_string();
    let web = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = server.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let answer = if head.starts_with("GET /healthz") {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else {
                    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
                };
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    let mut env = Env::new();
    let listen = support::free_port().to_string();
    env.spawn(&["lb", "--listen", &listen, "--backend", &backend], "lb.log", None);
    wait_until(Duration::from_secs(10), "the listener", || std::net::TcpStream::connect(&listen).is_ok()).await;
    let answer = tokio::time::timeout(Duration::from_secs(2), support::raw_request(&listen, "GET", "/")).await;
    let answer = answer.unwrap_or_else(|_| panic!("no answer within 2 s:\n{}", env.log("lb.log")));
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"), "{answer}");

    let out = env.run(&["lb", "--listen", "127.0.0.1:0", "--backend", &backend, "--mode", "tcp", "--health", "http"]);
    assert_eq!(out.status.code(), Some(2), "{}", support::text(&out.stderr));
    assert!(support::text(&out.stderr).contains("HTTP checks need --mode http"));
    web.abort();
}
