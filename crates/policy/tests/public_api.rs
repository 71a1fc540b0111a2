//! The public API as other crates use it: a view built from owned data, the boxed policy, and the
//! helpers exported for tests.

use flotilla_model::{
    Decision, GroupSpec, HoldReason, Instance, InstanceId, InstanceState, Metric, MetricChoice, Mode, PolicyState,
    Sample, Timestamp, Victim,
};
use flotilla_policy::{choose_victims, member_value, policy_for, GroupView, Policy, ThresholdPolicy};

fn running(spec: &GroupSpec, id: &str, created_s: u64) -> Instance {
    let mut m = Instance::new(id, &spec.id, Timestamp::from_millis(created_s * 1000));
    m.state = InstanceState::Running;
    m
}

fn cpu(id: &str, at_s: u64, v: f64) -> Sample {
    Sample::new(InstanceId::new(id), Timestamp::from_millis(at_s * 1000)).with(Metric::Cpu, v)
}

#[test]
fn a_controller_loop_scales_out_then_in() {
    let mut spec = GroupSpec::example("api");
    spec.mode = Mode::Scale;
    spec.max = 3;
    let policy: Box<dyn Policy> = policy_for(&spec);
    let mut members = vec![running(&spec, "api_1", 0)];
    let mut state = PolicyState::default();
    let mut decisions = Vec::new();
    for tick in 1..=12u64 {
        let now = Timestamp::from_millis(tick * 5000);
        let load = if tick <= 4 { 95.0 } else { 2.0 };
        let latest: Vec<Sample> = members.iter().map(|m| cpu(m.id.as_str(), tick * 5, load)).collect();
        let view = GroupView {
            spec: &spec,
            members: &members,
            latest: &latest,
            primary: None,
            operation_pending: false,
            rollout_blocked: false,
            unhealthy: &[],
            health_blocked: false,
            replace_before: None,
            protected: &std::collections::BTreeSet::new(),
            alarms: &[],
        };
        let (eval, next) = policy.decide(&view, &state, now);
        assert_eq!(eval.at, now);
        state = next;
        match &eval.decision {
            Decision::ScaleOut { count, .. } => {
                for k in 0..*count {
                    members.push(running(&spec, &format!("api_{}", members.len() + 1 + k as usize), tick * 5));
                }
            }
            Decision::ScaleIn { victims, .. } => members.retain(|m| !victims.contains(&m.id)),
            _ => {}
        }
        decisions.push(eval.decision);
    }
    assert!(matches!(decisions[3], Decision::ScaleOut { count: 1, .. }), "{decisions:?}");
    let ins = decisions.iter().filter(|d| matches!(d, Decision::ScaleIn { .. })).count();
    assert_eq!(ins, 1, "{decisions:?}");
    assert_eq!(members.len(), 1);
    // Idle and alone: the last member stays.
    assert_eq!(decisions.last(), Some(&Decision::Hold(HoldReason::AtBound)));
}

#[test]
fn exported_helpers() {
    let spec = GroupSpec { victim: Victim::Newest, ..GroupSpec::example("api") };
    let ms = [running(&spec, "a", 1), running(&spec, "b", 2), running(&spec, "c", 3)];
    let refs: Vec<&Instance> = ms.iter().collect();
    assert_eq!(choose_victims(&spec, &refs, &[], 2), [InstanceId::new("c"), InstanceId::new("b")]);

    let s = cpu("a", 1, 30.0).with(Metric::Mem, 60.0);
    assert_eq!(member_value(MetricChoice::Cpu, &s), Some(30.0));
    assert_eq!(member_value(MetricChoice::Max, &s), Some(60.0));

    let view = GroupView::new(&spec, &ms[..2], &[]);
    let (eval, _) = ThresholdPolicy.decide(&view, &PolicyState::default(), Timestamp::from_millis(1));
    assert_eq!(eval.decision, Decision::Hold(HoldReason::NoData));
}

#[test]
fn every_kind_through_the_boxed_policy() {
    use flotilla_model::{PolicySpec, RequestCountSpec, TargetMetric, TargetSpec};

    let target =
        PolicySpec::TargetTracking(TargetSpec { metric: TargetMetric::Rps, target: 50.0, scale_in_samples: 2 });
    let requests =
        PolicySpec::RequestCount(RequestCountSpec { requests: 10, window: std::time::Duration::from_secs(60) });
    assert_eq!(flotilla_policy::TARGET_TOLERANCE, 0.10);
    // (policy, the member's sample, what one decide does with one running member, max 4)
    let cases = [
        (target.clone(), Metric::RequestRate, 160.0, Some(3)),
        // The band's edge: 10 % above the target holds.
        (target.clone(), Metric::RequestRate, 55.0, None),
        (requests.clone(), Metric::Requests, 10.0, Some(1)),
        (requests, Metric::Requests, 9.0, None),
    ];
    for (policy, metric, value, want_out) in cases {
        let spec = GroupSpec { mode: Mode::Scale, max: 4, policy, ..GroupSpec::example("api") };
        let ms = [running(&spec, "a", 1)];
        let latest = [Sample::new(InstanceId::new("a"), Timestamp::from_millis(10_000)).with(metric, value)];
        let view = GroupView::new(&spec, &ms, &latest);
        let (eval, _) = policy_for(&spec).decide(&view, &PolicyState::default(), Timestamp::from_millis(10_000));
        let out = match eval.decision {
            Decision::ScaleOut { count, .. } => Some(count),
            Decision::Hold(HoldReason::Steady) => None,
            d => panic!("{}: {d:?}", spec.policy.kind()),
        };
        assert_eq!(out, want_out, "{} at {value}", spec.policy.kind());
    }
}
