//! The configuration file as written: serde types that mirror the YAML one to one.
//!
//! Every struct denies unknown fields, so a typo is an error rather than a silently ignored
//! setting. Defaults live in named functions next to the field they fill; defaults that depend on
//! another field (`max` on `mode`, `stale_after` on `interval`, the template names on the group
//! name) are `Option`s here and filled in by [`super::validate`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

mod alarm;
mod balancer;
mod policy;

pub use alarm::*;
pub use balancer::*;
pub use policy::*;

/// The whole file. `parse` deserializes it section by section (see [`RawSections`]) so that one
/// bad section does not hide the problems in the others; this type is the schema they add up to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `groups` and optional `state_dir`, `store`, `provider`, `metrics`, `api`"
)]
pub struct RawConfig {
    /// Where the store file and member records live. Relative store paths are resolved against it.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Where samples and decisions are kept.
    #[serde(default)]
    pub store: RawStore,
    /// What starts and stops members.
    #[serde(default)]
    pub provider: RawProvider,
    /// Where member metrics come from.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// The REST API (and, later, the dashboard); none when absent.
    #[serde(default)]
    pub api: Option<RawApi>,
    /// The groups to scale; at least one.
    #[serde(default)]
    pub groups: Vec<RawGroup>,
}

/// The `api` section: where the daemon's REST API listens and whose tokens it takes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `listen` and `tokens_file` or `tokens_env`, and optional `anonymous_read` and `tls`"
)]
pub struct RawApi {
    /// Where the API listens, e.g. `127.0.0.1:8070` (the default).
    #[serde(default = "default_api_listen")]
    pub listen: String,
    /// A file of `<scope> <token>` lines (scope `read` or `admin`); keep it `0600`.
    #[serde(default)]
    pub tokens_file: Option<PathBuf>,
    /// Or an environment variable holding those lines (default `FLOTILLA_API_TOKENS`).
    #[serde(default)]
    pub tokens_env: Option<String>,
    /// Reads without a token, from loopback only (the listener must be on loopback too).
    #[serde(default)]
    pub anonymous_read: bool,
    /// Serve HTTPS with this certificate and key.
    #[serde(default)]
    pub tls: Option<RawTls>,
}

/// `api.tls`: PEM files; the key kept `0600`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `cert` and `key` (PEM files)")]
pub struct RawTls {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

pub fn default_api_listen() -> String {
    "127.0.0.1:8070".to_string()
}

/// The top level with each section left as YAML, so every section (and every group) can be
/// deserialized on its own and report its own problems. Must list the same fields as [`RawConfig`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `groups` and optional `state_dir`, `store`, `provider`, `metrics`"
)]
pub(crate) struct RawSections {
    /// See [`RawConfig::state_dir`].
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// See [`RawConfig::store`]; deserialized later as a [`RawStore`].
    #[serde(default)]
    pub store: Option<serde_yaml::Value>,
    /// See [`RawConfig::provider`]; deserialized later as a [`RawProvider`].
    #[serde(default)]
    pub provider: Option<serde_yaml::Value>,
    /// See [`RawConfig::metrics`]; deserialized later as a [`RawMetrics`].
    #[serde(default)]
    pub metrics: Option<serde_yaml::Value>,
    /// See [`RawConfig::api`]; deserialized later as a [`RawApi`].
    #[serde(default)]
    pub api: Option<serde_yaml::Value>,
    /// See [`RawConfig::groups`]; each item deserialized later as a [`RawGroup`].
    #[serde(default)]
    pub groups: Option<Vec<serde_yaml::Value>>,
}

/// The `store` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of store settings (`kind`, `path`, `sample_window`)")]
pub struct RawStore {
    /// Which store: `sqlite` (the only one available for now).
    #[serde(default = "default_store_kind")]
    pub kind: RawStoreKind,
    /// The database file; a relative path is relative to `state_dir`.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// How many samples are kept per group (at least 10).
    #[serde(default = "default_sample_window")]
    pub sample_window: usize,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore { kind: default_store_kind(), path: default_store_path(), sample_window: default_sample_window() }
    }
}

/// The store kinds the schema knows of. Not all of them are available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawStoreKind {
    /// A SQLite file.
    Sqlite,
    /// Reserved; rejected by validation until it exists.
    Postgres,
}

/// The `provider` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of provider settings (`kind`, `start_timeout`, `libvirt`, `openstack`)"
)]
pub struct RawProvider {
    /// Which provider: `local` (members are local processes) or `libvirt` (domains on libvirt hosts).
    #[serde(default = "default_provider_kind")]
    pub kind: RawProviderKind,
    /// How long a new local member may take to come up, e.g. `20s` (`local` only).
    #[serde(default = "default_start_timeout", with = "flotilla_duration")]
    pub start_timeout: Duration,
    /// The libvirt hosts, placement and addressing (`libvirt` only; required there).
    #[serde(default)]
    pub libvirt: Option<flotilla_provider_libvirt::LibvirtSettings>,
    /// The cloud (clouds.yaml name or OS_* variables), addressing and timeouts (`openstack` only;
    /// optional there: without it, `OS_CLOUD` or the `OS_*` variables name the cloud).
    #[serde(default)]
    pub openstack: Option<flotilla_provider_openstack::OpenStackSettings>,
}

impl Default for RawProvider {
    fn default() -> Self {
        RawProvider {
            kind: default_provider_kind(),
            start_timeout: default_start_timeout(),
            libvirt: None,
            openstack: None,
        }
    }
}

/// The provider kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawProviderKind {
    /// Members are processes on this machine.
    Local,
    /// Members are libvirt domains.
    Libvirt,
    /// Members are Nova servers.
    Openstack,
}

/// The `metrics` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `sources`, `ssh`, `push` and `prometheus`")]
pub struct RawMetrics {
    /// Which sources sample members; default: the provider's own (`local` or `libvirt`). Several
    /// are merged per member, the larger value winning (`max` of both). The balancer's request
    /// metrics are always added for groups with a balancer.
    #[serde(default)]
    pub sources: Option<Vec<RawSource>>,
    /// How the `ssh` source logs in to members (required when it is listed).
    #[serde(default)]
    pub ssh: Option<flotilla_metrics_ssh::SshSettings>,
    /// Where others push samples (required when the `push` source is listed).
    #[serde(default)]
    pub push: Option<RawPush>,
    /// Which Prometheus to query and how (required when the `prometheus` source is listed).
    #[serde(default)]
    pub prometheus: Option<flotilla_metrics_prometheus::PrometheusSettings>,
}

/// `metrics.push`: the HTTP endpoint others push samples to. The token is never in the file: it
/// comes from an environment variable or a file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `listen`, `token_env` or `token_file`, `max_age`")]
pub struct RawPush {
    /// `127.0.0.1:PORT` (not port 0: pushers must know it).
    pub listen: std::net::SocketAddr,
    /// The variable holding the shared token (default `FLOTILLA_PUSH_TOKEN`).
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file holding the shared token (instead of `token_env`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// How long a pushed value counts (default 30s).
    #[serde(default = "default_push_max_age", with = "flotilla_duration")]
    pub max_age: Duration,
}

/// `metrics.push.max_age`: 30s.
pub fn default_push_max_age() -> Duration {
    flotilla_metrics_push::DEFAULT_MAX_AGE
}

/// The metric sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase", expecting = "`local`, `libvirt`, `ssh`, `diagnostics`, `push` or `prometheus`")]
pub enum RawSource {
    /// /proc of local member processes.
    Local,
    /// libvirt domain stats (the hypervisor's view).
    Libvirt,
    /// /proc/stat and /proc/meminfo read inside the guest over SSH.
    Ssh,
    /// Nova server diagnostics (the hypervisor's view on OpenStack).
    Diagnostics,
    /// Samples others push over HTTP (`metrics.push`).
    Push,
    /// PromQL instant queries against a Prometheus server (`metrics.prometheus`).
    Prometheus,
}

/// One item of `groups`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a group mapping (`name`, `mode`, `min`, `max`, ...)")]
pub struct RawGroup {
    /// The group's name: 1 to 63 of `A-Z a-z 0-9 . _ -`, unique.
    pub name: String,
    /// `scale` (add/remove members) or `handover` (the seed's clone-and-retire cycle).
    #[serde(default = "default_mode")]
    pub mode: RawMode,
    /// The fewest members (at least 1).
    #[serde(default = "default_min")]
    pub min: u32,
    /// The most members; defaults to 2 for `handover` and 4 for `scale`.
    #[serde(default)]
    pub max: Option<u32>,
    /// How many members one scale-out adds (at least 1, at most `max`).
    #[serde(default = "default_increment")]
    pub increment: u32,
    /// How often members are sampled (at least 100ms), e.g. `5s`.
    #[serde(default = "default_interval", with = "flotilla_duration")]
    pub interval: Duration,
    /// A sample older than this is stale; defaults to 3 × `interval`, must be at least `interval`.
    #[serde(default, with = "flotilla_duration::option")]
    pub stale_after: Option<Duration>,
    /// The quiet time after a scale-out before the next scale action.
    #[serde(default = "default_cooldown", with = "flotilla_duration")]
    pub cooldown_up: Duration,
    /// The quiet time after a scale-in before the next scale action.
    #[serde(default = "default_cooldown", with = "flotilla_duration")]
    pub cooldown_down: Duration,
    /// How long a retiring member may finish its in-flight work.
    #[serde(default = "default_drain_timeout", with = "flotilla_duration")]
    pub drain_timeout: Duration,
    /// Which member a scale-in removes: `oldest`, `newest` or `least-busy`.
    #[serde(default = "default_victim")]
    pub victim: RawVictim,
    /// What scales the group: a threshold (default), target tracking or a request count.
    #[serde(default)]
    pub policy: RawPolicy,
    /// What new members are made from.
    #[serde(default)]
    pub template: RawTemplate,
    /// The embedded load balancer in front of the group; absent = no balancer.
    #[serde(default)]
    pub balancer: Option<RawBalancer>,
    /// How members made from an older template are replaced.
    #[serde(default)]
    pub replacement: RawReplacement,
    /// Members check in through the API; silent ones are replaced.
    #[serde(default)]
    pub checkin: Option<RawCheckin>,
    /// The group's alarms (at most 16); an `alarm` policy's rules name them.
    #[serde(default)]
    pub alarms: Vec<RawAlarm>,
}

/// A group's `checkin`: how often members must report in, and how long a new one has to start.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `every` and optional `grace`")]
pub struct RawCheckin {
    /// The longest silence between a member's check-ins (1s to 1h), e.g. `30s`.
    #[serde(with = "flotilla_duration")]
    pub every: Duration,
    /// From a member's creation, how long before it is judged (up to 1h; default 5m).
    #[serde(default = "default_checkin_grace", with = "flotilla_duration")]
    pub grace: Duration,
}

pub fn default_checkin_grace() -> Duration {
    Duration::from_secs(300)
}

/// A group's `replacement`: what happens to members when the template changes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `strategy` and `max_unavailable`")]
pub struct RawReplacement {
    /// `rolling` (default): replace outdated members a batch at a time; `none`: leave them.
    #[serde(default = "default_replacement_strategy")]
    pub strategy: RawReplacementStrategy,
    /// Members replaced per batch, at least 1 and at most `max`.
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: u32,
}

impl Default for RawReplacement {
    fn default() -> Self {
        RawReplacement { strategy: default_replacement_strategy(), max_unavailable: default_max_unavailable() }
    }
}

/// The replacement strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", expecting = "`rolling` or `none`")]
pub enum RawReplacementStrategy {
    Rolling,
    None,
}

/// `replacement.strategy`: rolling.
pub fn default_replacement_strategy() -> RawReplacementStrategy {
    RawReplacementStrategy::Rolling
}

/// `replacement.max_unavailable`: 1.
pub fn default_max_unavailable() -> u32 {
    1
}

/// A group's `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawMode {
    /// Add members on high load, remove members on low load.
    Scale,
    /// High load adds a clone; low load retires the primary and the clone takes over.
    Handover,
}

/// A group's `victim`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawVictim {
    /// The longest-running member.
    Oldest,
    /// The most recently started member.
    Newest,
    /// The member with the lowest current value of the policy's metric.
    LeastBusy,
}

/// A group's `template`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of template settings (`base_name`, `clone_base`, `vcpus`, `libvirt`, `openstack`)"
)]
pub struct RawTemplate {
    /// Members are `<base_name>_N`; defaults to the group name. Unique across groups.
    #[serde(default)]
    pub base_name: Option<String>,
    /// Clones are `<clone_base>_N`; defaults to `<base_name>_clone`.
    #[serde(default)]
    pub clone_base: Option<String>,
    /// Virtual CPUs per member, 1 to 64.
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    /// What a libvirt member is made from (image, domain XML, cloud-init; `libvirt` provider only).
    #[serde(default)]
    pub libvirt: Option<flotilla_provider_libvirt::LibvirtTemplate>,
    /// What a Nova member is made from (image, flavor, network, ...; `openstack` provider only).
    #[serde(default)]
    pub openstack: Option<flotilla_provider_openstack::OpenStackTemplate>,
}

impl Default for RawTemplate {
    fn default() -> Self {
        RawTemplate { base_name: None, clone_base: None, vcpus: default_vcpus(), libvirt: None, openstack: None }
    }
}

/// `store.kind`: sqlite.
pub fn default_store_kind() -> RawStoreKind {
    RawStoreKind::Sqlite
}

/// `store.path`: `flotilla.db` (in `state_dir`).
pub fn default_store_path() -> PathBuf {
    PathBuf::from("flotilla.db")
}

/// `store.sample_window`: 600 samples.
pub fn default_sample_window() -> usize {
    600
}

/// `provider.kind`: local.
pub fn default_provider_kind() -> RawProviderKind {
    RawProviderKind::Local
}

/// `provider.start_timeout`: 20s.
pub fn default_start_timeout() -> Duration {
    Duration::from_secs(20)
}

/// `mode`: scale.
pub fn default_mode() -> RawMode {
    RawMode::Scale
}

/// `min`: 1.
pub fn default_min() -> u32 {
    1
}

/// `max` when not given: 2 for handover (the primary and its clone), 4 for scale.
pub fn default_max(mode: RawMode) -> u32 {
    match mode {
        RawMode::Handover => 2,
        RawMode::Scale => 4,
    }
}

/// `increment`: 1.
pub fn default_increment() -> u32 {
    1
}

/// `interval`: 5s (the seed's).
pub fn default_interval() -> Duration {
    Duration::from_secs(5)
}

/// `stale_after` when not given: 3 × `interval`.
pub fn default_stale_after(interval: Duration) -> Duration {
    interval.saturating_mul(3)
}

/// `cooldown_up` and `cooldown_down`: 30s.
pub fn default_cooldown() -> Duration {
    Duration::from_secs(30)
}

/// `drain_timeout`: 30s.
pub fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}

/// `victim`: oldest.
pub fn default_victim() -> RawVictim {
    RawVictim::Oldest
}

/// `template.vcpus`: 1.
pub fn default_vcpus() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown_field_message<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> String {
        serde_yaml::from_str::<T>("bogus: 1\n").unwrap_err().to_string()
    }

    #[test]
    fn sections_mirror_the_config_fields() {
        assert_eq!(unknown_field_message::<RawSections>(), unknown_field_message::<RawConfig>());
    }

    #[test]
    fn durations_parse_with_units() {
        let g: RawGroup = serde_yaml::from_str("name: a\ninterval: 250ms\nstale_after: 1m\n").unwrap();
        assert_eq!(g.interval, Duration::from_millis(250));
        assert_eq!(g.stale_after, Some(Duration::from_secs(60)));
        let g: RawGroup = serde_yaml::from_str("name: a\nstale_after: ~\n").unwrap();
        assert_eq!(g.stale_after, None);
        // Read from text or from a `Value` (as `parse` does), a bare number gets the same message.
        let e = serde_yaml::from_str::<RawGroup>("name: a\ninterval: 5\n").unwrap_err().to_string();
        assert!(e.contains("invalid duration `5`"), "{e}");
        let v: serde_yaml::Value = serde_yaml::from_str("name: a\ninterval: 5\n").unwrap();
        let e = serde_yaml::from_value::<RawGroup>(v).unwrap_err().to_string();
        assert_eq!(e, "invalid duration `5`: a unit is needed, like `5s` or `5ms`");
        let v: serde_yaml::Value = serde_yaml::from_str("name: a\ninterval: [5]\n").unwrap();
        let e = serde_yaml::from_value::<RawGroup>(v).unwrap_err().to_string();
        assert!(e.contains("expected a duration with a unit"), "{e}");
    }

    #[test]
    fn defaults_match_the_named_functions() {
        let g: RawGroup = serde_yaml::from_str("name: a\n").unwrap();
        assert_eq!(g.policy, RawPolicy::default());
        assert_eq!(g.template, RawTemplate::default());
        assert_eq!(g.mode, RawMode::Scale);
        let c: RawConfig = serde_yaml::from_str("groups: []\n").unwrap();
        assert_eq!(c.store, RawStore::default());
        assert_eq!(c.provider, RawProvider::default());
    }
}
