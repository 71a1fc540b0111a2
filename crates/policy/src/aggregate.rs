//! Per-member values and their aggregation into the group's numbers.

use flotilla_model::{Aggregation, GroupSpec, Metric, MetricChoice, PolicySpec, Sample, Timestamp};

use crate::view::Member;

/// A reading of one metric; NaN is no reading.
fn get(sample: &Sample, metric: Metric) -> Option<f64> {
    sample.get(metric).filter(|v| !v.is_nan())
}

/// A member's value for a threshold policy's metric: cpu, mem, the larger of the two (using
/// whichever exists), or the request rate. A missing metric, or a NaN reading, is no value.
pub fn member_value(choice: MetricChoice, sample: &Sample) -> Option<f64> {
    match choice {
        MetricChoice::Cpu => get(sample, Metric::Cpu),
        MetricChoice::Mem => get(sample, Metric::Mem),
        MetricChoice::Max => match (get(sample, Metric::Cpu), get(sample, Metric::Mem)) {
            (Some(c), Some(m)) => Some(c.max(m)),
            (c, m) => c.or(m),
        },
        MetricChoice::Rps => get(sample, Metric::RequestRate),
    }
}

/// A member's value for any policy: the threshold's metric, the target's metric, or the requests
/// within the window. Also what `Victim::LeastBusy` ranks by.
pub fn policy_value(policy: &PolicySpec, sample: &Sample) -> Option<f64> {
    match policy {
        PolicySpec::Threshold(t) => member_value(t.metric, sample),
        PolicySpec::TargetTracking(t) => get(sample, t.metric.metric()),
        PolicySpec::RequestCount(_) => get(sample, Metric::Requests),
        PolicySpec::Alarm(_) => None,
    }
}

/// The group's numbers at one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Readings {
    pub cpu: Option<f64>,
    pub mem: Option<f64>,
    /// What the policy compares: the threshold's aggregation of its metric, the target's mean, or
    /// the sum of the requests.
    pub value: Option<f64>,
    /// Running members with a fresh sample.
    pub sampled: u32,
    pub running: u32,
    /// Every running member has a fresh sample carrying the policy's metric (or requests).
    pub complete: bool,
    /// When the newest value the policy reads was read: a tick whose newest is not newer than the
    /// last one counted counts nothing, so one reading counts once however often it is served.
    pub newest: Option<Timestamp>,
}

/// Running sum/max of one metric.
#[derive(Debug, Clone, Copy)]
struct Acc {
    sum: f64,
    max: f64,
    n: u32,
}

impl Acc {
    const EMPTY: Acc = Acc { sum: 0.0, max: f64::NEG_INFINITY, n: 0 };

    fn add(&mut self, v: Option<f64>) {
        if let Some(v) = v {
            self.sum += v;
            self.max = self.max.max(v);
            self.n += 1;
        }
    }

    fn get(&self, how: Aggregation) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        Some(match how {
            Aggregation::Mean => self.sum / f64::from(self.n),
            Aggregation::Max => self.max,
        })
    }

    fn sum(&self) -> Option<f64> {
        (self.n > 0).then_some(self.sum)
    }
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Whether a policy's value reads `metric`.
fn reads(policy: &PolicySpec, metric: Metric) -> bool {
    match policy {
        PolicySpec::Threshold(t) => match t.metric {
            MetricChoice::Cpu => metric == Metric::Cpu,
            MetricChoice::Mem => metric == Metric::Mem,
            MetricChoice::Max => matches!(metric, Metric::Cpu | Metric::Mem),
            MetricChoice::Rps => metric == Metric::RequestRate,
        },
        PolicySpec::TargetTracking(t) => metric == t.metric.metric(),
        PolicySpec::RequestCount(_) => metric == Metric::Requests,
        PolicySpec::Alarm(_) => false,
    }
}

/// Aggregates the fresh values of the running members: a value older than `stale_after` does not
/// count, whatever other values of the same sample were read since.
pub(crate) fn read(spec: &GroupSpec, running: &[Member<'_>], now: Timestamp) -> Readings {
    let (mut cpu, mut mem, mut value) = (Acc::EMPTY, Acc::EMPTY, Acc::EMPTY);
    let mut sampled = 0usize;
    let mut newest: Option<Timestamp> = None;
    let cutoff = Timestamp::from_millis(now.as_millis().saturating_sub(duration_ms(spec.stale_after)));
    for sample in running.iter().filter_map(|m| m.fresh) {
        // Borrowed unless a value is older than the sample (merged from a slower source).
        let trimmed;
        let s = if sample.earlier.iter().any(|&(_, t)| t < cutoff) {
            match sample.read_since(cutoff) {
                Some(t) => {
                    trimmed = t;
                    &trimmed
                }
                None => continue,
            }
        } else {
            sample
        };
        sampled += 1;
        let v = policy_value(&spec.policy, s);
        if v.is_some() {
            let read_at = s.values.iter().filter(|(m, _)| reads(&spec.policy, *m)).map(|&(m, _)| s.at_of(m)).max();
            newest = newest.max(read_at);
        }
        cpu.add(get(s, Metric::Cpu));
        mem.add(get(s, Metric::Mem));
        value.add(v);
    }
    let how = spec.aggregation;
    Readings {
        cpu: cpu.get(how),
        mem: mem.get(how),
        value: match spec.policy {
            PolicySpec::Threshold(_) => value.get(how),
            PolicySpec::TargetTracking(_) => value.get(Aggregation::Mean),
            PolicySpec::RequestCount(_) | PolicySpec::Alarm(_) => value.sum(),
        },
        sampled: count(sampled),
        running: count(running.len()),
        complete: !running.is_empty() && value.n as usize == running.len(),
        newest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::InstanceId;

    fn sample(vals: &[(Metric, f64)]) -> Sample {
        vals.iter().fold(Sample::new(InstanceId::new("a"), Timestamp(1)), |s, &(m, v)| s.with(m, v))
    }

    /// The choice, the sample's values, the expected member value.
    type Case<'a> = (MetricChoice, &'a [(Metric, f64)], Option<f64>);

    #[test]
    fn member_value_table() {
        use MetricChoice::*;
        let nan = f64::NAN;
        #[rustfmt::skip]
        let cases: &[Case] = &[
            (Cpu, &[(Metric::Cpu, 10.0), (Metric::Mem, 90.0)], Some(10.0)),
            (Mem, &[(Metric::Cpu, 10.0), (Metric::Mem, 90.0)], Some(90.0)),
            (Max, &[(Metric::Cpu, 10.0), (Metric::Mem, 90.0)], Some(90.0)),
            (Max, &[(Metric::Cpu, 95.0), (Metric::Mem, 90.0)], Some(95.0)),
            (Max, &[(Metric::Cpu, 42.0)], Some(42.0)),
            (Max, &[(Metric::Mem, 43.0)], Some(43.0)),
            (Max, &[(Metric::RequestRate, 500.0)], None),
            (Rps, &[(Metric::RequestRate, 500.0), (Metric::Cpu, 90.0)], Some(500.0)),
            (Rps, &[(Metric::Cpu, 90.0), (Metric::Requests, 7.0)], None),
            (Rps, &[(Metric::RequestRate, nan)], None),
            (Cpu, &[(Metric::Mem, 50.0)], None),
            (Mem, &[(Metric::Cpu, 50.0)], None),
            (Cpu, &[], None),
            (Cpu, &[(Metric::Cpu, nan)], None),
            (Max, &[(Metric::Cpu, nan), (Metric::Mem, 7.0)], Some(7.0)),
        ];
        for (i, (choice, vals, want)) in cases.iter().enumerate() {
            assert_eq!(member_value(*choice, &sample(vals)), *want, "case {i}: {choice:?} {vals:?}");
        }
    }
}
