//! Configuration: the provider-level [`LibvirtSettings`] (YAML `provider:` when `kind: libvirt`) and
//! the per-group [`LibvirtTemplate`] (YAML `groups[i].template.libvirt`).
//!
//! Both deserialize with serde (`deny_unknown_fields`, snake_case keys) and have a `validate` that
//! returns every problem as `(relative field path, message)`; the caller prefixes the paths with
//! where the section sits in its file.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::cloudinit;
use crate::xml;

/// Provider-level settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibvirtSettings {
    /// The hosts members are placed on; at least one.
    pub hosts: Vec<HostSettings>,
    /// How a host is chosen for a new member.
    #[serde(default)]
    pub placement: Placement,
    /// User-mode networking: each member gets two forwarded ports on 127.0.0.1 (ssh, service)
    /// from this range, e.g. `"20000-20199"`. Exactly one of `ports` and `addresses`. Best kept
    /// outside the kernel's ephemeral range (`net.ipv4.ip_local_port_range`, 32768-60999 by
    /// default), where any outgoing connection may hold a port for a while.
    #[serde(default)]
    pub ports: Option<PortRange>,
    /// Bridged hosts: static addresses handed to guests through cloud-init (seed 004's
    /// `networking`). Exactly one of `ports` and `addresses`.
    #[serde(default)]
    pub addresses: Option<AddressPool>,
    /// How long a new member may take from `define` to answering `GET /healthz` with 200.
    #[serde(default = "default_start_timeout", deserialize_with = "flotilla_duration::deserialize")]
    pub start_timeout: Duration,
    /// How long a deleted member gets to power off after the ACPI shutdown before it is destroyed.
    #[serde(default = "default_shutdown_timeout", deserialize_with = "flotilla_duration::deserialize")]
    pub shutdown_timeout: Duration,
}

/// `start_timeout`: 90 s.
pub fn default_start_timeout() -> Duration {
    Duration::from_secs(90)
}

/// `shutdown_timeout`: 20 s.
pub fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(20)
}

/// One libvirt host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSettings {
    /// Stable name: written into every member's metadata (so two entries may share a URI).
    pub name: String,
    /// libvirt URI: `qemu:///system`, `qemu+ssh://host/system`, `test:///default`.
    pub uri: String,
    /// At most this many of Flotilla's members on this host (all groups); unset: only memory limits.
    #[serde(default)]
    pub max_members: Option<u32>,
}

/// Placement strategies (see [`crate::placement`] for the exact rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// The next reachable host with room after the one used last.
    #[default]
    RoundRobin,
    /// The reachable host with the most free memory (node memory minus our members'), ties broken
    /// by free vCPUs, then by order.
    MostFree,
    /// The first reachable host, in configured order, with room.
    FillFirst,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::RoundRobin => "round-robin",
            Placement::MostFree => "most-free",
            Placement::FillFirst => "fill-first",
        }
    }
}

/// An inclusive port range, written `"20000-20199"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// How many ports the range holds.
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    /// How many members fit (two ports each: ssh and service).
    pub fn capacity(&self) -> u32 {
        self.len() / 2
    }
    pub fn contains(&self, p: u16) -> bool {
        (self.first..=self.last).contains(&p)
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid port range `{s}`: expected `FIRST-LAST`, like `20000-20199`");
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(format!("invalid port range `{s}`: FIRST must be 1 or more and not above LAST"));
        }
        Ok(PortRange { first, last })
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Seed 004's address pool for bridged hosts: ranges, netmask, gateway.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressPool {
    /// `"192.168.5.2-192.168.5.254"` or a single address.
    pub addresses: Vec<AddrRange>,
    /// The netmask, like `255.255.255.0`.
    pub subnet: Ipv4Addr,
    pub gateway: Ipv4Addr,
    /// The host bridge the guests' NIC joins.
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// Name servers written into the guests' network config.
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
}

/// `addresses.bridge`: br0.
pub fn default_bridge() -> String {
    "br0".to_string()
}

impl AddressPool {
    /// The prefix length of `subnet`, if it is a contiguous mask.
    pub fn prefix_len(&self) -> Option<u32> {
        let m = u32::from(self.subnet);
        let ones = m.leading_ones();
        (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones)
    }
    /// Every usable address of the pool, in order, without the gateway, duplicates, or the
    /// subnet's network and broadcast addresses.
    pub fn iter(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let mask = u32::from(self.subnet);
        let net = u32::from(self.gateway) & mask;
        let bcast = net | !mask;
        let gw = u32::from(self.gateway);
        let mut seen = std::collections::BTreeSet::new();
        self.addresses
            .iter()
            .flat_map(|r| u32::from(r.first)..=u32::from(r.last))
            .filter(move |&a| a != gw && (mask == u32::MAX || (a != net && a != bcast)))
            .filter(move |a| seen.insert(*a))
            .map(Ipv4Addr::from)
    }
    /// How many members fit.
    pub fn capacity(&self) -> u32 {
        self.iter().count().min(u32::MAX as usize) as u32
    }
}

/// An inclusive IPv4 range, `"A-B"` or `"A"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AddrRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl FromStr for AddrRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid address range `{s}`: expected `A.B.C.D-A.B.C.D` or one address");
        let (a, b) = match s.trim().split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (s.trim(), s.trim()),
        };
        let first: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let last: Ipv4Addr = b.parse().map_err(|_| bad())?;
        if u32::from(first) > u32::from(last) {
            return Err(format!("invalid address range `{s}`: the first address is above the last"));
        }
        Ok(AddrRange { first, last })
    }
}

impl TryFrom<String> for AddrRange {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Host names become metadata attributes and log fields.
fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A libvirt URI: `driver[+transport]://[host][/path][?query]`.
pub(crate) fn uri_problem(uri: &str) -> Option<String> {
    if uri.trim().is_empty() {
        return Some("is empty".into());
    }
    let Some((scheme, _rest)) = uri.split_once("://") else {
        return Some(format!(
            "`{uri}` is not a libvirt URI (like qemu:///system, qemu+ssh://host/system or test:///default)"
        ));
    };
    let driver = scheme.split('+').next().unwrap_or("");
    let ok = !driver.is_empty()
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+')
        && driver.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if !ok {
        return Some(format!("`{uri}`: `{scheme}` is not a libvirt driver[+transport] scheme"));
    }
    if uri.chars().any(char::is_whitespace) {
        return Some(format!("`{uri}` contains whitespace"));
    }
    None
}

impl LibvirtSettings {
    /// Every problem, as `(path relative to the provider section, message)`. Pure: no I/O.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut err = |p: String, m: String| out.push((p, m));
        if self.hosts.is_empty() {
            err("hosts".into(), "at least one host is needed (name + uri)".into());
        }
        for (i, h) in self.hosts.iter().enumerate() {
            if !name_ok(&h.name) {
                err(
                    format!("hosts[{i}].name"),
                    format!("`{}` is not a usable host name (1-64 of A-Z a-z 0-9 _ - .)", h.name),
                );
            } else if let Some(j) = self.hosts[..i].iter().position(|o| o.name == h.name) {
                err(format!("hosts[{i}].name"), format!("`{}` is already the name of hosts[{j}]", h.name));
            }
            if let Some(p) = uri_problem(&h.uri) {
                err(format!("hosts[{i}].uri"), p);
            }
            if h.max_members == Some(0) {
                err(format!("hosts[{i}].max_members"), "must be at least 1 (remove the host instead)".into());
            }
        }
        match (&self.ports, &self.addresses) {
            (Some(_), Some(_)) => err(
                "addresses".into(),
                "set either `ports` (user-mode networking, forwarded ports on 127.0.0.1) or `addresses` (bridged), not both"
                    .into(),
            ),
            (None, None) => err(
                "ports".into(),
                "set `ports` (user-mode networking, like \"20000-20199\") or `addresses` (bridged hosts)".into(),
            ),
            _ => {}
        }
        if let Some(r) = &self.ports {
            if r.first < 1024 {
                err(
                    "ports".into(),
                    format!("{r}: ports below 1024 need privileges QEMU should not have; use 1024-65535"),
                );
            }
            if r.len() < 2 {
                err("ports".into(), format!("{r}: each member needs 2 ports (ssh and service)"));
            }
        }
        if let Some(a) = &self.addresses {
            validate_pool(a, &mut err);
        }
        if self.start_timeout.is_zero() {
            err("start_timeout".into(), "must be more than 0s".into());
        }
        out
    }

    /// How many members the address or port pool holds.
    pub fn pool_capacity(&self) -> u32 {
        match (&self.ports, &self.addresses) {
            (Some(r), _) => r.capacity(),
            (None, Some(a)) => a.capacity(),
            (None, None) => 0,
        }
    }

    /// The pool against the sum of every libvirt group's `max` (groups share it): `(path, message)`
    /// under `ports` or `addresses`.
    pub fn validate_pool_for(&self, total_max: u32) -> Vec<(String, String)> {
        let cap = self.pool_capacity();
        if total_max <= cap {
            return Vec::new();
        }
        vec![(
            self.pool_field().into(),
            format!("{} has room for {cap} member(s), but the groups' max add up to {total_max}", self.pool_desc()),
        )]
    }

    fn pool_field(&self) -> &'static str {
        if self.ports.is_some() {
            "ports"
        } else {
            "addresses"
        }
    }

    fn pool_desc(&self) -> String {
        match (&self.ports, &self.addresses) {
            (Some(r), _) => format!("port range {r} ({} ports, 2 per member)", r.len()),
            (None, Some(a)) => {
                let ranges: Vec<String> = a.addresses.iter().map(|r| r.to_string()).collect();
                format!("address pool {} ({} usable)", ranges.join(", "), a.capacity())
            }
            (None, None) => "no pool".into(),
        }
    }
}

fn validate_pool(a: &AddressPool, err: &mut impl FnMut(String, String)) {
    if a.addresses.is_empty() {
        err("addresses.addresses".into(), "at least one address or range is needed".into());
    }
    let Some(prefix) = a.prefix_len() else {
        err("addresses.subnet".into(), format!("{} is not a netmask (its one bits must be contiguous)", a.subnet));
        return;
    };
    let mask = u32::from(a.subnet);
    let net = u32::from(a.gateway) & mask;
    for (i, r) in a.addresses.iter().enumerate() {
        if u32::from(r.first) & mask != net || u32::from(r.last) & mask != net {
            err(
                format!("addresses.addresses[{i}]"),
                format!(
                    "{r} is outside the gateway's subnet {}/{prefix}: the guests could not reach gateway {}",
                    Ipv4Addr::from(net),
                    a.gateway
                ),
            );
        }
        for (j, o) in a.addresses[..i].iter().enumerate() {
            if u32::from(r.first) <= u32::from(o.last) && u32::from(o.first) <= u32::from(r.last) {
                err(format!("addresses.addresses[{i}]"), format!("{r} overlaps addresses[{j}] ({o})"));
            }
        }
    }
    if !name_ok(&a.bridge) || a.bridge.len() > 15 {
        err("addresses.bridge".into(), format!("`{}` is not a bridge interface name", a.bridge));
    }
    if !a.addresses.is_empty() && a.capacity() == 0 {
        err(
            "addresses.addresses".into(),
            "holds no usable address (the gateway, network and broadcast addresses are skipped)".into(),
        );
    }
}

/// Per-group template.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibvirtTemplate {
    /// Base qcow2 image; each member gets a copy-on-write overlay backed by it.
    pub image: PathBuf,
    /// A domain XML template with `@PLACEHOLDER@`s (see [`crate::xml`]); default: the built-in
    /// template, equivalent to the lab's `domain-template.xml` (direct kernel boot).
    #[serde(default)]
    pub domain_xml: Option<PathBuf>,
    /// Kernel for direct boot (needed by the built-in template).
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    /// Initrd for direct boot (needed by the built-in template).
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line; default `console=ttyS0 quiet cryptomgr.notests`.
    #[serde(default)]
    pub cmdline: Option<String>,
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u32,
    /// vCPUs; default: the group's `vcpus`.
    #[serde(default)]
    pub vcpus: Option<u32>,
    /// Cloud-init user-data, inline; `${VAR}` expands from the environment, `$${VAR}` is a
    /// literal `${VAR}`. At most one of `user_data` and `user_data_file`.
    #[serde(default)]
    pub user_data: Option<String>,
    /// Cloud-init user-data from a file (expanded like `user_data`).
    #[serde(default)]
    pub user_data_file: Option<PathBuf>,
    /// An SSH public key (`ssh-ed25519 AAAA...`) or a file holding one; goes into meta-data
    /// `public-keys` so the SSH sampler can log in.
    #[serde(default)]
    pub ssh_authorized_key: Option<String>,
    /// Guest port of the HTTP service (`GET /healthz`).
    #[serde(default = "default_service_port")]
    pub service_port: u16,
    /// Guest SSH port.
    #[serde(default = "default_ssh_port")]
    pub ssh_port: u16,
}

/// `memory_mib`: 128.
pub fn default_memory_mib() -> u32 {
    128
}
/// `service_port`: 8080.
pub fn default_service_port() -> u16 {
    8080
}
/// `ssh_port`: 22.
pub fn default_ssh_port() -> u16 {
    22
}

/// The kernel command line when the template sets none (the lab's).
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 quiet cryptomgr.notests";

/// Smallest `memory_mib` accepted.
pub const MIN_MEMORY_MIB: u32 = 32;

/// The first bytes of every qcow2 image.
const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";

impl LibvirtTemplate {
    /// A template from an image, with every default.
    pub fn new(image: impl Into<PathBuf>) -> Self {
        LibvirtTemplate {
            image: image.into(),
            domain_xml: None,
            kernel: None,
            initrd: None,
            cmdline: None,
            memory_mib: default_memory_mib(),
            vcpus: None,
            user_data: None,
            user_data_file: None,
            ssh_authorized_key: None,
            service_port: default_service_port(),
            ssh_port: default_ssh_port(),
        }
    }

    /// Every problem, as `(path relative to the template, message)`. Reads the files it names.
    ///
    /// The one check that is not about the template itself — the provider's port range or address
    /// pool against the group's `max_members` — is reported under the path `max` (the group's
    /// field, a sibling of `template`).
    pub fn validate(&self, max_members: u32, settings: &LibvirtSettings) -> Vec<(String, String)> {
        let mut out = self.check_files();
        let cap = settings.pool_capacity();
        if (settings.ports.is_some() || settings.addresses.is_some()) && max_members > cap {
            out.push((
                "max".into(),
                format!(
                    "max is {max_members}, but the provider's {} has room for {cap} member(s)",
                    settings.pool_desc()
                ),
            ));
        }
        out
    }

    /// The template's own checks (files, ports, user data); `validate` without the pool.
    pub(crate) fn check_files(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut err = |p: &str, m: String| out.push((p.to_string(), m));
        if let Some(m) = file_problem(&self.image, "image") {
            err("image", m);
        } else if let Some(m) = qcow2_problem(&self.image) {
            err("image", m);
        }
        match &self.domain_xml {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(text) => {
                    if let Err(m) = xml::check_template(&text, self.kernel.is_some(), self.initrd.is_some()) {
                        err("domain_xml", format!("{}: {m}", p.display()));
                    }
                }
                Err(e) => err("domain_xml", format!("{}: cannot read it: {e}", p.display())),
            },
            None => {
                if self.kernel.is_none() {
                    err("kernel", "the built-in domain template boots a kernel directly: set `kernel` and `initrd`, or give your own `domain_xml`".into());
                }
                if self.initrd.is_none() {
                    err("initrd", "the built-in domain template boots a kernel directly: set `kernel` and `initrd`, or give your own `domain_xml`".into());
                }
            }
        }
        for (field, p) in [("kernel", &self.kernel), ("initrd", &self.initrd)] {
            if let Some(p) = p {
                if let Some(m) = file_problem(p, field) {
                    err(field, m);
                }
            }
        }
        if let Some(c) = &self.cmdline {
            if c.contains(['\n', '\r']) {
                err("cmdline", "must be one line".into());
            }
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            err(
                "memory_mib",
                format!("{} MiB is too little; at least {MIN_MEMORY_MIB} (the lab's guest needs 96)", self.memory_mib),
            );
        }
        if self.vcpus == Some(0) {
            err("vcpus", "must be at least 1".into());
        }
        match (&self.user_data, &self.user_data_file) {
            (Some(_), Some(_)) => err("user_data", "set `user_data` or `user_data_file`, not both".into()),
            (Some(text), None) => {
                if let Err(m) = cloudinit::expand_env(text, |k| std::env::var(k).ok()) {
                    err("user_data", m);
                }
            }
            (None, Some(p)) => match std::fs::read_to_string(p) {
                Ok(text) => {
                    if let Err(m) = cloudinit::expand_env(&text, |k| std::env::var(k).ok()) {
                        err("user_data_file", format!("{}: {m}", p.display()));
                    }
                }
                Err(e) => err("user_data_file", format!("{}: cannot read it: {e}", p.display())),
            },
            (None, None) => {}
        }
        if let Some(k) = &self.ssh_authorized_key {
            if let Err(m) = resolve_key(k) {
                err("ssh_authorized_key", m);
            }
        }
        if self.service_port == 0 {
            err("service_port", "must be 1-65535".into());
        }
        if self.ssh_port == 0 {
            err("ssh_port", "must be 1-65535".into());
        }
        if self.service_port == self.ssh_port && self.service_port != 0 {
            err("service_port", format!("is the same as ssh_port ({})", self.ssh_port));
        }
        out
    }

    /// The user-data text (unexpanded), if any.
    pub(crate) fn raw_user_data(&self) -> Result<Option<String>, (String, String)> {
        match (&self.user_data, &self.user_data_file) {
            (Some(t), _) => Ok(Some(t.clone())),
            (None, Some(p)) => std::fs::read_to_string(p)
                .map(Some)
                .map_err(|e| ("user_data_file".to_string(), format!("{}: cannot read it: {e}", p.display()))),
            (None, None) => Ok(None),
        }
    }

    /// The public key to authorize, if any.
    #[cfg_attr(not(feature = "libvirt"), allow(dead_code))]
    pub(crate) fn authorized_key(&self) -> Result<Option<String>, (String, String)> {
        self.ssh_authorized_key
            .as_deref()
            .map(resolve_key)
            .transpose()
            .map_err(|m| ("ssh_authorized_key".to_string(), m))
    }

    /// A stable hash (16 hex digits) of what makes a member: the image (path, size, mtime), the
    /// domain XML (contents, or the built-in template and the kernel/initrd files), the kernel
    /// command line, memory, vCPUs, user data and key, guest ports. Members made from an older
    /// fingerprint are due for a rolling replacement. The same across processes and builds.
    pub fn fingerprint(&self) -> String {
        let mut h = Fnv::new();
        let mut field = |k: &str, v: &[u8]| {
            h.write(k.as_bytes());
            h.write(&(v.len() as u64).to_le_bytes());
            h.write(v);
        };
        field("image", file_stamp(&self.image).as_bytes());
        match &self.domain_xml {
            Some(p) => {
                field("domain_xml", &std::fs::read(p).unwrap_or_else(|e| format!("unreadable: {e}").into_bytes()))
            }
            None => field("domain_xml", xml::BUILTIN_QEMU_TEMPLATE.as_bytes()),
        }
        if let Some(k) = &self.kernel {
            field("kernel", file_stamp(k).as_bytes());
        }
        if let Some(i) = &self.initrd {
            field("initrd", file_stamp(i).as_bytes());
        }
        field("cmdline", self.cmdline.as_deref().unwrap_or(DEFAULT_CMDLINE).as_bytes());
        field("memory_mib", &self.memory_mib.to_le_bytes());
        field("vcpus", &self.vcpus.unwrap_or(0).to_le_bytes());
        let ud = match self.raw_user_data() {
            Ok(t) => t.unwrap_or_default(),
            Err((_, m)) => m,
        };
        field("user_data", ud.as_bytes());
        field("ssh_authorized_key", self.ssh_authorized_key.as_deref().unwrap_or("").as_bytes());
        field("ports", &[self.service_port.to_le_bytes(), self.ssh_port.to_le_bytes()].concat());
        format!("{:016x}", h.finish())
    }
}

/// `path (size, mtime)` or why not.
fn file_stamp(p: &Path) -> String {
    match std::fs::metadata(p) {
        Ok(m) => {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("{} size={} mtime_ns={mtime}", p.display(), m.len())
        }
        Err(e) => format!("{} missing ({})", p.display(), e.kind()),
    }
}

fn file_problem(p: &Path, what: &str) -> Option<String> {
    if p.as_os_str().is_empty() {
        return Some(format!("no {what} file given"));
    }
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => match std::fs::File::open(p) {
            Ok(_) => None,
            Err(e) => Some(format!("{}: cannot open it: {e}", p.display())),
        },
        Ok(_) => Some(format!("{} is not a file", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!("{}: no such file", p.display())),
        Err(e) => Some(format!("{}: {e}", p.display())),
    }
}

fn qcow2_problem(p: &Path) -> Option<String> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    match std::fs::File::open(p).and_then(|mut f| f.read_exact(&mut magic)) {
        Ok(()) if &magic == QCOW2_MAGIC => None,
        Ok(()) | Err(_) => {
            Some(format!("{} is not a qcow2 image (members get qcow2 overlays backed by it)", p.display()))
        }
    }
}

/// Whether `s` looks like an OpenSSH public key line.
pub(crate) fn looks_like_key(s: &str) -> bool {
    let s = s.trim();
    let mut parts = s.split_whitespace();
    let (Some(kind), Some(body)) = (parts.next(), parts.next()) else {
        return false;
    };
    (kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-"))
        && body.len() >= 16
        && body.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
}

/// A key given inline, or the first key line of the file it names.
fn resolve_key(k: &str) -> Result<String, String> {
    if looks_like_key(k) {
        if k.contains(['\n', '\r']) {
            return Err("an inline key must be one line".into());
        }
        return Ok(k.trim().to_string());
    }
    let text = std::fs::read_to_string(k)
        .map_err(|e| format!("`{k}` is neither an SSH public key (ssh-ed25519 AAAA...) nor a readable file: {e}"))?;
    text.lines()
        .map(str::trim)
        .find(|l| looks_like_key(l))
        .map(str::to_string)
        .ok_or_else(|| format!("{k}: holds no SSH public key line (is it the private half?)"))
}

/// FNV-1a, 64 bit: stable across processes and Rust versions (unlike `DefaultHasher`).
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> LibvirtSettings {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn paths(v: &[(String, String)]) -> Vec<&str> {
        v.iter().map(|(p, _)| p.as_str()).collect()
    }

    #[test]
    fn settings_parse_with_defaults() {
        let s = settings("hosts: [{name: lab, uri: 'qemu:///system'}]\nports: 20000-20199\n");
        assert_eq!(s.placement, Placement::RoundRobin);
        assert_eq!(s.ports, Some(PortRange { first: 20000, last: 20199 }));
        assert_eq!(s.ports.unwrap().capacity(), 100);
        assert_eq!(s.start_timeout, Duration::from_secs(90));
        assert_eq!(s.shutdown_timeout, Duration::from_secs(20));
        assert!(s.validate().is_empty(), "{:?}", s.validate());

        let s = settings("hosts: [{name: a, uri: 'test:///default', max_members: 3}]\nplacement: most-free\nports: '30000-30001'\nstart_timeout: 2m\nshutdown_timeout: 5s\n");
        assert_eq!(s.placement, Placement::MostFree);
        assert_eq!(s.start_timeout, Duration::from_secs(120));
        assert_eq!(s.hosts[0].max_members, Some(3));
    }

    #[test]
    fn settings_reject_unknown_fields_and_bad_values() {
        for bad in [
            "hosts: []\nports: 1-2\nbogus: 1\n",
            "hosts: []\nports: 20000\n",
            "hosts: []\nports: 20010-20000\n",
            "hosts: []\nplacement: random\n",
            "hosts: []\nstart_timeout: 90\n",
            "hosts: [{name: a, uri: x, extra: 1}]\n",
        ] {
            assert!(serde_yaml::from_str::<LibvirtSettings>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_validate_names_fields() {
        let s = settings(
            "hosts: [{name: a, uri: 'qemu:///system'}, {name: a, uri: 'nonsense'}, {name: 'b c', uri: 'qemu+ssh://h/system', max_members: 0}]\nports: 80-81\naddresses: {addresses: ['10.0.0.2-10.0.0.9'], subnet: 255.255.255.0, gateway: 10.0.0.1}\n",
        );
        let v = s.validate();
        assert_eq!(
            paths(&v),
            ["hosts[1].name", "hosts[1].uri", "hosts[2].name", "hosts[2].max_members", "addresses", "ports"],
            "{v:?}"
        );
        let s = settings("hosts: []\n");
        assert_eq!(paths(&s.validate()), ["hosts", "ports"]);
    }

    #[test]
    fn address_pool_checks_and_capacity() {
        let s = settings("hosts: [{name: a, uri: 'qemu:///system'}]\naddresses: {addresses: ['192.168.5.2-192.168.5.254'], subnet: 255.255.255.0, gateway: 192.168.5.1}\n");
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        assert_eq!(s.pool_capacity(), 253);
        // seed 004's example: the gateway is outside the addresses' subnet
        let s = settings("hosts: [{name: a, uri: 'qemu:///system'}]\naddresses: {addresses: ['192.168.5.2-192.168.5.254'], subnet: 255.255.255.0, gateway: 192.168.1.1}\n");
        let v = s.validate();
        assert_eq!(paths(&v), ["addresses.addresses[0]"]);
        assert!(v[0].1.contains("192.168.1.1"), "{v:?}");
        let s = settings("hosts: [{name: a, uri: 'qemu:///system'}]\naddresses: {addresses: ['10.1.0.5-10.1.0.9', '10.1.0.8'], subnet: 255.0.255.0, gateway: 10.1.0.1}\n");
        assert_eq!(paths(&s.validate()), ["addresses.subnet"]);
        let pool = AddressPool {
            addresses: vec!["10.1.0.0-10.1.0.3".parse().unwrap(), "10.1.0.255".parse().unwrap()],
            subnet: "255.255.255.0".parse().unwrap(),
            gateway: "10.1.0.1".parse().unwrap(),
            bridge: "br0".into(),
            dns: vec![],
        };
        let all: Vec<String> = pool.iter().map(|a| a.to_string()).collect();
        assert_eq!(all, ["10.1.0.2", "10.1.0.3"], "network, gateway and broadcast are skipped");
        assert_eq!(pool.prefix_len(), Some(24));
    }

    #[test]
    fn pool_against_max() {
        let s = settings("hosts: [{name: a, uri: 'qemu:///system'}]\nports: 20000-20002\n");
        assert!(s.validate_pool_for(1).is_empty());
        let v = s.validate_pool_for(2);
        assert_eq!(paths(&v), ["ports"]);
        assert!(v[0].1.contains("room for 1"), "{v:?}");
    }

    #[test]
    fn template_validation_names_fields() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("base.qcow2");
        std::fs::write(&img, b"QFI\xfb\0\0\0\x03rest").unwrap();
        let raw = dir.path().join("raw.img");
        std::fs::write(&raw, b"not qcow").unwrap();
        let k = dir.path().join("vmlinux");
        std::fs::write(&k, b"k").unwrap();
        let s = settings("hosts: [{name: a, uri: 'qemu:///system'}]\nports: 20000-20003\n");

        let mut t = LibvirtTemplate::new(&img);
        t.kernel = Some(k.clone());
        t.initrd = Some(k.clone());
        assert!(t.validate(2, &s).is_empty(), "{:?}", t.validate(2, &s));
        assert_eq!(paths(&t.validate(3, &s)), ["max"]);

        let mut t2 = t.clone();
        t2.image = dir.path().join("missing.qcow2");
        let v = t2.validate(1, &s);
        assert_eq!(paths(&v), ["image"]);
        assert!(v[0].1.contains("no such file"), "{v:?}");
        t2.image = raw;
        assert!(t2.validate(1, &s)[0].1.contains("not a qcow2"));

        let mut t3 = t.clone();
        t3.user_data = Some("#!/bin/sh\n".into());
        t3.user_data_file = Some(k.clone());
        t3.kernel = None;
        t3.ssh_authorized_key = Some("/nonexistent/key.pub".into());
        t3.ssh_port = 8080;
        t3.vcpus = Some(0);
        t3.memory_mib = 8;
        assert_eq!(
            paths(&t3.validate(1, &s)),
            ["kernel", "memory_mib", "vcpus", "user_data", "ssh_authorized_key", "service_port"]
        );

        let mut t4 = t.clone();
        t4.user_data = Some("echo ${FLOTILLA_TEST_SURELY_UNSET_VAR}".into());
        let v = t4.validate(1, &s);
        assert_eq!(paths(&v), ["user_data"]);
        assert!(v[0].1.contains("FLOTILLA_TEST_SURELY_UNSET_VAR"));
    }

    #[test]
    fn template_parses_from_yaml() {
        let t: LibvirtTemplate = serde_yaml::from_str(
            "image: /b.qcow2\nkernel: /k\ninitrd: /i\nuser_data: |\n  #cloud-config\nvcpus: 2\nssh_authorized_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIabc\n",
        )
        .unwrap();
        assert_eq!(t.memory_mib, 128);
        assert_eq!(t.service_port, 8080);
        assert_eq!(t.ssh_port, 22);
        assert_eq!(t.vcpus, Some(2));
        assert_eq!(t.authorized_key().unwrap().as_deref(), Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIabc"));
        assert!(serde_yaml::from_str::<LibvirtTemplate>("image: /b\nflavor: x\n").is_err());
    }

    #[test]
    fn fingerprint_is_stable_and_sensitive() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("base.qcow2");
        std::fs::write(&img, b"QFI\xfb").unwrap();
        let t = LibvirtTemplate::new(&img);
        let f = t.fingerprint();
        assert_eq!(f.len(), 16);
        assert_eq!(f, t.fingerprint());
        let mut t2 = t.clone();
        t2.user_data = Some("#cloud-config\n".into());
        assert_ne!(f, t2.fingerprint());
        std::fs::write(&img, b"QFI\xfb longer").unwrap();
        assert_ne!(f, t.fingerprint(), "the image's size is part of it");
    }
}
