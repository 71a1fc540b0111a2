//! A group's `policy` as written: one kind and that kind's fields.
//!
//! `policy` is read field by field, each with its type, so a bad value is reported at its own path.
//! Which fields belong is only known once `kind` is (it may come last, or not at all), so a field
//! of another kind, or of none, is reported after the whole mapping was read, as an unknown field.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

/// A policy's `metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawMetric {
    /// CPU percent.
    Cpu,
    /// Memory percent.
    Mem,
    /// The larger of CPU and memory, per member (threshold only).
    Max,
    /// Requests per second, per member (from the balancer).
    Rps,
}

/// A threshold policy's `aggregation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawAggregation {
    /// The mean over members.
    Mean,
    /// The busiest member.
    Max,
}

/// A policy's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawPolicyKind {
    /// High/low thresholds held for a number of samples (the seed's rule).
    Threshold,
    /// Keep the per-member value of a metric near a target.
    Target,
    /// Scale out once the members served a number of requests within a window.
    Requests,
    /// Adjust the group while its alarms are in `alarm` (Heat's scaling policies).
    Alarm,
}

impl RawPolicyKind {
    pub const ALL: [RawPolicyKind; 4] =
        [RawPolicyKind::Threshold, RawPolicyKind::Target, RawPolicyKind::Requests, RawPolicyKind::Alarm];

    /// As written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            RawPolicyKind::Threshold => "threshold",
            RawPolicyKind::Target => "target",
            RawPolicyKind::Requests => "requests",
            RawPolicyKind::Alarm => "alarm",
        }
    }

    /// The fields a policy of this kind takes, `kind` included, in schema order.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            RawPolicyKind::Threshold => &["kind", "metric", "aggregation", "high", "low", "min_up", "min_down"],
            RawPolicyKind::Target => &["kind", "metric", "target", "scale_in_samples"],
            RawPolicyKind::Requests => &["kind", "requests", "window"],
            RawPolicyKind::Alarm => &["kind", "rules"],
        }
    }
}

/// A group's `policy`: `kind` (default `threshold`) and that kind's fields. A field of another
/// kind is an error, as an unknown field is.
#[derive(Debug, Clone, PartialEq)]
pub enum RawPolicy {
    /// `kind: threshold`.
    Threshold(RawThresholdPolicy),
    /// `kind: target`.
    Target(RawTargetPolicy),
    /// `kind: requests`.
    Requests(RawRequestsPolicy),
    /// `kind: alarm`: its `rules` (1 to 16).
    Alarm(Vec<super::RawScalingRule>),
}

impl Default for RawPolicy {
    fn default() -> Self {
        RawPolicy::Threshold(RawThresholdPolicy::default())
    }
}

/// `kind: threshold`: scale out after `min_up` consecutive samples at or above `high`, scale in
/// after `min_down` consecutive samples at or below `low`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawThresholdPolicy {
    /// What is measured: `cpu`, `mem`, `max` (the larger of the two) or `rps`.
    pub metric: RawMetric,
    /// How member values combine: `mean` or `max`.
    pub aggregation: RawAggregation,
    /// The high-water mark: percent, `0 <= low < high <= 100`; for `rps` requests per second,
    /// `0 <= low < high`.
    pub high: f64,
    /// The low-water mark.
    pub low: f64,
    /// Consecutive samples above `high` before a scale-out (at least 1).
    pub min_up: u32,
    /// Consecutive samples below `low` before a scale-in (at least 1).
    pub min_down: u32,
}

impl Default for RawThresholdPolicy {
    fn default() -> Self {
        RawThresholdPolicy {
            metric: default_metric(),
            aggregation: default_aggregation(),
            high: default_high(),
            low: default_low(),
            min_up: default_min_up(),
            min_down: default_min_down(),
        }
    }
}

/// `kind: target`: keep the mean per-member value of `metric` near `target`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTargetPolicy {
    /// What is measured: `cpu`, `mem` or `rps` (required).
    pub metric: RawMetric,
    /// The per-member value to keep: percent for cpu/mem (0 < target <= 100), requests per second
    /// for rps (> 0). Required.
    pub target: f64,
    /// Consecutive samples wanting fewer members before a scale-in (at least 1).
    pub scale_in_samples: u32,
}

/// `kind: requests`: scale out once the members served `requests` requests within `window`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRequestsPolicy {
    /// The trigger: at least 1 (required).
    pub requests: u64,
    /// Over how long requests are counted: 1s to 5m.
    pub window: Duration,
}

/// `policy.metric` of a threshold: max (the seed's conservative choice).
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

/// `policy.scale_in_samples` of a target: 3.
pub fn default_scale_in_samples() -> u32 {
    3
}

/// `policy.window` of a request count: 60s.
pub fn default_window() -> Duration {
    Duration::from_secs(60)
}

impl<'de> Deserialize<'de> for RawPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PolicyVisitor)
    }
}

/// A duration field.
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        flotilla_duration::deserialize(d).map(Dur)
    }
}

/// Every field any kind takes, as written.
#[derive(Default)]
struct Fields {
    kind: Option<RawPolicyKind>,
    metric: Option<RawMetric>,
    aggregation: Option<RawAggregation>,
    high: Option<f64>,
    low: Option<f64>,
    min_up: Option<u32>,
    min_down: Option<u32>,
    target: Option<f64>,
    scale_in_samples: Option<u32>,
    requests: Option<u64>,
    window: Option<Duration>,
    rules: Option<Vec<super::RawScalingRule>>,
}

struct PolicyVisitor;

impl<'de> Visitor<'de> for PolicyVisitor {
    type Value = RawPolicy;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of policy settings (`kind`, then that kind's fields)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawPolicy, A::Error> {
        let mut f = Fields::default();
        let mut keys: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if keys.contains(&key) {
                return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
            }
            match key.as_str() {
                "kind" => f.kind = Some(map.next_value()?),
                "metric" => f.metric = Some(map.next_value()?),
                "aggregation" => f.aggregation = Some(map.next_value()?),
                "high" => f.high = Some(map.next_value()?),
                "low" => f.low = Some(map.next_value()?),
                "min_up" => f.min_up = Some(map.next_value()?),
                "min_down" => f.min_down = Some(map.next_value()?),
                "target" => f.target = Some(map.next_value()?),
                "scale_in_samples" => f.scale_in_samples = Some(map.next_value()?),
                "requests" => f.requests = Some(map.next_value()?),
                "window" => f.window = Some(map.next_value::<Dur>()?.0),
                "rules" => f.rules = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            keys.push(key);
        }
        let kind = f.kind.unwrap_or(RawPolicyKind::Threshold);
        if let Some(key) = keys.iter().find(|k| !kind.fields().contains(&k.as_str())) {
            return Err(not_a_field(key, kind, f.kind.is_none()));
        }
        let missing = |field: &'static str| de::Error::missing_field(field);
        Ok(match kind {
            RawPolicyKind::Threshold => RawPolicy::Threshold(RawThresholdPolicy {
                metric: f.metric.unwrap_or_else(default_metric),
                aggregation: f.aggregation.unwrap_or_else(default_aggregation),
                high: f.high.unwrap_or_else(default_high),
                low: f.low.unwrap_or_else(default_low),
                min_up: f.min_up.unwrap_or_else(default_min_up),
                min_down: f.min_down.unwrap_or_else(default_min_down),
            }),
            RawPolicyKind::Target => RawPolicy::Target(RawTargetPolicy {
                metric: f.metric.ok_or_else(|| missing("metric"))?,
                target: f.target.ok_or_else(|| missing("target"))?,
                scale_in_samples: f.scale_in_samples.unwrap_or_else(default_scale_in_samples),
            }),
            RawPolicyKind::Requests => RawPolicy::Requests(RawRequestsPolicy {
                requests: f.requests.ok_or_else(|| missing("requests"))?,
                window: f.window.unwrap_or_else(default_window),
            }),
            RawPolicyKind::Alarm => RawPolicy::Alarm(f.rules.ok_or_else(|| missing("rules"))?),
        })
    }
}

/// serde's unknown-field message, naming the kind when the field belongs to another one.
fn not_a_field<E: de::Error>(key: &str, kind: RawPolicyKind, defaulted: bool) -> E {
    let owners: Vec<String> = RawPolicyKind::ALL
        .into_iter()
        .filter(|k| k.fields().contains(&key))
        .map(|k| format!("`{}`", k.as_str()))
        .collect();
    if owners.is_empty() {
        return E::unknown_field(key, kind.fields());
    }
    let expected: Vec<String> = kind.fields().iter().map(|f| format!("`{f}`")).collect();
    E::custom(format_args!(
        "unknown field `{key}` for kind `{}`{}, expected one of {} (`{key}` belongs to kind {})",
        kind.as_str(),
        if defaulted { " (the default)" } else { "" },
        expected.join(", "),
        owners.join(" or "),
    ))
}
