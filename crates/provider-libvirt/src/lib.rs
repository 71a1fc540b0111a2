//! The `libvirt` provider: members are libvirt domains (QEMU guests) on one or more hosts.
//!
//! A member `vm-web_1` is, on the host placement chose:
//! - a copy-on-write qcow2 overlay backed by the group's image (`qemu-img create -b`),
//! - a NoCloud seed ISO (label `cidata`: meta-data with instance-id, hostname and the SSH key;
//!   the group's user-data with `${VAR}` expanded; a static network-config when bridged),
//! - a persistent domain defined from the group's domain XML template (or the built-in one, the
//!   lab's `domain-template.xml`), carrying `<metadata><flotilla:member xmlns:flotilla=
//!   "urn:x-flotilla:v1" group=.. instance=.. host=.. ssh=.. service=.. .../></metadata>`.
//!
//! Files live in `<state_dir>/libvirt/<member>/` (`disk.qcow2`, `seed.iso`, `console.log`,
//! `domain.xml`, `member.json`). The metadata is the source of truth: `list` reads it from every
//! reachable host, so a restarted controller re-adopts its members with no other state, and a
//! domain without it is never listed, changed or deleted (a create or delete of its name is refused
//! with `Conflict`). `member.json` only serves to report members of a host that is down after a
//! restart, and to keep their ports reserved.
//!
//! Networking: user mode (`ports`: QEMU's slirp with two forwards on 127.0.0.1, passed through
//! `qemu:commandline` — the lab's libvirt has no passt) or bridged (`addresses`: a NIC on a host
//! bridge, the address set through cloud-init).
//!
//! Hosts: one lazily opened connection per host entry ([`host`]), every libvirt call on
//! `spawn_blocking`; a host that is down is skipped by placement and its members are listed as
//! `Failed("host ... is down: ...")`, never dropped. Hosts on libvirt's `test` driver (CI
//! stand-ins) get a minimal `type='test'` domain and count as serving once started: no guest runs
//! there. Files are made on the controller's machine, so a remote host (`qemu+ssh://`) must see
//! the same state directory path (shared storage).

pub mod cloudinit;
mod health;
pub mod host;
pub mod placement;
pub mod ports;
mod settings;
mod stats;
pub mod xml;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_model::{
    ErrorKind, GroupId, Instance, InstanceId, InstanceSpec, InstanceState, Provider, SeamError, Timestamp,
};

pub use host::HostStatus;
pub use settings::{
    default_shutdown_timeout, default_start_timeout, AddrRange, AddressPool, HostSettings, LibvirtSettings,
    LibvirtTemplate, Placement, PortRange, DEFAULT_CMDLINE,
};
pub use stats::DomainStatsSource;

use host::{dom_state, is_no_domain, DomState, Driver, Found, Host, Listing};
use placement::{HostLoad, Need};
use xml::{MemberMeta, Net};

/// The longest member name (names are domain names and directory names).
pub const MAX_NAME_LEN: usize = 63;

/// How often a starting member's `/healthz` is tried.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How often a starting member's domain is checked to be still running.
const STATE_EVERY: Duration = Duration::from_secs(2);
/// How often a member being shut down is checked.
const SHUTDOWN_POLL: Duration = Duration::from_millis(250);
/// Starts tried with fresh forwarded ports when QEMU could not bind one.
const PORT_ATTEMPTS: u32 = 3;
/// How long libvirt gets to drop a destroyed and undefined domain.
const REMOVAL_WAIT: Duration = Duration::from_secs(15);

/// The `libvirt` provider.
pub struct LibvirtProvider {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    settings: LibvirtSettings,
    /// `<state_dir>/libvirt`.
    dir: PathBuf,
    templates: BTreeMap<GroupId, LibvirtTemplate>,
    pub(crate) hosts: Vec<Arc<Host>>,
    rr_cursor: Mutex<usize>,
    port_cursor: Mutex<u32>,
    /// Serialises create's check → place → define → start (not the wait for /healthz), so two
    /// creates cannot take the same name, ports or address.
    creating: tokio::sync::Mutex<()>,
}

/// Names become domain names, directories and metadata: `[A-Za-z0-9][A-Za-z0-9_.-]{0,62}`.
pub fn validate_name(name: &str) -> Result<(), SeamError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(SeamError::invalid(format!(
            "member name {name:?} is not usable as a libvirt domain name (1-{MAX_NAME_LEN} of A-Z a-z 0-9 _ - ., starting with a letter or digit)"
        )))
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A member this create call works on after the locked part.
struct Pending {
    host: Arc<Host>,
    found: Found,
    /// Made by this call (rather than adopted).
    made: bool,
    driver: Driver,
    /// When it was defined or adopted.
    since: tokio::time::Instant,
}

impl LibvirtProvider {
    /// Checks the settings (no I/O); hosts are connected on first use.
    pub fn new(
        settings: LibvirtSettings,
        state_dir: &Path,
        templates: BTreeMap<GroupId, LibvirtTemplate>,
    ) -> Result<Self, SeamError> {
        let problems = settings.validate();
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(|(p, m)| format!("provider.{p}: {m}")).collect();
            return Err(SeamError::invalid(list.join("; ")));
        }
        let hosts = settings.hosts.iter().enumerate().map(|(i, h)| Arc::new(Host::new(i, h))).collect();
        Ok(LibvirtProvider {
            inner: Arc::new(Inner {
                dir: state_dir.join("libvirt"),
                settings,
                templates,
                hosts,
                rr_cursor: Mutex::new(0),
                port_cursor: Mutex::new(0),
                creating: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub fn settings(&self) -> &LibvirtSettings {
        &self.inner.settings
    }

    /// `<state_dir>/libvirt`: one directory per member.
    pub fn members_dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Per host: name, URI, up/down with the last error, Flotilla's member count at the last
    /// listing. No I/O: what the provider saw last (see [`Self::check_hosts`]).
    pub fn hosts_status(&self) -> Vec<HostStatus> {
        self.inner.hosts.iter().map(|h| h.status()).collect()
    }

    /// What this provider last recorded of each member it made (the state directory's
    /// `member.json` files): where they were placed, when no host can be asked.
    pub fn recorded_members(&self) -> Vec<MemberMeta> {
        self.inner.read_records()
    }

    /// Contacts every host (connecting where needed, within each host's backoff) and lists it, then
    /// reports [`Self::hosts_status`].
    pub async fn check_hosts(&self) -> Vec<HostStatus> {
        let _ = self.inner.survey(false).await;
        self.hosts_status()
    }
}

/// Which host entry reports each member: the entry named in its metadata if that entry sees it,
/// else the first entry (in configured order) that sees it. Several entries see one domain when
/// they reach the same libvirtd (`qemu:///system` twice, or a local and an SSH URI of one host), and
/// a member of an entry that is down may be visible through another; either way it is reported
/// once, by an entry that can act on it. `seen[i]` is what host `i` listed, as `(instance,
/// metadata host)` pairs, or `None` when it is down.
pub fn owners<'a>(hosts: &[&str], seen: &[Option<Vec<(&'a str, &'a str)>>]) -> BTreeMap<&'a str, usize> {
    let mut out: BTreeMap<&str, (usize, bool)> = BTreeMap::new();
    for (i, list) in seen.iter().enumerate() {
        for &(instance, host) in list.iter().flatten() {
            let named = hosts.get(i) == Some(&host);
            let better = match out.get(instance) {
                None => true,
                Some(&(_, was_named)) => named && !was_named,
            };
            if better {
                out.insert(instance, (i, named));
            }
        }
    }
    out.into_iter().map(|(k, (i, _))| (k, i)).collect()
}

fn mutex<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn member_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Lists every host at once; each listing keeps only the members [`owners`] gives to its
    /// host entry, and becomes that host's last known view.
    async fn survey(self: &Arc<Self>, node: bool) -> Vec<(Arc<Host>, Result<Listing, SeamError>)> {
        let mut jobs = tokio::task::JoinSet::new();
        for h in &self.hosts {
            let h = h.clone();
            jobs.spawn(async move {
                let r = h.list(node).await;
                (h.index, r)
            });
        }
        let mut results: Vec<Option<Result<Listing, SeamError>>> = (0..self.hosts.len()).map(|_| None).collect();
        while let Some(j) = jobs.join_next().await {
            match j {
                Ok((i, r)) => results[i] = Some(r),
                Err(e) => tracing::error!(error = %e, "host listing task failed"),
            }
        }
        let results: Vec<Result<Listing, SeamError>> = self
            .hosts
            .iter()
            .zip(results)
            .map(|(h, r)| r.unwrap_or_else(|| Err(SeamError::bug(format!("{}: listing task failed", h.label())))))
            .collect();
        let names: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
        let seen: Vec<Option<Vec<(&str, &str)>>> = results
            .iter()
            .map(|r| {
                r.as_ref()
                    .ok()
                    .map(|l| l.ours.iter().map(|f| (f.meta.instance.as_str(), f.meta.host.as_str())).collect())
            })
            .collect();
        let owners: BTreeMap<String, usize> =
            owners(&names, &seen).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        self.hosts
            .iter()
            .zip(results)
            .map(|(h, r)| {
                let r = r.map(|mut l| {
                    l.ours.retain(|f| owners.get(&f.meta.instance) == Some(&h.index));
                    h.set_known(l.ours.clone());
                    l
                });
                (h.clone(), r)
            })
            .collect()
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.member_dir(name).join("member.json")
    }

    fn write_record(&self, meta: &MemberMeta) -> std::io::Result<()> {
        let p = self.record_path(&meta.instance);
        let tmp = p.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(meta).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &p)
    }

    /// Every `member.json` under the state directory.
    fn read_records(&self) -> Vec<MemberMeta> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let p = e.path().join("member.json");
            if let Ok(text) = std::fs::read_to_string(&p) {
                match serde_json::from_str::<MemberMeta>(&text) {
                    Ok(m) => out.push(m),
                    Err(err) => tracing::warn!(file = %p.display(), error = %err, "unreadable member record"),
                }
            }
        }
        out.sort_by(|a, b| a.instance.cmp(&b.instance));
        out
    }

    fn instance(&self, host: &Host, f: &Found, state: InstanceState) -> Instance {
        let m = &f.meta;
        let mut i = Instance::new(m.instance.clone(), &GroupId::new(m.group.clone()), Timestamp(m.created_ms));
        i.state = state;
        i.address = m.service_address();
        let mut tag = |k: &str, v: String| {
            i.tags.insert(k.to_string(), v);
        };
        tag("host", host.name.clone());
        tag("uri", host.uri.clone());
        if let Some(a) = m.ssh_address() {
            tag("ssh_address", a);
        }
        tag("vcpus", m.vcpus.to_string());
        tag("memory_mib", m.memory_mib.to_string());
        if !f.uuid.is_empty() {
            tag("uuid", f.uuid.clone());
        }
        tag("overlay", m.overlay().display().to_string());
        tag("seed", m.seed().display().to_string());
        tag("console_log", m.console_log().display().to_string());
        tag("fingerprint", m.fingerprint.clone());
        if let Some(p) = m.service_port {
            tag("port", p.to_string());
        }
        if let Some(a) = m.address {
            tag("ip", a.to_string());
        }
        i
    }

    fn state_of(f: &Found) -> InstanceState {
        match &f.state {
            DomState::Running => InstanceState::Running,
            DomState::Stopped(why) => InstanceState::Failed(format!("domain {why}")),
        }
    }

    async fn list(self: &Arc<Self>, group: Option<&GroupId>) -> Result<Vec<Instance>, SeamError> {
        let seen = self.survey(false).await;
        let records = self.read_records();
        let wanted = |m: &MemberMeta| group.is_none_or(|g| g.as_str() == m.group);
        let mut out = Vec::new();
        let mut down = Vec::new();
        // reported once: live (seen on an up host) first, then from the last view of a down host
        let mut reported: BTreeSet<String> = seen
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .flat_map(|l| l.ours.iter().map(|f| f.meta.instance.clone()))
            .collect();
        for (h, r) in &seen {
            if let Ok(l) = r {
                out.extend(l.ours.iter().filter(|f| wanted(&f.meta)).map(|f| self.instance(h, f, Self::state_of(f))));
            }
        }
        for (h, r) in &seen {
            let Err(e) = r else { continue };
            down.push(e.message.clone());
            let why = InstanceState::Failed(format!("host down: {}", e.message));
            for f in self.last_known(h, &records) {
                if reported.insert(f.meta.instance.clone()) && wanted(&f.meta) {
                    out.push(self.instance(h, &f, why.clone()));
                }
            }
        }
        for m in records.iter().filter(|m| !self.hosts.iter().any(|h| h.name == m.host)) {
            if reported.insert(m.instance.clone()) && wanted(m) {
                let f = Found { meta: m.clone(), uuid: String::new(), state: DomState::Stopped(String::new()) };
                let state = InstanceState::Failed(format!(
                    "its host `{}` is no longer configured; add it back, or remove the domain by hand and then {}",
                    m.host,
                    self.member_dir(&m.instance).display()
                ));
                let mut i = self.instance(&self.hosts[0], &f, state);
                i.tags.insert("host".into(), m.host.clone());
                i.tags.remove("uri");
                out.push(i);
            }
        }
        if !down.is_empty() && down.len() == seen.len() {
            return Err(SeamError::transient(format!("no libvirt host is reachable: {}", down.join("; "))));
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Members of a host that is down: its last listing plus the member records naming it.
    fn last_known(&self, h: &Host, records: &[MemberMeta]) -> Vec<Found> {
        let mut known = h.known().unwrap_or_default();
        for m in records.iter().filter(|m| m.host == h.name) {
            if !known.iter().any(|f| f.meta.instance == m.instance) {
                known.push(Found { meta: m.clone(), uuid: String::new(), state: DomState::Stopped("unknown".into()) });
            }
        }
        known
    }

    fn template(&self, group: &GroupId) -> Result<&LibvirtTemplate, SeamError> {
        self.templates.get(group).ok_or_else(|| {
            SeamError::invalid(format!("group `{group}` has no libvirt template (groups[..].template.libvirt)"))
        })
    }

    async fn create(
        self: &Arc<Self>,
        group: &GroupId,
        spec: &InstanceSpec,
        names: &[String],
    ) -> Result<Vec<Instance>, SeamError> {
        let mut unique: Vec<&str> = Vec::with_capacity(names.len());
        for name in names {
            validate_name(name)?;
            if !unique.contains(&name.as_str()) {
                unique.push(name);
            }
        }
        if unique.is_empty() {
            return Ok(Vec::new());
        }
        let tpl = self.template(group)?;
        let problems = tpl.check_files();
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(|(p, m)| format!("template.libvirt.{p}: {m}")).collect();
            return Err(SeamError::invalid(format!("group `{group}`: {}", list.join("; "))));
        }
        let vcpus = tpl.vcpus.unwrap_or(spec.vcpus).max(1);
        let need = Need { mem_kib: u64::from(tpl.memory_mib) * 1024, vcpus };

        let locked = self.creating.lock().await;
        let seen = self.survey(true).await;
        if seen.iter().all(|(_, r)| r.is_err()) {
            let why: Vec<String> =
                seen.iter().filter_map(|(_, r)| r.as_ref().err().map(|e| e.message.clone())).collect();
            return Err(SeamError::transient(format!("no libvirt host is reachable: {}", why.join("; "))));
        }
        let records = self.read_records();
        let mut loads = Vec::new();
        let mut used_ports = BTreeSet::new();
        let mut used_addrs = BTreeSet::new();
        let mut hold = |m: &MemberMeta| {
            used_ports.extend(m.ssh_port);
            used_ports.extend(m.service_port);
            used_addrs.extend(m.address);
        };
        records.iter().for_each(&mut hold);
        for (h, r) in &seen {
            let mut load = HostLoad { name: h.name.clone(), max_members: h.max_members, ..Default::default() };
            match r {
                Ok(l) => {
                    let (mem, cpus) = l.node.unwrap_or((0, 0));
                    load.up = true;
                    load.mem_total_kib = mem;
                    load.cpus = cpus;
                    for f in &l.ours {
                        load.our_members += 1;
                        load.our_mem_kib += u64::from(f.meta.memory_mib) * 1024;
                        load.our_vcpus += f.meta.vcpus;
                    }
                    // domains of ours under another entry with the same URI still hold ports
                    l.ours.iter().for_each(|f| hold(&f.meta));
                }
                Err(e) => {
                    load.down_reason = e.message.clone();
                    h.known().unwrap_or_default().iter().for_each(|f| hold(&f.meta));
                }
            }
            loads.push(load);
        }

        let mut pending: Vec<(String, Result<Pending, SeamError>)> = Vec::new();
        for &name in &unique {
            let r = self
                .plan_one(group, tpl, name, &seen, &records, &mut loads, &need, &mut used_ports, &mut used_addrs)
                .await;
            pending.push((name.to_string(), r));
        }
        drop(locked);

        let deadline_for = |p: &Pending| p.since + self.settings.start_timeout;
        let mut jobs = tokio::task::JoinSet::new();
        let mut errors = Vec::new();
        for (i, (name, r)) in pending.into_iter().enumerate() {
            match r {
                Ok(p) => {
                    let me = self.clone();
                    let deadline = deadline_for(&p);
                    jobs.spawn(async move { (i, me.finish(p, deadline).await) });
                }
                Err(e) => errors.push((i, e.context(format!("member {name}")))),
            }
        }
        let mut done = Vec::new();
        while let Some(j) = jobs.join_next().await {
            match j {
                Ok((i, Ok(inst))) => done.push((i, inst)),
                Ok((i, Err(e))) => errors.push((i, e)),
                Err(e) => errors.push((usize::MAX, SeamError::bug(format!("create task failed: {e}")))),
            }
        }
        errors.sort_by_key(|(i, _)| *i);
        SeamError::combine(errors.into_iter().map(|(_, e)| e).collect())?;
        done.sort_by_key(|(i, _)| *i);
        Ok(done.into_iter().map(|(_, i)| i).collect())
    }

    /// Under the create lock: adopt `name` if it is ours, refuse it if it is someone else's, or
    /// place, make, define and start it.
    #[allow(clippy::too_many_arguments)]
    async fn plan_one(
        self: &Arc<Self>,
        group: &GroupId,
        tpl: &LibvirtTemplate,
        name: &str,
        seen: &[(Arc<Host>, Result<Listing, SeamError>)],
        records: &[MemberMeta],
        loads: &mut [HostLoad],
        need: &Need,
        used_ports: &mut BTreeSet<u16>,
        used_addrs: &mut BTreeSet<Ipv4Addr>,
    ) -> Result<Pending, SeamError> {
        // ours already (a retried or resumed create): adopt
        for (h, r) in seen {
            let Ok(l) = r else { continue };
            if let Some(f) = l.ours.iter().find(|f| f.meta.instance == name) {
                if f.meta.group != group.as_str() {
                    return Err(SeamError::new(
                        ErrorKind::Conflict,
                        format!("the name is taken by a member of group `{}` on {}", f.meta.group, h.label()),
                    ));
                }
                return self.adopt(h, f.clone()).await;
            }
        }
        // someone else's domain: never touch it
        for (h, r) in seen {
            if r.as_ref().is_ok_and(|l| l.foreign.iter().any(|n| n == name)) {
                return Err(SeamError::new(
                    ErrorKind::Conflict,
                    format!(
                        "a domain named {name} that is not Flotilla's (no {} metadata) exists on {}: refusing to create or touch it",
                        xml::NS,
                        h.label()
                    ),
                ));
            }
        }
        // ours, maybe, on a host that is down: cannot tell, so do not make a second one
        for (h, r) in seen {
            if let Err(e) = r {
                if self.last_known(h, records).iter().any(|f| f.meta.instance == name) {
                    return Err(SeamError::transient(format!("it may exist on a host that is down: {}", e.message)));
                }
            }
        }
        if let Some(m) = records.iter().find(|m| m.instance == name && !self.hosts.iter().any(|h| h.name == m.host)) {
            return Err(SeamError::invalid(format!(
                "a member record names host `{}`, which is no longer configured; remove the domain there by hand, then {}",
                m.host,
                self.member_dir(name).display()
            )));
        }
        // leftovers of a create that died before defining: not a member
        let dir = self.member_dir(name);
        if tokio::fs::try_exists(&dir).await.unwrap_or(false) {
            tracing::info!(member = name, dir = %dir.display(), "removing the files of a member that was never defined");
            remove_dir(&dir)
                .await
                .map_err(|e| SeamError::transient(format!("cannot remove stale {}: {e}", dir.display())))?;
        }

        let cursor = *mutex(&self.rr_cursor);
        let hi = placement::choose(self.settings.placement, loads, need, cursor).map_err(|why| {
            SeamError::new(ErrorKind::Quota, format!("placement {}: {why}", self.settings.placement.as_str()))
        })?;
        let host = seen[hi].0.clone();
        let driver = host.driver().unwrap_or(Driver::Qemu);
        if let Driver::Other(t) = &driver {
            return Err(SeamError::invalid(format!(
                "{}: its driver {t} is not supported (qemu and test only)",
                host.label()
            )));
        }

        // QEMU binds the forwarded ports only when it starts: if something took one since the bind
        // test (any outgoing connection may get it as its ephemeral port when the range overlaps
        // the kernel's), start fails; the ports stay reserved for this call and others are tried.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let net = self.allocate_net(name, used_ports, used_addrs)?;
            let (ssh_port, service_port, address) = match &net {
                Net::User { ssh, service } => (Some(*ssh), Some(*service), None),
                Net::Bridge { address, .. } => (None, None, Some(*address)),
            };
            let meta = MemberMeta {
                group: group.as_str().to_string(),
                instance: name.to_string(),
                host: host.name.clone(),
                ssh_port,
                service_port,
                address,
                guest_ssh_port: tpl.ssh_port,
                guest_service_port: tpl.service_port,
                vcpus: need.vcpus,
                memory_mib: tpl.memory_mib,
                created_ms: wall_ms(),
                fingerprint: tpl.fingerprint(),
                dir: dir.clone(),
            };
            let since = tokio::time::Instant::now();
            let uuid = match self.make(&host, &driver, tpl, &meta, &net).await {
                Ok(u) => u,
                Err(e)
                    if attempt < PORT_ATTEMPTS
                        && matches!(net, Net::User { .. })
                        && e.message.contains("host forwarding") =>
                {
                    tracing::warn!(member = name, error = %e, "a forwarded port was taken meanwhile; trying other ports");
                    continue;
                }
                Err(e) => return Err(e),
            };
            loads[hi].add(need);
            *mutex(&self.rr_cursor) = hi + 1;
            tracing::info!(member = name, %group, host = %host.name, uuid = %uuid, address = ?meta.service_address(), "member defined and started");
            let found = Found { meta, uuid, state: DomState::Running };
            host.remember(found.clone());
            return Ok(Pending { host, found, made: true, driver, since });
        }
    }

    fn allocate_net(
        &self,
        name: &str,
        used_ports: &mut BTreeSet<u16>,
        used_addrs: &mut BTreeSet<Ipv4Addr>,
    ) -> Result<Net, SeamError> {
        if let Some(range) = self.settings.ports {
            let mut cursor = mutex(&self.port_cursor);
            let (ports, next) =
                ports::allocate_ports(range, used_ports, 2, *cursor, ports::port_is_free).ok_or_else(|| {
                    SeamError::new(
                        ErrorKind::Quota,
                        format!(
                            "provider.ports {range}: no two free ports left ({} held by members, the others busy)",
                            used_ports.iter().filter(|p| range.contains(**p)).count()
                        ),
                    )
                })?;
            *cursor = next;
            used_ports.extend(&ports);
            return Ok(Net::User { ssh: ports[0], service: ports[1] });
        }
        if let Some(pool) = &self.settings.addresses {
            let address = ports::allocate_address(pool, used_addrs).ok_or_else(|| {
                SeamError::new(ErrorKind::Quota, "provider.addresses: every address of the pool is held by a member")
            })?;
            used_addrs.insert(address);
            return Ok(Net::Bridge { bridge: pool.bridge.clone(), mac: cloudinit::mac_for(name), address });
        }
        Err(SeamError::invalid("provider: neither `ports` nor `addresses` is set"))
    }

    /// Files, define, start. On failure nothing of it is left (domain undefined, files removed).
    async fn make(
        self: &Arc<Self>,
        host: &Arc<Host>,
        driver: &Driver,
        tpl: &LibvirtTemplate,
        meta: &MemberMeta,
        net: &Net,
    ) -> Result<String, SeamError> {
        let name = meta.instance.clone();
        let r = self.make_files(driver, tpl, meta, net).await;
        let xml = match r {
            Ok(x) => x,
            Err(e) => {
                let _ = remove_dir(&meta.dir).await;
                return Err(e);
            }
        };
        let defined = host
            .call(&format!("define {name}"), move |c| {
                let d = c.define_domain_xml(&xml)?;
                d.uuid_string()
            })
            .await;
        let uuid = match defined {
            Ok(u) => u,
            Err(e) => {
                let _ = remove_dir(&meta.dir).await;
                return Err(e);
            }
        };
        let u = uuid.clone();
        let started = host
            .call(&format!("start {name}"), move |c| {
                let d = c.lookup_domain_by_uuid_string(&u)?;
                d.create().map(|_| ())
            })
            .await;
        if let Err(e) = started {
            let log = console_tail(&meta.console_log());
            self.remove_domain(host, &name, &uuid).await;
            let _ = remove_dir(&meta.dir).await;
            return Err(SeamError::transient(format!("{}{log} (domain undefined, files removed)", e.message)));
        }
        Ok(uuid)
    }

    async fn make_files(
        &self,
        driver: &Driver,
        tpl: &LibvirtTemplate,
        meta: &MemberMeta,
        net: &Net,
    ) -> Result<String, SeamError> {
        let dir = &meta.dir;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| SeamError::transient(format!("cannot create {}: {e}", dir.display())))?;
        self.write_record(meta).map_err(|e| {
            SeamError::transient(format!("cannot write {}: {e}", self.record_path(&meta.instance).display()))
        })?;

        // copy-on-write overlay
        let image = std::fs::canonicalize(&tpl.image)
            .map_err(|e| SeamError::invalid(format!("template.libvirt.image {}: {e}", tpl.image.display())))?;
        let out = tokio::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(&image)
            .arg(meta.overlay())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| {
                let kind =
                    if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::Invalid } else { ErrorKind::Transient };
                SeamError::new(kind, format!("cannot run qemu-img (package qemu-utils): {e}"))
            })?;
        if !out.status.success() {
            return Err(SeamError::invalid(format!(
                "template.libvirt.image {}: qemu-img create failed: {}",
                image.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }

        // NoCloud seed
        let key = tpl.authorized_key().map_err(|(p, m)| SeamError::invalid(format!("template.libvirt.{p}: {m}")))?;
        let user_data =
            match tpl.raw_user_data().map_err(|(p, m)| SeamError::invalid(format!("template.libvirt.{p}: {m}")))? {
                Some(raw) => cloudinit::expand_env(&raw, |k| std::env::var(k).ok()).map_err(|m| {
                    let field = if tpl.user_data.is_some() { "user_data" } else { "user_data_file" };
                    SeamError::invalid(format!("template.libvirt.{field}: {m}"))
                })?,
                None => cloudinit::EMPTY_USER_DATA.to_string(),
            };
        let mut files =
            vec![("meta-data", cloudinit::meta_data(&meta.instance, key.as_deref())), ("user-data", user_data)];
        if let (Net::Bridge { mac, address, .. }, Some(pool)) = (net, &self.settings.addresses) {
            let prefix = pool.prefix_len().unwrap_or(24);
            files.push(("network-config", cloudinit::network_config(mac, *address, prefix, pool.gateway, &pool.dns)));
        }
        cloudinit::build_iso(&dir.join("seed"), &files, &meta.seed()).await.map_err(SeamError::transient)?;

        // domain XML
        let (template, field) = match (driver, &tpl.domain_xml) {
            (Driver::Test, _) => (xml::BUILTIN_TEST_TEMPLATE.to_string(), "built-in test template"),
            (_, Some(p)) => (
                std::fs::read_to_string(p)
                    .map_err(|e| SeamError::invalid(format!("template.libvirt.domain_xml {}: {e}", p.display())))?,
                "template.libvirt.domain_xml",
            ),
            (_, None) => (xml::BUILTIN_QEMU_TEMPLATE.to_string(), "built-in domain template"),
        };
        let input = xml::RenderInput {
            meta: meta.clone(),
            kernel: tpl.kernel.as_ref().map(|k| std::fs::canonicalize(k).unwrap_or_else(|_| k.clone())),
            initrd: tpl.initrd.as_ref().map(|k| std::fs::canonicalize(k).unwrap_or_else(|_| k.clone())),
            cmdline: tpl.cmdline.clone().unwrap_or_else(|| DEFAULT_CMDLINE.to_string()),
            net: net.clone(),
        };
        let text = xml::render(&template, &input).map_err(|m| SeamError::invalid(format!("{field}: {m}")))?;
        let _ = tokio::fs::write(dir.join("domain.xml"), &text).await;
        Ok(text)
    }

    /// A domain of ours that exists already: running ones are waited for, stopped ones started.
    async fn adopt(self: &Arc<Self>, host: &Arc<Host>, f: Found) -> Result<Pending, SeamError> {
        let name = f.meta.instance.clone();
        let driver = host.driver().unwrap_or(Driver::Qemu);
        if let DomState::Stopped(why) = &f.state {
            tracing::info!(member = %name, host = %host.name, state = %why, "adopting a stopped member: starting it");
            let u = f.uuid.clone();
            host.call(&format!("start {name}"), move |c| c.lookup_domain_by_uuid_string(&u)?.create().map(|_| ()))
                .await?;
        } else {
            tracing::info!(member = %name, host = %host.name, "member exists: adopting it");
        }
        Ok(Pending { host: host.clone(), found: f, made: false, driver, since: tokio::time::Instant::now() })
    }

    /// Waits until the member serves; on failure removes it (made or adopted: it never served).
    async fn finish(self: Arc<Self>, p: Pending, deadline: tokio::time::Instant) -> Result<Instance, SeamError> {
        let name = p.found.meta.instance.clone();
        let r = if p.driver == Driver::Test { Ok(()) } else { self.wait_serving(&p, deadline).await };
        match r {
            Ok(()) => {
                let took = p.since.elapsed();
                tracing::info!(member = %name, host = %p.host.name, seconds = took.as_secs_f64(), adopted = !p.made, "member serving");
                let mut i = self.instance(&p.host, &p.found, InstanceState::Running);
                i.tags.insert(flotilla_model::READY_TAG.into(), took.as_millis().to_string());
                Ok(i)
            }
            Err(why) => {
                let log = console_tail(&p.found.meta.console_log());
                self.remove_domain(&p.host, &name, &p.found.uuid).await;
                let _ = remove_dir(&p.found.meta.dir).await;
                p.host.forget(&name);
                tracing::warn!(member = %name, host = %p.host.name, reason = %why, "member did not start; removed");
                Err(SeamError::transient(format!(
                    "member {name} on {} did not serve: {why} (domain and files removed){log}",
                    p.host.label()
                )))
            }
        }
    }

    async fn wait_serving(&self, p: &Pending, deadline: tokio::time::Instant) -> Result<(), String> {
        let name = &p.found.meta.instance;
        let addr = p.found.meta.service_address().ok_or("no service address")?;
        let mut last;
        let mut next_state = tokio::time::Instant::now() + STATE_EVERY;
        loop {
            match health::check(&addr, name, Duration::from_secs(2)).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(format!(
                    "no 200 from /healthz within {}s; last: {last}",
                    self.settings.start_timeout.as_secs()
                ));
            }
            if now >= next_state {
                next_state = now + STATE_EVERY;
                let u = p.found.uuid.clone();
                match p
                    .host
                    .call(&format!("state of {name}"), move |c| dom_state(&c.lookup_domain_by_uuid_string(&u)?))
                    .await
                {
                    Ok(DomState::Running) => {}
                    Ok(DomState::Stopped(why)) => return Err(format!("the domain stopped while booting: {why}")),
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        return Err("the domain disappeared while booting".into())
                    }
                    Err(e) => tracing::debug!(member = %name, error = %e, "state check failed"),
                }
            }
            tokio::time::sleep(PROBE_EVERY.min(deadline.saturating_duration_since(now))).await;
        }
    }

    /// Destroys and undefines a domain by UUID, best effort (for rollbacks).
    async fn remove_domain(&self, host: &Host, name: &str, uuid: &str) {
        let u = uuid.to_string();
        let r = host
            .call(&format!("remove {name}"), move |c| {
                let d = match c.lookup_domain_by_uuid_string(&u) {
                    Ok(d) => d,
                    Err(e) if is_no_domain(&e) => return Ok(()),
                    Err(e) => return Err(e),
                };
                if d.is_active()? {
                    d.destroy()?;
                }
                d.undefine()
            })
            .await;
        if let Err(e) = r {
            tracing::error!(member = name, error = %e, "could not remove a member's domain during a rollback");
        }
    }

    async fn delete(self: &Arc<Self>, group: &GroupId, ids: &[InstanceId]) -> Result<(), SeamError> {
        let seen = Arc::new(self.survey(false).await);
        let records = Arc::new(self.read_records());
        // members shut down at the same time: a batch takes about as long as one
        let mut jobs = tokio::task::JoinSet::new();
        let mut unique: Vec<&str> = Vec::new();
        for id in ids {
            let name = id.as_str();
            if validate_name(name).is_err() || unique.contains(&name) {
                continue; // no domain of ours can have this name
            }
            unique.push(name);
            let (me, group, name, seen, records) =
                (self.clone(), group.clone(), name.to_string(), seen.clone(), records.clone());
            let i = unique.len();
            jobs.spawn(async move {
                let r = me.delete_one(&group, &name, &seen, &records).await;
                (i, r.map_err(|e| e.context(format!("delete {name}"))))
            });
        }
        let mut errors = Vec::new();
        while let Some(j) = jobs.join_next().await {
            match j {
                Ok((_, Ok(()))) => {}
                Ok((i, Err(e))) => errors.push((i, e)),
                Err(e) => errors.push((usize::MAX, SeamError::bug(format!("delete task failed: {e}")))),
            }
        }
        errors.sort_by_key(|(i, _)| *i);
        SeamError::combine(errors.into_iter().map(|(_, e)| e).collect())
    }

    async fn delete_one(
        self: &Arc<Self>,
        group: &GroupId,
        name: &str,
        seen: &[(Arc<Host>, Result<Listing, SeamError>)],
        records: &[MemberMeta],
    ) -> Result<(), SeamError> {
        for (h, r) in seen {
            let Ok(l) = r else { continue };
            if let Some(f) = l.ours.iter().find(|f| f.meta.instance == name) {
                if f.meta.group != group.as_str() {
                    return Err(SeamError::new(
                        ErrorKind::Conflict,
                        format!("member {name} belongs to group `{}`, not `{group}`", f.meta.group),
                    ));
                }
                return self.stop_and_remove(h, f).await;
            }
        }
        for (h, r) in seen {
            if r.as_ref().is_ok_and(|l| l.foreign.iter().any(|n| n == name)) {
                return Err(SeamError::new(
                    ErrorKind::Conflict,
                    format!(
                        "the domain {name} on {} is not Flotilla's (no {} metadata): refusing to touch it",
                        h.label(),
                        xml::NS
                    ),
                ));
            }
        }
        for (h, r) in seen {
            if let Err(e) = r {
                if self.last_known(h, records).iter().any(|f| f.meta.instance == name) {
                    return Err(SeamError::transient(format!("its host is down: {}", e.message)));
                }
            }
        }
        if let Some(m) = records.iter().find(|m| m.instance == name && !self.hosts.iter().any(|h| h.name == m.host)) {
            return Err(SeamError::invalid(format!(
                "its host `{}` is no longer configured; add it back, or remove the domain there by hand and then {}",
                m.host,
                self.member_dir(name).display()
            )));
        }
        // gone already; remove files a previous delete may have left
        let dir = self.member_dir(name);
        remove_dir(&dir).await.map_err(|e| SeamError::transient(format!("cannot remove {}: {e}", dir.display())))
    }

    /// ACPI shutdown (up to `shutdown_timeout`) → destroy → undefine → files. Works on the UUID
    /// listed, so a domain that replaced it under the same name is never touched.
    async fn stop_and_remove(&self, h: &Arc<Host>, f: &Found) -> Result<(), SeamError> {
        let name = f.meta.instance.clone();
        let t0 = tokio::time::Instant::now();
        let u = f.uuid.clone();
        let active = h
            .call(&format!("shut down {name}"), move |c| {
                let d = match c.lookup_domain_by_uuid_string(&u) {
                    Ok(d) => d,
                    Err(e) if is_no_domain(&e) => return Ok(None),
                    Err(e) => return Err(e),
                };
                if !d.is_active()? {
                    return Ok(Some(false));
                }
                match d.shutdown() {
                    Ok(()) => Ok(Some(true)),
                    // raced with the guest powering off
                    Err(e) if e.code().is(virt::error::ErrorNumber::OperationInvalid) => Ok(Some(d.is_active()?)),
                    Err(e) => Err(e),
                }
            })
            .await?;
        let mut how = "was not running";
        if active == Some(true) {
            how = "shut down";
            let deadline = t0 + self.settings.shutdown_timeout;
            loop {
                let u = f.uuid.clone();
                let still = h
                    .call(&format!("state of {name}"), move |c| match c.lookup_domain_by_uuid_string(&u) {
                        Ok(d) => d.is_active(),
                        Err(e) if is_no_domain(&e) => Ok(false),
                        Err(e) => Err(e),
                    })
                    .await?;
                if !still {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    how = "destroyed after the shutdown timeout";
                    let u = f.uuid.clone();
                    h.call(&format!("destroy {name}"), move |c| match c.lookup_domain_by_uuid_string(&u) {
                        Ok(d) => match d.destroy() {
                            Err(e) if e.code().is(virt::error::ErrorNumber::OperationInvalid) => Ok(()),
                            r => r,
                        },
                        Err(e) if is_no_domain(&e) => Ok(()),
                        Err(e) => Err(e),
                    })
                    .await?;
                    break;
                }
                tokio::time::sleep(SHUTDOWN_POLL).await;
            }
        }
        if active.is_some() {
            let u = f.uuid.clone();
            h.call(&format!("undefine {name}"), move |c| match c.lookup_domain_by_uuid_string(&u) {
                Ok(d) => d.undefine(),
                Err(e) if is_no_domain(&e) => Ok(()),
                Err(e) => Err(e),
            })
            .await?;
            // libvirt may keep the domain object a moment while it finishes stopping QEMU: the
            // delete is done when the domain is gone (an undefined but still active domain goes
            // when it stops; a persistent one that is still there is undefined again)
            let deadline = tokio::time::Instant::now() + REMOVAL_WAIT;
            loop {
                let u = f.uuid.clone();
                let gone = h
                    .call(&format!("confirm removal of {name}"), move |c| match c.lookup_domain_by_uuid_string(&u) {
                        Ok(d) => {
                            if !d.is_active()? && d.is_persistent()? {
                                d.undefine()?;
                            }
                            Ok(false)
                        }
                        Err(e) if is_no_domain(&e) => Ok(true),
                        Err(e) => Err(e),
                    })
                    .await?;
                if gone {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(SeamError::transient(format!(
                        "member {name} on {} was undefined but libvirt still lists it after {}s; delete again",
                        h.label(),
                        REMOVAL_WAIT.as_secs()
                    )));
                }
                tokio::time::sleep(SHUTDOWN_POLL).await;
            }
        }
        h.forget(&name);
        let mut dirs = vec![self.member_dir(&name)];
        // a member made under another state directory: its own directory, if it looks like one
        if f.meta.dir != dirs[0]
            && f.meta.dir.file_name().is_some_and(|n| n == name.as_str())
            && f.meta.dir.parent().and_then(Path::file_name).is_some_and(|n| n == "libvirt")
        {
            dirs.push(f.meta.dir.clone());
        }
        for d in dirs {
            remove_dir(&d).await.map_err(|e| {
                SeamError::transient(format!("member {name} undefined but {} remains: {e}", d.display()))
            })?;
        }
        tracing::info!(member = %name, host = %h.name, how, seconds = t0.elapsed().as_secs_f64(), "member deleted");
        Ok(())
    }
}

async fn remove_dir(dir: &Path) -> std::io::Result<()> {
    match tokio::fs::remove_dir_all(dir).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `; console: <last lines>` of a member's console log, or nothing.
fn console_tail(p: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(p) else { return String::new() };
    // terminal escapes and other control characters make log lines unreadable
    let clean: String = text.chars().filter(|c| !c.is_control() || *c == '\n').collect::<String>().replace("[6n", "");
    let lines: Vec<&str> = clean.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!("; console ({}): {}", p.display(), tail.join(" | "))
    }
}

#[async_trait]
impl Provider for LibvirtProvider {
    fn name(&self) -> &str {
        "libvirt"
    }

    async fn list(&self, group: Option<&GroupId>) -> Result<Vec<Instance>, SeamError> {
        self.inner.list(group).await
    }

    async fn create(&self, group: &GroupId, spec: &InstanceSpec, names: &[String]) -> Result<Vec<Instance>, SeamError> {
        self.inner.create(group, spec, names).await
    }

    async fn delete(&self, group: &GroupId, ids: &[InstanceId]) -> Result<(), SeamError> {
        self.inner.delete(group, ids).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["vm-test_1", "vm-test_clone_1", "a", "1x", &"n".repeat(MAX_NAME_LEN)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", ".a", "a/b", "a b", "é", &"n".repeat(MAX_NAME_LEN + 1)] {
            assert_eq!(validate_name(bad).unwrap_err().kind(), ErrorKind::Invalid, "{bad}");
        }
    }

    fn settings(uris: &[(&str, &str)]) -> LibvirtSettings {
        LibvirtSettings {
            hosts: uris
                .iter()
                .map(|(n, u)| HostSettings { name: n.to_string(), uri: u.to_string(), max_members: None })
                .collect(),
            placement: Placement::RoundRobin,
            ports: Some(PortRange { first: 40000, last: 40009 }),
            addresses: None,
            start_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn new_refuses_bad_settings() {
        let mut s = settings(&[("a", "qemu:///system")]);
        s.ports = None;
        let e = LibvirtProvider::new(s, Path::new("/tmp"), BTreeMap::new()).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.message.contains("provider.ports"), "{}", e.message);
    }

    #[test]
    fn each_member_is_reported_by_one_entry() {
        let hosts = ["a", "b", "c"];
        // a and b reach one libvirtd: each member goes to the entry its metadata names
        let both = vec![("m1", "a"), ("m2", "b"), ("m3", "gone")];
        let o = owners(&hosts, &[Some(both.clone()), Some(both.clone()), Some(vec![])]);
        assert_eq!(
            o,
            BTreeMap::from([("m1", 0), ("m2", 1), ("m3", 0)]),
            "an unknown host name: the first entry that sees it"
        );
        // b is down: its member, visible through a, is reported by a
        let o = owners(&hosts, &[Some(both.clone()), None, Some(vec![])]);
        assert_eq!(o.get("m2"), Some(&0));
        // seen by c only, whatever it says
        let o = owners(&hosts, &[Some(vec![]), Some(vec![]), Some(vec![("m4", "a")])]);
        assert_eq!(o.get("m4"), Some(&2));
        // the named entry wins even when it comes later
        let o = owners(&hosts, &[Some(vec![("m5", "c")]), None, Some(vec![("m5", "c")])]);
        assert_eq!(o.get("m5"), Some(&2));
    }

    #[test]
    fn console_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("console.log");
        assert_eq!(console_tail(&p), "");
        std::fs::write(&p, "1\n2\n\n3\n4\n").unwrap();
        assert!(console_tail(&p).ends_with(": 2 | 3 | 4"), "{}", console_tail(&p));
    }
}
