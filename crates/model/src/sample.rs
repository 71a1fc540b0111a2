use crate::{InstanceId, Timestamp};

/// What a sample measures. Percentages are 0–100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Metric {
    /// CPU busy %, relative to the member's vCPUs.
    Cpu,
    /// Memory used %.
    Mem,
    /// Requests per second served by the member (balancer, over its rate window).
    RequestRate,
    /// Requests the member served within the group's request-count window (balancer).
    Requests,
    /// Requests in flight to the member now (balancer).
    Inflight,
    /// Latency percentiles in milliseconds over the balancer's latency window.
    LatencyP50,
    LatencyP95,
    LatencyP99,
    /// Share of responses that were 5xx or failed, in percent (balancer).
    ErrorRate,
}

impl Metric {
    pub const ALL: [Metric; 9] = [
        Metric::Cpu,
        Metric::Mem,
        Metric::RequestRate,
        Metric::Requests,
        Metric::Inflight,
        Metric::LatencyP50,
        Metric::LatencyP95,
        Metric::LatencyP99,
        Metric::ErrorRate,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Mem => "mem",
            Metric::RequestRate => "rps",
            Metric::Requests => "requests",
            Metric::Inflight => "inflight",
            Metric::LatencyP50 => "p50_ms",
            Metric::LatencyP95 => "p95_ms",
            Metric::LatencyP99 => "p99_ms",
            Metric::ErrorRate => "error_pct",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "cpu" => Metric::Cpu,
            "mem" => Metric::Mem,
            "rps" => Metric::RequestRate,
            "requests" => Metric::Requests,
            "inflight" => Metric::Inflight,
            "p50_ms" => Metric::LatencyP50,
            "p95_ms" => Metric::LatencyP95,
            "p99_ms" => Metric::LatencyP99,
            "error_pct" => Metric::ErrorRate,
            _ => return None,
        })
    }
}

/// One reading of one member at one time; a source fills the metrics it knows.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub instance: InstanceId,
    pub at: Timestamp,
    pub values: Vec<(Metric, f64)>,
}

impl Sample {
    pub fn new(instance: InstanceId, at: Timestamp) -> Self {
        Sample { instance, at, values: Vec::new() }
    }
    pub fn with(mut self, metric: Metric, value: f64) -> Self {
        self.set(metric, value);
        self
    }
    pub fn set(&mut self, metric: Metric, value: f64) {
        match self.values.iter_mut().find(|(m, _)| *m == metric) {
            Some(slot) => slot.1 = value,
            None => self.values.push((metric, value)),
        }
    }
    pub fn get(&self, metric: Metric) -> Option<f64> {
        self.values.iter().find(|(m, _)| *m == metric).map(|(_, v)| *v)
    }
    /// Merges another source's reading of the same member: the larger value wins per metric, so
    /// `max` of two sources is the conservative reading.
    pub fn merge_max(&mut self, other: &Sample) {
        for &(m, v) in &other.values {
            match self.get(m) {
                Some(cur) if cur >= v => {}
                _ => self.set(m, v),
            }
        }
        self.at = self.at.max(other.at);
    }
}

#[cfg(test)]
mod tests {
    use super::Metric;

    #[test]
    fn metric_names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.as_str()), Some(m));
        }
        assert_eq!(Metric::parse("nope"), None);
    }
}
