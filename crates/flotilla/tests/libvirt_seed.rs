//! Seed 000's own workflow, with the seed's verbs, on real libvirt guests of the lab:
//! `deploy` a baseline guest → `watch` it → `load` (the seed's `yes > /dev/null` inside the guest,
//! over SSH) until a clone boots → the load split over baseline and clone → `load --stop` → the
//! watcher hands over to the clone → `cleanup`. No domain, overlay or member directory is left.
#![cfg(feature = "libvirt")]

mod lab;
mod support;

use std::time::Duration;

use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;
use lab::*;
use support::{wait_until, Env};

/// Ports for this test's guests (two per guest; baseline and clone).
const PORTS: (u16, u16) = (24200, 24219);

/// The seed's group on the lab: handover between a baseline and one clone, CPU read by libvirt
/// and inside the guest over SSH.
fn seed_config(group: &str) -> String {
    format!(
        r#"
provider:
  kind: libvirt
  libvirt:
    hosts:
      - {{ name: lab, uri: "{LAB_URI}" }}
    ports: "{}-{}"
    start_timeout: 120s
    shutdown_timeout: 10s

metrics:
  sources: [libvirt, ssh]
  ssh: {{ user: root, identity_file: {BUILD}/id_ed25519 }}

groups:
  - name: {group}
    mode: handover
    min: 1
    max: 2
{template}"#,
        PORTS.0,
        PORTS.1,
        template = lab_template(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_with_the_seed_verbs_on_libvirt_guests() {
    require_lab!(Lab::Libvirt);
    let group = unique("seed");
    let _domains = DomainGuard::new(&group); // dropped after the env (which stops the watcher)
    let mut env = Env::serial();
    let cfg = env.file("seed.yaml", &seed_config(&group));
    let cfg = cfg.to_str().unwrap();
    let t0 = tokio::time::Instant::now();
    let baseline = format!("{group}_1");
    let clone = format!("{group}_clone_1");

    // deploy: the baseline guest, through the operations runner.
    let out = env.ok(&["deploy", "--config", cfg, "--name", &group]);
    assert!(out.contains(&format!("{baseline} is running at http://127.0.0.1:")), "{out}");
    assert!(out.contains(&format!("flotilla watch --config {cfg} --server {baseline}")), "{out}");
    assert_eq!(domains_with_prefix(&group), std::slice::from_ref(&baseline));
    assert_eq!(domstate(&baseline).as_deref(), Some("running"));
    eprintln!("deploy: {baseline} serving after {:.1}s", t0.elapsed().as_secs_f64());

    // watch: the seed's thresholds, every 2 s.
    let watch = env.spawn(
        &[
            "watch",
            "--config",
            cfg,
            "--server",
            &baseline,
            "--high",
            "70",
            "--low",
            "25",
            "--min-up",
            "3",
            "--min-down",
            "3",
            "--interval",
            "2",
            "--metric",
            "cpu",
        ],
        "watch.log",
        None,
    );

    // load: `yes` in the baseline until the clone runs, then in both.
    let t1 = tokio::time::Instant::now();
    let out = env.ok(&["load", "--config", cfg, "--group", &group, "--wait", "240s"]);
    assert!(out.contains(&format!("spike: 100% CPU on {baseline}")), "{out}");
    assert!(out.contains("split:") && out.contains(&clone), "{out}\n{}", env.log("watch.log"));
    eprintln!("load: {clone} serving {:.1}s after the spike began", t1.elapsed().as_secs_f64());
    let running = names_in(&members(&env, &group), "running");
    assert_eq!(running, [baseline.clone(), clone.clone()], "{}", env.log("watch.log"));
    let log = env.log("watch.log");
    assert!(log.contains("SCALE UP"), "{log}");

    // load --stop: the watcher hands over to the clone and deletes the baseline.
    let t2 = tokio::time::Instant::now();
    let out = env.ok(&["load", "--config", cfg, "--group", &group, "--stop"]);
    assert!(out.contains("stopped load on"), "{out}");
    wait_until(Duration::from_secs(180), "the handover", || env.member_names(&group) == [clone.clone()]).await;
    eprintln!("handover: {baseline} gone {:.1}s after the load stopped", t2.elapsed().as_secs_f64());
    assert!(env.log("watch.log").contains(&format!("deleting baseline {baseline} and proceeding with clone {clone}")));
    assert_eq!(domains_with_prefix(&group), std::slice::from_ref(&clone));
    assert_eq!(env.status()["groups"][0]["primary"], clone.as_str());
    assert_eq!(env.stop(watch).await, Some(0), "{}", env.log("watch.log"));

    // cleanup: the clone too, through the runner; nothing of the group is left anywhere.
    let out = env.ok(&["cleanup", "--config", cfg, &group, "--yes"]);
    assert!(out.contains(&format!("deleted {clone}")), "{out}");
    assert!(domains_with_prefix(&group).is_empty(), "domains left: {:?}", domains_with_prefix(&group));
    let dirs = env.path().join("state").join("libvirt");
    let left: Vec<String> = std::fs::read_dir(&dirs)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(left.iter().all(|n| !n.starts_with(&group)), "member directories left: {left:?}");
    assert!(env.member_names(&group).is_empty());
    eprintln!("seed 000 on libvirt: {:.1}s end to end", t0.elapsed().as_secs_f64());
}
