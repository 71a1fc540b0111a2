//! Typed views of the Nova, Neutron and Glance resources Flotilla uses, the calls on them, and the
//! marks that say "Flotilla made this".

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use flotilla_model::{ErrorKind, SeamError};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use crate::client::{enc, query, Cloud, Service};

/// The marks on everything Flotilla creates. Cleanup and the provider only ever touch a resource
/// that carries [`marks::TAG`] (Nova/Neutron/Glance tags) or, on Nova, the
/// [`marks::META_MANAGED`] metadata key.
pub mod marks {
    /// Tag on every server, floating IP, network object and image Flotilla made.
    pub const TAG: &str = "flotilla";
    /// Metadata/property: who made it — `deploy`, `provider`, `snapshot`, `golden`, `infra`.
    pub const META_MANAGED: &str = "flotilla:managed";
    /// Metadata/property: the group (= deploy prefix) a server, floating IP or snapshot belongs to.
    pub const META_GROUP: &str = "flotilla:group";
    /// Metadata: the same value as [`META_GROUP`], under the name the deploy verb uses.
    pub const META_PREFIX: &str = "flotilla:prefix";
    /// Metadata: the member's instance id (= server name).
    pub const META_INSTANCE: &str = "flotilla:instance";
    /// Metadata: the template version a member was made from (the model's `template` tag).
    pub const META_TEMPLATE: &str = "flotilla:template";
    /// Glance property on snapshots/golden images: the server they were taken from.
    pub const META_SOURCE: &str = "flotilla:source";
    /// Longest group/prefix name: tags are at most 60 characters on Nova.
    pub const MAX_GROUP_LEN: usize = 60 - "flotilla:group=".len();

    /// The tag naming a group: `flotilla:group=<group>`.
    pub fn group_tag(group: &str) -> String {
        format!("flotilla:group={group}")
    }

    /// The Neutron `description` of a resource: the marks in words, written at creation (atomic
    /// with it), kept even where tags are unsupported.
    pub fn description(managed: &str, group: &str, instance: Option<&str>) -> String {
        let mut d = format!("flotilla:managed={managed} flotilla:group={group}");
        if let Some(i) = instance {
            d.push_str(&format!(" flotilla:instance={i}"));
        }
        d
    }
}

fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One address of a server (`addresses.<network>[]`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerAddress {
    #[serde(default)]
    pub addr: String,
    #[serde(default)]
    pub version: u8,
    /// `fixed` or `floating`.
    #[serde(rename = "OS-EXT-IPS:type", default)]
    pub kind: Option<String>,
}

/// Why a server is in ERROR.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Fault {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub code: u16,
}

/// A Nova server (`GET /servers/detail`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Server {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub addresses: BTreeMap<String, Vec<ServerAddress>>,
    #[serde(default)]
    pub fault: Option<Fault>,
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub key_name: Option<String>,
    /// `{"id": ...}`, or `""` when booted from a volume.
    #[serde(default)]
    pub image: Value,
    /// With microversion >= 2.47 the flavor itself (`original_name`, `vcpus`, ...), else `{"id"}`.
    #[serde(default)]
    pub flavor: Value,
    #[serde(default, deserialize_with = "nullable")]
    pub security_groups: Vec<Value>,
    #[serde(rename = "OS-EXT-STS:task_state", default)]
    pub task_state: Option<String>,
}

impl Server {
    /// The first IPv4 address of a kind (`fixed`/`floating`), the given network's first.
    pub fn address(&self, kind: &str, prefer_network: Option<&str>) -> Option<String> {
        let pick = |addrs: &Vec<ServerAddress>| {
            addrs.iter().find(|a| a.version == 4 && a.kind.as_deref() == Some(kind)).map(|a| a.addr.clone())
        };
        if let Some(n) = prefer_network {
            if let Some(a) = self.addresses.get(n).and_then(pick) {
                return Some(a);
            }
        }
        self.addresses.values().find_map(pick)
    }

    /// Every floating address.
    pub fn floating_ips(&self) -> Vec<String> {
        self.addresses
            .values()
            .flatten()
            .filter(|a| a.kind.as_deref() == Some("floating"))
            .map(|a| a.addr.clone())
            .collect()
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// Carries Flotilla's marks (tag or `flotilla:managed` metadata).
    pub fn is_ours(&self) -> bool {
        self.tags.iter().any(|t| t == marks::TAG) || self.metadata.contains_key(marks::META_MANAGED)
    }

    /// The group of one of ours.
    pub fn group(&self) -> Option<&str> {
        if !self.is_ours() {
            return None;
        }
        self.meta(marks::META_GROUP).or_else(|| self.meta(marks::META_PREFIX))
    }

    /// Deleted already (Nova lists a deleted server as `DELETED` for a moment).
    pub fn is_gone(&self) -> bool {
        matches!(self.status.as_str(), "DELETED" | "SOFT_DELETED")
    }

    /// vCPUs from the embedded flavor (microversion >= 2.47).
    pub fn vcpus(&self) -> Option<u32> {
        self.flavor["vcpus"].as_u64().map(|v| v as u32)
    }

    pub fn image_id(&self) -> Option<&str> {
        self.image["id"].as_str()
    }
}

/// A Nova flavor.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Flavor {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub vcpus: u32,
    /// MiB.
    #[serde(default)]
    pub ram: u64,
    /// GiB.
    #[serde(default)]
    pub disk: u64,
}

/// A Glance image (`GET /v2/images`); custom properties (our marks) are in `properties`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Image {
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default, deserialize_with = "nullable")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub owner: String,
    #[serde(flatten)]
    pub properties: BTreeMap<String, Value>,
}

impl Image {
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).and_then(Value::as_str)
    }
    pub fn is_ours(&self) -> bool {
        self.tags.iter().any(|t| t == marks::TAG) || self.properties.contains_key(marks::META_MANAGED)
    }
}

/// A Neutron resource's common part: network, subnet, router, security group, port, floating IP.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NeutronObject {
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub description: String,
    #[serde(default, deserialize_with = "nullable")]
    pub tags: Vec<String>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}

impl NeutronObject {
    pub fn is_ours(&self) -> bool {
        self.tags.iter().any(|t| t == marks::TAG) || self.description.starts_with("flotilla:managed=")
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        self.rest.get(key).and_then(Value::as_str)
    }
    pub fn field(&self, key: &str) -> &Value {
        self.rest.get(key).unwrap_or(&Value::Null)
    }
    /// A mark from the description (`flotilla:group=web` → `Some("web")` for `flotilla:group`).
    pub fn described(&self, key: &str) -> Option<&str> {
        self.description.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }
}

/// Absolute compute limits of the project (`GET /limits`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_instances: i64,
    pub used_instances: i64,
    pub max_cores: i64,
    pub used_cores: i64,
    /// MiB.
    pub max_ram: i64,
    pub used_ram: i64,
}

/// What a new server is made of, ids resolved.
#[derive(Debug, Clone, Default)]
pub struct ServerCreate {
    pub name: String,
    pub image_id: String,
    pub flavor_id: String,
    pub network_ids: Vec<String>,
    pub security_groups: Vec<String>,
    pub key_name: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub tags: Vec<String>,
    /// Plain text; base64-encoded on the way.
    pub user_data: Option<String>,
    pub server_group_id: Option<String>,
}

fn parse_list<T: for<'de> Deserialize<'de>>(v: &Value, key: &str, what: &str) -> Result<Vec<T>, SeamError> {
    serde_json::from_value(v[key].clone()).map_err(|e| {
        SeamError::bug(format!("{what}: unexpected answer ({e}): {}", crate::util::clip(&v.to_string(), 200)))
    })
}

fn parse_one<T: for<'de> Deserialize<'de>>(v: &Value, what: &str) -> Result<T, SeamError> {
    serde_json::from_value(v.clone()).map_err(|e| {
        SeamError::bug(format!("{what}: unexpected answer ({e}): {}", crate::util::clip(&v.to_string(), 200)))
    })
}

/// Looks like a UUID (ids are tried before names).
pub fn looks_like_id(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-') && s.matches('-').count() == 4
}

/// Pages of a server listing followed at most (Nova's default page is 1,000 servers).
pub const MAX_SERVER_PAGES: usize = 50;

impl Cloud {
    // ---------------------------------------------------------------- Nova

    /// `GET /servers/detail` with filters (server-side), following pagination (at most
    /// [`MAX_SERVER_PAGES`] pages).
    pub async fn list_servers(&self, filters: &[(&str, &str)]) -> Result<Vec<Server>, SeamError> {
        self.list_servers_within(filters, MAX_SERVER_PAGES).await
    }

    /// [`Cloud::list_servers`] with a page cap: a listing longer than `max_pages` is an error, never
    /// a silent prefix (members past the cut would look gone and be created again).
    pub async fn list_servers_within(
        &self,
        filters: &[(&str, &str)],
        max_pages: usize,
    ) -> Result<Vec<Server>, SeamError> {
        let mut out = Vec::new();
        let mut path = format!("/servers/detail{}", query(filters));
        for _ in 0..max_pages {
            let v = self.get(Service::Compute, &path).await?;
            out.extend(parse_list::<Server>(&v, "servers", "server list")?);
            let next = v["servers_links"]
                .as_array()
                .and_then(|l| l.iter().find(|x| x["rel"] == "next"))
                .and_then(|x| x["href"].as_str())
                .and_then(|h| h.split_once("/servers/detail").map(|(_, q)| format!("/servers/detail{q}")));
            match next {
                Some(p) => path = p,
                None => return Ok(out),
            }
        }
        Err(SeamError::transient(format!(
            "the server list has more than {max_pages} pages ({} servers so far): refusing a partial list",
            out.len()
        )))
    }

    /// Servers whose name is exactly `name` (Nova's name filter is a regex).
    pub async fn servers_named(&self, name: &str) -> Result<Vec<Server>, SeamError> {
        let re = format!("^{}$", crate::util::regex_escape(name));
        let all = self.list_servers(&[("name", &re)]).await?;
        Ok(all.into_iter().filter(|s| s.name == name).collect())
    }

    pub async fn get_server(&self, id: &str) -> Result<Option<Server>, SeamError> {
        match self.get_opt(Service::Compute, &format!("/servers/{}", enc(id))).await? {
            Some(v) => Ok(Some(parse_one(&v["server"], "server")?)),
            None => Ok(None),
        }
    }

    /// A server by id, or by exact name (must be unique).
    pub async fn find_server(&self, name_or_id: &str) -> Result<Server, SeamError> {
        if looks_like_id(name_or_id) {
            if let Some(s) = self.get_server(name_or_id).await? {
                return Ok(s);
            }
        }
        let mut found = self.servers_named(name_or_id).await?;
        match found.len() {
            0 => Err(SeamError::not_found(format!("server {name_or_id:?} not found"))),
            1 => Ok(found.remove(0)),
            n => Err(SeamError::invalid(format!(
                "server name {name_or_id:?} is ambiguous ({n} servers: {}); use its id",
                found.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// `POST /servers`; returns the new server's id.
    pub async fn create_server(&self, c: &ServerCreate) -> Result<String, SeamError> {
        let mut server = json!({
            "name": c.name,
            "imageRef": c.image_id,
            "flavorRef": c.flavor_id,
            "networks": c.network_ids.iter().map(|n| json!({ "uuid": n })).collect::<Vec<_>>(),
            "metadata": c.metadata,
        });
        if !c.security_groups.is_empty() {
            server["security_groups"] =
                json!(c.security_groups.iter().map(|s| json!({ "name": s })).collect::<Vec<_>>());
        }
        if let Some(k) = &c.key_name {
            server["key_name"] = json!(k);
        }
        if let Some(u) = &c.user_data {
            server["user_data"] = json!(base64::engine::general_purpose::STANDARD.encode(u));
        }
        if !c.tags.is_empty() && self.compute_microversion().at_least(52) {
            server["tags"] = json!(c.tags);
        }
        let mut body = json!({ "server": server });
        if let Some(g) = &c.server_group_id {
            body["os:scheduler_hints"] = json!({ "group": g });
        }
        let r = self
            .post(Service::Compute, "/servers", &body)
            .await
            .map_err(|e| e.context(format!("create server {}", c.name)))?;
        let id = r.body["server"]["id"].as_str().unwrap_or_default().to_string();
        if id.is_empty() {
            return Err(SeamError::bug(format!("create server {}: no id in the answer", c.name)));
        }
        if !c.tags.is_empty() && !self.compute_microversion().at_least(52) && self.compute_microversion().at_least(26) {
            self.put(Service::Compute, &format!("/servers/{id}/tags"), Some(&json!({ "tags": c.tags }))).await?;
        }
        Ok(id)
    }

    pub async fn delete_server(&self, id: &str) -> Result<(), SeamError> {
        self.delete(Service::Compute, &format!("/servers/{}", enc(id))).await
    }

    /// `POST /servers/{id}/action`.
    pub async fn server_action(&self, id: &str, body: &Value) -> Result<crate::client::Reply, SeamError> {
        self.post(Service::Compute, &format!("/servers/{}/action", enc(id)), body).await
    }

    /// A flavor by id or name (one `GET /flavors/detail`).
    pub async fn find_flavor(&self, name_or_id: &str) -> Result<Flavor, SeamError> {
        let v = self.get(Service::Compute, "/flavors/detail?is_public=None").await;
        // Members may not list private flavors with is_public=None: fall back to the default list.
        let v = match v {
            Ok(v) => v,
            Err(_) => self.get(Service::Compute, "/flavors/detail").await?,
        };
        let all: Vec<Flavor> = parse_list(&v, "flavors", "flavor list")?;
        if let Some(f) = all.iter().find(|f| f.id == name_or_id).or_else(|| all.iter().find(|f| f.name == name_or_id)) {
            return Ok(f.clone());
        }
        Err(SeamError::invalid(format!(
            "flavor {name_or_id:?} not found (flavors: {})",
            all.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
        )))
    }

    /// `GET /limits` (absolute compute limits of the project).
    pub async fn limits(&self) -> Result<Limits, SeamError> {
        let v = self.get(Service::Compute, "/limits").await?;
        let a = &v["limits"]["absolute"];
        let n = |k: &str| a[k].as_i64().unwrap_or(-1);
        Ok(Limits {
            max_instances: n("maxTotalInstances"),
            used_instances: n("totalInstancesUsed"),
            max_cores: n("maxTotalCores"),
            used_cores: n("totalCoresUsed"),
            max_ram: n("maxTotalRAMSize"),
            used_ram: n("totalRAMUsed"),
        })
    }

    /// `Ok(())` if `count` more servers of `flavor` fit the project's compute quota, else a Quota
    /// error naming the limit (one `GET /limits`). Checked before anything is created.
    pub async fn check_quota(&self, flavor: &Flavor, count: i64) -> Result<(), SeamError> {
        let l = self.limits().await?;
        let over = |max: i64, used: i64, need: i64| max >= 0 && used + need > max;
        let msg = if over(l.max_instances, l.used_instances, count) {
            Some(format!("instances: {} of {} in use, {count} more requested", l.used_instances, l.max_instances))
        } else if over(l.max_cores, l.used_cores, count * flavor.vcpus as i64) {
            Some(format!(
                "cores: {} of {} in use, {} more requested",
                l.used_cores,
                l.max_cores,
                count * flavor.vcpus as i64
            ))
        } else if over(l.max_ram, l.used_ram, count * flavor.ram as i64) {
            Some(format!(
                "RAM: {} of {} MiB in use, {} MiB more requested",
                l.used_ram,
                l.max_ram,
                count * flavor.ram as i64
            ))
        } else {
            None
        };
        match msg {
            Some(m) => Err(SeamError::new(
                ErrorKind::Quota,
                format!("quota exceeded for {m} (project quota of cloud {})", self.config().name),
            )),
            None => Ok(()),
        }
    }

    /// The keypair `name`, if it exists: `(public_key, fingerprint)`.
    pub async fn keypair(&self, name: &str) -> Result<Option<(String, String)>, SeamError> {
        Ok(self.get_opt(Service::Compute, &format!("/os-keypairs/{}", enc(name))).await?.map(|v| {
            let k = &v["keypair"];
            (
                k["public_key"].as_str().unwrap_or_default().to_string(),
                k["fingerprint"].as_str().unwrap_or_default().to_string(),
            )
        }))
    }

    pub async fn import_keypair(&self, name: &str, public_key: &str) -> Result<(), SeamError> {
        self.post(Service::Compute, "/os-keypairs", &json!({ "keypair": { "name": name, "public_key": public_key } }))
            .await
            .map(|_| ())
            .map_err(|e| e.context(format!("import keypair {name}")))
    }

    /// The server group `name` (ours or not), created with `policy` if missing.
    pub async fn ensure_server_group(&self, name: &str, policy: &str) -> Result<String, SeamError> {
        let v = self.get(Service::Compute, "/os-server-groups").await?;
        if let Some(g) = v["server_groups"].as_array().and_then(|a| a.iter().find(|g| g["name"] == name)) {
            return Ok(g["id"].as_str().unwrap_or_default().to_string());
        }
        let body = if self.compute_microversion().at_least(64) {
            json!({ "server_group": { "name": name, "policy": policy } })
        } else {
            json!({ "server_group": { "name": name, "policies": [policy] } })
        };
        let r = self
            .post(Service::Compute, "/os-server-groups", &body)
            .await
            .map_err(|e| e.context(format!("create server group {name}")))?;
        Ok(r.body["server_group"]["id"].as_str().unwrap_or_default().to_string())
    }

    /// Polls until `pred` holds for the server, it goes ERROR, or `timeout` passes. `on_poll` sees
    /// each status. Returns the last view.
    pub async fn wait_server(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&Server) -> bool,
        on_poll: &(dyn Fn(&Server) + Send + Sync),
    ) -> Result<Server, SeamError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut delay = Duration::from_millis(500);
        loop {
            let s =
                self.get_server(id).await?.ok_or_else(|| SeamError::not_found(format!("server {id} disappeared")))?;
            on_poll(&s);
            if pred(&s) {
                return Ok(s);
            }
            if s.status == "ERROR" {
                let fault = s.fault.as_ref().map(|f| f.message.clone()).unwrap_or_else(|| "no fault recorded".into());
                return Err(fault_error(&s.name, &fault));
            }
            if tokio::time::Instant::now() + delay > deadline {
                return Err(SeamError::transient(format!(
                    "server {} still {} after {:?}",
                    s.name,
                    s.task_state.as_deref().map(|t| format!("{} ({t})", s.status)).unwrap_or(s.status.clone()),
                    timeout
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Polls until the server is gone (404 or DELETED).
    pub async fn wait_server_gone(&self, id: &str, timeout: Duration) -> Result<(), SeamError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut delay = Duration::from_millis(300);
        loop {
            match self.get_server(id).await? {
                None => return Ok(()),
                Some(s) if s.status == "DELETED" || s.status == "SOFT_DELETED" => return Ok(()),
                Some(s) => {
                    if tokio::time::Instant::now() + delay > deadline {
                        return Err(SeamError::transient(format!(
                            "server {} ({id}) still {} {:?} after asking to delete it",
                            s.name, s.status, timeout
                        )));
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    // ------------------------------------------------------------- Neutron

    /// `GET /v2.0/<plural>?filters`.
    pub async fn neutron_list(&self, plural: &str, filters: &[(&str, &str)]) -> Result<Vec<NeutronObject>, SeamError> {
        let v = self.get(Service::Network, &format!("/{plural}{}", query(filters))).await?;
        parse_list(&v, &plural.replace('-', "_"), plural)
    }

    /// Creates a Neutron resource with our tags (in the body where the `tag-creation` extension
    /// allows, else right after) and returns it.
    pub async fn neutron_create(
        &self,
        singular: &str,
        mut fields: Value,
        tags: &[String],
    ) -> Result<NeutronObject, SeamError> {
        let plural = plural(singular);
        let mut inline =
            !tags.is_empty() && !self.inline_tags_refused() && self.neutron_has("tag-creation").await.unwrap_or(false);
        if inline {
            fields["tags"] = json!(tags);
        }
        let path = format!("/{plural}");
        let r = match self.post(Service::Network, &path, &json!({ singular: fields })).await {
            Err(e) if inline && e.kind == ErrorKind::Invalid && e.message.contains("'tags'") => {
                // Some deployments list `tag-creation` but refuse tags in POST: tag afterwards
                // (the description carries the marks from the start).
                self.refuse_inline_tags();
                inline = false;
                if let Some(o) = fields.as_object_mut() {
                    o.remove("tags");
                }
                self.post(Service::Network, &path, &json!({ singular: fields })).await?
            }
            other => other?,
        };
        let obj: NeutronObject = parse_one(&r.body[singular], singular)?;
        if !inline && !tags.is_empty() && self.neutron_has("standard-attr-tag").await.unwrap_or(false) {
            self.put(Service::Network, &format!("/{plural}/{}/tags", obj.id), Some(&json!({ "tags": tags }))).await?;
        }
        Ok(obj)
    }

    pub async fn neutron_delete(&self, singular: &str, id: &str) -> Result<(), SeamError> {
        self.delete(Service::Network, &format!("/{}/{}", plural(singular), enc(id))).await
    }

    /// A network by id or name.
    pub async fn find_network(&self, name_or_id: &str) -> Result<Option<NeutronObject>, SeamError> {
        if looks_like_id(name_or_id) {
            let n = self.neutron_list("networks", &[("id", name_or_id)]).await?;
            if let Some(n) = n.into_iter().next() {
                return Ok(Some(n));
            }
        }
        let mut n = self.neutron_list("networks", &[("name", name_or_id)]).await?;
        match n.len() {
            0 => Ok(None),
            1 => Ok(Some(n.remove(0))),
            k => {
                Err(SeamError::invalid(format!("network name {name_or_id:?} is ambiguous ({k} networks); use its id")))
            }
        }
    }

    /// The external network named (or the only one there is).
    pub async fn external_network(&self, name: Option<&str>) -> Result<NeutronObject, SeamError> {
        let ext = self.neutron_list("networks", &[("router:external", "true")]).await?;
        match name {
            Some(n) => ext.into_iter().find(|x| x.name == n || x.id == n).ok_or_else(|| {
                SeamError::invalid(format!("external network {n:?} not found (it must exist and have router:external)"))
            }),
            None => match ext.len() {
                1 => Ok(ext.into_iter().next().unwrap_or_default()),
                0 => Err(SeamError::invalid(
                    "the project sees no external network (router:external): floating IPs are impossible",
                )),
                _ => Err(SeamError::invalid(format!(
                    "several external networks ({}): name one (floating_network / external_network)",
                    ext.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", ")
                ))),
            },
        }
    }

    /// The ports of a device (a server or a router).
    pub async fn ports_of(&self, device_id: &str) -> Result<Vec<NeutronObject>, SeamError> {
        self.neutron_list("ports", &[("device_id", device_id)]).await
    }

    /// Floating IPs carrying our group tag (ours only).
    pub async fn our_floating_ips(&self, group: Option<&str>) -> Result<Vec<NeutronObject>, SeamError> {
        let tags = match group {
            Some(g) => format!("{},{}", marks::TAG, marks::group_tag(g)),
            None => marks::TAG.to_string(),
        };
        let all = if self.neutron_has("standard-attr-tag").await? {
            self.neutron_list("floatingips", &[("tags", &tags)]).await?
        } else {
            // No tags on this Neutron: our description marks them (a scan of the project's FIPs).
            let all = self.neutron_list("floatingips", &[]).await?;
            all.into_iter().filter(|f| group.is_none_or(|g| f.described(marks::META_GROUP) == Some(g))).collect()
        };
        Ok(all.into_iter().filter(|f| f.is_ours()).collect())
    }

    /// Gives `port_id` a floating IP from `external_net`: reuses a free one of ours (group
    /// `group`'s, then any of ours), else allocates one with our marks. Returns `(address, id, reused)`.
    pub async fn attach_floating_ip(
        &self,
        port_id: &str,
        external_net: &str,
        group: &str,
        instance: &str,
        managed: &str,
    ) -> Result<(String, String, bool), SeamError> {
        let ours = self.our_floating_ips(None).await?;
        if let Some(f) = ours.iter().find(|f| f.str("port_id") == Some(port_id)) {
            return Ok((f.str("floating_ip_address").unwrap_or_default().to_string(), f.id.clone(), true));
        }
        let free =
            |f: &&NeutronObject| f.field("port_id").is_null() && f.str("floating_network_id") == Some(external_net);
        let pick = ours
            .iter()
            .filter(free)
            .find(|f| f.tags.contains(&marks::group_tag(group)))
            .or_else(|| ours.iter().find(free));
        if let Some(f) = pick {
            // Re-mark it for its new owner, then associate.
            let desc = marks::description(managed, group, Some(instance));
            let r = self
                .put(
                    Service::Network,
                    &format!("/floatingips/{}", f.id),
                    Some(&json!({ "floatingip": { "port_id": port_id, "description": desc } })),
                )
                .await;
            match r {
                Ok(_) => {
                    let tags = json!({ "tags": [marks::TAG, marks::group_tag(group)] });
                    self.put(Service::Network, &format!("/floatingips/{}/tags", f.id), Some(&tags)).await?;
                    return Ok((f.str("floating_ip_address").unwrap_or_default().to_string(), f.id.clone(), true));
                }
                // Taken meanwhile by someone else: allocate instead.
                Err(e) if e.kind == ErrorKind::Conflict => {}
                Err(e) => return Err(e.context("associate floating IP")),
            }
        }
        let fields = json!({
            "floating_network_id": external_net,
            "port_id": port_id,
            "description": marks::description(managed, group, Some(instance)),
        });
        let f = self
            .neutron_create("floatingip", fields, &[marks::TAG.to_string(), marks::group_tag(group)])
            .await
            .map_err(|e| e.context(format!("allocate a floating IP for {instance}")))?;
        Ok((f.str("floating_ip_address").unwrap_or_default().to_string(), f.id, false))
    }

    // -------------------------------------------------------------- Glance

    /// `GET /v2/images?filters` (following `next`).
    pub async fn list_images(&self, filters: &[(&str, &str)]) -> Result<Vec<Image>, SeamError> {
        let mut out = Vec::new();
        let mut path = format!("/images{}", query(filters));
        for _ in 0..50 {
            let v = self.get(Service::Image, &path).await?;
            out.extend(parse_list::<Image>(&v, "images", "image list")?);
            match v["next"].as_str() {
                Some(n) => path = n.strip_prefix("/v2").unwrap_or(n).to_string(),
                None => break,
            }
        }
        Ok(out)
    }

    pub async fn get_image(&self, id: &str) -> Result<Option<Image>, SeamError> {
        match self.get_opt(Service::Image, &format!("/images/{}", enc(id))).await? {
            Some(v) => Ok(Some(parse_one(&v, "image")?)),
            None => Ok(None),
        }
    }

    /// An image by id, or by name (several of one name: the newest active one).
    pub async fn find_image(&self, name_or_id: &str) -> Result<Image, SeamError> {
        if looks_like_id(name_or_id) {
            if let Some(i) = self.get_image(name_or_id).await? {
                return Ok(i);
            }
        }
        let mut found = self.list_images(&[("name", name_or_id)]).await?;
        found.retain(|i| i.status == "active");
        found.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        found.into_iter().next().ok_or_else(|| {
            SeamError::invalid(format!("image {name_or_id:?} not found (no active image with that name or id)"))
        })
    }

    /// Waits for an image to be `active`; `killed`/`deleted` fail.
    pub async fn wait_image_active(
        &self,
        id: &str,
        timeout: Duration,
        on_poll: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Image, SeamError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut delay = Duration::from_millis(500);
        loop {
            let status = match self.get_image(id).await? {
                Some(i) if i.status == "active" => return Ok(i),
                Some(i) => i.status,
                None => "(not yet visible)".to_string(),
            };
            on_poll(&status);
            if matches!(status.as_str(), "killed" | "deleted" | "pending_delete") {
                return Err(SeamError::transient(format!("image {id} ended {status}")));
            }
            if tokio::time::Instant::now() + delay > deadline {
                return Err(SeamError::transient(format!("image {id} still {status} after {timeout:?}")));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    pub async fn delete_image(&self, id: &str) -> Result<(), SeamError> {
        self.delete(Service::Image, &format!("/images/{}", enc(id))).await
    }

    pub async fn tag_image(&self, id: &str, tag: &str) -> Result<(), SeamError> {
        self.put(Service::Image, &format!("/images/{}/tags/{}", enc(id), enc(tag)), None).await.map(|_| ())
    }
}

fn plural(singular: &str) -> String {
    match singular {
        "security_group" => "security-groups".into(),
        "security_group_rule" => "security-group-rules".into(),
        s => format!("{s}s"),
    }
}

/// A server fault as an error: capacity ("No valid host") is Quota-like (pause the group).
pub fn fault_error(server: &str, fault: &str) -> SeamError {
    let low = fault.to_ascii_lowercase();
    let kind =
        if low.contains("no valid host") || low.contains("quota") { ErrorKind::Quota } else { ErrorKind::Transient };
    SeamError::new(kind, format!("server {server} went to ERROR: {fault}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_view() {
        let s: Server = serde_json::from_value(json!({
            "id": "i", "name": "VM-test_1", "status": "ACTIVE", "tags": null,
            "metadata": {"flotilla:managed": "deploy", "flotilla:group": "VM-test"},
            "addresses": {"lab-net": [
                {"addr": "192.168.100.5", "version": 4, "OS-EXT-IPS:type": "fixed"},
                {"addr": "203.0.113.150", "version": 4, "OS-EXT-IPS:type": "floating"}]},
            "flavor": {"vcpus": 2, "original_name": "m1.small"}, "image": ""
        }))
        .unwrap();
        assert!(s.is_ours());
        assert_eq!(s.group(), Some("VM-test"));
        assert_eq!(s.address("fixed", Some("lab-net")).as_deref(), Some("192.168.100.5"));
        assert_eq!(s.floating_ips(), vec!["203.0.113.150"]);
        assert_eq!(s.vcpus(), Some(2));
        assert_eq!(s.image_id(), None);
        let n: NeutronObject = serde_json::from_value(json!({
            "id": "f", "description": "flotilla:managed=deploy flotilla:group=VM-test", "tags": [], "port_id": null
        }))
        .unwrap();
        assert!(n.is_ours());
        assert_eq!(n.described("flotilla:group"), Some("VM-test"));
        assert!(n.field("port_id").is_null());
        assert_eq!(fault_error("a", "No valid host was found.").kind, ErrorKind::Quota);
        assert!(looks_like_id("1f748841-37b4-4d5c-aec9-f48405c312a5"));
        assert!(!looks_like_id("cirros"));
    }
}
