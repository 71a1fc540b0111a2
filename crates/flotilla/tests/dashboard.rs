//! The dashboard in a real browser (Debian Chromium driven by playwright-core, `tests/browser`),
//! against a real `flotilla run` on local members: the group shows live without a token, a
//! scale-out asked through the API appears in the chart, the timeline and the member table within
//! 3 s, pause is refused without the admin token and works with it, and the page fits a phone.
//! Screenshots land in `target/dashboard-shots/`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{wait_until, Env};

const ADMIN: &str = "admin-token-0123456789abcdef";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap().to_path_buf()
}

/// The browser and the script's packages, or one line saying what is missing (a failure under
/// `FLOTILLA_LABS=1`, where `.ci/run` installs both).
fn browser_ready() -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let missing = if !Path::new(&chromium).exists() {
        format!("no Chromium at {chromium} (apt-get install chromium)")
    } else if !repo().join("tests/browser/node_modules/playwright-core").is_dir() {
        "tests/browser has no node_modules (npm ci --prefix tests/browser)".to_string()
    } else if std::process::Command::new("node").arg("--version").output().is_err() {
        "no node on PATH".to_string()
    } else {
        return true;
    };
    assert!(!flotilla_testkit::lab::labs_required(), "FLOTILLA_LABS=1 but {missing}");
    eprintln!("SKIPPED the dashboard in a browser: {missing}");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_and_steers_a_live_group_in_a_real_browser() {
    if !browser_ready() {
        return;
    }
    let mut env = Env::serial();
    let api = support::free_port();
    let tokens = env.private_file("api.tokens", &format!("admin {ADMIN}\n"));
    let yaml = format!(
        r#"
api:
  listen: {api}
  tokens_file: {}
  anonymous_read: true
groups:
  - name: web
    mode: scale
    min: 1
    max: 4
    interval: 500ms
    stale_after: 2s
    cooldown_up: 0s
    cooldown_down: 30s
    drain_timeout: 2s
    policy: {{ metric: cpu, high: 70, low: 5, min_up: 2, min_down: 20 }}
"#,
        tokens.display()
    );
    let cfg = env.file("f.yaml", &yaml);
    let daemon = env.spawn(&["run", "-c", cfg.to_str().unwrap()], "run.log", None);
    wait_until(Duration::from_secs(30), "web_1", || env.running_members("web").len() == 1).await;
    assert!(env.log("run.log").contains(&format!("dashboard at http://{api}/dashboard/")), "{}", env.log("run.log"));

    let shots = repo().join("target/dashboard-shots");
    let out = tokio::process::Command::new("node")
        .arg(repo().join("tests/browser/dashboard.mjs"))
        .args([&format!("http://{api}"), "web", ADMIN, shots.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("browser: {said}");
    assert!(out.status.success(), "the browser check failed:\n{said}\nrun.log:\n{}", env.log("run.log"));
    let summary: serde_json::Value = serde_json::from_str(said.lines().last().unwrap_or("")).unwrap_or_default();
    assert_eq!(summary["checks"].as_array().map(Vec::len), Some(5), "{said}");
    for shot in ["dashboard-laptop.png", "dashboard-phone.png"] {
        assert!(std::fs::metadata(shots.join(shot)).is_ok_and(|m| m.len() > 10_000), "{shot} missing or empty");
    }
    assert_eq!(env.stop(daemon).await, Some(0));
}
