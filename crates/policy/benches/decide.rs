//! `cargo bench -p flotilla-policy --bench decide`
//!
//! 10,000 groups of 10 running members, every member with a fresh sample; one iteration decides
//! every group once (100,000 member-decisions). After criterion's report it prints
//! member-decisions per second and an estimate of the bytes the core needs per member.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::mem::size_of;
use std::time::Duration;

use criterion::measurement::{Measurement, WallTime};
use criterion::{Criterion, Throughput};
use flotilla_model::{
    Aggregation, GroupSpec, Instance, InstanceId, InstanceState, Metric, Mode, PolicyState, Sample, Timestamp, Victim,
};
use flotilla_policy::{policy_for, GroupView, Policy};

const GROUPS: usize = 10_000;
const MEMBERS: usize = 10;
const MEMBER_DECISIONS: u64 = (GROUPS * MEMBERS) as u64;
const NOW: Timestamp = Timestamp(1_700_000_000_000);

/// What the controller holds for one group between ticks.
struct Group {
    spec: GroupSpec,
    members: Vec<Instance>,
    latest: Vec<Sample>,
    primary: Option<InstanceId>,
    state: PolicyState,
    policy: Box<dyn Policy>,
}

/// xorshift64: deterministic load numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn pct(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next() % 10_000) as f64 / 10_000.0 * (hi - lo)
    }
}

fn group(g: usize, rng: &mut Rng) -> Group {
    let mut spec = GroupSpec::example(&format!("group-{g:05}"));
    spec.mode = [Mode::Scale, Mode::Handover][g % 2];
    spec.min = 1;
    spec.max = 20;
    spec.increment = 2;
    spec.aggregation = [Aggregation::Max, Aggregation::Mean, Aggregation::Mean][g % 3];
    spec.victim = [Victim::Oldest, Victim::Newest, Victim::LeastBusy][g % 3];
    // Most groups are steady; some are hot or idle, with streaks about to complete.
    let (lo, hi) = match g % 10 {
        0 => (85.0, 99.0),
        1 => (1.0, 15.0),
        _ => (30.0, 70.0),
    };
    let mut members = Vec::with_capacity(MEMBERS);
    let mut latest = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        let created = Timestamp(NOW.0 - 3_600_000 + i as u64);
        let mut m = Instance::new(format!("{}_{i}", spec.id), &spec.id, created);
        m.state = InstanceState::Running;
        m.address = Some(format!("127.0.0.1:{}", 40_000 + i));
        m.tags =
            BTreeMap::from([("pid".to_string(), format!("{}", 10_000 + i)), ("vcpus".to_string(), "1".to_string())]);
        latest.push(
            Sample::new(m.id.clone(), Timestamp(NOW.0 - 1_000))
                .with(Metric::Cpu, rng.pct(lo, hi))
                .with(Metric::Mem, rng.pct(lo, hi) * 0.8),
        );
        members.push(m);
    }
    // Some handover groups name their primary, the rest leave it to the oldest running member.
    let primary = (g % 4 == 1).then(|| members[0].id.clone());
    // Samples are newer than the last counted: every decide counts (the full path).
    let state = PolicyState {
        up_count: ((g / 10) % 4) as u32,
        down_count: ((g / 10) % 4) as u32 * u32::from(g % 10 == 1),
        last_sample_at: Timestamp(NOW.0 - 5_000),
        last_scale_out: None,
        last_scale_in: Some(Timestamp(NOW.0 - 600_000)),
    };
    let policy = policy_for(&spec);
    Group { spec, members, latest, primary, state, policy }
}

/// Decides every group once; returns the number of actions so the work cannot be optimised away.
fn decide_all(groups: &[Group]) -> usize {
    let mut actions = 0;
    for g in groups {
        let view = GroupView {
            spec: &g.spec,
            members: &g.members,
            latest: &g.latest,
            primary: g.primary.as_ref(),
            operation_pending: false,
            rollout_blocked: false,
            unhealthy: &[],
            health_blocked: false,
            replace_before: None,
            protected: &std::collections::BTreeSet::new(),
            alarms: &[],
        };
        let (eval, state) = g.policy.decide(&view, &g.state, NOW);
        actions += usize::from(eval.decision.is_action());
        black_box((eval, state));
    }
    actions
}

/// Bytes the core needs per member: the instance and its heap, the sample and its heap, and a
/// tenth of the group's policy state. Heap strings count their capacity; a `BTreeMap` of up to 11
/// entries is one leaf node with 11 key/value slots plus a small header. Allocator overhead and
/// the group's spec (shared by its members) are not counted.
fn bytes_per_member(groups: &[Group]) -> f64 {
    let mut total = 0usize;
    for g in groups {
        for m in &g.members {
            total += size_of::<Instance>();
            total += m.id.0.capacity() + m.name.capacity() + m.group.0.capacity();
            total += m.address.as_ref().map_or(0, String::capacity);
            if !m.tags.is_empty() {
                let nodes = m.tags.len().div_ceil(11);
                total += nodes * (11 * size_of::<(String, String)>() + 16);
                total += m.tags.iter().map(|(k, v)| k.capacity() + v.capacity()).sum::<usize>();
            }
            if let InstanceState::Failed(why) = &m.state {
                total += why.capacity();
            }
        }
        for s in &g.latest {
            total += size_of::<Sample>();
            total += s.instance.0.capacity();
            total += s.values.capacity() * size_of::<(Metric, f64)>();
        }
        total += size_of::<PolicyState>();
    }
    total as f64 / (GROUPS * MEMBERS) as f64
}

fn main() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let groups: Vec<Group> = (0..GROUPS).map(|g| group(g, &mut rng)).collect();
    let actions = decide_all(&groups);

    // Criterion's own wall-clock measurement; each (iterations, time) is also kept for the summary.
    let runs: RefCell<Vec<(u64, Duration)>> = RefCell::new(Vec::new());
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .without_plots()
        .configure_from_args();
    {
        let mut bench = c.benchmark_group("decide");
        bench.throughput(Throughput::Elements(MEMBER_DECISIONS));
        bench.bench_function("10k_groups_x_10_members", |b| {
            b.iter_custom(|iters| {
                let clock = WallTime;
                let start = clock.start();
                for _ in 0..iters {
                    black_box(decide_all(black_box(&groups)));
                }
                let took = clock.end(start);
                runs.borrow_mut().push((iters, took));
                took
            })
        });
        bench.finish();
    }
    c.final_summary();

    let mut per_iter: Vec<f64> =
        runs.borrow().iter().filter(|(n, _)| *n > 0).map(|(n, d)| d.as_secs_f64() / *n as f64).collect();
    per_iter.sort_by(f64::total_cmp);
    let bytes = bytes_per_member(&groups);
    println!();
    println!("flotilla-policy decide: {GROUPS} groups x {MEMBERS} members ({MEMBER_DECISIONS} member-decisions per iteration, {actions} actions)");
    if let Some(&median) = per_iter.get(per_iter.len() / 2) {
        let best = per_iter[0];
        println!(
            "  time per iteration         : median {:.3} ms, best {:.3} ms ({} timed runs)",
            median * 1e3,
            best * 1e3,
            per_iter.len()
        );
        println!(
            "  member-decisions per second: {:.0} median, {:.0} best (target >= 100000)",
            MEMBER_DECISIONS as f64 / median,
            MEMBER_DECISIONS as f64 / best
        );
    }
    println!("  state bytes per member     : {bytes:.0} (target <= 2048)");
    println!(
        "    size_of Instance {} + its heap, Sample {} + its heap, PolicyState {} / {MEMBERS}",
        size_of::<Instance>(),
        size_of::<Sample>(),
        size_of::<PolicyState>()
    );
}
