//! Shared helpers of the lab tests: bring the lab up once per test binary, a lab template, unique
//! names, and a guard that removes every domain with the test's prefix however the test ends.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use flotilla_model::{GroupId, InstanceSpec};
use flotilla_provider_libvirt::{HostSettings, LibvirtSettings, LibvirtTemplate, Placement, PortRange};

pub const LAB_URI: &str = "qemu:///system";
pub const BUILD: &str = "/tmp/libvirt-lab/build";
/// A URI that refuses connections.
pub const DEAD_URI: &str = "qemu+tcp://127.0.0.1:1/system";

/// A short prefix unique to this test run: `<tag><pid mod 10000>`.
pub fn unique(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 10000)
}

/// The lab guest as a template.
pub fn lab_template() -> LibvirtTemplate {
    let mut t = LibvirtTemplate::new(format!("{BUILD}/base.qcow2"));
    t.kernel = Some(format!("{BUILD}/vmlinux").into());
    t.initrd = Some(format!("{BUILD}/initrd.img").into());
    t.ssh_authorized_key = Some(format!("{BUILD}/id_ed25519.pub"));
    t
}

pub fn settings(hosts: &[(&str, &str)], ports: (u16, u16)) -> LibvirtSettings {
    LibvirtSettings {
        hosts: hosts
            .iter()
            .map(|(n, u)| HostSettings { name: n.to_string(), uri: u.to_string(), max_members: None })
            .collect(),
        placement: Placement::RoundRobin,
        ports: Some(PortRange { first: ports.0, last: ports.1 }),
        addresses: None,
        start_timeout: Duration::from_secs(120),
        shutdown_timeout: Duration::from_secs(20),
    }
}

pub fn templates(group: &GroupId, t: LibvirtTemplate) -> BTreeMap<GroupId, LibvirtTemplate> {
    BTreeMap::from([(group.clone(), t)])
}

pub fn spec(base: &str) -> InstanceSpec {
    InstanceSpec { base_name: base.into(), clone_base: format!("{base}_clone"), vcpus: 1 }
}

pub fn virsh(uri: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("virsh").arg("-q").arg("-c").arg(uri).args(args).output().expect("virsh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Names of all domains on `uri` that start with `prefix`.
pub fn domains_with_prefix(uri: &str, prefix: &str) -> Vec<String> {
    let (_, text) = virsh(uri, &["list", "--all", "--name"]);
    text.lines().map(str::trim).filter(|n| n.starts_with(prefix)).map(str::to_string).collect()
}

/// Whether the domain exists; a virsh failure other than "not found" fails the test.
pub fn domain_exists(uri: &str, name: &str) -> bool {
    let (ok, text) = virsh(uri, &["dominfo", name]);
    if ok {
        return true;
    }
    assert!(text.contains("failed to get domain") || text.contains("Domain not found"), "virsh dominfo {name}: {text}");
    false
}

/// Defines (does not start) a domain with no Flotilla metadata.
pub fn define_foreign(uri: &str, name: &str, dir: &Path) {
    let xml = format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><os><type arch='x86_64' machine='pc'>hvm</type></os></domain>"
    );
    let p = dir.join(format!("{name}.xml"));
    std::fs::write(&p, xml).unwrap();
    let (ok, text) = virsh(uri, &["define", p.to_str().unwrap()]);
    assert!(ok, "define foreign {name}: {text}");
}

/// Destroys and undefines every domain whose name starts with the prefix, on drop (even when the
/// test panics).
pub struct Cleanup {
    pub prefix: String,
    pub uris: Vec<String>,
}

impl Cleanup {
    pub fn new(prefix: &str, uris: &[&str]) -> Self {
        let c = Cleanup { prefix: prefix.to_string(), uris: uris.iter().map(|u| u.to_string()).collect() };
        c.sweep(); // leftovers of an earlier run with the same pid
        c
    }
    fn sweep(&self) {
        for uri in &self.uris {
            for name in domains_with_prefix(uri, &self.prefix) {
                let _ = virsh(uri, &["destroy", &name]);
                let _ = virsh(uri, &["undefine", &name]);
                eprintln!("cleanup: removed domain {name} from {uri}");
            }
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.sweep();
    }
}

/// `GET /healthz` body from a member's address.
pub async fn healthz(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET /healthz HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Runs a command in the guest over SSH with the lab key.
pub fn ssh(ssh_address: &str, cmd: &str) -> (bool, String) {
    let (host, port) = ssh_address.rsplit_once(':').unwrap();
    let out = Command::new("ssh")
        .args(["-i", &format!("{BUILD}/id_ed25519")])
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", port])
        .arg(format!("root@{host}"))
        .arg(cmd)
        .output()
        .expect("ssh");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A second way into the lab's libvirtd that the test can cut: `qemu+tcp://127.0.0.1:PORT/system`
/// forwarded to libvirtd's unix socket. Stopping it drops every connection through it, so a host
/// entry using that URI goes down for real (its domains keep running) and comes back on `start`.
pub struct LibvirtProxy {
    pub port: u16,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

pub const LIBVIRT_SOCK: &str = "/var/run/libvirt/libvirt-sock";

impl LibvirtProxy {
    pub async fn start(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind proxy port");
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let t2 = tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else { return };
                let pipe = tokio::spawn(async move {
                    if let Ok(mut unix) = tokio::net::UnixStream::connect(LIBVIRT_SOCK).await {
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                    }
                });
                t2.lock().unwrap().push(pipe);
            }
        });
        tasks.lock().unwrap().push(accept);
        LibvirtProxy { port, tasks }
    }

    pub fn uri(&self) -> String {
        format!("qemu+tcp://127.0.0.1:{}/system", self.port)
    }

    /// Closes the listener and every connection through it.
    pub async fn stop(&self) {
        let tasks: Vec<_> = self.tasks.lock().unwrap().drain(..).collect();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for LibvirtProxy {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}
