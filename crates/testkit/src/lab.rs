//! Which lab a test needs, and whether it may run.
//!
//! The labs live beside the repository (`../shared/libvirt-lab`, `../shared/openstack-lab`). A
//! clone on its own, or a machine where nobody brought a lab up, still runs `cargo test
//! --workspace`: each test that needs a lab prints one line saying what it skipped and how to run
//! it, and passes. With `FLOTILLA_LABS=1` (set by `.ci/run`) a test brings its lab up through the
//! lab's idempotent `up.sh` (once per test binary), and a lab that cannot come up is a failure,
//! never a skip.
//!
//! ```ignore
//! #[test]
//! fn boots_a_guest() {
//!     flotilla_testkit::require_lab!(Lab::Libvirt);
//!     // ...
//! }
//! ```

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable that turns a missing lab into a failure.
pub const LABS_ENV: &str = "FLOTILLA_LABS";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lab {
    /// libvirtd + QEMU guests (`../shared/libvirt-lab`, as root).
    Libvirt,
    /// Keystone, Nova, Neutron, Glance, Placement on 127.0.0.1 (`../shared/openstack-lab`, as root).
    OpenStack,
    /// The OpenStack lab with its extras (`up-extras.sh`): Prometheus and the lab's exporter and
    /// webhook sink, Aodh, Heat, Octavia.
    OpenStackExtras,
}

impl Lab {
    fn dir_name(self) -> &'static str {
        match self {
            Lab::Libvirt => "libvirt-lab",
            Lab::OpenStack | Lab::OpenStackExtras => "openstack-lab",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Lab::Libvirt => "libvirt lab",
            Lab::OpenStack => "OpenStack lab",
            Lab::OpenStackExtras => "OpenStack lab with its extras (Prometheus, Aodh, Heat, Octavia)",
        }
    }

    /// The lab's directory beside the repository.
    pub fn dir(self) -> PathBuf {
        shared_dir().join(self.dir_name())
    }

    /// Whether the lab answers now (cheap: files and ports, no setup).
    pub fn answering(self) -> bool {
        match self {
            Lab::Libvirt => {
                let build = libvirt_build_dir();
                ["base.qcow2", "vmlinux", "initrd.img", "id_ed25519.pub"].iter().all(|f| build.join(f).exists())
                    && Command::new("virsh")
                        .args(["-q", "-c", "qemu:///system", "version"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
            }
            Lab::OpenStack => openstack_home().join("clouds.yaml").is_file() && listening(&[5000, 8774, 9696, 9292]),
            Lab::OpenStackExtras => {
                Lab::OpenStack.answering()
                    && listening(&[EXTRAS_PORTS.prometheus, EXTRAS_PORTS.exporter, 8042, 8004, 9876])
            }
        }
    }
}

/// Whether something accepts connections on each of these loopback ports.
fn listening(ports: &[u16]) -> bool {
    ports.iter().all(|p| {
        let addr: SocketAddr = ([127, 0, 0, 1], *p).into();
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
    })
}

/// Where the OpenStack lab's extras listen (its defaults).
pub struct ExtrasPorts {
    /// Prometheus's HTTP API.
    pub prometheus: u16,
    /// The lab's exporter (`POST /metrics` sets a series) and webhook sink (`/hooks`).
    pub exporter: u16,
}

pub const EXTRAS_PORTS: ExtrasPorts = ExtrasPorts { prometheus: 9090, exporter: 9199 };

/// `../shared` beside the repository.
pub fn shared_dir() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("crates/testkit is two levels down");
    repo.parent().unwrap_or(repo).join("shared")
}

/// Where the libvirt lab keeps its kernel, initrd, base disk and SSH key (`LAB_BUILD_DIR`).
pub fn libvirt_build_dir() -> PathBuf {
    std::env::var_os("LAB_BUILD_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp/libvirt-lab/build"))
}

/// Where the OpenStack lab writes its `clouds.yaml` (`LAB_HOME`).
pub fn openstack_home() -> PathBuf {
    std::env::var_os("LAB_HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp/openstack-lab"))
}

/// Whether this run must have every lab (`FLOTILLA_LABS=1`).
pub fn labs_required() -> bool {
    std::env::var(LABS_ENV).is_ok_and(|v| v == "1")
}

/// True when the test may use `lab`. With `FLOTILLA_LABS=1`, brings the lab up first (panics if it
/// cannot); otherwise uses it only if it already answers, and else prints one line naming the
/// skipped test and how to run it.
pub fn ready(lab: Lab) -> bool {
    if labs_required() {
        bring_up(lab);
        return true;
    }
    if lab.dir().is_dir() && lab.answering() {
        return true;
    }
    let why = if lab.dir().is_dir() {
        format!("the {} is not up (run `{}/up.sh` as root, or set {LABS_ENV}=1)", lab.label(), lab.dir().display())
    } else {
        format!("no {} beside the repository ({})", lab.label(), lab.dir().display())
    };
    skip(&why);
    false
}

/// For a test binary built without the cargo feature its tests need: one line, or a failure with
/// `FLOTILLA_LABS=1`.
pub fn not_built(what: &str, feature: &str) {
    let why = format!("{what}: built without `--features {feature}` (`cargo test --workspace --all-features`)");
    assert!(!labs_required(), "{LABS_ENV}=1 but {why}");
    skip(&why);
}

/// Writes past libtest's output capture, so the line shows for a passing test.
fn skip(why: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Runs the lab's idempotent `up.sh` once per test binary (the OpenStack lab only when it does not
/// answer: its script takes seconds even when up).
fn bring_up(lab: Lab) {
    static LIBVIRT: OnceLock<()> = OnceLock::new();
    static OPENSTACK: OnceLock<()> = OnceLock::new();
    static EXTRAS: OnceLock<()> = OnceLock::new();
    let once = match lab {
        Lab::Libvirt => &LIBVIRT,
        Lab::OpenStack => &OPENSTACK,
        Lab::OpenStackExtras => &EXTRAS,
    };
    once.get_or_init(|| {
        if lab != Lab::Libvirt && lab.answering() {
            return;
        }
        let script = if lab == Lab::OpenStackExtras { "up-extras.sh" } else { "up.sh" };
        let up = lab.dir().join(script);
        assert!(up.is_file(), "{LABS_ENV}=1 but {} does not exist", up.display());
        let log = std::env::temp_dir().join(format!("flotilla-{}-up-{}.log", lab.dir_name(), std::process::id()));
        let out = std::fs::File::create(&log).expect("up.sh log file");
        let status = Command::new("bash")
            .arg(&up)
            .env("LAB_SMOKE", "quick")
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", up.display()));
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(20).collect();
        assert!(
            status.success(),
            "{} failed ({status}); log {}:\n{}",
            up.display(),
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        assert!(lab.answering(), "{} succeeded but the {} does not answer", up.display(), lab.label());
    });
}

/// Returns from the calling test (after one line saying why) when `lab` is not there.
#[macro_export]
macro_rules! require_lab {
    ($lab:expr) => {
        if !$crate::lab::ready($lab) {
            return;
        }
    };
}
