//! The seed's `deploy_secure_vm.py`, done right: idempotent network, subnet, router, security
//! group and keypair; a numbered server with a floating IP; snapshots with retention; cleanup of
//! what Flotilla made and nothing else; golden images.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_model::{ErrorKind, SeamError};
use serde_json::json;

use crate::client::{Cloud, Service};
use crate::resources::{marks, Image, NeutronObject, Server, ServerCreate};
use crate::util::{canonical_cidr, compact_utc, parse_ipv4_cidr, regex_escape, wall_ms};

/// What a long step reports while it runs (for progress bars).
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A step began (`"server VM-test_2"`).
    Step { what: String },
    /// Still waiting for `what`; `status` is what the cloud says now.
    Waiting { what: String, status: String, elapsed: Duration, timeout: Duration },
    /// A step ended (`outcome`: `created`, `reused`, `ACTIVE`, `deleted`, ...).
    Done { what: String, outcome: String },
}

/// A progress callback; `&|_| {}` for none.
pub type ProgressFn<'a> = &'a (dyn Fn(&Progress) + Send + Sync);

/// Everything `flotilla deploy` needs. [`DeployRequest::new`] fills in the seed's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployRequest {
    /// Base name: servers are `<name>_N`; also the group/prefix that cleanup takes.
    pub name: String,
    /// Take a snapshot of the new server (seed default: yes; `--no-snapshot` turns it off).
    pub snapshot: bool,
    /// Snapshots of this prefix to keep (the newest), at least 1.
    pub retain: u32,
    pub keypair: String,
    /// The public key to import under `keypair` if it does not exist.
    pub pubkey_file: PathBuf,
    pub image: String,
    pub flavor: String,
    pub network: String,
    /// Subnet of `network` when it is created.
    pub cidr: String,
    /// The only source allowed to SSH (TCP 22) and ping (ICMP) the server.
    pub ssh_from: String,
    /// `<network>-subnet` unless set.
    pub subnet: Option<String>,
    /// `lab-router` for `lab-net`, else `<network>-router`, unless set.
    pub router: Option<String>,
    pub security_group: String,
    /// The external network for the router gateway and floating IPs; `None`: the only one.
    pub external_network: Option<String>,
    /// Give the server a floating IP (seed: always).
    pub floating_ip: bool,
    /// DNS servers of a new subnet (none by default).
    pub dns_nameservers: Vec<String>,
    /// User for the printed SSH commands; guessed from the image name when `None`.
    pub ssh_user: Option<String>,
    /// Longest wait for ACTIVE, the floating IP, a snapshot.
    pub timeout: Duration,
}

impl DeployRequest {
    /// The seed's defaults: image `cirros`, flavor `m1.tiny`, network `lab-net`
    /// `192.168.100.0/24`, security group `sg-secure` with SSH from `10.20.20.1/32`, snapshot on,
    /// retain 3, a floating IP, 300 s timeout.
    pub fn new(name: impl Into<String>, keypair: impl Into<String>, pubkey_file: impl Into<PathBuf>) -> Self {
        DeployRequest {
            name: name.into(),
            snapshot: true,
            retain: 3,
            keypair: keypair.into(),
            pubkey_file: pubkey_file.into(),
            image: "cirros".into(),
            flavor: "m1.tiny".into(),
            network: "lab-net".into(),
            cidr: "192.168.100.0/24".into(),
            ssh_from: "10.20.20.1/32".into(),
            subnet: None,
            router: None,
            security_group: "sg-secure".into(),
            external_network: None,
            floating_ip: true,
            dns_nameservers: Vec::new(),
            ssh_user: None,
            timeout: Duration::from_secs(300),
        }
    }

    pub fn subnet_name(&self) -> String {
        self.subnet.clone().unwrap_or_else(|| format!("{}-subnet", self.network))
    }

    pub fn router_name(&self) -> String {
        self.router.clone().unwrap_or_else(|| match self.network.strip_suffix("-net") {
            Some(base) => format!("{base}-router"),
            None => format!("{}-router", self.network),
        })
    }

    /// Problems with the request itself, as `(field, message)`; nothing is contacted.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        if let Err(m) = check_group_name(&self.name) {
            p.push(("name".into(), m));
        }
        if self.snapshot && self.retain == 0 {
            p.push(("retain".into(), "must be at least 1 (or turn snapshots off)".into()));
        }
        if self.keypair.trim().is_empty() {
            p.push(("keypair".into(), "must not be empty".into()));
        }
        for (f, v) in [
            ("image", &self.image),
            ("flavor", &self.flavor),
            ("network", &self.network),
            ("security_group", &self.security_group),
        ] {
            if v.trim().is_empty() {
                p.push((f.into(), "must not be empty".into()));
            }
        }
        if let Err(m) = parse_ipv4_cidr(&self.cidr) {
            p.push(("cidr".into(), m));
        }
        if let Err(m) = parse_ipv4_cidr(&self.ssh_from) {
            p.push(("ssh_from".into(), m));
        }
        if let Err(m) = read_pubkey(&self.pubkey_file) {
            p.push(("pubkey_file".into(), m));
        }
        if self.timeout.is_zero() {
            p.push(("timeout".into(), "must be more than 0".into()));
        }
        p
    }
}

/// What a deploy did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeployReport {
    /// `<name>_N`.
    pub server: String,
    pub server_id: String,
    pub fixed_ip: Option<String>,
    pub floating_ip: Option<String>,
    /// Ready-to-paste `ssh -i KEY USER@IP` lines.
    pub ssh_commands: Vec<String>,
    /// What this run created (`"network lab-net"`, `"server VM-test_2"`, ...).
    pub created: Vec<String>,
    /// What already existed and was used as it was.
    pub reused: Vec<String>,
    /// The snapshot taken, if any: `(name, image id)`.
    pub snapshot: Option<(String, String)>,
    /// Snapshots deleted by retention.
    pub pruned_snapshots: Vec<String>,
    pub api_calls: u64,
    pub elapsed: Duration,
}

/// What a cleanup would delete (shown before confirming) and then did delete.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CleanupPlan {
    pub prefix: String,
    /// `(name, id)` of our servers of the prefix.
    pub servers: Vec<(String, String)>,
    /// `(address, id)` of our floating IPs of the prefix (attached to those servers, or free).
    pub floating_ips: Vec<(String, String)>,
    /// `(name, id)` of our snapshots of the prefix (only with `wipe_snaps`).
    pub snapshots: Vec<(String, String)>,
}

impl CleanupPlan {
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.floating_ips.is_empty() && self.snapshots.is_empty()
    }
}

/// What a cleanup did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CleanupReport {
    pub deleted: CleanupPlan,
    pub api_calls: u64,
    pub elapsed: Duration,
}

/// What a golden-image run did.
#[derive(Debug, Clone, PartialEq)]
pub struct GoldenReport {
    pub image_id: String,
    pub image_name: String,
    pub server: String,
    /// The image existed already (a repeated run): nothing was stopped or created.
    pub reused: bool,
    /// The server's status at the end (ACTIVE unless it was stopped before).
    pub server_status: String,
    pub api_calls: u64,
    pub elapsed: Duration,
}

/// Names of the network objects a deploy made, for [`Cloud::delete_infra`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfraNames {
    pub network: String,
    pub router: String,
    pub security_group: String,
}

impl From<&DeployRequest> for InfraNames {
    fn from(r: &DeployRequest) -> Self {
        InfraNames { network: r.network.clone(), router: r.router_name(), security_group: r.security_group.clone() }
    }
}

/// A group or prefix name: the one rule for group names (`flotilla_model::name`), whose length
/// limit is Nova's (at most 60 characters with `flotilla:group=`).
pub fn check_group_name(name: &str) -> Result<(), String> {
    const _: () = assert!(flotilla_model::name::MAX_GROUP_LEN <= marks::MAX_GROUP_LEN);
    flotilla_model::name::group_name_problem(name).map_or(Ok(()), Err)
}

/// The `type base64` part of an OpenSSH public key file.
fn read_pubkey(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let key = key_core(&text);
    let ok = key.split_whitespace().count() == 2
        && (key.starts_with("ssh-") || key.starts_with("ecdsa-") || key.starts_with("sk-"));
    if ok {
        Ok(text.trim().to_string())
    } else {
        Err(format!("{} is not an OpenSSH public key (expected `ssh-ed25519 AAAA...`)", path.display()))
    }
}

fn key_conflict(req: &DeployRequest, fingerprint: &str) -> SeamError {
    SeamError::invalid(format!(
        "keypair {:?} already exists with a different public key (fingerprint {fingerprint}) than {}: pass another --keypair name or the matching --pubkey-file",
        req.keypair,
        req.pubkey_file.display()
    ))
}

fn key_core(k: &str) -> String {
    k.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

fn invalid_fields(problems: Vec<(String, String)>, what: &str) -> SeamError {
    let list: Vec<String> = problems.into_iter().map(|(f, m)| format!("{f}: {m}")).collect();
    SeamError::invalid(format!("{what}: {}", list.join("; ")))
}

fn guess_user(image: &Image) -> String {
    if let Some(u) = image.property("os_admin_user") {
        return u.to_string();
    }
    let n = image.name.to_ascii_lowercase();
    for (k, u) in [
        ("cirros", "cirros"),
        ("ubuntu", "ubuntu"),
        ("debian", "debian"),
        ("fedora", "fedora"),
        ("centos", "centos"),
        ("rocky", "rocky"),
        ("alma", "almalinux"),
    ] {
        if n.contains(k) {
            return u.to_string();
        }
    }
    "cirros".to_string()
}

/// The private key beside a public one (`lab-key.pub` → `lab-key`), and its `-rsa` sibling if any.
fn ssh_commands(pubkey: &Path, user: &str, ip: &str) -> Vec<String> {
    let private = match pubkey.extension().and_then(|e| e.to_str()) {
        Some("pub") => pubkey.with_extension(""),
        _ => pubkey.to_path_buf(),
    };
    let mut out = vec![format!("ssh -i {} {user}@{ip}", private.display())];
    let rsa = PathBuf::from(format!("{}-rsa", private.display()));
    if rsa.is_file() {
        out.push(format!("ssh -i {} {user}@{ip}", rsa.display()));
    }
    out
}

/// What [`Cloud::preflight`] found.
struct Preflight {
    pubkey: String,
    /// The external network, when there is one (required for a floating IP).
    external: Option<NeutronObject>,
    /// A keypair of the request's name holds the same key already.
    key_exists: bool,
}

struct Waiter<'a> {
    progress: ProgressFn<'a>,
    what: String,
    started: tokio::time::Instant,
    timeout: Duration,
}

impl Waiter<'_> {
    fn tick(&self, status: &str) {
        (self.progress)(&Progress::Waiting {
            what: self.what.clone(),
            status: status.to_string(),
            elapsed: self.started.elapsed(),
            timeout: self.timeout,
        });
    }
}

impl Cloud {
    /// Provisions one numbered server with everything around it. Running it again reuses the
    /// network objects and creates only the next server. Lookups (image, flavor, external network,
    /// keypair conflict, compute quota) all happen before anything is created.
    pub async fn deploy(&self, req: &DeployRequest, progress: ProgressFn<'_>) -> Result<DeployReport, SeamError> {
        let started = tokio::time::Instant::now();
        let calls0 = self.api_calls();
        let mut rep = DeployReport::default();

        // 1. Every lookup first: a missing image/flavor/network creates nothing.
        progress(&Progress::Step { what: "checks".into() });
        let pre = self.preflight(req).await?;
        let image = self.find_image(&req.image).await?;
        let flavor = self.find_flavor(&req.flavor).await?;
        self.check_quota(&flavor, 1).await?;
        if req.floating_ip {
            self.check_fip_quota().await?;
        }
        progress(&Progress::Done { what: "checks".into(), outcome: "ok".into() });

        // 2. Network objects (idempotent).
        let net = self.infra(req, &pre, &mut rep, progress).await?;

        // 3. The next numbered server.
        let name = self.next_server_name(&req.name).await?;
        let what = format!("server {name}");
        progress(&Progress::Step { what: what.clone() });
        let mut metadata = BTreeMap::new();
        metadata.insert(marks::META_MANAGED.to_string(), "deploy".to_string());
        metadata.insert(marks::META_GROUP.to_string(), req.name.clone());
        metadata.insert(marks::META_PREFIX.to_string(), req.name.clone());
        metadata.insert(marks::META_INSTANCE.to_string(), name.clone());
        let id = self
            .create_server(&ServerCreate {
                name: name.clone(),
                image_id: image.id.clone(),
                flavor_id: flavor.id.clone(),
                network_ids: vec![net.id.clone()],
                security_groups: vec![req.security_group.clone()],
                key_name: Some(req.keypair.clone()),
                metadata,
                tags: vec![marks::TAG.to_string(), marks::group_tag(&req.name)],
                user_data: None,
                server_group_id: None,
            })
            .await?;
        rep.created.push(what.clone());
        rep.server = name.clone();
        rep.server_id = id.clone();
        let w = Waiter { progress, what: what.clone(), started: tokio::time::Instant::now(), timeout: req.timeout };
        let server = match self.wait_server(&id, req.timeout, |s| s.status == "ACTIVE", &|s| w.tick(&s.status)).await {
            Ok(s) => s,
            Err(e) => {
                // Not left half-made: a server that failed to come up is deleted.
                let _ = self.delete_server(&id).await;
                return Err(e.context(format!("deploy {name} (the server was deleted again)")));
            }
        };
        progress(&Progress::Done { what: what.clone(), outcome: "ACTIVE".into() });
        rep.fixed_ip = server.address("fixed", Some(&net.name));

        // 4. Floating IP (one of ours that is free, else a new one).
        if let (true, Some(ext)) = (req.floating_ip, &pre.external) {
            let fwhat = format!("floating IP for {name}");
            progress(&Progress::Step { what: fwhat.clone() });
            let (addr, fid, reused) = match self.floating_ip_for(&server, &ext.id, &req.name, "deploy").await {
                Ok(x) => x,
                Err(e) => {
                    // No half-made server: without its floating IP it goes again.
                    let _ = self.delete_server(&id).await;
                    return Err(e.context(format!("deploy {name}: no floating IP (the server was deleted again)")));
                }
            };
            if reused {
                rep.reused.push(format!("floating IP {addr} ({fid})"));
            } else {
                rep.created.push(format!("floating IP {addr} ({fid})"));
            }
            let w =
                Waiter { progress, what: fwhat.clone(), started: tokio::time::Instant::now(), timeout: req.timeout };
            self.wait_server(&id, req.timeout, |s| s.floating_ips().contains(&addr), &|s| {
                w.tick(if s.floating_ips().is_empty() { "associating" } else { "associated" })
            })
            .await?;
            progress(&Progress::Done { what: fwhat, outcome: addr.clone() });
            rep.floating_ip = Some(addr);
        }

        // 5. Snapshot + retention.
        if req.snapshot {
            let (snap_name, snap_id, pruned) =
                self.snapshot_server(&server, &req.name, req.retain, req.timeout, progress).await?;
            rep.created.push(format!("snapshot {snap_name}"));
            rep.snapshot = Some((snap_name, snap_id));
            rep.pruned_snapshots = pruned;
        }

        let ip = rep.floating_ip.clone().or(rep.fixed_ip.clone()).unwrap_or_default();
        let user = req.ssh_user.clone().unwrap_or_else(|| guess_user(&image));
        rep.ssh_commands = ssh_commands(&req.pubkey_file, &user, &ip);
        rep.api_calls = self.api_calls() - calls0;
        rep.elapsed = started.elapsed();
        Ok(rep)
    }

    /// Only the network objects of a deploy (network, subnet, router with gateway and interface,
    /// security group, keypair), idempotently, without a server. The report lists what was
    /// created and reused.
    pub async fn ensure_infra(&self, req: &DeployRequest, progress: ProgressFn<'_>) -> Result<DeployReport, SeamError> {
        let started = tokio::time::Instant::now();
        let calls0 = self.api_calls();
        let pre = self.preflight(req).await?;
        let mut rep = DeployReport::default();
        self.infra(req, &pre, &mut rep, progress).await?;
        rep.api_calls = self.api_calls() - calls0;
        rep.elapsed = started.elapsed();
        Ok(rep)
    }

    /// What a deploy and `ensure_infra` check before they create anything: the request's fields,
    /// the public key, the external network (needed only for a floating IP) and a keypair of the
    /// same name holding another key.
    async fn preflight(&self, req: &DeployRequest) -> Result<Preflight, SeamError> {
        let problems = req.validate();
        if !problems.is_empty() {
            return Err(invalid_fields(problems, "deploy"));
        }
        let pubkey = read_pubkey(&req.pubkey_file).map_err(SeamError::invalid)?;
        let external = match self.external_network(req.external_network.as_deref()).await {
            Ok(x) => Some(x),
            Err(e) if req.floating_ip => return Err(e),
            Err(_) => None,
        };
        let existing_key = self.keypair(&req.keypair).await?;
        if let Some((k, fp)) = &existing_key {
            if key_core(k) != key_core(&pubkey) {
                return Err(key_conflict(req, fp));
            }
        }
        Ok(Preflight { pubkey, external, key_exists: existing_key.is_some() })
    }

    async fn infra(
        &self,
        req: &DeployRequest,
        pre: &Preflight,
        rep: &mut DeployReport,
        progress: ProgressFn<'_>,
    ) -> Result<NeutronObject, SeamError> {
        let net = self.ensure_network(req, rep, progress).await?;
        let subnet = self.ensure_subnet(req, &net, rep, progress).await?;
        if let Some(ext) = &pre.external {
            self.ensure_router(req, ext, &subnet, rep, progress).await?;
        }
        self.ensure_security_group(req, rep, progress).await?;
        if pre.key_exists {
            rep.reused.push(format!("keypair {}", req.keypair));
        } else {
            self.import_keypair(&req.keypair, &pre.pubkey).await?;
            rep.created.push(format!("keypair {}", req.keypair));
        }
        Ok(net)
    }

    /// The shape of every named infra object: one found is reused, none is created (marked as
    /// ours), several are an error naming the ambiguity. Returns the object and whether it is new.
    async fn find_or_create(
        &self,
        what: &str,
        mut found: Vec<NeutronObject>,
        resource: &str,
        body: serde_json::Value,
        rep: &mut DeployReport,
    ) -> Result<(NeutronObject, bool), SeamError> {
        match found.len() {
            0 => {
                let o = self
                    .neutron_create(resource, body, &[marks::TAG.to_string()])
                    .await
                    .map_err(|e| e.context(format!("create {what}")))?;
                Ok((o, true))
            }
            1 => {
                let o = found.remove(0);
                rep.reused.push(ours_note(what, &o));
                Ok((o, false))
            }
            n => Err(SeamError::invalid(format!("{what}: the name is ambiguous ({n} of them); name another"))),
        }
    }

    /// A Quota error if the project has no floating IP left to allocate and none of ours is free
    /// (Neutron `quota_details`; skipped where that extension is missing).
    async fn check_fip_quota(&self) -> Result<(), SeamError> {
        if !self.neutron_has("quota_details").await.unwrap_or(false) {
            return Ok(());
        }
        let project = self.project_id().await?;
        let Ok(q) = self.get(Service::Network, &format!("/quotas/{project}/details")).await else { return Ok(()) };
        let f = &q["quota"]["floatingip"];
        let (limit, used, reserved) =
            (f["limit"].as_i64().unwrap_or(-1), f["used"].as_i64().unwrap_or(0), f["reserved"].as_i64().unwrap_or(0));
        if limit < 0 || used + reserved < limit {
            return Ok(());
        }
        let free = self.our_floating_ips(None).await?.iter().any(|f| f.field("port_id").is_null());
        if free {
            return Ok(());
        }
        Err(SeamError::new(
            ErrorKind::Quota,
            format!(
                "quota exceeded for floating IPs: {used} of {limit} in use and none of Flotilla's is free (project quota of cloud {})",
                self.config().name
            ),
        ))
    }

    /// `<base>_N` with N one more than the highest taken (by any server, ours or not).
    pub async fn next_server_name(&self, base: &str) -> Result<String, SeamError> {
        let re = format!("^{}_[0-9]+$", regex_escape(base));
        let taken = self.list_servers(&[("name", &re)]).await?;
        let max = taken
            .iter()
            .filter_map(|s| s.name.strip_prefix(base)?.strip_prefix('_')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        Ok(format!("{base}_{}", max + 1))
    }

    /// The server's floating IP: one it has already, else [`Cloud::attach_floating_ip`].
    pub(crate) async fn floating_ip_for(
        &self,
        server: &Server,
        external_net: &str,
        group: &str,
        managed: &str,
    ) -> Result<(String, String, bool), SeamError> {
        let ports = self.ports_of(&server.id).await?;
        let port =
            ports.first().ok_or_else(|| SeamError::transient(format!("server {} has no port yet", server.name)))?;
        let instance = server.meta(marks::META_INSTANCE).unwrap_or(&server.name).to_string();
        self.attach_floating_ip(&port.id, external_net, group, &instance, managed).await
    }

    async fn ensure_network(
        &self,
        req: &DeployRequest,
        rep: &mut DeployReport,
        progress: ProgressFn<'_>,
    ) -> Result<NeutronObject, SeamError> {
        let what = format!("network {}", req.network);
        progress(&Progress::Step { what: what.clone() });
        let found = self.find_network(&req.network).await?.into_iter().collect();
        let body = json!({ "name": req.network, "description": marks::description("infra", &req.name, None) });
        let (n, created) = self.find_or_create(&what, found, "network", body, rep).await?;
        if created {
            rep.created.push(what.clone());
        }
        progress(&Progress::Done { what, outcome: if created { "created" } else { "reused" }.into() });
        Ok(n)
    }

    async fn ensure_subnet(
        &self,
        req: &DeployRequest,
        net: &NeutronObject,
        rep: &mut DeployReport,
        progress: ProgressFn<'_>,
    ) -> Result<NeutronObject, SeamError> {
        let name = req.subnet_name();
        let what = format!("subnet {name}");
        progress(&Progress::Step { what: what.clone() });
        let cidr = canonical_cidr(&req.cidr).map_err(SeamError::invalid)?;
        let subnets = self.neutron_list("subnets", &[("network_id", &net.id)]).await?;
        if let Some(s) = subnets
            .iter()
            .find(|s| s.name == name)
            .or_else(|| subnets.iter().find(|s| s.str("cidr") == Some(cidr.as_str())))
        {
            if s.str("cidr") != Some(cidr.as_str()) {
                return Err(SeamError::invalid(format!(
                    "{what} exists with CIDR {}, not {cidr}: pass --cidr {} or another network",
                    s.str("cidr").unwrap_or("?"),
                    s.str("cidr").unwrap_or("?")
                )));
            }
            rep.reused.push(ours_note(&format!("subnet {}", s.name), s));
            progress(&Progress::Done { what, outcome: "reused".into() });
            return Ok(s.clone());
        }
        let mut fields = json!({
            "name": name, "network_id": net.id, "cidr": cidr, "ip_version": 4,
            "description": marks::description("infra", &req.name, None),
        });
        if !req.dns_nameservers.is_empty() {
            fields["dns_nameservers"] = json!(req.dns_nameservers);
        }
        let s = self
            .neutron_create("subnet", fields, &[marks::TAG.to_string()])
            .await
            .map_err(|e| e.context(format!("create {what}")))?;
        rep.created.push(what.clone());
        progress(&Progress::Done { what, outcome: "created".into() });
        Ok(s)
    }

    async fn ensure_router(
        &self,
        req: &DeployRequest,
        ext: &NeutronObject,
        subnet: &NeutronObject,
        rep: &mut DeployReport,
        progress: ProgressFn<'_>,
    ) -> Result<(), SeamError> {
        let name = req.router_name();
        let what = format!("router {name}");
        progress(&Progress::Step { what: what.clone() });
        let routers = self.neutron_list("routers", &[("name", &name)]).await?;
        let body = json!({ "name": name, "external_gateway_info": { "network_id": ext.id },
                           "description": marks::description("infra", &req.name, None) });
        let (router, created) = self.find_or_create(&what, routers, "router", body, rep).await?;
        if created {
            rep.created.push(format!("{what} (gateway {})", ext.name));
        } else if router.field("external_gateway_info").is_null() {
            self.put(
                Service::Network,
                &format!("/routers/{}", router.id),
                Some(&json!({ "router": { "external_gateway_info": { "network_id": ext.id } } })),
            )
            .await
            .map_err(|e| e.context(format!("set the gateway of {what}")))?;
            rep.reused.pop(); // changed, not used as it was
            rep.created.push(format!("gateway of {what} ({})", ext.name));
        }
        let ports = self
            .neutron_list(
                "ports",
                &[("device_id", &router.id), ("network_id", subnet.str("network_id").unwrap_or_default())],
            )
            .await?;
        let attached = ports.iter().any(|p| {
            p.field("fixed_ips")
                .as_array()
                .is_some_and(|ips| ips.iter().any(|ip| ip["subnet_id"] == subnet.id.as_str()))
        });
        let iwhat = format!("interface {name} ↔ {}", subnet.name);
        if attached {
            rep.reused.push(iwhat);
        } else {
            self.put(
                Service::Network,
                &format!("/routers/{}/add_router_interface", router.id),
                Some(&json!({ "subnet_id": subnet.id })),
            )
            .await
            .map_err(|e| e.context(format!("add {iwhat}")))?;
            rep.created.push(iwhat);
        }
        progress(&Progress::Done { what, outcome: "ok".into() });
        Ok(())
    }

    async fn ensure_security_group(
        &self,
        req: &DeployRequest,
        rep: &mut DeployReport,
        progress: ProgressFn<'_>,
    ) -> Result<(), SeamError> {
        let what = format!("security group {}", req.security_group);
        progress(&Progress::Step { what: what.clone() });
        let from = canonical_cidr(&req.ssh_from).map_err(SeamError::invalid)?;
        let project = self.project_id().await?;
        let sgs =
            self.neutron_list("security-groups", &[("name", &req.security_group), ("project_id", &project)]).await?;
        let body = json!({ "name": req.security_group, "description": marks::description("infra", &req.name, None) });
        let (sg, created) = self.find_or_create(&what, sgs, "security_group", body, rep).await?;
        if created {
            rep.created.push(what.clone());
        }
        // Desired ingress: ICMP and TCP 22, both from `from` only.
        let rules = sg.field("security_group_rules").as_array().cloned().unwrap_or_default();
        let is_rule = |r: &serde_json::Value, proto: &str| {
            r["direction"] == "ingress"
                && r["ethertype"] == "IPv4"
                && r["protocol"] == proto
                && r["remote_ip_prefix"].as_str() == Some(from.as_str())
                && (proto != "tcp" || (r["port_range_min"] == 22 && r["port_range_max"] == 22))
        };
        let mut wanted = vec![
            (
                "icmp",
                json!({ "security_group_id": sg.id, "direction": "ingress", "ethertype": "IPv4", "protocol": "icmp", "remote_ip_prefix": from }),
            ),
            (
                "tcp",
                json!({ "security_group_id": sg.id, "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
                            "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": from }),
            ),
        ];
        wanted.retain(|(proto, _)| !rules.iter().any(|r| is_rule(r, proto)));
        for (proto, body) in wanted {
            self.post(Service::Network, "/security-group-rules", &json!({ "security_group_rule": body }))
                .await
                .map_err(|e| e.context(format!("add a {proto} rule to {what}")))?;
            rep.created.push(format!(
                "rule {proto}{} from {from} in {}",
                if proto == "tcp" { "/22" } else { "" },
                req.security_group
            ));
        }
        // "From one CIDR only": in our own group, other ingress rules (an older --ssh-from) go.
        if sg.is_ours() {
            for r in rules.iter().filter(|r| r["direction"] == "ingress" && !is_rule(r, "icmp") && !is_rule(r, "tcp")) {
                if let Some(id) = r["id"].as_str() {
                    self.neutron_delete("security_group_rule", id).await?;
                    rep.created.push(format!(
                        "removed stale rule {} from {}",
                        r["remote_ip_prefix"].as_str().unwrap_or("(group)"),
                        req.security_group
                    ));
                }
            }
        }
        progress(&Progress::Done { what, outcome: "ok".into() });
        Ok(())
    }

    /// Snapshots `server` (`createImage`, marked as ours with `group`), waits for `active`, then
    /// deletes this group's older snapshots beyond the newest `retain`. Returns `(name, id, pruned)`.
    pub async fn snapshot_server(
        &self,
        server: &Server,
        group: &str,
        retain: u32,
        timeout: Duration,
        progress: ProgressFn<'_>,
    ) -> Result<(String, String, Vec<String>), SeamError> {
        let name = format!("{}-snap-{}", server.name, compact_utc(wall_ms()));
        let what = format!("snapshot {name}");
        progress(&Progress::Step { what: what.clone() });
        let id = self.create_image(server, &name, "snapshot", group).await?;
        let w = Waiter { progress, what: what.clone(), started: tokio::time::Instant::now(), timeout };
        self.wait_image_active(&id, timeout, &|s| w.tick(s)).await?;
        progress(&Progress::Done { what, outcome: "active".into() });
        let pruned = self.prune_snapshots(group, retain).await?;
        Ok((name, id, pruned))
    }

    /// `createImage` with our marks (properties and Glance tags); returns the image id.
    async fn create_image(&self, server: &Server, name: &str, managed: &str, group: &str) -> Result<String, SeamError> {
        let mut meta = BTreeMap::new();
        meta.insert(marks::META_MANAGED, managed.to_string());
        meta.insert(marks::META_GROUP, group.to_string());
        meta.insert(marks::META_SOURCE, server.name.clone());
        let r = self
            .server_action(&server.id, &json!({ "createImage": { "name": name, "metadata": meta } }))
            .await
            .map_err(|e| e.context(format!("snapshot {} as {name}", server.name)))?;
        let id = r.body["image_id"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                r.headers
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| l.rsplit('/').next())
                    .map(str::to_string)
            })
            .ok_or_else(|| SeamError::bug(format!("createImage of {} answered without an image id", server.name)))?;
        for t in [marks::TAG.to_string(), marks::group_tag(group)] {
            self.tag_image(&id, &t).await?;
        }
        Ok(id)
    }

    /// Our snapshots of `group`, newest first.
    pub async fn snapshots(&self, group: &str) -> Result<Vec<Image>, SeamError> {
        let project = self.project_id().await?;
        let gt = marks::group_tag(group);
        let mut imgs = self.list_images(&[("tag", marks::TAG), ("tag", &gt), ("owner", &project)]).await?;
        imgs.retain(|i| {
            i.is_ours()
                && i.property(marks::META_MANAGED) == Some("snapshot")
                && i.property(marks::META_GROUP) == Some(group)
        });
        imgs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.name.cmp(&a.name)));
        Ok(imgs)
    }

    /// Deletes this group's snapshots beyond the newest `retain`; returns their names.
    pub async fn prune_snapshots(&self, group: &str, retain: u32) -> Result<Vec<String>, SeamError> {
        let snaps = self.snapshots(group).await?;
        let mut pruned = Vec::new();
        for img in snaps.into_iter().skip(retain as usize) {
            self.delete_image(&img.id).await?;
            pruned.push(img.name);
        }
        Ok(pruned)
    }

    /// Servers of ours whose group/prefix is `prefix`, filtered server-side by tag.
    pub async fn our_servers(&self, prefix: &str) -> Result<Vec<Server>, SeamError> {
        let all = if self.compute_microversion().at_least(26) {
            let t = format!("{},{}", marks::TAG, marks::group_tag(prefix));
            self.list_servers(&[("tags", &t)]).await?
        } else {
            let re = format!("^{}", regex_escape(prefix));
            self.list_servers(&[("name", &re)]).await?
        };
        Ok(all.into_iter().filter(|s| s.group() == Some(prefix) && !s.is_gone()).collect())
    }

    /// What `cleanup(prefix)` would delete: our servers of the prefix, our floating IPs of it, and
    /// with `wipe_snaps` our snapshots of it. Untagged resources are never in it.
    pub async fn plan_cleanup(&self, prefix: &str, wipe_snaps: bool) -> Result<CleanupPlan, SeamError> {
        check_group_name(prefix).map_err(|m| SeamError::invalid(format!("cleanup prefix {m}")))?;
        let servers = self.our_servers(prefix).await?;
        let fips = self.our_floating_ips(Some(prefix)).await?;
        let mut plan = CleanupPlan { prefix: prefix.to_string(), ..Default::default() };
        plan.servers = servers.iter().map(|s| (s.name.clone(), s.id.clone())).collect();
        plan.floating_ips = fips
            .iter()
            .filter(|f| f.tags.contains(&marks::group_tag(prefix)) || f.described(marks::META_GROUP) == Some(prefix))
            .map(|f| (f.str("floating_ip_address").unwrap_or_default().to_string(), f.id.clone()))
            .collect();
        if wipe_snaps {
            plan.snapshots = self.snapshots(prefix).await?.into_iter().map(|i| (i.name, i.id)).collect();
        }
        Ok(plan)
    }

    /// Deletes what `plan` lists (floating IPs, then servers — waiting until they are gone — then
    /// snapshots). Things already gone are fine.
    pub async fn execute_cleanup(
        &self,
        plan: &CleanupPlan,
        timeout: Duration,
        progress: ProgressFn<'_>,
    ) -> Result<CleanupReport, SeamError> {
        let started = tokio::time::Instant::now();
        let calls0 = self.api_calls();
        for (addr, id) in &plan.floating_ips {
            self.neutron_delete("floatingip", id)
                .await
                .map_err(|e| e.context(format!("release floating IP {addr}")))?;
            progress(&Progress::Done { what: format!("floating IP {addr}"), outcome: "released".into() });
        }
        for (name, id) in &plan.servers {
            self.delete_server(id).await.map_err(|e| e.context(format!("delete server {name}")))?;
        }
        for (name, id) in &plan.servers {
            let what = format!("server {name}");
            progress(&Progress::Waiting {
                what: what.clone(),
                status: "deleting".into(),
                elapsed: started.elapsed(),
                timeout,
            });
            self.wait_server_gone(id, timeout).await?;
            progress(&Progress::Done { what, outcome: "deleted".into() });
        }
        for (name, id) in &plan.snapshots {
            self.delete_image(id).await.map_err(|e| e.context(format!("delete snapshot {name}")))?;
            progress(&Progress::Done { what: format!("snapshot {name}"), outcome: "deleted".into() });
        }
        Ok(CleanupReport { deleted: plan.clone(), api_calls: self.api_calls() - calls0, elapsed: started.elapsed() })
    }

    /// [`Cloud::plan_cleanup`] then [`Cloud::execute_cleanup`].
    pub async fn cleanup(
        &self,
        prefix: &str,
        wipe_snaps: bool,
        progress: ProgressFn<'_>,
    ) -> Result<CleanupReport, SeamError> {
        let calls0 = self.api_calls();
        let started = tokio::time::Instant::now();
        let plan = self.plan_cleanup(prefix, wipe_snaps).await?;
        let mut rep = self.execute_cleanup(&plan, Duration::from_secs(300), progress).await?;
        rep.api_calls = self.api_calls() - calls0;
        rep.elapsed = started.elapsed();
        Ok(rep)
    }

    /// Deletes the network objects a deploy made — router (interfaces, gateway), subnets, network,
    /// security group — but only those carrying our marks; returns what was deleted. Servers on
    /// the network must be gone first. Keypairs are never deleted (Nova cannot mark them).
    pub async fn delete_infra(&self, names: &InfraNames) -> Result<Vec<String>, SeamError> {
        let mut done = Vec::new();
        let net = self.find_network(&names.network).await?.filter(NeutronObject::is_ours);
        for r in
            self.neutron_list("routers", &[("name", &names.router)]).await?.into_iter().filter(NeutronObject::is_ours)
        {
            let ports = self
                .neutron_list("ports", &[("device_id", &r.id), ("device_owner", "network:router_interface")])
                .await?;
            for p in ports {
                for ip in p.field("fixed_ips").as_array().cloned().unwrap_or_default() {
                    if let Some(sid) = ip["subnet_id"].as_str() {
                        let _ = self
                            .put(
                                Service::Network,
                                &format!("/routers/{}/remove_router_interface", r.id),
                                Some(&json!({ "subnet_id": sid })),
                            )
                            .await;
                    }
                }
            }
            self.neutron_delete("router", &r.id).await?;
            done.push(format!("router {}", r.name));
        }
        if let Some(n) = net {
            for s in self.neutron_list("subnets", &[("network_id", &n.id)]).await? {
                if s.is_ours() {
                    self.neutron_delete("subnet", &s.id).await?;
                    done.push(format!("subnet {}", s.name));
                }
            }
            self.neutron_delete("network", &n.id).await?;
            done.push(format!("network {}", n.name));
        }
        let project = self.project_id().await?;
        for sg in
            self.neutron_list("security-groups", &[("name", &names.security_group), ("project_id", &project)]).await?
        {
            if sg.is_ours() {
                self.neutron_delete("security_group", &sg.id).await?;
                done.push(format!("security group {}", sg.name));
            }
        }
        Ok(done)
    }

    /// Seed 002's golden image: stop `from_server` (if running), `createImage` `name`, wait for
    /// `active`, start the server again. A repeated run finds its image and only makes sure the
    /// server runs again. A name taken by an image that is not ours is a Conflict.
    pub async fn golden_image(
        &self,
        from_server: &str,
        name: &str,
        timeout: Duration,
        progress: ProgressFn<'_>,
    ) -> Result<GoldenReport, SeamError> {
        let started = tokio::time::Instant::now();
        let calls0 = self.api_calls();
        if name.trim().is_empty() {
            return Err(SeamError::invalid("golden image: --name must not be empty"));
        }
        let server = self.find_server(from_server).await.map_err(|e| e.context("golden image"))?;
        let group = server.group().unwrap_or("golden").to_string();
        let existing: Vec<Image> = self.list_images(&[("name", name)]).await?;
        let mut reused = false;
        let mut was_active = server.status == "ACTIVE";
        let image_id = if let Some(img) =
            existing.iter().find(|i| i.is_ours() && i.property(marks::META_MANAGED) == Some("golden"))
        {
            reused = true;
            let w = Waiter { progress, what: format!("image {name}"), started: tokio::time::Instant::now(), timeout };
            self.wait_image_active(&img.id, timeout, &|s| w.tick(s)).await?;
            // A previous run may have died with the server stopped.
            was_active = true;
            img.id.clone()
        } else if let Some(other) = existing.first() {
            return Err(SeamError::new(
                ErrorKind::Conflict,
                format!("golden image: an image named {name:?} already exists ({}) and is not Flotilla's golden image; choose another name", other.id),
            ));
        } else {
            if server.status == "ACTIVE" {
                let what = format!("stop {}", server.name);
                progress(&Progress::Step { what: what.clone() });
                self.server_action(&server.id, &json!({ "os-stop": null }))
                    .await
                    .map_err(|e| e.context(format!("stop {}", server.name)))?;
                let w = Waiter { progress, what: what.clone(), started: tokio::time::Instant::now(), timeout };
                self.wait_server(&server.id, timeout, |s| s.status == "SHUTOFF", &|s| w.tick(&s.status)).await?;
                progress(&Progress::Done { what, outcome: "SHUTOFF".into() });
            }
            let made = async {
                let what = format!("image {name}");
                progress(&Progress::Step { what: what.clone() });
                let id = self.create_image(&server, name, "golden", &group).await?;
                let w = Waiter { progress, what: what.clone(), started: tokio::time::Instant::now(), timeout };
                self.wait_image_active(&id, timeout, &|s| w.tick(s)).await?;
                progress(&Progress::Done { what, outcome: "active".into() });
                Ok::<_, SeamError>(id)
            }
            .await;
            match made {
                Ok(id) => id,
                Err(e) => {
                    if was_active {
                        let _ = self.server_action(&server.id, &json!({ "os-start": null })).await;
                    }
                    return Err(e.context(format!("golden image {name} from {}", server.name)));
                }
            }
        };
        let mut status = self.get_server(&server.id).await?.map(|s| s.status).unwrap_or_default();
        if was_active && status == "SHUTOFF" {
            let what = format!("start {}", server.name);
            progress(&Progress::Step { what: what.clone() });
            self.server_action(&server.id, &json!({ "os-start": null }))
                .await
                .map_err(|e| e.context(format!("start {}", server.name)))?;
            let w = Waiter { progress, what: what.clone(), started: tokio::time::Instant::now(), timeout };
            status =
                self.wait_server(&server.id, timeout, |s| s.status == "ACTIVE", &|s| w.tick(&s.status)).await?.status;
            progress(&Progress::Done { what, outcome: status.clone() });
        }
        Ok(GoldenReport {
            image_id,
            image_name: name.to_string(),
            server: server.name,
            reused,
            server_status: status,
            api_calls: self.api_calls() - calls0,
            elapsed: started.elapsed(),
        })
    }

    /// An [`crate::OpenStackTemplate`] that makes servers like `server` (its image, flavor,
    /// networks, security groups, keypair): for groups grown from a deployed server (seed 000's
    /// `watch --server VM-test_1`).
    pub async fn template_of_server(&self, server: &str) -> Result<crate::OpenStackTemplate, SeamError> {
        let s = self.find_server(server).await?;
        let image = s
            .image_id()
            .ok_or_else(|| SeamError::invalid(format!("server {server} boots from a volume: no image to clone")))?;
        let flavor = match s.flavor["original_name"].as_str() {
            Some(n) => n.to_string(),
            None => s.flavor["id"].as_str().unwrap_or_default().to_string(),
        };
        let network = s
            .addresses
            .keys()
            .next()
            .cloned()
            .ok_or_else(|| SeamError::invalid(format!("server {server} has no network")))?;
        let mut sgs: Vec<String> =
            s.security_groups.iter().filter_map(|g| g["name"].as_str().map(str::to_string)).collect();
        sgs.dedup();
        Ok(crate::OpenStackTemplate {
            image: image.to_string(),
            flavor,
            network,
            security_groups: sgs,
            keypair: s.key_name.clone(),
            ..crate::OpenStackTemplate::new("", "", "")
        })
    }
}

fn ours_note(what: &str, o: &NeutronObject) -> String {
    if o.is_ours() {
        what.to_string()
    } else {
        format!("{what} (not made by Flotilla: used as it is)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_defaults_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let pk = dir.path().join("lab-key.pub");
        std::fs::write(&pk, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOq me@host\n").unwrap();
        let mut r = DeployRequest::new("VM-test", "lab-key", &pk);
        assert!(r.validate().is_empty(), "{:?}", r.validate());
        assert_eq!(r.subnet_name(), "lab-net-subnet");
        assert_eq!(r.router_name(), "lab-router");
        r.network = "other".into();
        assert_eq!(r.router_name(), "other-router");
        r.name = "-bad name".into();
        r.ssh_from = "1.2.3.4".into();
        r.retain = 0;
        r.pubkey_file = dir.path().join("missing.pub");
        let fields: Vec<String> = r.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["name", "retain", "ssh_from", "pubkey_file"]);
        assert_eq!(key_core("ssh-ed25519 AAA comment here"), "ssh-ed25519 AAA");
        let cmds = ssh_commands(&pk, "cirros", "203.0.113.5");
        assert_eq!(cmds, vec![format!("ssh -i {} cirros@203.0.113.5", dir.path().join("lab-key").display())]);
        assert!(check_group_name(&"x".repeat(46)).is_err());
        assert!(check_group_name(&"x".repeat(45)).is_ok());
    }
}
