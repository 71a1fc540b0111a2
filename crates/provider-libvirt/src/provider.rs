//! The provider itself: settings, host connections, member records, listing; creating and
//! deleting members are in [`crate::create`] and [`crate::delete`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_model::{
    ErrorKind, GroupId, Instance, InstanceId, InstanceSpec, InstanceState, Provider, SeamError, Timestamp,
};

use crate::host::{DomState, Driver, Found, Host, HostStatus, Listing};
use crate::xml::MemberMeta;
use crate::{owners, LibvirtSettings, LibvirtTemplate};

/// How often a starting member's `/healthz` is tried.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How often a starting member's domain is checked to be still running.
pub(crate) const STATE_EVERY: Duration = Duration::from_secs(2);
/// How often a member being shut down is checked.
pub(crate) const SHUTDOWN_POLL: Duration = Duration::from_millis(250);
/// Starts tried with fresh forwarded ports when QEMU could not bind one.
pub(crate) const PORT_ATTEMPTS: u32 = 3;
/// How long libvirt gets to drop a destroyed and undefined domain.
pub(crate) const REMOVAL_WAIT: Duration = Duration::from_secs(15);

/// The `libvirt` provider.
pub struct LibvirtProvider {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) settings: LibvirtSettings,
    /// `<state_dir>/libvirt`.
    pub(crate) dir: PathBuf,
    pub(crate) templates: BTreeMap<GroupId, LibvirtTemplate>,
    pub(crate) hosts: Vec<Arc<Host>>,
    pub(crate) rr_cursor: Mutex<usize>,
    pub(crate) port_cursor: Mutex<u32>,
    /// Serialises create's check → place → define → start (not the wait for /healthz), so two
    /// creates cannot take the same name, ports or address.
    pub(crate) creating: tokio::sync::Mutex<()>,
}

pub(crate) fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A member this create call works on after the locked part.
pub(crate) struct Pending {
    pub(crate) host: Arc<Host>,
    pub(crate) found: Found,
    /// Made by this call (rather than adopted).
    pub(crate) made: bool,
    pub(crate) driver: Driver,
    /// When it was defined or adopted.
    pub(crate) since: tokio::time::Instant,
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

pub(crate) fn mutex<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    pub(crate) fn member_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Lists every host at once; each listing keeps only the members [`owners`] gives to its
    /// host entry, and becomes that host's last known view.
    pub(crate) async fn survey(self: &Arc<Self>, node: bool) -> Vec<(Arc<Host>, Result<Listing, SeamError>)> {
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

    pub(crate) fn record_path(&self, name: &str) -> PathBuf {
        self.member_dir(name).join("member.json")
    }

    pub(crate) fn write_record(&self, meta: &MemberMeta) -> std::io::Result<()> {
        let p = self.record_path(&meta.instance);
        let tmp = p.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(meta).map_err(std::io::Error::other)?;
        crate::private::write(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, &p)
    }

    /// Every `member.json` under the state directory.
    pub(crate) fn read_records(&self) -> Vec<MemberMeta> {
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

    pub(crate) fn instance(&self, host: &Host, f: &Found, state: InstanceState) -> Instance {
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
            tag(flotilla_model::vocab::SSH_ADDRESS_TAG, a);
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

    pub(crate) fn state_of(f: &Found) -> InstanceState {
        match &f.state {
            DomState::Running => InstanceState::Running,
            DomState::Stopped(why) => InstanceState::Failed(format!("domain {why}")),
        }
    }

    pub(crate) async fn list(self: &Arc<Self>, group: Option<&GroupId>) -> Result<Vec<Instance>, SeamError> {
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
            let why = InstanceState::Unknown(format!("host down: {}", e.message));
            for f in self.last_known(h, &records) {
                if reported.insert(f.meta.instance.clone()) && wanted(&f.meta) {
                    out.push(self.instance(h, &f, why.clone()));
                }
            }
        }
        for m in records.iter().filter(|m| !self.hosts.iter().any(|h| h.name == m.host)) {
            if reported.insert(m.instance.clone()) && wanted(m) {
                let f = Found { meta: m.clone(), uuid: String::new(), state: DomState::Stopped(String::new()) };
                let state = InstanceState::Unknown(format!(
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
    pub(crate) fn last_known(&self, h: &Host, records: &[MemberMeta]) -> Vec<Found> {
        let mut known = h.known().unwrap_or_default();
        for m in records.iter().filter(|m| m.host == h.name) {
            if !known.iter().any(|f| f.meta.instance == m.instance) {
                known.push(Found { meta: m.clone(), uuid: String::new(), state: DomState::Stopped("unknown".into()) });
            }
        }
        known
    }

    /// What a create or a delete of `name` must not go past, when no host lists it as ours: a
    /// domain of that name that is not Flotilla's (never touched), ours maybe on a host that is
    /// down (cannot tell, so neither make a second one nor call it gone), or a record naming a host
    /// that is no longer configured.
    pub(crate) fn refuse_unsure(
        &self,
        name: &str,
        seen: &[(Arc<Host>, Result<Listing, SeamError>)],
        records: &[MemberMeta],
    ) -> Result<(), SeamError> {
        for (h, r) in seen {
            if r.as_ref().is_ok_and(|l| l.foreign.iter().any(|n| n == name)) {
                return Err(SeamError::new(
                    ErrorKind::Conflict,
                    format!(
                        "a domain named {name} that is not Flotilla's (no {} metadata) exists on {}: refusing to touch it",
                        crate::xml::NS,
                        h.label()
                    ),
                ));
            }
        }
        for (h, r) in seen {
            if let Err(e) = r {
                if self.last_known(h, records).iter().any(|f| f.meta.instance == name) {
                    return Err(SeamError::transient(format!(
                        "{name} may exist on a host that is down: {}",
                        e.message
                    )));
                }
            }
        }
        if let Some(m) = records.iter().find(|m| m.instance == name && !self.hosts.iter().any(|h| h.name == m.host)) {
            return Err(SeamError::invalid(format!(
                "a member record of {name} names host `{}`, which is no longer configured; add it back, or remove \
                 the domain there by hand and then {}",
                m.host,
                self.member_dir(name).display()
            )));
        }
        Ok(())
    }

    pub(crate) fn template(&self, group: &GroupId) -> Result<&LibvirtTemplate, SeamError> {
        self.templates.get(group).ok_or_else(|| {
            SeamError::invalid(format!("group `{group}` has no libvirt template (groups[..].template.libvirt)"))
        })
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
    use flotilla_model::ErrorKind;

    use super::*;
    use crate::{HostSettings, Placement, PortRange};

    pub(crate) fn settings(uris: &[(&str, &str)]) -> LibvirtSettings {
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
    pub(crate) fn new_refuses_bad_settings() {
        let mut s = settings(&[("a", "qemu:///system")]);
        s.ports = None;
        let e = LibvirtProvider::new(s, Path::new("/tmp"), BTreeMap::new()).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.message.contains("provider.ports"), "{}", e.message);
    }
}
