//! R3 on the libvirt lab: the in-guest SSH source and the hypervisor's domain stats go quiet under
//! a real `flotilla run`, with two idle guests that any report would scale in to one.
//!
//! - SSH: the guests' sshd is stopped (the guests serve on): no scale-in for the whole outage.
//! - libvirt: the daemon reaches libvirtd through a socket proxy of this test; the proxy is cut
//!   after the first readings: no scale-in while it is down; once it is back the group scales in
//!   (so the same setup does scale in when a source reports: the test can fail).
#![cfg(feature = "libvirt")]

mod lab;
mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;
use lab::*;
use support::{wait_until, Env};
use tokio::task::JoinHandle;

const PORTS: (u16, u16) = (24400, 24419);
const LIBVIRT_SOCK: &str = "/run/libvirt/libvirt-sock";

/// A unix-socket proxy to libvirtd: cutting it drops every connection and refuses new ones, as a
/// host that went away would.
struct Proxy {
    path: PathBuf,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    fn start(path: &Path) -> Proxy {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path).expect("proxy socket");
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let conns = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut upstream) = tokio::net::UnixStream::connect(LIBVIRT_SOCK).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
                conns.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Proxy { path: path.to_path_buf(), tasks }
    }

    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

fn yaml(group: &str, sock: &Path, min: u32, sources: &str, min_down: u32) -> String {
    format!(
        r#"
provider:
  kind: libvirt
  libvirt:
    hosts:
      - {{ name: lab, uri: "qemu+unix:///system?socket={sock}" }}
    ports: "{}-{}"
    start_timeout: 120s
    shutdown_timeout: 10s
metrics:
  sources: [{sources}]
  ssh: {{ user: root, identity_file: {BUILD}/id_ed25519, connect_timeout: 2s, command_timeout: 2s }}
groups:
  - name: {group}
    mode: scale
    min: {min}
    max: 2
    interval: 1s
    stale_after: 4s
    cooldown_up: 0s
    cooldown_down: 0s
    drain_timeout: 5s
    policy: {{ metric: cpu, high: 99, low: 60, min_up: 1000, min_down: {min_down} }}
{template}"#,
        PORTS.0,
        PORTS.1,
        sock = sock.display(),
        template = lab_template(),
    )
}

/// Checks for `span` that the group keeps both guests and the log says no scale-in.
async fn holds(env: &Env, group: &str, log: &str, span: Duration, what: &str) {
    let end = tokio::time::Instant::now() + span;
    while tokio::time::Instant::now() < end {
        let domains = domains_with_prefix(group);
        assert_eq!(domains.len(), 2, "{what}: {domains:?}\n{}", env.log(log));
        assert!(!env.log(log).contains("SCALE IN"), "{what}:\n{}", env.log(log));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Log lines with a CPU reading (not `n/a`).
fn readings(log: &str) -> usize {
    log.lines().filter(|l| l.contains("[metrics] cpu=") && !l.contains("[metrics] cpu=n/a")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_ssh_and_libvirt_sources_scale_nothing_in() {
    require_lab!(Lab::Libvirt);
    let group = unique("quiet");
    let _domains = DomainGuard::new(&group);
    let mut env = Env::serial();
    let sock = env.path().join("libvirt.sock");
    let proxy = Proxy::start(&sock);

    // Two idle guests.
    let cfg = env.file("a.yaml", &yaml(&group, &sock, 2, "libvirt", 3));
    let pid = env.spawn(&["run", "-c", cfg.to_str().unwrap()], "a.log", None);
    wait_until(Duration::from_secs(180), "two guests", || names_in(&members(&env, &group), "running").len() == 2).await;
    assert_eq!(env.stop(pid).await, Some(0), "guests kept");

    // SSH outage: sshd stops in both guests; they serve on.
    for m in members(&env, &group) {
        let (host, port) = m["tags"]["ssh_address"].as_str().unwrap().rsplit_once(':').unwrap();
        let out = std::process::Command::new("ssh")
            .args(["-i", &format!("{BUILD}/id_ed25519"), "-p", port, "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", &format!("root@{host}")])
            .arg("kill $(cat /run/dropbear.pid)")
            .output()
            .unwrap();
        assert!(out.status.success(), "stop sshd in {}: {}", m["name"], String::from_utf8_lossy(&out.stderr));
    }
    let cfg = env.file("b.yaml", &yaml(&group, &sock, 1, "ssh", 3));
    let pid = env.spawn(&["run", "-c", cfg.to_str().unwrap()], "b.log", None);
    holds(&env, &group, "b.log", Duration::from_secs(12), "ssh quiet").await;
    assert_eq!(readings(&env.log("b.log")), 0, "no reading without sshd:\n{}", env.log("b.log"));
    assert_eq!(env.stop(pid).await, Some(0));

    // libvirt outage: readings flow, then the host goes away mid-streak.
    let cfg = env.file("c.yaml", &yaml(&group, &sock, 1, "libvirt", 8));
    let pid = env.spawn(&["run", "-c", cfg.to_str().unwrap()], "c.log", None);
    wait_until(Duration::from_secs(30), "a libvirt reading", || readings(&env.log("c.log")) >= 1).await;
    proxy.cut();
    let cut_at = readings(&env.log("c.log"));
    holds(&env, &group, "c.log", Duration::from_secs(15), "libvirt quiet").await;
    assert!(readings(&env.log("c.log")) <= cut_at + 1, "readings while the host was away:\n{}", env.log("c.log"));

    // The host is back: the readings say idle, and the group scales in.
    let _back = Proxy::start(&sock);
    wait_until(Duration::from_secs(120), "the scale-in once the host is back", || {
        domains_with_prefix(&group).len() == 1
    })
    .await;
    assert!(env.log("c.log").contains("SCALE IN"), "{}", env.log("c.log"));
    assert_eq!(env.stop(pid).await, Some(0));
}
