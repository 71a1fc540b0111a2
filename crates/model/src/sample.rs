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

/// One reading of one member at one time; a source fills the metrics it knows. A sample merged
/// from several sources keeps each value's own time ([`Sample::at_of`]): a merge never makes an
/// old value look fresh.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub instance: InstanceId,
    /// When the newest of its values was read.
    pub at: Timestamp,
    pub values: Vec<(Metric, f64)>,
    /// Values read before `at` (they came from a slower source), with their own time.
    pub earlier: Vec<(Metric, Timestamp)>,
}

impl Sample {
    pub fn new(instance: InstanceId, at: Timestamp) -> Self {
        Sample { instance, at, values: Vec::new(), earlier: Vec::new() }
    }
    /// When `metric`'s value was read.
    pub fn at_of(&self, metric: Metric) -> Timestamp {
        self.earlier.iter().find(|(m, _)| *m == metric).map_or(self.at, |&(_, t)| t)
    }
    /// The sample without values read before `cutoff` (None if nothing is left).
    pub fn read_since(&self, cutoff: Timestamp) -> Option<Sample> {
        let values: Vec<(Metric, f64)> =
            self.values.iter().copied().filter(|&(m, _)| self.at_of(m) >= cutoff).collect();
        if values.is_empty() || self.at < cutoff {
            return None;
        }
        let earlier = self.earlier.iter().copied().filter(|&(_, t)| t >= cutoff).collect();
        Some(Sample { instance: self.instance.clone(), at: self.at, values, earlier })
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
    /// `max` of two sources is the conservative reading. Each value keeps the time it was read.
    pub fn merge_max(&mut self, other: &Sample) {
        let mut stamps: Vec<(Metric, Timestamp)> = self.values.iter().map(|&(m, _)| (m, self.at_of(m))).collect();
        for &(m, v) in &other.values {
            match self.get(m) {
                Some(cur) if cur >= v => {}
                _ => {
                    self.set(m, v);
                    let t = other.at_of(m);
                    match stamps.iter_mut().find(|(have, _)| *have == m) {
                        Some(slot) => slot.1 = t,
                        None => stamps.push((m, t)),
                    }
                }
            }
        }
        self.at = self.at.max(other.at);
        let at = self.at;
        self.earlier = stamps.into_iter().filter(|&(_, t)| t < at).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_keeps_each_values_time() {
        let id = InstanceId::new("a");
        let pushed = Sample::new(id.clone(), Timestamp(1_000)).with(Metric::Cpu, 5.0).with(Metric::Mem, 40.0);
        let lb = Sample::new(id.clone(), Timestamp(26_000)).with(Metric::RequestRate, 3.0).with(Metric::Mem, 10.0);
        let mut m = lb.clone();
        m.merge_max(&pushed);
        assert_eq!(m.at, Timestamp(26_000));
        assert_eq!((m.get(Metric::Cpu), m.at_of(Metric::Cpu)), (Some(5.0), Timestamp(1_000)));
        assert_eq!(
            (m.get(Metric::Mem), m.at_of(Metric::Mem)),
            (Some(40.0), Timestamp(1_000)),
            "max wins, with its time"
        );
        assert_eq!(m.at_of(Metric::RequestRate), Timestamp(26_000));
        // The other order gives the same reading.
        let mut n = pushed.clone();
        n.merge_max(&lb);
        assert_eq!(
            (n.at, n.at_of(Metric::Cpu), n.at_of(Metric::Mem)),
            (m.at, m.at_of(Metric::Cpu), m.at_of(Metric::Mem))
        );
        // Only what was read since the cutoff is left.
        let fresh = m.read_since(Timestamp(20_000)).unwrap();
        assert_eq!(fresh.values, vec![(Metric::RequestRate, 3.0)]);
        assert!(fresh.earlier.is_empty());
        assert_eq!(m.read_since(Timestamp(30_000)), None);
    }

    #[test]
    fn metric_names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.as_str()), Some(m));
        }
        assert_eq!(Metric::parse("nope"), None);
    }
}
