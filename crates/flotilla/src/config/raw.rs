//! The configuration file as written: serde types that mirror the YAML one to one.
//!
//! Every struct denies unknown fields, so a typo is an error rather than a silently ignored
//! setting. Defaults live in named functions next to the field they fill; defaults that depend on
//! another field (`max` on `mode`, `stale_after` on `interval`, the template names on the group
//! name) are `Option`s here and filled in by [`super::validate`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The whole file. `parse` deserializes it section by section (see [`RawSections`]) so that one
/// bad section does not hide the problems in the others; this type is the schema they add up to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `groups` and optional `state_dir`, `store`, `provider`")]
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
    /// The groups to scale; at least one.
    #[serde(default)]
    pub groups: Vec<RawGroup>,
}

/// The top level with each section left as YAML, so every section (and every group) can be
/// deserialized on its own and report its own problems. Must list the same fields as [`RawConfig`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `groups` and optional `state_dir`, `store`, `provider`")]
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
#[serde(deny_unknown_fields, expecting = "a mapping of provider settings (`kind`, `start_timeout`)")]
pub struct RawProvider {
    /// Which provider: `local` (members are local processes).
    #[serde(default = "default_provider_kind")]
    pub kind: RawProviderKind,
    /// How long a new member may take to come up, e.g. `20s`.
    #[serde(default = "default_start_timeout", with = "duration")]
    pub start_timeout: Duration,
}

impl Default for RawProvider {
    fn default() -> Self {
        RawProvider { kind: default_provider_kind(), start_timeout: default_start_timeout() }
    }
}

/// The provider kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawProviderKind {
    /// Members are processes on this machine.
    Local,
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
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// A sample older than this is stale; defaults to 3 × `interval`, must be at least `interval`.
    #[serde(default, with = "duration::option")]
    pub stale_after: Option<Duration>,
    /// The quiet time after a scale-out before the next scale action.
    #[serde(default = "default_cooldown", with = "duration")]
    pub cooldown_up: Duration,
    /// The quiet time after a scale-in before the next scale action.
    #[serde(default = "default_cooldown", with = "duration")]
    pub cooldown_down: Duration,
    /// How long a retiring member may finish its in-flight work.
    #[serde(default = "default_drain_timeout", with = "duration")]
    pub drain_timeout: Duration,
    /// Which member a scale-in removes: `oldest`, `newest` or `least-busy`.
    #[serde(default = "default_victim")]
    pub victim: RawVictim,
    /// The threshold policy.
    #[serde(default)]
    pub policy: RawPolicy,
    /// What new members are made from.
    #[serde(default)]
    pub template: RawTemplate,
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

/// A policy's `metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawMetric {
    /// CPU percent.
    Cpu,
    /// Memory percent.
    Mem,
    /// The larger of CPU and memory, per member.
    Max,
}

/// A policy's `aggregation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawAggregation {
    /// The mean over members.
    Mean,
    /// The busiest member.
    Max,
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

/// A group's `policy`: scale out after `min_up` consecutive samples above `high`, scale in after
/// `min_down` consecutive samples below `low`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of policy settings (`metric`, `high`, `low`, ...)")]
pub struct RawPolicy {
    /// What is measured: `cpu`, `mem` or `max` (the larger of the two).
    #[serde(default = "default_metric")]
    pub metric: RawMetric,
    /// How member values combine: `mean` or `max`.
    #[serde(default = "default_aggregation")]
    pub aggregation: RawAggregation,
    /// The high-water mark in percent; `0 <= low < high <= 100`.
    #[serde(default = "default_high")]
    pub high: f64,
    /// The low-water mark in percent.
    #[serde(default = "default_low")]
    pub low: f64,
    /// Consecutive samples above `high` before a scale-out (at least 1).
    #[serde(default = "default_min_up")]
    pub min_up: u32,
    /// Consecutive samples below `low` before a scale-in (at least 1).
    #[serde(default = "default_min_down")]
    pub min_down: u32,
}

impl Default for RawPolicy {
    fn default() -> Self {
        RawPolicy {
            metric: default_metric(),
            aggregation: default_aggregation(),
            high: default_high(),
            low: default_low(),
            min_up: default_min_up(),
            min_down: default_min_down(),
        }
    }
}

/// A group's `template`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of template settings (`base_name`, `clone_base`, `vcpus`)")]
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
}

impl Default for RawTemplate {
    fn default() -> Self {
        RawTemplate { base_name: None, clone_base: None, vcpus: default_vcpus() }
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

/// `policy.metric`: max (the seed's conservative choice).
pub fn default_metric() -> RawMetric {
    RawMetric::Max
}

/// `policy.aggregation`: mean.
pub fn default_aggregation() -> RawAggregation {
    RawAggregation::Mean
}

/// `policy.high`: 80 (the seed's).
pub fn default_high() -> f64 {
    80.0
}

/// `policy.low`: 20 (the seed's).
pub fn default_low() -> f64 {
    20.0
}

/// `policy.min_up`: 4 samples (the seed's).
pub fn default_min_up() -> u32 {
    4
}

/// `policy.min_down`: 4 samples (the seed's).
pub fn default_min_down() -> u32 {
    4
}

/// `template.vcpus`: 1.
pub fn default_vcpus() -> u32 {
    1
}

/// Durations written as humantime strings: `5s`, `250ms`, `1m`, `1h 30m`.
pub(crate) mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};

    const EXPECTING: &str = "a duration with a unit, like `5s`, `250ms` or `1m`";

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(EXPECTING)
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            humantime::parse_duration(s.trim()).map_err(|e| {
                let why = match e {
                    // Humantime's own text names the supported units.
                    humantime::DurationError::UnknownUnit { .. } | humantime::DurationError::NumberOverflow => {
                        e.to_string()
                    }
                    _ => format!("expected {EXPECTING}"),
                };
                E::custom(format!("invalid duration `{s}`: {why}"))
            })
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
            Err(E::custom(format!("invalid duration `{n}`: a unit is needed, like `{n}s` or `{n}ms`")))
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
            Err(E::custom(format!("invalid duration `{n}`: a unit is needed, like `{n}s` or `{n}ms`")))
        }

        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Duration, E> {
            Err(E::custom(format!("invalid duration `{n}`: a unit is needed, like `{n}s` or `{n}ms`")))
        }
    }

    /// A required (or defaulted) duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        // `any`, not `str`: a bare number should hear that it lacks a unit.
        d.deserialize_any(DurationVisitor)
    }

    /// An optional duration; `~` means "not set".
    pub mod option {
        use std::fmt;
        use std::time::Duration;

        use serde::de::{self, Deserializer, Visitor};

        struct OptionVisitor;

        impl<'de> Visitor<'de> for OptionVisitor {
            type Value = Option<Duration>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(super::EXPECTING)
            }

            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                super::deserialize(d).map(Some)
            }
        }

        /// See the module docs.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            d.deserialize_option(OptionVisitor)
        }
    }
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
