//! The libvirt lab for these tests: `up.sh` once per test binary, one real guest per test (booted
//! with `new-vm.sh`, always destroyed, undefined and removed by a drop guard, even on failure).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use flotilla_metrics_ssh::SshSettings;
use flotilla_model::{Clock, GroupId, Instance, InstanceState, SystemClock, Timestamp};

pub fn lab_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/libvirt-lab")
}

fn env_or(var: &str, default: impl FnOnce() -> PathBuf) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(default)
}

/// The lab's defaults (`lib.sh`), overridable the same way.
pub fn lab_root() -> PathBuf {
    env_or("LAB_ROOT", || PathBuf::from("/tmp/libvirt-lab"))
}
pub fn lab_run_dir() -> PathBuf {
    env_or("LAB_RUN_DIR", || lab_root().join("run"))
}
pub fn lab_key() -> PathBuf {
    env_or("LAB_SSH_KEY", || env_or("LAB_BUILD_DIR", || lab_root().join("build")).join("id_ed25519"))
}
pub fn lab_uri() -> String {
    std::env::var("LAB_URI").unwrap_or_else(|_| "qemu:///system".to_string())
}

/// A port in 20000..30000 that could be bound just now (bound, then released).
pub fn free_port(not: &[u16]) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let mut x = h.finish();
    for _ in 0..1000 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let port = 20000 + ((x >> 33) % 10000) as u16;
        if not.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..30000");
}

pub fn virsh(args: &[&str]) -> Output {
    Command::new("virsh").arg("-c").arg(lab_uri()).args(args).output().expect("run virsh")
}

/// One lab guest; dropping it destroys and undefines the domain and removes its files.
pub struct Guest {
    pub name: String,
    pub ssh_port: u16,
    pub http_port: u16,
}

impl Guest {
    /// Boots a guest named `flotilla-ssh-<tag>-<pid>` (~8 s) and waits for SSH and HTTP.
    pub fn boot(tag: &str) -> Guest {
        Self::boot_with(tag, None)
    }

    /// Like [`Guest::boot`], with this user-data (`#cloud-config` or a `#!` script) in the seed.
    pub fn boot_with_user_data(tag: &str, user_data: &str) -> Guest {
        Self::boot_with(tag, Some(user_data))
    }

    fn boot_with(tag: &str, user_data: Option<&str>) -> Guest {
        let ssh_port = free_port(&[]);
        let http_port = free_port(&[ssh_port]);
        // The guard exists before anything is created, so a failed boot is cleaned up too.
        let guest = Guest { name: format!("flotilla-ssh-{tag}-{}", std::process::id()), ssh_port, http_port };
        let user_data_file = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(lab_dir().join("new-vm.sh"))
            .args([&guest.name, &ssh_port.to_string(), &http_port.to_string()])
            .env("LAB_WAIT_TIMEOUT", "180");
        if let Some(text) = user_data {
            std::fs::write(user_data_file.path(), text).unwrap();
            cmd.env("LAB_USER_DATA", user_data_file.path());
        }
        let out = cmd.output().expect("run new-vm.sh");
        assert!(
            out.status.success(),
            "new-vm.sh {} failed:\n{}{}",
            guest.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("booted {} (ssh 127.0.0.1:{ssh_port}): {}", guest.name, String::from_utf8_lossy(&out.stdout).trim());
        guest
    }

    pub fn ssh_address(&self) -> String {
        format!("127.0.0.1:{}", self.ssh_port)
    }

    /// The domain's `cpu.time` (ns of host CPU used by its QEMU process).
    pub fn cpu_time_ns(&self) -> u64 {
        let out = virsh(&["domstats", "--cpu-total", &self.name]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.trim().strip_prefix("cpu.time="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no cpu.time in domstats of {}: {text}", self.name))
    }

    /// Power-cycles the guest (destroy + start): it comes back with a new host key.
    pub async fn restart(&self) {
        let out = virsh(&["destroy", &self.name]);
        assert!(out.status.success(), "virsh destroy: {}", String::from_utf8_lossy(&out.stderr));
        let out = virsh(&["start", &self.name]);
        assert!(out.status.success(), "virsh start: {}", String::from_utf8_lossy(&out.stderr));
        wait_for_ssh_banner(self.ssh_port, Duration::from_secs(120)).await;
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = virsh(&["destroy", &self.name]);
        let undefine = virsh(&["undefine", &self.name]);
        if !undefine.status.success() {
            eprintln!("virsh undefine {}: {}", self.name, String::from_utf8_lossy(&undefine.stderr).trim());
        }
        let dir = lab_run_dir().join("vms").join(&self.name);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("remove {}: {e}", dir.display());
            }
        }
    }
}

/// Waits until something on 127.0.0.1:`port` sends an SSH banner (QEMU's forward accepts
/// connections while the guest is still booting, so an open port is not enough).
pub async fn wait_for_ssh_banner(port: u16, timeout: Duration) {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.ok()?;
            (&buf == b"SSH-").then_some(())
        };
        if let Ok(Some(())) = tokio::time::timeout(Duration::from_secs(3), attempt).await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no SSH banner on 127.0.0.1:{port} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub fn settings() -> SshSettings {
    SshSettings::new(lab_key())
}

pub fn group() -> GroupId {
    GroupId::new("ssh-test")
}

/// A running member whose SSH server is at `ssh_address` (the lab's forwarded port).
pub fn member(id: &str, ssh_address: &str) -> Instance {
    let mut m = Instance::new(id, &group(), Timestamp::ZERO);
    m.state = InstanceState::Running;
    m.address = Some("127.0.0.1:1".to_string());
    m.tags.insert("ssh_address".into(), ssh_address.into());
    m
}

pub fn now() -> Timestamp {
    SystemClock.now()
}

/// utime + stime of this process (all threads), in ms.
pub fn process_cpu_ms() -> f64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap();
    let stat = flotilla_procfs::parse_pid_stat(&text).unwrap();
    stat.cpu_ticks() as f64 * 1000.0 / flotilla_procfs::clk_tck() as f64
}
