//! Helpers for the binary's tests on the real libvirt lab (`../shared/libvirt-lab`): bring the lab
//! up, a libvirt group config in Flotilla's YAML, `virsh` queries, and a guard that destroys and
//! undefines every domain with the test's unique prefix however the test ends.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{text, Env};

pub const LAB_URI: &str = "qemu:///system";
pub const BUILD: &str = "/tmp/libvirt-lab/build";

/// The lab's domain template (used to define a foreign domain that looks like a lab guest).
pub fn lab_domain_template() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/libvirt-lab/domain-template.xml")
}

/// A short name unique to this test process: `<tag><pid mod 10000>`.
pub fn unique(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 10000)
}

pub fn virsh(args: &[&str]) -> (bool, String) {
    let out = Command::new("virsh").arg("-q").arg("-c").arg(LAB_URI).args(args).output().expect("run virsh");
    (out.status.success(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

/// Names of all domains (running or not) that start with `prefix`, sorted.
pub fn domains_with_prefix(prefix: &str) -> Vec<String> {
    let (ok, out) = virsh(&["list", "--all", "--name"]);
    assert!(ok, "virsh list: {out}");
    let mut v: Vec<String> = out.lines().map(str::trim).filter(|n| n.starts_with(prefix)).map(str::to_string).collect();
    v.sort();
    v
}

/// `virsh domstate`, or `None` if the domain does not exist.
pub fn domstate(name: &str) -> Option<String> {
    let (ok, out) = virsh(&["domstate", name]);
    if ok {
        Some(out.trim().to_string())
    } else {
        assert!(
            out.contains("failed to get domain") || out.contains("Domain not found"),
            "virsh domstate {name}: {out}"
        );
        None
    }
}

pub fn uuid(name: &str) -> String {
    let (ok, uuid) = virsh(&["domuuid", name]);
    assert!(ok, "virsh domuuid {name}: {uuid}");
    uuid.trim().to_string()
}

/// (UUID, numeric id) of a running domain: the id changes whenever the domain is (re)started.
pub fn identity(name: &str) -> (String, String) {
    let (ok, id) = virsh(&["domid", name]);
    assert!(ok, "virsh domid {name}: {id}");
    (uuid(name), id.trim().to_string())
}

/// Destroys and undefines every domain whose name starts with `prefix`, when created (leftovers of
/// an earlier run with the same pid) and on drop, even when the test panics. Declare it before the
/// [`Env`], so that it drops after the env has killed the controller (which could otherwise make a
/// member again).
pub struct DomainGuard {
    pub prefix: String,
}

impl DomainGuard {
    pub fn new(prefix: &str) -> Self {
        let g = DomainGuard { prefix: prefix.to_string() };
        g.sweep();
        g
    }
    fn sweep(&self) {
        let (_, out) = virsh(&["list", "--all", "--name"]);
        for name in out.lines().map(str::trim).filter(|n| n.starts_with(&self.prefix)) {
            let _ = virsh(&["destroy", name]);
            let _ = virsh(&["undefine", name]);
            eprintln!("cleanup: removed domain {name}");
        }
    }
}

impl Drop for DomainGuard {
    fn drop(&mut self) {
        self.sweep();
    }
}

/// Defines (does not start) a domain from the lab's own template: it carries the lab's metadata but
/// not Flotilla's, so Flotilla must never list, change or delete it. Its files would live in `dir`
/// (none are created: it is never started).
pub fn define_foreign(name: &str, dir: &Path, ports: (u16, u16)) {
    let f = |n: &str| dir.join(n).display().to_string();
    let xml = std::fs::read_to_string(lab_domain_template()).expect("lab domain template");
    let xml = [
        ("@NAME@", name.to_string()),
        ("@MEMORY_MIB@", "128".into()),
        ("@VCPUS@", "1".into()),
        ("@KERNEL@", format!("{BUILD}/vmlinux")),
        ("@INITRD@", format!("{BUILD}/initrd.img")),
        ("@CMDLINE@", "console=ttyS0 quiet".into()),
        ("@DISK@", f("disk.qcow2")),
        ("@SEED@", f("seed.iso")),
        ("@SSH_PORT@", ports.0.to_string()),
        ("@HTTP_PORT@", ports.1.to_string()),
        ("@TB_CACHE_MIB@", "32".into()),
        ("@CONSOLE_LOG@", f("console.log")),
        ("@LAB_NS@", "urn:x-libvirt-lab:v1".into()),
    ]
    .iter()
    .fold(xml, |x, (k, v)| x.replace(k, v));
    let p = dir.join(format!("{name}.xml"));
    std::fs::write(&p, xml).unwrap();
    let (ok, out) = virsh(&["define", p.to_str().unwrap()]);
    assert!(ok, "define foreign {name}: {out}");
}

/// A group's `template:` on the lab's guest image (indented for a group; extend it with more
/// `libvirt:` keys at eight spaces).
pub fn lab_template() -> String {
    format!(
        "    template:\n      vcpus: 1\n      libvirt:\n        image: {BUILD}/base.qcow2\n        \
         kernel: {BUILD}/vmlinux\n        initrd: {BUILD}/initrd.img\n        \
         ssh_authorized_key: {BUILD}/id_ed25519.pub\n        memory_mib: 128\n        service_port: 8080\n"
    )
}

/// A Flotilla config: the lab host, forwarded ports from `ports`, one `scale` group of fixed size
/// `n` on the lab guest. `extra_group` is indented group YAML (balancer, replacement, ...), and
/// `user_data` the guest's user-data script (part of the template version).
pub fn config(group: &str, n: u32, ports: (u16, u16), user_data: &str, extra_group: &str) -> String {
    let user_data: String = user_data.lines().map(|l| format!("          {l}\n")).collect();
    format!(
        r#"
provider:
  kind: libvirt
  libvirt:
    hosts:
      - {{ name: lab, uri: "{LAB_URI}" }}
    placement: round-robin
    ports: "{}-{}"
    start_timeout: 120s
    shutdown_timeout: 10s

groups:
  - name: {group}
    mode: scale
    min: {n}
    max: {n}
    interval: 1s
    stale_after: 5s
    cooldown_up: 0s
    cooldown_down: 0s
    drain_timeout: 10s
    policy: {{ metric: cpu, high: 99, low: 0, min_up: 5, min_down: 5 }}
{template}        user_data: |
{user_data}{extra_group}
"#,
        ports.0,
        ports.1,
        template = lab_template(),
    )
}

/// A group's members from `flotilla status --output json`.
pub fn members(env: &Env, group: &str) -> Vec<Value> {
    let st = env.status();
    st["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == group)
        .and_then(|g| g["members"].as_array().cloned())
        .unwrap_or_default()
}

/// Names of a group's members in the given state.
pub fn names_in(members: &[Value], state: &str) -> Vec<String> {
    let mut v: Vec<String> =
        members.iter().filter(|m| m["state"] == state).map(|m| m["name"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

/// `GET path` straight to a member (not through the balancer), with a short deadline: the status
/// line and body, or `None` if it did not answer.
pub async fn get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    };
    tokio::time::timeout(Duration::from_secs(2), work).await.ok().flatten()
}

/// `flotilla status --output json` without blocking the runtime (for tests that poll it while a
/// load runs on the same runtime).
pub async fn status_async(env: &Env) -> Value {
    let out = tokio::process::Command::new(crate::support::BIN)
        .arg("--state-dir")
        .arg(env.path().join("state"))
        .args(["status", "--output", "json", "--events", "100"])
        .env_remove("FLOTILLA_STATE_DIR")
        .env_remove("FLOTILLA_FAILPOINT")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run flotilla status");
    assert!(out.status.success(), "flotilla status failed: {}\n{}", out.status, text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status json: {e}: {}", text(&out.stdout)))
}

/// The group's report in a status document.
pub fn group_of<'a>(st: &'a Value, group: &str) -> Option<&'a Value> {
    st["groups"].as_array()?.iter().find(|g| g["name"] == group)
}

/// The value of `key=` in a log line (`member=web_1`, `seconds=8.1`).
pub fn log_field(line: &str, key: &str) -> Option<String> {
    let key = format!("{key}=");
    line.split_whitespace().find_map(|w| w.strip_prefix(key.as_str())).map(|v| v.trim_matches('"').to_string())
}

/// (member, seconds) of the provider's `member serving` log lines: define (or adopt) to `/healthz`
/// answering.
pub fn serving_times(log: &str) -> Vec<(String, f64)> {
    log.lines()
        .filter(|l| l.contains("member serving"))
        .filter_map(|l| Some((log_field(l, "member")?, log_field(l, "seconds")?.parse().ok()?)))
        .collect()
}

/// Milliseconds since midnight (UTC) of a log line's leading RFC 3339 timestamp
/// (`2026-01-02T10:55:01.123456Z  INFO ...`).
pub fn log_time_ms(line: &str) -> Option<u64> {
    let ts = line.split_whitespace().next()?;
    let tod = ts.split_once('T')?.1.trim_end_matches('Z');
    let (hms, frac) = tod.split_once('.').unwrap_or((tod, "0"));
    let mut it = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (it.next()??, it.next()??, it.next()??);
    let ms: u64 = format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?;
    Some(((h * 60 + m) * 60 + s) * 1000 + ms)
}
