//! [`OpenStackProvider`]: group members are Nova servers named by their instance id and marked
//! with `flotilla:*` metadata and tags, so they are listed by a server-side tag filter (one API
//! call per list), adopted after a restart, and never created twice under one name.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flotilla_model::{GroupId, Instance, InstanceId, InstanceSpec, InstanceState, Provider, SeamError, Timestamp};
use serde::{Deserialize, Serialize};

use crate::client::Cloud;
use crate::config::CloudConfig;
use crate::deploy::check_group_name;
use crate::resources::{fault_error, marks, Flavor, Server, ServerCreate};
use crate::util::parse_iso8601_ms;
use flotilla_model::name::check_member_name;

/// Which address of a member the balancer and samplers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressMode {
    /// The fixed IP on the template's network (the controller runs inside the cloud).
    #[default]
    Fixed,
    /// A floating IP, allocated at create (one of ours that is free is reused) and released at delete.
    Floating,
}

/// The YAML `provider:` section when `kind: openstack`.
///
/// ```yaml
/// provider:
///   kind: openstack
///   cloud: microstack          # else OS_CLOUD, else OS_* variables
///   region: RegionOne
///   address: floating          # fixed (default) | floating
///   floating_network: external
///   create_timeout: 5m
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenStackSettings {
    /// `openstack` when present (lets the whole `provider:` mapping deserialize as is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Cloud name in `clouds.yaml`; `None`: `OS_CLOUD`, else the `OS_*` variables.
    #[serde(default)]
    pub cloud: Option<String>,
    /// An explicit `clouds.yaml` instead of the search path (needs `cloud`).
    #[serde(default)]
    pub clouds_file: Option<PathBuf>,
    /// Overrides the cloud's `region_name`.
    #[serde(default)]
    pub region: Option<String>,
    /// Overrides the cloud's `interface` (`public`, `internal`, `admin`).
    #[serde(default)]
    pub interface: Option<String>,
    /// Longest wait for a new member to be ACTIVE (and have its floating IP); `start_timeout` too.
    #[serde(default = "default_create_timeout", with = "flotilla_duration", alias = "start_timeout")]
    pub create_timeout: Duration,
    /// Longest wait for a deleted member to be gone.
    #[serde(default = "default_delete_timeout", with = "flotilla_duration")]
    pub delete_timeout: Duration,
    /// Longest pause between two polls while waiting (they start at 0.5 s and double).
    #[serde(default = "default_poll_interval", with = "flotilla_duration")]
    pub poll_interval: Duration,
    #[serde(default)]
    pub address: AddressMode,
    /// External network of floating IPs; `None`: the only one the project sees.
    #[serde(default)]
    pub floating_network: Option<String>,
}

fn default_create_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_delete_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(2)
}

impl Default for OpenStackSettings {
    fn default() -> Self {
        OpenStackSettings {
            kind: None,
            cloud: None,
            clouds_file: None,
            region: None,
            interface: None,
            create_timeout: default_create_timeout(),
            delete_timeout: default_delete_timeout(),
            poll_interval: default_poll_interval(),
            address: AddressMode::Fixed,
            floating_network: None,
        }
    }
}

impl OpenStackSettings {
    /// Settings for a named cloud, everything else default.
    pub fn for_cloud(cloud: impl Into<String>) -> Self {
        OpenStackSettings { cloud: Some(cloud.into()), ..Default::default() }
    }

    /// Problems as `(field, message)`, fields relative to the `provider:` mapping.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        if let Some(k) = &self.kind {
            if k != "openstack" {
                p.push(("kind".into(), format!("{k:?}: these are the settings of kind openstack")));
            }
        }
        if self.cloud.as_deref().is_some_and(|c| c.trim().is_empty()) {
            p.push(("cloud".into(), "must not be empty (leave it out to use OS_CLOUD / OS_* variables)".into()));
        }
        if let Some(f) = &self.clouds_file {
            if self.cloud.is_none() {
                p.push(("clouds_file".into(), "needs `cloud` (which cloud of the file)".into()));
            }
            if !f.is_file() {
                p.push(("clouds_file".into(), format!("{} does not exist", f.display())));
            }
        }
        if let Some(i) = &self.interface {
            if !matches!(i.as_str(), "public" | "internal" | "admin") {
                p.push(("interface".into(), format!("{i:?}: use public, internal or admin")));
            }
        }
        if self.create_timeout < Duration::from_secs(1) {
            p.push(("create_timeout".into(), "must be at least 1s".into()));
        }
        if self.delete_timeout < Duration::from_secs(1) {
            p.push(("delete_timeout".into(), "must be at least 1s".into()));
        }
        if self.poll_interval < Duration::from_millis(100) || self.poll_interval > Duration::from_secs(60) {
            p.push(("poll_interval".into(), "must be between 100ms and 60s".into()));
        }
        if self.floating_network.as_deref().is_some_and(|n| n.trim().is_empty()) {
            p.push(("floating_network".into(), "must not be empty".into()));
        }
        p
    }

    /// The cloud these settings name, with their region/interface overrides.
    pub fn cloud_config(&self) -> Result<CloudConfig, SeamError> {
        let mut c = match (&self.clouds_file, &self.cloud) {
            (Some(f), Some(name)) => CloudConfig::load_from(f, name)?,
            (Some(_), None) => return Err(SeamError::invalid("provider.clouds_file needs provider.cloud")),
            (None, name) => CloudConfig::load(name.as_deref())?,
        };
        if let Some(r) = &self.region {
            c.region = Some(r.clone());
        }
        if let Some(i) = &self.interface {
            c.interface = i.clone();
        }
        Ok(c)
    }
}

/// A group's `template.openstack` mapping: what its members are made of.
///
/// ```yaml
/// template:
///   openstack:
///     image: service-golden      # name (newest active of that name) or id
///     flavor: m1.small
///     network: lab-net
///     security_groups: [sg-secure]
///     keypair: lab-key
///     user_data_file: cloud-init.yaml
///     server_group: web-spread   # created with server_group_policy if missing
///     service_port: 5000
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenStackTemplate {
    pub image: String,
    pub flavor: String,
    pub network: String,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub keypair: Option<String>,
    /// cloud-init text (at most 48 KiB), or `user_data_file`.
    #[serde(default)]
    pub user_data: Option<String>,
    #[serde(default)]
    pub user_data_file: Option<PathBuf>,
    /// Server group for (anti-)affinity, by name; created if missing.
    #[serde(default)]
    pub server_group: Option<String>,
    /// `soft-anti-affinity` (default), `anti-affinity`, `affinity`, `soft-affinity`.
    #[serde(default = "default_policy")]
    pub server_group_policy: String,
    /// The port the member's service listens on (the member address is `<ip>:<service_port>`).
    #[serde(default = "default_port")]
    pub service_port: u16,
    /// Extra server metadata (keys must not start with `flotilla:`).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

fn default_policy() -> String {
    "soft-anti-affinity".into()
}
fn default_port() -> u16 {
    80
}

/// Nova accepts at most 65535 bytes of base64 user data.
const MAX_USER_DATA: usize = 48 * 1024;

impl OpenStackTemplate {
    pub fn new(image: impl Into<String>, flavor: impl Into<String>, network: impl Into<String>) -> Self {
        OpenStackTemplate {
            image: image.into(),
            flavor: flavor.into(),
            network: network.into(),
            security_groups: Vec::new(),
            keypair: None,
            user_data: None,
            user_data_file: None,
            server_group: None,
            server_group_policy: default_policy(),
            service_port: default_port(),
            metadata: BTreeMap::new(),
        }
    }

    /// Problems as `(field, message)`, fields relative to `template.openstack`. Reads
    /// `user_data_file` to check it; contacts no cloud (names are resolved at the first create).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        for (f, v) in [("image", &self.image), ("flavor", &self.flavor), ("network", &self.network)] {
            if v.trim().is_empty() {
                p.push((f.to_string(), "must not be empty".to_string()));
            }
        }
        for (i, sg) in self.security_groups.iter().enumerate() {
            if sg.trim().is_empty() {
                p.push((format!("security_groups[{i}]"), "must not be empty".into()));
            }
        }
        if self.keypair.as_deref().is_some_and(|k| k.trim().is_empty()) {
            p.push(("keypair".into(), "must not be empty".into()));
        }
        match (&self.user_data, &self.user_data_file) {
            (Some(_), Some(_)) => {
                p.push(("user_data_file".into(), "give user_data or user_data_file, not both".into()))
            }
            (Some(u), None) if u.len() > MAX_USER_DATA => {
                p.push(("user_data".into(), format!("{} bytes: at most {MAX_USER_DATA}", u.len())))
            }
            (None, Some(f)) => match std::fs::metadata(f) {
                Err(e) => p.push(("user_data_file".into(), format!("{}: {e}", f.display()))),
                Ok(m) if m.len() as usize > MAX_USER_DATA => p.push((
                    "user_data_file".into(),
                    format!("{}: {} bytes, at most {MAX_USER_DATA}", f.display(), m.len()),
                )),
                Ok(_) => {}
            },
            _ => {}
        }
        if self.server_group.as_deref().is_some_and(|g| g.trim().is_empty()) {
            p.push(("server_group".into(), "must not be empty".into()));
        }
        if !matches!(
            self.server_group_policy.as_str(),
            "anti-affinity" | "soft-anti-affinity" | "affinity" | "soft-affinity"
        ) {
            p.push((
                "server_group_policy".into(),
                format!(
                    "{:?}: use anti-affinity, soft-anti-affinity, affinity or soft-affinity",
                    self.server_group_policy
                ),
            ));
        }
        if self.service_port == 0 {
            p.push(("service_port".into(), "must be 1-65535".into()));
        }
        for k in self.metadata.keys() {
            if k.starts_with("flotilla:") || k.is_empty() || k.len() > 255 {
                p.push((format!("metadata.{k}"), "keys are 1-255 characters and must not start with flotilla:".into()));
            }
        }
        p
    }

    fn user_data_text(&self) -> Result<Option<String>, SeamError> {
        match (&self.user_data, &self.user_data_file) {
            (Some(u), _) => Ok(Some(u.clone())),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map(Some)
                .map_err(|e| SeamError::invalid(format!("user_data_file {}: {e}", f.display()))),
            (None, None) => Ok(None),
        }
    }
}

/// Template parts resolved to ids once per group (the image is looked up at every create, so a
/// golden image replaced under the same name is picked up).
#[derive(Clone)]
struct Resolved {
    flavor: Flavor,
    network_id: String,
    network_name: String,
    server_group_id: Option<String>,
    user_data: Option<String>,
}

/// The connection, made at first use (so building a provider never blocks or fails on the network).
pub(crate) struct LazyCloud {
    settings: OpenStackSettings,
    cell: tokio::sync::OnceCell<Cloud>,
}

impl LazyCloud {
    pub(crate) async fn get(&self) -> Result<&Cloud, SeamError> {
        self.cell.get_or_try_init(|| async { Cloud::connect(self.settings.cloud_config()?).await }).await
    }
}

/// The `openstack` provider.
pub struct OpenStackProvider {
    settings: OpenStackSettings,
    templates: BTreeMap<GroupId, OpenStackTemplate>,
    cloud: Arc<LazyCloud>,
    resolved: tokio::sync::Mutex<HashMap<GroupId, Resolved>>,
    external_net: tokio::sync::OnceCell<String>,
    /// Serialises the check-then-create step, so two creates of one name in this process cannot
    /// both create it.
    creating: tokio::sync::Mutex<()>,
    /// Our servers as last listed whole, by id: a server of a cell Nova cannot reach comes back as
    /// its id and UNKNOWN only (microversion 2.69), and is recognised here.
    last_seen: std::sync::Mutex<HashMap<String, Server>>,
}

impl OpenStackProvider {
    /// No I/O: the cloud is contacted at the first call (or [`OpenStackProvider::cloud`]).
    pub fn new(settings: OpenStackSettings, templates: BTreeMap<GroupId, OpenStackTemplate>) -> Self {
        let cloud = Arc::new(LazyCloud { settings: settings.clone(), cell: tokio::sync::OnceCell::new() });
        OpenStackProvider {
            settings,
            templates,
            cloud,
            resolved: tokio::sync::Mutex::new(HashMap::new()),
            external_net: tokio::sync::OnceCell::new(),
            last_seen: std::sync::Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
        }
    }

    /// With a connection made already (shared with the CLI's verbs or a test).
    pub fn with_cloud(
        cloud: Cloud,
        settings: OpenStackSettings,
        templates: BTreeMap<GroupId, OpenStackTemplate>,
    ) -> Self {
        let p = OpenStackProvider::new(settings, templates);
        let _ = p.cloud.cell.set(cloud);
        p
    }

    /// The connection (made now if not yet): call it at start-up to report bad credentials early.
    pub async fn cloud(&self) -> Result<&Cloud, SeamError> {
        self.cloud.get().await
    }

    pub fn settings(&self) -> &OpenStackSettings {
        &self.settings
    }

    /// A metric source reading Nova diagnostics through this provider's connection.
    pub fn diagnostics_source(&self) -> crate::DiagnosticsSource {
        crate::DiagnosticsSource::lazy(self.cloud.clone())
    }

    fn template(&self, group: &GroupId) -> Result<&OpenStackTemplate, SeamError> {
        self.templates.get(group).ok_or_else(|| {
            SeamError::invalid(format!("group {group} has no openstack template (groups[].template.openstack)"))
        })
    }

    fn port_of(&self, group: &str) -> u16 {
        self.templates.get(&GroupId::new(group)).map(|t| t.service_port).unwrap_or_else(default_port)
    }

    /// Our servers of `group` (one call: a tag filter; without tags, microversion < 2.26, a scan).
    async fn group_servers(&self, cloud: &Cloud, group: &str) -> Result<Vec<Server>, SeamError> {
        let all = if cloud.compute_microversion().at_least(26) {
            let t = format!("{},{}", marks::TAG, marks::group_tag(group));
            cloud.list_servers(&[("tags", &t)]).await?
        } else {
            cloud.list_servers(&[]).await?
        };
        let mut seen = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        Ok(ours(complete(all, &mut seen)?).filter(|s| s.group() == Some(group)).collect())
    }

    async fn all_servers(&self, cloud: &Cloud) -> Result<Vec<Server>, SeamError> {
        let all = if cloud.compute_microversion().at_least(26) {
            cloud.list_servers(&[("tags", marks::TAG)]).await?
        } else {
            cloud.list_servers(&[]).await?
        };
        let mut seen = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        Ok(ours(complete(all, &mut seen)?).filter(|s| s.group().is_some()).collect())
    }

    async fn resolve(&self, cloud: &Cloud, group: &GroupId, t: &OpenStackTemplate) -> Result<Resolved, SeamError> {
        if let Some(r) = self.resolved.lock().await.get(group) {
            return Ok(r.clone());
        }
        let flavor = cloud.find_flavor(&t.flavor).await?;
        let net = cloud
            .find_network(&t.network)
            .await?
            .ok_or_else(|| SeamError::invalid(format!("network {:?} of group {group} not found", t.network)))?;
        let server_group_id = match &t.server_group {
            Some(name) => Some(cloud.ensure_server_group(name, &t.server_group_policy).await?),
            None => None,
        };
        let r = Resolved {
            flavor,
            network_id: net.id,
            network_name: net.name,
            server_group_id,
            user_data: t.user_data_text()?,
        };
        self.resolved.lock().await.insert(group.clone(), r.clone());
        Ok(r)
    }

    async fn external_net(&self, cloud: &Cloud) -> Result<String, SeamError> {
        self.external_net
            .get_or_try_init(|| async {
                Ok(cloud.external_network(self.settings.floating_network.as_deref()).await?.id)
            })
            .await
            .cloned()
    }

    /// The member view of one of our servers.
    pub fn to_instance(&self, s: &Server) -> Instance {
        let group = s.group().unwrap_or_default().to_string();
        let id = s.meta(marks::META_INSTANCE).unwrap_or(&s.name).to_string();
        let created = parse_iso8601_ms(&s.created).unwrap_or(0);
        let mut i = Instance::new(id, &GroupId::new(group.clone()), Timestamp(created));
        i.name = s.name.clone();
        let net_name = self.templates.get(&GroupId::new(group.clone())).map(|t| t.network.as_str());
        let fixed = s.address("fixed", net_name);
        let floating = s.address("floating", None);
        let ip = match self.settings.address {
            AddressMode::Fixed => fixed.clone(),
            AddressMode::Floating => floating.clone(),
        };
        i.address = ip.as_ref().map(|ip| format!("{ip}:{}", self.port_of(&group)));
        i.state = member_state(s, ip.is_some());
        i.tags.insert("server_id".into(), s.id.clone());
        if let Some(f) = &fixed {
            i.tags.insert("fixed_ip".into(), f.clone());
        }
        if let Some(f) = &floating {
            i.tags.insert("floating_ip".into(), f.clone());
        }
        if let Some(ip) = &ip {
            i.tags.insert(flotilla_model::vocab::SSH_ADDRESS_TAG.into(), format!("{ip}:22"));
        }
        if let Some(v) = s.vcpus() {
            i.tags.insert("vcpus".into(), v.to_string());
        }
        if let Some(f) = s.flavor["original_name"].as_str() {
            i.tags.insert("flavor".into(), f.to_string());
        }
        if let Some(img) = s.image_id() {
            i.tags.insert("image".into(), img.to_string());
        }
        i.tags.insert("status".into(), s.status.clone());
        i
    }

    /// Deletes a server that could not start (best effort: it carries our marks, so a later
    /// list or cleanup finds it if this fails).
    async fn discard(&self, cloud: &Cloud, s: &Server, why: &str) {
        tracing::warn!(server = %s.name, id = %s.id, why, "deleting a member that did not start");
        if let Err(e) = self.release_fips(cloud, s.group().unwrap_or_default(), std::slice::from_ref(s)).await {
            tracing::warn!(server = %s.name, error = %e, "could not release its floating IP");
        }
        if let Err(e) = cloud.delete_server(&s.id).await {
            tracing::warn!(server = %s.name, error = %e, "could not delete it");
        }
    }

    /// Releases our floating IPs of these servers (by address or by the instance in their description).
    async fn release_fips(&self, cloud: &Cloud, group: &str, servers: &[Server]) -> Result<(), SeamError> {
        let has_fip = servers.iter().any(|s| !s.floating_ips().is_empty());
        if !has_fip && self.settings.address != AddressMode::Floating {
            return Ok(());
        }
        let fips = cloud.our_floating_ips(Some(group)).await?;
        for f in fips {
            let addr = f.str("floating_ip_address").unwrap_or_default();
            let inst = f.described(marks::META_INSTANCE);
            let mine = servers.iter().any(|s| {
                s.floating_ips().iter().any(|a| a == addr)
                    || inst.is_some_and(|i| Some(i) == s.meta(marks::META_INSTANCE))
            });
            if mine {
                cloud
                    .neutron_delete("floatingip", &f.id)
                    .await
                    .map_err(|e| e.context(format!("release floating IP {addr}")))?;
                tracing::info!(address = addr, group, "floating IP released");
            }
        }
        Ok(())
    }

    /// Polls the group (one list call per round) until `done` holds for every id in `ids` or the
    /// deadline passes; returns the last view of those still present.
    async fn poll_group(
        &self,
        cloud: &Cloud,
        group: &str,
        ids: &[String],
        timeout: Duration,
        done: impl Fn(Option<&Server>) -> bool,
    ) -> Result<(bool, Vec<Server>), SeamError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut delay = Duration::from_millis(500).min(self.settings.poll_interval);
        loop {
            let servers = self.group_servers(cloud, group).await?;
            let view: Vec<Server> = servers.into_iter().filter(|s| ids.contains(&s.id)).collect();
            let all_done = ids.iter().all(|id| done(view.iter().find(|s| &s.id == id)));
            if all_done || tokio::time::Instant::now() + delay > deadline {
                return Ok((all_done, view));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.settings.poll_interval);
        }
    }
}

/// Flotilla's members among listed servers (marked with a group and an instance name, not gone).
fn ours(all: Vec<Server>) -> impl Iterator<Item = Server> {
    all.into_iter().filter(|s| s.meta(marks::META_INSTANCE).is_some() && !s.is_gone())
}

/// Fills in the servers of a cell Nova cannot reach, which it lists as an id and `UNKNOWN` only:
/// one we listed whole before keeps its last record, with status UNKNOWN (so the member is
/// Unknown, not gone and recreated). One we never saw makes the listing an error: it may be one of
/// ours, and a member that looks gone would be created again.
fn complete(all: Vec<Server>, seen: &mut HashMap<String, Server>) -> Result<Vec<Server>, SeamError> {
    let mut out = Vec::with_capacity(all.len());
    for s in all {
        let partial = s.name.is_empty() && s.status == "UNKNOWN";
        if !partial {
            if s.meta(marks::META_INSTANCE).is_some() {
                seen.insert(s.id.clone(), s.clone());
            }
            out.push(s);
            continue;
        }
        match seen.get(&s.id) {
            Some(known) => out.push(Server { status: "UNKNOWN".into(), ..known.clone() }),
            None => {
                return Err(SeamError::transient(format!(
                    "server {} is in a cell Nova cannot reach (listed as UNKNOWN, without its name): \
                     the listing is incomplete, so nothing is created or deleted until the cell is back",
                    s.id
                )))
            }
        }
    }
    Ok(out)
}

/// Server status → member state. Transitional states of a living server count as running; ERROR
/// is Failed (the group replaces it). Nova's UNKNOWN (a cell it cannot reach), a status this code
/// does not know, and a server stopped, paused, shelved or rescued outside Flotilla are Unknown:
/// Flotilla cannot tell whether it serves, so it neither counts it lost nor deletes it.
fn member_state(s: &Server, has_address: bool) -> InstanceState {
    if matches!(s.task_state.as_deref(), Some("deleting")) || matches!(s.status.as_str(), "DELETED" | "SOFT_DELETED") {
        return InstanceState::Deleting;
    }
    match s.status.as_str() {
        "BUILD" | "REBUILD" => InstanceState::Creating,
        "ACTIVE" | "REBOOT" | "HARD_REBOOT" | "MIGRATING" | "RESIZE" | "VERIFY_RESIZE" | "REVERT_RESIZE"
        | "PASSWORD" => {
            if has_address {
                InstanceState::Running
            } else {
                InstanceState::Creating
            }
        }
        "ERROR" => InstanceState::Failed(
            s.fault
                .as_ref()
                .map(|f| f.message.clone())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "server is in ERROR".into()),
        ),
        "UNKNOWN" => InstanceState::Unknown("Nova cannot reach the server's cell (status UNKNOWN)".into()),
        other => InstanceState::Unknown(format!("server is {other}, changed outside Flotilla")),
    }
}

#[async_trait]
impl Provider for OpenStackProvider {
    fn name(&self) -> &str {
        "openstack"
    }

    async fn list(&self, group: Option<&GroupId>) -> Result<Vec<Instance>, SeamError> {
        let cloud = self.cloud().await?;
        let servers = match group {
            Some(g) => self.group_servers(cloud, g.as_str()).await?,
            None => self.all_servers(cloud).await?,
        };
        Ok(servers.iter().map(|s| self.to_instance(s)).collect())
    }

    async fn create(&self, group: &GroupId, spec: &InstanceSpec, names: &[String]) -> Result<Vec<Instance>, SeamError> {
        let _ = spec;
        check_group_name(group.as_str()).map_err(|m| SeamError::invalid(format!("group name {m}")))?;
        let mut unique: Vec<&str> = Vec::new();
        for n in names {
            check_member_name(n)?;
            if !unique.contains(&n.as_str()) {
                unique.push(n);
            }
        }
        if unique.is_empty() {
            return Ok(Vec::new());
        }
        let t = self.template(group)?;
        let cloud = self.cloud().await?;
        let g = group.as_str();
        let mut errors = Vec::new();
        // Server ids to wait for, in the order of `unique`.
        let mut targets: Vec<String> = Vec::new();

        let lock = self.creating.lock().await;
        let existing = self.group_servers(cloud, g).await?;
        let mut missing = Vec::new();
        for &name in &unique {
            let mut mine: Vec<&Server> =
                existing.iter().filter(|s| s.meta(marks::META_INSTANCE) == Some(name)).collect();
            mine.retain(|s| !matches!(member_state(s, true), InstanceState::Deleting));
            mine.sort_by(|a, b| a.created.cmp(&b.created));
            match mine.first() {
                Some(s) if s.status == "ERROR" => {
                    let fault = s.fault.as_ref().map(|f| f.message.clone()).unwrap_or_default();
                    self.discard(cloud, s, "found in ERROR").await;
                    errors.push(
                        fault_error(name, &fault).context(format!("member {name} (deleted; retry creates it anew)")),
                    );
                }
                Some(s) => {
                    tracing::info!(member = name, server = %s.id, status = %s.status, "adopting the existing server");
                    targets.push(s.id.clone());
                }
                None => missing.push(name),
            }
        }
        if !missing.is_empty() {
            let r = self.resolve(cloud, group, t).await?;
            let image = cloud.find_image(&t.image).await.map_err(|e| e.context(format!("group {group}")))?;
            for name in missing {
                let mut metadata = t.metadata.clone();
                metadata.insert(marks::META_MANAGED.into(), "provider".into());
                metadata.insert(marks::META_GROUP.into(), g.into());
                metadata.insert(marks::META_PREFIX.into(), g.into());
                metadata.insert(marks::META_INSTANCE.into(), name.into());
                let req = ServerCreate {
                    name: name.to_string(),
                    image_id: image.id.clone(),
                    flavor_id: r.flavor.id.clone(),
                    network_ids: vec![r.network_id.clone()],
                    security_groups: t.security_groups.clone(),
                    key_name: t.keypair.clone(),
                    metadata,
                    tags: vec![marks::TAG.to_string(), marks::group_tag(g)],
                    user_data: r.user_data.clone(),
                    server_group_id: r.server_group_id.clone(),
                };
                match cloud.create_server(&req).await {
                    Ok(id) => {
                        tracing::info!(member = name, %group, server = %id, network = %r.network_name, "server created");
                        targets.push(id);
                    }
                    Err(e) => {
                        // Quota, conflict, bad template: creating more would fail the same way.
                        // Resolve the template anew next time (a network may have been replaced).
                        self.resolved.lock().await.remove(group);
                        errors.push(e.context(format!("group {group}")));
                        break;
                    }
                }
            }
        }
        drop(lock);

        // Wait for ACTIVE (or ERROR) — one list call per round for all of them.
        let (_, view) = self
            .poll_group(cloud, g, &targets, self.settings.create_timeout, |s| {
                s.is_none_or(|s| matches!(s.status.as_str(), "ACTIVE" | "ERROR"))
            })
            .await?;
        let mut active: Vec<Server> = Vec::new();
        for id in &targets {
            match view.iter().find(|s| &s.id == id) {
                None => {
                    errors.push(SeamError::transient(format!("server {id} of group {group} vanished while starting")))
                }
                Some(s) if s.status == "ACTIVE" => active.push(s.clone()),
                Some(s) if s.status == "ERROR" => {
                    let fault = s.fault.as_ref().map(|f| f.message.clone()).unwrap_or_default();
                    self.discard(cloud, s, "went to ERROR").await;
                    errors.push(fault_error(&s.name, &fault).context("deleted it"));
                }
                Some(s) => {
                    self.discard(cloud, s, "not ACTIVE in time").await;
                    errors.push(SeamError::transient(format!(
                        "server {} still {} after {:?}; deleted it",
                        s.name, s.status, self.settings.create_timeout
                    )));
                }
            }
        }

        // Floating IPs.
        if self.settings.address == AddressMode::Floating && !active.is_empty() {
            let ext = self.external_net(cloud).await?;
            let mut keep = Vec::new();
            for s in active {
                if !s.floating_ips().is_empty() {
                    keep.push(s);
                    continue;
                }
                match cloud.floating_ip_for(&s, &ext, g, "provider").await {
                    Ok((addr, _, reused)) => {
                        tracing::info!(member = %s.name, address = %addr, reused, "floating IP attached");
                        keep.push(s);
                    }
                    Err(e) => {
                        self.discard(cloud, &s, "no floating IP").await;
                        errors.push(e.context(format!("member {} (deleted: no floating IP)", s.name)));
                    }
                }
            }
            let ids: Vec<String> = keep.iter().map(|s| s.id.clone()).collect();
            let (ok, view) = self
                .poll_group(cloud, g, &ids, self.settings.create_timeout, |s| {
                    s.is_some_and(|s| !s.floating_ips().is_empty())
                })
                .await?;
            if !ok {
                errors.push(SeamError::transient(format!(
                    "group {group}: Nova does not show the floating IP of every new member after {:?}",
                    self.settings.create_timeout
                )));
            }
            active = view;
        }
        SeamError::combine(errors)?;
        let mut out: Vec<Instance> = active.iter().map(|s| self.to_instance(s)).collect();
        out.sort_by_key(|i| unique.iter().position(|n| *n == i.id.as_str()));
        Ok(out)
    }

    async fn delete(&self, group: &GroupId, ids: &[InstanceId]) -> Result<(), SeamError> {
        let cloud = self.cloud().await?;
        let g = group.as_str();
        let servers = self.group_servers(cloud, g).await?;
        let victims: Vec<Server> = servers
            .into_iter()
            .filter(|s| ids.iter().any(|i| s.meta(marks::META_INSTANCE) == Some(i.as_str())))
            .collect();
        if victims.is_empty() {
            return Ok(());
        }
        self.release_fips(cloud, g, &victims).await?;
        for s in &victims {
            cloud.delete_server(&s.id).await.map_err(|e| e.context(format!("delete member {}", s.name)))?;
            tracing::info!(member = %s.name, server = %s.id, %group, "server deleted");
        }
        let vids: Vec<String> = victims.iter().map(|s| s.id.clone()).collect();
        let (gone, left) = self
            .poll_group(cloud, g, &vids, self.settings.delete_timeout, |s| {
                s.is_none_or(|s| matches!(s.status.as_str(), "DELETED" | "SOFT_DELETED"))
            })
            .await?;
        if !gone {
            let names: Vec<String> = left.iter().map(|s| format!("{} ({})", s.name, s.status)).collect();
            return Err(SeamError::transient(format!(
                "group {group}: still there {:?} after delete: {}",
                self.settings.delete_timeout,
                names.join(", ")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_yaml_and_validation() {
        let s: OpenStackSettings = serde_yaml::from_str(
            "kind: openstack\ncloud: microstack\naddress: floating\nstart_timeout: 2m\npoll_interval: 500ms\n",
        )
        .unwrap();
        assert_eq!(s.address, AddressMode::Floating);
        assert_eq!(s.create_timeout, Duration::from_secs(120));
        assert_eq!(s.poll_interval, Duration::from_millis(500));
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        let e = serde_yaml::from_str::<OpenStackSettings>("cloud: a\nbogus: 1\n").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let bad = OpenStackSettings {
            kind: Some("local".into()),
            interface: Some("public-ish".into()),
            poll_interval: Duration::from_millis(1),
            ..Default::default()
        };
        let fields: Vec<String> = bad.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["kind", "interface", "poll_interval"]);
        let back: OpenStackSettings = serde_yaml::from_str(&serde_yaml::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn template_yaml_and_validation() {
        let t: OpenStackTemplate = serde_yaml::from_str(
            "image: cirros\nflavor: m1.tiny\nnetwork: lab-net\nsecurity_groups: [sg-secure]\nservice_port: 5000\n",
        )
        .unwrap();
        assert_eq!(t.server_group_policy, "soft-anti-affinity");
        assert_eq!(t.service_port, 5000);
        assert!(t.validate().is_empty());
        assert!(serde_yaml::from_str::<OpenStackTemplate>("image: a\nflavor: b\nnetwork: c\nimage_id: x\n").is_err());
        let mut bad = OpenStackTemplate::new("", "m1.tiny", "n");
        bad.user_data = Some("x".into());
        bad.user_data_file = Some("/nonexistent".into());
        bad.server_group_policy = "spread".into();
        bad.service_port = 0;
        bad.metadata.insert("flotilla:group".into(), "x".into());
        let fields: Vec<String> = bad.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            vec!["image", "user_data_file", "server_group_policy", "service_port", "metadata.flotilla:group"]
        );
    }

    #[test]
    fn a_server_of_a_down_cell_is_unknown_never_gone() {
        let whole = |id: &str, name: &str| {
            let mut s = Server { id: id.into(), name: name.into(), status: "ACTIVE".into(), ..Default::default() };
            s.metadata.insert(marks::META_INSTANCE.into(), name.into());
            s.metadata.insert(marks::META_GROUP.into(), "web".into());
            s
        };
        let partial = |id: &str| Server { id: id.into(), status: "UNKNOWN".into(), ..Default::default() };
        let mut seen = HashMap::new();
        complete(vec![whole("1", "web_1"), whole("2", "web_2")], &mut seen).unwrap();
        // Cell of server 2 goes down: it keeps its name and group, and reads as Unknown.
        let listed = complete(vec![whole("1", "web_1"), partial("2")], &mut seen).unwrap();
        let two: Vec<Server> = ours(listed).filter(|s| s.id == "2").collect();
        assert_eq!(two.len(), 1);
        assert_eq!(two[0].name, "web_2");
        assert!(matches!(member_state(&two[0], true), InstanceState::Unknown(_)));
        // A partial server never seen (a restart during the outage): the listing is an error.
        let e = complete(vec![whole("1", "web_1"), partial("3")], &mut seen).unwrap_err();
        assert_eq!(e.kind(), flotilla_model::ErrorKind::Transient);
        assert!(e.message.contains("server 3 is in a cell Nova cannot reach"), "{e}");
    }

    #[test]
    fn states() {
        let mut s = Server { status: "ACTIVE".into(), ..Default::default() };
        assert_eq!(member_state(&s, true), InstanceState::Running);
        assert_eq!(member_state(&s, false), InstanceState::Creating);
        s.status = "ERROR".into();
        s.fault = Some(crate::resources::Fault { message: "No valid host was found.".into(), code: 500 });
        assert_eq!(member_state(&s, true), InstanceState::Failed("No valid host was found.".into()));
        // Cannot tell (a down cell, a status this code does not know) or stopped outside Flotilla:
        // Unknown, which nothing repairs by deletion.
        for status in ["UNKNOWN", "SHUTOFF", "PAUSED", "SUSPENDED", "SHELVED", "SHELVED_OFFLOADED", "RESCUE", "NEW_ONE"]
        {
            s.status = status.into();
            assert!(matches!(member_state(&s, true), InstanceState::Unknown(w) if w.contains(status)), "{status}");
        }
        s.task_state = Some("deleting".into());
        assert_eq!(member_state(&s, true), InstanceState::Deleting);
    }
}
