//! The `prometheus` metric source under a real `flotilla run` (local members): a series in the
//! lab's Prometheus, mapped to a member by its name, scales the group out; deleted, it is missing
//! data, and the group does not scale in on it.

mod support;

use std::time::Duration;

use flotilla_testkit::lab::{Lab, EXTRAS_PORTS};
use flotilla_testkit::require_lab;
use support::{wait_until, Env};

async fn series(line: &str) {
    let url = format!("http://127.0.0.1:{}/metrics", EXTRAS_PORTS.exporter);
    let r = reqwest::Client::new().post(url).body(line.to_string()).send().await.expect("the lab's exporter");
    assert!(r.status().is_success(), "{line}: {}", r.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_series_scales_a_group_and_its_absence_scales_nothing_in() {
    require_lab!(Lab::OpenStackExtras);
    let mut env = Env::serial();
    let tag = format!("pl{}", std::process::id());
    let yaml = format!(
        r#"
metrics:
  sources: [prometheus]
  prometheus:
    url: http://127.0.0.1:{port}
    timeout: 2s
    queries:
      - {{metric: cpu, query: 'lab_flotilla_cpu{{run="{tag}",group="{{group}}"}}', member_label: member}}
groups:
  - name: web
    mode: scale
    min: 1
    max: 2
    interval: 500ms
    stale_after: 2s
    cooldown_up: 0s
    cooldown_down: 0s
    drain_timeout: 1s
    policy: {{metric: cpu, high: 80, low: 20, min_up: 2, min_down: 2}}
"#,
        port = EXTRAS_PORTS.prometheus
    );
    let cfg = env.file("prom.yaml", &yaml);
    let daemon = env.spawn(&["run", "-c", cfg.to_str().unwrap()], "run.log", None);
    wait_until(Duration::from_secs(30), "web_1", || env.running_members("web").len() == 1).await;
    series(&format!("lab_flotilla_cpu{{run=\"{tag}\",group=\"web\",member=\"web_1\"}} 95")).await;
    wait_until(Duration::from_secs(30), "a second member", || env.running_members("web").len() == 2).await;
    // Gone from Prometheus: missing data, never 0 % (which would scale in at once).
    series(&format!("lab_flotilla_cpu{{run=\"{tag}\",group=\"web\",member=\"web_1\"}} delete")).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = env.log("run.log");
    assert_eq!(env.running_members("web").len(), 2, "{log}");
    assert!(log.contains("[metrics] cpu=n/a"), "no data, said as such: {log}");
    assert_eq!(env.stop(daemon).await, Some(0), "{log}");
}
