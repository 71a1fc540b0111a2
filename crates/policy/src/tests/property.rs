//! Property-style tests: many random views and random evolving groups, driven by a small xorshift
//! RNG (fixed seeds, so a failure replays). Every decision must keep the safety invariants.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_model::{
    Aggregation, Decision, GroupSpec, HoldReason, Instance, InstanceId, InstanceState, Metric, MetricChoice, Mode,
    PolicySpec, PolicyState, RequestCountSpec, Sample, TargetMetric, TargetSpec, ThresholdSpec, Timestamp, Victim,
};

use super::{assert_safe, run};
use crate::aggregate::policy_value;
use crate::TARGET_TOLERANCE;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn pct(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.below(10_001) as f64 / 10_000.0) * (hi - lo)
    }
}

fn random_spec(rng: &mut XorShift) -> GroupSpec {
    let mut s = GroupSpec::example("g");
    s.mode = rng.pick(&[Mode::Scale, Mode::Handover]);
    s.min = rng.range(0, 3) as u32;
    s.max = s.min + rng.range(0, 4) as u32;
    if rng.chance(3) {
        s.max = rng.range(0, 2) as u32; // invalid or tight bounds must stay safe too
    }
    s.increment = rng.range(1, 3) as u32;
    s.cooldown_up = Duration::from_secs(rng.pick(&[0, 0, 30, 60, 120]));
    s.cooldown_down = Duration::from_secs(rng.pick(&[0, 0, 30, 90, 300]));
    s.stale_after = Duration::from_secs(rng.range(5, 30));
    s.policy = match rng.below(4) {
        0 => PolicySpec::TargetTracking(TargetSpec {
            metric: rng.pick(&[TargetMetric::Cpu, TargetMetric::Mem, TargetMetric::Rps]),
            target: rng.pct(10.0, 90.0),
            scale_in_samples: rng.range(1, 5) as u32,
        }),
        1 => PolicySpec::RequestCount(RequestCountSpec {
            requests: rng.range(1, 30),
            window: Duration::from_secs(rng.range(1, 300)),
        }),
        _ => PolicySpec::Threshold(ThresholdSpec {
            metric: rng.pick(&[MetricChoice::Cpu, MetricChoice::Mem, MetricChoice::Max, MetricChoice::Rps]),
            high: rng.pct(55.0, 95.0),
            low: rng.pct(5.0, 45.0),
            min_up: rng.range(1, 5) as u32,
            min_down: rng.range(1, 5) as u32,
        }),
    };
    s.aggregation = rng.pick(&[Aggregation::Mean, Aggregation::Max]);
    s.victim = rng.pick(&[Victim::Oldest, Victim::Newest, Victim::LeastBusy]);
    s
}

fn random_sample(rng: &mut XorShift, id: &InstanceId, at: Timestamp, band: (f64, f64)) -> Sample {
    let mut s = Sample::new(id.clone(), at);
    let requests = |rng: &mut XorShift| rng.pct(band.0, band.1).div_euclid(5.0);
    match rng.below(12) {
        0 => {}
        1 => s.set(Metric::Cpu, rng.pct(band.0, band.1)),
        2 => s.set(Metric::Mem, rng.pct(band.0, band.1)),
        3 => s.set(Metric::RequestRate, rng.pct(band.0, band.1)),
        4 => s.set(Metric::Requests, requests(rng)),
        _ => {
            s.set(Metric::Cpu, rng.pct(band.0, band.1));
            s.set(Metric::Mem, rng.pct(band.0, band.1));
            s.set(Metric::RequestRate, rng.pct(band.0, band.1));
            s.set(Metric::Requests, requests(rng));
        }
    }
    s
}

fn band(rng: &mut XorShift) -> (f64, f64) {
    rng.pick(&[(0.0, 100.0), (85.0, 100.0), (0.0, 10.0), (30.0, 60.0)])
}

/// The policy's value of each running member with a fresh sample that has one.
fn fresh_values(spec: &GroupSpec, members: &[Instance], latest: &[Sample], now: Timestamp) -> Vec<Option<f64>> {
    members
        .iter()
        .filter(|m| m.is_running())
        .map(|m| {
            latest
                .iter()
                .filter(|s| s.instance == m.id && now.since(s.at) <= spec.stale_after)
                .max_by_key(|s| s.at)
                .and_then(|s| policy_value(&spec.policy, s))
        })
        .collect()
}

/// Every running member has a fresh sample with a value of the policy's metric.
fn complete(spec: &GroupSpec, members: &[Instance], latest: &[Sample], now: Timestamp) -> bool {
    let values = fresh_values(spec, members, latest, now);
    !values.is_empty() && values.iter().all(Option::is_some)
}

/// Streak lengths an action needs: (up, down); `None` for a kind that never scales in.
fn streaks(spec: &GroupSpec) -> (u32, Option<u32>) {
    match &spec.policy {
        PolicySpec::Threshold(t) => (t.min_up, Some(t.min_down)),
        PolicySpec::TargetTracking(t) => (1, Some(t.scale_in_samples)),
        PolicySpec::RequestCount(_) => (1, None),
        PolicySpec::Alarm(_) => unreachable!("the property tests generate sample-driven kinds"),
    }
}

/// An independent reading of the target-tracking rule: the unbounded and the bounded member count
/// the current samples ask for.
fn target_oracle(t: &TargetSpec, spec: &GroupSpec, running: u32, values: &[Option<f64>]) -> Option<(f64, u32)> {
    let vals: Vec<f64> = values.iter().flatten().copied().collect();
    if vals.is_empty() {
        return None;
    }
    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
    let raw = if (mean - t.target).abs() <= t.target * TARGET_TOLERANCE {
        f64::from(running)
    } else {
        (f64::from(running) * mean / t.target).ceil()
    };
    let bounded = (raw.min(f64::from(spec.max)) as u32).max(spec.min.max(1)).min(spec.max);
    Some((raw, bounded))
}

const REPAIRS: [&str; 3] = ["replace failed members", "below min", "above max"];

fn reason_of(d: &Decision) -> &str {
    match d {
        Decision::Hold(_) => "",
        Decision::ScaleOut { reason, .. }
        | Decision::ScaleIn { reason, .. }
        | Decision::Handover { reason, .. }
        | Decision::Replace { reason, .. } => reason,
    }
}

const ALL_KINDS: [&str; 11] = [
    "hold steady",
    "hold no-data",
    "hold cooldown",
    "hold in-progress",
    "hold at-bound",
    "out below-min",
    "out streak",
    "in failed",
    "in above-max",
    "in streak",
    "handover",
];

/// Decisions seen, per policy kind.
#[derive(Default, Debug)]
struct Seen {
    by_kind: BTreeMap<(&'static str, &'static str), usize>,
}

impl Seen {
    fn add(&mut self, spec: &GroupSpec, d: &Decision) {
        let kind = match d {
            Decision::Hold(HoldReason::Steady) => "hold steady",
            Decision::Hold(HoldReason::NoData) => "hold no-data",
            Decision::Hold(HoldReason::Cooldown { .. }) => "hold cooldown",
            Decision::Hold(HoldReason::InProgress) => "hold in-progress",
            Decision::Hold(HoldReason::AtBound) => "hold at-bound",
            Decision::ScaleOut { reason, .. } if reason == "below min" => "out below-min",
            Decision::ScaleOut { .. } => "out streak",
            Decision::ScaleIn { reason, .. } if reason == "replace failed members" => "in failed",
            Decision::ScaleIn { reason, .. } if reason == "above max" => "in above-max",
            Decision::ScaleIn { .. } => "in streak",
            Decision::Handover { .. } => "handover",
            // The generated specs are unversioned: a rollout would be a bug.
            Decision::Replace { .. } => panic!("a rollout batch for an unversioned group: {d:?}"),
        };
        *self.by_kind.entry((spec.policy.kind(), kind)).or_default() += 1;
    }
    /// Every policy kind made each of `kinds`, except the scale-ins request count never makes.
    fn assert_covered(&self, kinds: &[&str]) {
        for policy in ["threshold", "target", "requests"] {
            for &kind in kinds {
                if policy == "requests" && matches!(kind, "in streak" | "handover") {
                    assert!(!self.by_kind.contains_key(&(policy, kind)), "{policy} made {kind}");
                    continue;
                }
                let n = self.by_kind.get(&(policy, kind)).copied().unwrap_or(0);
                assert!(n > 0, "{policy} never made {kind}: {:?}", self.by_kind);
            }
        }
    }
}

/// Checks one decide call against every invariant; returns the decision and the new state.
#[allow(clippy::too_many_arguments)]
fn check_tick(
    spec: &GroupSpec,
    members: &[Instance],
    latest: &[Sample],
    primary: Option<&InstanceId>,
    pending: bool,
    old: &PolicyState,
    now: Timestamp,
    ctx: &str,
) -> (Decision, PolicyState) {
    let (e, st) = run(spec, members, latest, primary, pending, old, now);
    let d = &e.decision;
    assert_safe(spec, members, d, ctx);

    // Pure.
    assert_eq!(run(spec, members, latest, primary, pending, old, now), (e.clone(), st), "{ctx}: not pure");

    // The numbers.
    let running = members.iter().filter(|m| m.is_running()).count() as u32;
    assert_eq!(e.running, running, "{ctx}");
    assert!(e.sampled <= e.running, "{ctx}");
    assert_eq!((e.up_count, e.down_count), (st.up_count, st.down_count), "{ctx}");
    assert!(st.last_sample_at >= old.last_sample_at, "{ctx}: last_sample_at went back");

    // In progress: nothing changes.
    if *d == Decision::Hold(HoldReason::InProgress) {
        assert_eq!(st, *old, "{ctx}: InProgress changed the state");
    }

    let reason = reason_of(d);
    let repair = REPAIRS.contains(&reason);
    let since = old.last_action().map(|at| now.since(at));
    let ok_after = |cd: Duration| since.is_none_or(|s| s >= cd);
    match d {
        Decision::Hold(_) => {
            assert_eq!((st.last_scale_out, st.last_scale_in), (old.last_scale_out, old.last_scale_in), "{ctx}");
        }
        Decision::ScaleIn { .. } if reason == "replace failed members" => {
            assert_eq!((st.last_scale_out, st.last_scale_in), (old.last_scale_out, old.last_scale_in), "{ctx}");
        }
        _ => {
            assert_eq!((st.up_count, st.down_count), (0, 0), "{ctx}: counters not reset after {d:?}");
            let stamped = match d {
                Decision::ScaleOut { .. } => st.last_scale_out,
                _ => st.last_scale_in,
            };
            assert_eq!(stamped, Some(now), "{ctx}: action not stamped: {d:?}");
        }
    }
    if !repair {
        let (min_up, min_down) = streaks(spec);
        let values = fresh_values(spec, members, latest, now);
        let active =
            members.iter().filter(|m| matches!(m.state, InstanceState::Creating | InstanceState::Running)).count();
        match (&spec.policy, d) {
            (PolicySpec::TargetTracking(t), Decision::ScaleOut { count, .. }) => {
                let (raw, desired) = target_oracle(t, spec, running, &values).expect("data");
                assert!(raw > f64::from(running), "{ctx}: target scale-out without wanting more: {d:?}");
                let want = if spec.mode == Mode::Handover { 1 } else { desired as usize - active };
                assert_eq!(*count as usize, want, "{ctx}: target scale-out by the wrong count");
            }
            (PolicySpec::TargetTracking(t), Decision::ScaleIn { victims, .. }) => {
                let (raw, desired) = target_oracle(t, spec, running, &values).expect("data");
                assert!(raw < f64::from(running), "{ctx}: target scale-in without wanting fewer: {d:?}");
                assert_eq!(victims.len() as u32, (running - desired).min(spec.increment.max(1)), "{ctx}");
            }
            (PolicySpec::TargetTracking(t), Decision::Handover { .. }) => {
                let (raw, _) = target_oracle(t, spec, running, &values).expect("data");
                assert!(raw < f64::from(running), "{ctx}: target handover without wanting fewer: {d:?}");
            }
            (PolicySpec::RequestCount(r), Decision::ScaleOut { count, .. }) => {
                let sum: f64 = values.iter().flatten().sum();
                assert!(sum >= r.requests as f64, "{ctx}: request scale-out below the trigger: {sum}");
                let room = (spec.max as usize).saturating_sub(active);
                let want = if spec.mode == Mode::Handover { 1 } else { spec.increment.max(1) as usize };
                assert_eq!(*count as usize, want.min(room), "{ctx}");
            }
            _ => {}
        }
        match d {
            Decision::ScaleOut { .. } => {
                assert!(ok_after(spec.cooldown_up), "{ctx}: scale-out in cooldown");
                assert!(old.up_count + 1 >= min_up, "{ctx}: scale-out without a streak");
            }
            Decision::ScaleIn { .. } | Decision::Handover { .. } => {
                let min_down = min_down.unwrap_or_else(|| panic!("{ctx}: {} scaled in: {d:?}", spec.policy.kind()));
                assert!(ok_after(spec.cooldown_down), "{ctx}: scale-in in cooldown");
                assert!(old.down_count + 1 >= min_down, "{ctx}: scale-in without a streak");
                // Stale, missing or partial data never scales in.
                assert!(complete(spec, members, latest, now), "{ctx}: scale-in on partial data: {d:?}");
                let running_after = running as usize
                    - match d {
                        Decision::ScaleIn { victims, .. } => victims.len(),
                        _ => 1,
                    };
                assert!(running_after >= spec.min.max(1) as usize, "{ctx}: scale-in below min");
            }
            Decision::Replace { .. } => panic!("{ctx}: a rollout batch for an unversioned group: {d:?}"),
            Decision::Hold(_) => {}
        }
    }

    // Calling again on the same data never counts further, and never starts a streak action.
    let (e2, st2) = run(spec, members, latest, primary, pending, &st, now);
    assert!(st2.up_count <= st.up_count && st2.down_count <= st.down_count, "{ctx}: second call counted");
    assert_eq!(st2.last_sample_at, st.last_sample_at, "{ctx}");
    if d.is_action() && !matches!(d, Decision::ScaleIn { reason, .. } if reason == "replace failed members") {
        // Counters were reset: only a repair can follow on the same data.
        assert!(!e2.decision.is_action() || REPAIRS.contains(&reason_of(&e2.decision)), "{ctx}: acted twice");
    }
    (e.decision, st)
}

#[test]
fn random_views_keep_the_invariants() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut seen = Seen::default();
    for i in 0..30_000 {
        let spec = random_spec(&mut rng);
        let now = Timestamp(1_000_000_000 + rng.below(1_000_000));
        let calm = rng.chance(75);
        let n = rng.range(0, 7);
        let members: Vec<Instance> = (0..n)
            .map(|k| {
                let mut m = Instance::new(format!("m{k}"), &spec.id, Timestamp(rng.below(100) * 1000));
                m.state = match rng.below(100) {
                    _ if calm && !rng.chance(4) => InstanceState::Running,
                    0..=59 => InstanceState::Running,
                    60..=69 => InstanceState::Creating,
                    70..=79 => InstanceState::Draining,
                    80..=89 => InstanceState::Deleting,
                    _ => InstanceState::Failed("broken".into()),
                };
                m
            })
            .collect();
        let b = band(&mut rng);
        let mut latest = Vec::new();
        for m in &members {
            match rng.below(10) {
                0 => {}
                1 => latest.push(random_sample(&mut rng, &m.id, Timestamp(now.0 - 60_000), b)),
                _ => {
                    let age = rng.below(spec.stale_after.as_millis() as u64 + 1);
                    latest.push(random_sample(&mut rng, &m.id, Timestamp(now.0 - age), b));
                }
            }
        }
        let bogus = InstanceId::new("gone");
        let primary = match rng.below(3) {
            0 => None,
            1 if !members.is_empty() => Some(&members[rng.below(members.len() as u64) as usize].id),
            _ => Some(&bogus),
        };
        let stamp = |rng: &mut XorShift| rng.chance(50).then(|| Timestamp(now.0 - rng.below(400_000)));
        let old = PolicyState {
            up_count: rng.range(0, 6) as u32,
            down_count: rng.range(0, 6) as u32,
            last_sample_at: Timestamp(now.0 - rng.below(40_000)),
            last_scale_out: stamp(&mut rng),
            last_scale_in: stamp(&mut rng),
        };
        let pending = rng.chance(5);
        let ctx = format!("view #{i}");
        let (d, _) = check_tick(&spec, &members, &latest, primary, pending, &old, now, &ctx);
        seen.add(&spec, &d);
    }
    seen.assert_covered(&ALL_KINDS);
}

/// A group living through load phases: the controller applies most decisions (sometimes an
/// operation fails), members come up slowly, sometimes fail, and samples go missing or stale.
#[test]
fn random_sequences_keep_the_invariants() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut seen = Seen::default();
    for seq in 0..300 {
        let mut spec = random_spec(&mut rng);
        if spec.max == 0 {
            spec.max = 2;
        }
        spec.min = spec.min.min(spec.max);
        let mut now = Timestamp(1_000_000_000);
        let mut next_id = 0u32;
        let mut members: Vec<Instance> = Vec::new();
        let mut primary: Option<InstanceId> = None;
        let mut state = PolicyState::default();
        let mut stale: BTreeMap<InstanceId, Sample> = BTreeMap::new();
        let mut pending = false;
        let mut b = band(&mut rng);
        for tick in 0..200 {
            now = now.plus(Duration::from_millis(5_000 + rng.below(2_000)));
            if rng.chance(8) {
                b = band(&mut rng);
            }
            // The world moves on.
            members.retain(|m| m.state != InstanceState::Deleting || rng.chance(30));
            for m in &mut members {
                m.state = match &m.state {
                    InstanceState::Creating if rng.chance(60) => {
                        if rng.chance(5) {
                            InstanceState::Failed("boot".into())
                        } else {
                            InstanceState::Running
                        }
                    }
                    InstanceState::Draining if rng.chance(60) => InstanceState::Deleting,
                    InstanceState::Running if rng.chance(1) => InstanceState::Failed("crash".into()),
                    s => s.clone(),
                };
            }
            let mut latest = Vec::new();
            for m in members.iter().filter(|m| m.is_running()) {
                match rng.below(100) {
                    0..=5 => {}
                    6..=12 => latest.extend(stale.get(&m.id).cloned()),
                    _ => {
                        let s = random_sample(&mut rng, &m.id, now, b);
                        stale.insert(m.id.clone(), s.clone());
                        latest.push(s);
                    }
                }
            }
            let ctx = format!("sequence {seq} tick {tick}");
            let (d, st) = check_tick(&spec, &members, &latest, primary.as_ref(), pending, &state, now, &ctx);
            seen.add(&spec, &d);
            state = st;
            pending = false;
            if rng.chance(10) {
                continue; // the operation failed: nothing changed
            }
            match d {
                Decision::Hold(_) => {}
                Decision::ScaleOut { count, .. } => {
                    for _ in 0..count {
                        next_id += 1;
                        members.push(Instance::new(format!("m{next_id}"), &spec.id, now));
                    }
                    pending = rng.chance(30);
                }
                Decision::ScaleIn { victims, .. } => {
                    for v in victims {
                        let m = members.iter_mut().find(|m| m.id == v).expect("victim exists");
                        m.state = match m.state {
                            InstanceState::Failed(_) => InstanceState::Deleting,
                            _ => InstanceState::Draining,
                        };
                    }
                }
                Decision::Handover { retire, successor, .. } => {
                    members.iter_mut().find(|m| m.id == retire).expect("primary exists").state =
                        InstanceState::Draining;
                    primary = Some(successor);
                }
                Decision::Replace { .. } => unreachable!("checked above: unversioned groups never roll out"),
            }
        }
    }
    // A group the controller keeps within bounds is never above max.
    let kinds: Vec<&str> = ALL_KINDS.into_iter().filter(|k| *k != "in above-max").collect();
    seen.assert_covered(&kinds);
}
