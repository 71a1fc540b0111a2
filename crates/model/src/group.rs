use std::collections::BTreeMap;
use std::time::Duration;

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
}

/// How member values combine into the group's value.
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

/// The seed's threshold rule: `high`/`low` percent, `min_up`/`min_down` consecutive samples.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdSpec {
    pub metric: MetricChoice,
    pub high: f64,
    pub low: f64,
    pub min_up: u32,
    pub min_down: u32,
}

/// What a new member is made from. Providers read the fields they understand.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InstanceSpec {
    /// Baseline members are `<base>_N`.
    pub base_name: String,
    /// Clones (handover mode) are `<clone_base>_N`.
    pub clone_base: String,
    pub vcpus: u32,
    /// Provider-specific settings (template, image, flavor, ...), already validated.
    pub settings: BTreeMap<String, String>,
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
    pub threshold: ThresholdSpec,
    pub aggregation: Aggregation,
    pub victim: Victim,
    pub drain_timeout: Duration,
    pub instance: InstanceSpec,
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
            threshold: ThresholdSpec { metric: MetricChoice::Max, high: 80.0, low: 20.0, min_up: 4, min_down: 4 },
            aggregation: Aggregation::Mean,
            victim: Victim::Oldest,
            drain_timeout: Duration::from_secs(30),
            instance: InstanceSpec {
                base_name: id.to_string(),
                clone_base: format!("{id}_clone"),
                vcpus: 1,
                settings: BTreeMap::new(),
            },
        }
    }
}
