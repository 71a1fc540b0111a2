//! R2, provider faults: one provider call in five goes wrong (an error, a timeout, a slow call, or
//! a create/delete whose answer is lost after it took effect), while the group scales out and in
//! under a steady request stream through its balancer. The group converges, makes no duplicate,
//! leaves no orphan, and the clients see no failed request.

mod support;

use std::fs::File;
use std::time::Duration;

use flotilla_loadgen::{Load, LoadSpec};
use support::{wait_until, Env};

fn running(env: &Env) -> Vec<(String, String)> {
    env.running_members("web")
}

async fn duty(addr: &str, on: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (method, path) = if on { ("POST", "/load?duty=1") } else { ("DELETE", "/load") };
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else { return };
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_provider_faults_lose_no_request_and_duplicate_nothing() {
    let mut env = Env::serial();
    let listen = support::free_port();
    let yaml = format!(
        r#"
groups:
  - name: web
    mode: scale
    min: 1
    max: 3
    interval: 500ms
    stale_after: 2s
    cooldown_up: 0s
    cooldown_down: 0s
    drain_timeout: 10s
    policy: {{ metric: cpu, high: 70, low: 20, min_up: 2, min_down: 2 }}
    balancer:
      listen: {listen}
      health: {{ path: /healthz, interval: 250ms, rise: 1, fall: 2 }}
"#
    );
    let cfg = env.file("f.yaml", &yaml);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    eprintln!("provider faults: rate 0.2, seed {seed}");
    let log = File::create(env.path().join("run.log")).unwrap();
    let child = env
        .cmd(&["run", "-c", cfg.to_str().unwrap()])
        .env("FLOTILLA_FAULTS", format!("rate=0.2,seed={seed}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let daemon = env.adopt(child);
    wait_until(Duration::from_secs(60), "the first member", || running(&env).len() == 1).await;

    let load = Load::start(LoadSpec::open(listen, "/", 32, 200.0));
    for round in 1..=4 {
        for (_, addr) in running(&env) {
            duty(&addr, true).await;
        }
        wait_until(Duration::from_secs(90), "a scale-out", || running(&env).len() >= 2).await;
        for (_, addr) in running(&env) {
            duty(&addr, false).await;
        }
        wait_until(Duration::from_secs(90), "the scale-in", || running(&env).len() == 1).await;
        let snap = load.snapshot();
        assert_eq!((snap.failures, snap.server_errors()), (0, 0), "round {round}: {}", snap.summary());
    }
    let report = load.stop().await;
    let text = env.log("run.log");
    let injected = text.matches("injected provider fault").count();
    let lost = text.matches("fault=Lost").count();
    eprintln!("provider faults: {injected} injected ({lost} lost answers); requests: {}", report.summary());
    assert_eq!(report.failures, 0, "{:?}", report.failure_reasons);
    assert_eq!(report.server_errors(), 0, "{}", report.summary());
    assert!(injected >= 3, "faults were injected: {injected}\n{text}");
    // Converged: what the store knows is what runs, each name once.
    wait_until(Duration::from_secs(60), "store and processes agree", || {
        env.live_member_names() == env.member_names("web")
    })
    .await;
    let live = env.live_member_names();
    let mut dedup = live.clone();
    dedup.dedup();
    assert_eq!(live, dedup, "no duplicate process");
    assert_eq!(env.stop(daemon).await, Some(0));
}
