//! Creating members: check → place → define → start under one lock, then wait until they serve.

use std::sync::Arc;

use flotilla_model::{GroupId, Instance, InstanceSpec, SeamError};

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use flotilla_model::{ErrorKind, InstanceState};

use crate::delete::remove_dir;
use crate::host::{dom_state, DomState, Driver, Found, Host, Listing};
use crate::placement::{HostLoad, Need};
use crate::provider::*;
use crate::xml::{MemberMeta, Net};
use crate::{cloudinit, placement, ports, xml, DEFAULT_CMDLINE};
use crate::{validate_name, LibvirtTemplate};

impl Inner {
    pub(crate) async fn create(
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
    pub(crate) async fn plan_one(
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
        self.refuse_unsure(name, seen, records)?;
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

    pub(crate) fn allocate_net(
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
    pub(crate) async fn make(
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

    pub(crate) async fn make_files(
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
        let _ = crate::private::write(&dir.join("domain.xml"), text.as_bytes());
        Ok(text)
    }

    /// A domain of ours that exists already: running ones are waited for, stopped ones started.
    pub(crate) async fn adopt(self: &Arc<Self>, host: &Arc<Host>, f: Found) -> Result<Pending, SeamError> {
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
    pub(crate) async fn finish(
        self: Arc<Self>,
        p: Pending,
        deadline: tokio::time::Instant,
    ) -> Result<Instance, SeamError> {
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

    pub(crate) async fn wait_serving(&self, p: &Pending, deadline: tokio::time::Instant) -> Result<(), String> {
        let name = &p.found.meta.instance;
        let addr = p.found.meta.service_address().ok_or("no service address")?;
        let mut last;
        let mut next_state = tokio::time::Instant::now() + STATE_EVERY;
        loop {
            match flotilla_healthz::check(&addr, name, Duration::from_secs(2)).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(crate) fn console_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("console.log");
        assert_eq!(console_tail(&p), "");
        std::fs::write(&p, "1\n2\n\n3\n4\n").unwrap();
        assert!(console_tail(&p).ends_with(": 2 | 3 | 4"), "{}", console_tail(&p));
    }
}
