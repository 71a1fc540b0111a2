use std::time::Duration;

use crate::{AlarmDef, AlarmPolicySpec, Metric};

/// A group's name; unique per controller.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub String);

impl GroupId {
    pub fn new(s: impl Into<String>) -> Self {
        GroupId(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for GroupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a group reacts to sustained load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Add members on high load, remove members on low load.
    Scale,
    /// The seed's cycle: high load adds a clone; low load with a clone retires the baseline (the
    /// primary) and the clone becomes the new primary.
    Handover,
}

/// Which member metric a threshold policy watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricChoice {
    Cpu,
    Mem,
    /// The larger of CPU and memory, per member (the seed's conservative default).
    Max,
    /// The member's request rate ([`Metric::RequestRate`], from the balancer): `high` and `low` are
    /// requests per second, not percent.
    Rps,
}

/// Which member metric a target-tracking policy keeps near its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetMetric {
    /// CPU busy %, [`Metric::Cpu`].
    Cpu,
    /// Memory used %, [`Metric::Mem`].
    Mem,
    /// Requests per second, [`Metric::RequestRate`].
    Rps,
}

impl TargetMetric {
    /// The sample metric behind the choice.
    pub fn metric(self) -> Metric {
        match self {
            TargetMetric::Cpu => Metric::Cpu,
            TargetMetric::Mem => Metric::Mem,
            TargetMetric::Rps => Metric::RequestRate,
        }
    }
}

/// How member values combine into the group's value (threshold policy only: target tracking always
/// averages, request count always sums).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    Mean,
    Max,
}

/// Which member a scale-in removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Victim {
    Oldest,
    Newest,
    /// The member with the lowest current value of the policy's metric.
    LeastBusy,
}

/// The seed's threshold rule: `high`/`low` percent (requests per second for [`MetricChoice::Rps`]),
/// `min_up`/`min_down` consecutive samples.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdSpec {
    pub metric: MetricChoice,
    pub high: f64,
    pub low: f64,
    pub min_up: u32,
    pub min_down: u32,
}

/// Target tracking: keep the mean per-member value of `metric` near `target`. The group wants
/// `ceil(running × value / target)` members; values within ±10 % of `target` want no change.
/// A scale-out follows one sample; a scale-in needs `scale_in_samples` consecutive samples.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    pub metric: TargetMetric,
    /// Percent for cpu/mem, requests per second for rps; greater than 0.
    pub target: f64,
    /// Consecutive samples (with every member reporting) that want fewer members before a scale-in.
    pub scale_in_samples: u32,
}

/// Request count (the seed-002 trigger): `requests` requests within `window`, summed over the
/// members ([`Metric::Requests`], which the balancer counts over `window`), scale out. It never
/// scales in.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestCountSpec {
    pub requests: u64,
    pub window: Duration,
}

/// The rule a group scales by.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicySpec {
    /// The seed's rule: streaks of samples above `high` or below `low`.
    Threshold(ThresholdSpec),
    /// Keep the per-member value of a metric near a target.
    TargetTracking(TargetSpec),
    /// Scale out once the members served `requests` requests within `window`.
    RequestCount(RequestCountSpec),
    /// Adjust the group while its alarms are in `alarm` (seed 003: Heat scaling policies driven by
    /// Aodh alarms).
    Alarm(AlarmPolicySpec),
}

impl PolicySpec {
    /// The threshold rule, if this is one.
    pub fn threshold(&self) -> Option<&ThresholdSpec> {
        match self {
            PolicySpec::Threshold(t) => Some(t),
            _ => None,
        }
    }

    /// The threshold rule, if this is one, to change it (tests, tools).
    pub fn threshold_mut(&mut self) -> Option<&mut ThresholdSpec> {
        match self {
            PolicySpec::Threshold(t) => Some(t),
            _ => None,
        }
    }

    /// The name of the kind, as the config file writes it: `threshold`, `target`, `requests` or
    /// `alarm`.
    pub fn kind(&self) -> &'static str {
        match self {
            PolicySpec::Threshold(_) => "threshold",
            PolicySpec::TargetTracking(_) => "target",
            PolicySpec::RequestCount(_) => "requests",
            PolicySpec::Alarm(_) => "alarm",
        }
    }
}

/// What a new member is made from, whatever the provider. A provider's own template (image,
/// flavor, domain XML, ...) is given to it per group when it is built, not carried here.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InstanceSpec {
    /// Baseline members are `<base>_N`.
    pub base_name: String,
    /// Clones (handover mode) are `<clone_base>_N`.
    pub clone_base: String,
    pub vcpus: u32,
}

/// A validated group: everything the decision core and the controller need.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    pub id: GroupId,
    pub mode: Mode,
    pub min: u32,
    pub max: u32,
    pub increment: u32,
    pub cooldown_up: Duration,
    pub cooldown_down: Duration,
    pub interval: Duration,
    /// A sample older than this is stale and never counts towards a scale-in.
    pub stale_after: Duration,
    pub policy: PolicySpec,
    /// How a threshold policy combines member values; the other kinds ignore it.
    pub aggregation: Aggregation,
    pub victim: Victim,
    pub drain_timeout: Duration,
    pub instance: InstanceSpec,
    /// A fingerprint of what members are made from (the template, the image it names). Members
    /// carry the version they were made from in their [`TEMPLATE_TAG`]; a member with another
    /// version is outdated and replaced by a rollout. Empty: unversioned, nothing is ever outdated.
    pub template_version: String,
    /// How outdated members are replaced; `None`: they are left alone.
    pub rollout: Option<Rollout>,
    /// When a member failing its balancer health check is replaced; `None`: never (no balancer,
    /// or turned off).
    pub health_replace: Option<HealthReplace>,
    /// Members report in through the API (`checkin`); `None`: no check-ins expected.
    pub checkin: Option<Checkin>,
    /// The group's alarms (an `alarm` policy's rules name them).
    pub alarms: Vec<AlarmDef>,
}

/// The instance tag holding the template version a member was made from.
pub const TEMPLATE_TAG: &str = "template";

/// The instance tag a provider may set at create: milliseconds from create to serving.
pub const READY_TAG: &str = "ready_ms";

/// Facts of a member's creation that a provider reports at create but not at every list: the
/// controller keeps them in the store across lists.
pub const CREATE_TAGS: [&str; 2] = [TEMPLATE_TAG, READY_TAG];

/// Rolling replacement of outdated members: one batch at a time, each new member healthy behind the
/// balancer before an old one drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    /// Members replaced per batch (the seed's `maxUnavailable`), at least 1. The batch's new members
    /// are created first, so the group briefly has up to this many members above its size.
    pub max_unavailable: u32,
}

/// Replacement of members that exist but do not serve (AWS's ELB health checks on an Auto
/// Scaling group): a member failing its health check for `after`, once it is older than `grace`,
/// is replaced new before old, at most the rollout's `max_unavailable` (else 1) at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthReplace {
    /// Counted from the member's creation: a member still booting is never judged.
    pub grace: Duration,
    /// How long a member must fail its health check before it is replaced.
    pub after: Duration,
}

/// Check-ins (seed 004's idea): each member calls the API when it is up and then every `every`; a
/// member that stays silent past `every` (or reports that it fails) counts as failing its health
/// check, and is replaced like one once it is older than `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkin {
    pub every: Duration,
    pub grace: Duration,
}

impl GroupSpec {
    /// A spec with the seed's defaults, for tests and the built-in demo.
    pub fn example(id: &str) -> Self {
        GroupSpec {
            id: GroupId::new(id),
            mode: Mode::Handover,
            min: 1,
            max: 2,
            increment: 1,
            cooldown_up: Duration::from_secs(0),
            cooldown_down: Duration::from_secs(0),
            interval: Duration::from_secs(5),
            stale_after: Duration::from_secs(15),
            policy: PolicySpec::Threshold(ThresholdSpec {
                metric: MetricChoice::Max,
                high: 80.0,
                low: 20.0,
                min_up: 4,
                min_down: 4,
            }),
            aggregation: Aggregation::Mean,
            victim: Victim::Oldest,
            drain_timeout: Duration::from_secs(30),
            instance: InstanceSpec { base_name: id.to_string(), clone_base: format!("{id}_clone"), vcpus: 1 },
            template_version: String::new(),
            rollout: Some(Rollout { max_unavailable: 1 }),
            health_replace: None,
            checkin: None,
            alarms: Vec::new(),
        }
    }
}
