//! Data-driven tests of every rule: a tiny text notation for members and samples, a `Case` builder,
//! and one `check` that runs a case and also asserts the safety invariants.

mod alarm;
mod property;
// Tables of cases: one builder chain per case reads better than rustfmt's one call per line.
#[rustfmt::skip]
mod requests;
#[rustfmt::skip]
mod rules;
mod health;
mod operator;
mod rollout;
#[rustfmt::skip]
mod target;
mod timeline;

use std::time::Duration;

use flotilla_model::{
    Decision, Evaluation, GroupSpec, HoldReason, Instance, InstanceId, InstanceState, Metric, Mode, PolicySpec,
    PolicyState, ReplaceCause, RequestCountSpec, Sample, TargetMetric, TargetSpec, ThresholdSpec, Timestamp,
};

use crate::GroupView;

/// Seconds on the fake clock.
pub(crate) fn t(secs: u64) -> Timestamp {
    Timestamp(secs * 1000)
}

/// Members: `id:S:created[:version]` tokens, S = R(unning) C(reating) D(raining) X (deleting)
/// F(ailed) U(nknown); a version becomes the member's template tag.
pub(crate) fn members(spec: &GroupSpec, dsl: &str) -> Vec<Instance> {
    dsl.split_whitespace()
        .map(|tok| {
            let mut it = tok.split(':');
            let (id, st, created) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
            let mut m = Instance::new(id, &spec.id, t(created.parse().unwrap()));
            m.state = match st {
                "R" => InstanceState::Running,
                "C" => InstanceState::Creating,
                "D" => InstanceState::Draining,
                "X" => InstanceState::Deleting,
                "F" => InstanceState::Failed("boom".into()),
                "U" => InstanceState::Unknown("host down".into()),
                _ => panic!("bad state in {tok}"),
            };
            if let Some(v) = it.next() {
                m.tags.insert(flotilla_model::TEMPLATE_TAG.into(), v.into());
            }
            m
        })
        .collect()
}

/// Samples: `id@at` then `:c<cpu>` / `:m<mem>` / `:r<rps>` / `:q<requests in the window>`, e.g.
/// `a@100:c90:m10`.
pub(crate) fn samples(dsl: &str) -> Vec<Sample> {
    dsl.split_whitespace()
        .map(|tok| {
            let mut it = tok.split(':');
            let (id, at) = it.next().unwrap().split_once('@').unwrap();
            let mut s = Sample::new(InstanceId::new(id), t(at.parse().unwrap()));
            for v in it {
                let (metric, num) = v.split_at(1);
                let metric = match metric {
                    "c" => Metric::Cpu,
                    "m" => Metric::Mem,
                    "r" => Metric::RequestRate,
                    "q" => Metric::Requests,
                    _ => panic!("bad metric in {tok}"),
                };
                s.set(metric, num.parse().unwrap());
            }
            s
        })
        .collect()
}

/// The expected decision, by shape.
#[derive(Debug, Clone)]
pub(crate) enum Want {
    Hold(HoldReason),
    Out(u32),
    In(&'static [&'static str]),
    Handover(&'static str, &'static str),
}

pub(crate) use HoldReason::{AtBound, InProgress, NoData, Steady};

pub(crate) fn cooldown(secs: u64) -> Want {
    Want::Hold(HoldReason::Cooldown { remaining_ms: secs * 1000 })
}

/// Handover mode as in the seed: min 1, max 2, high 80, low 20, 4 samples, no cooldowns,
/// stale after 15 s, metric max(cpu, mem), mean, oldest victim.
pub(crate) fn seed(_: &mut GroupSpec) {}

/// Scale mode: min 1, max 5, increment 2.
pub(crate) fn scale(s: &mut GroupSpec) {
    s.mode = Mode::Scale;
    s.min = 1;
    s.max = 5;
    s.increment = 2;
}

/// The spec's threshold rule (the seed spec has one).
pub(crate) fn th(s: &mut GroupSpec) -> &mut ThresholdSpec {
    s.policy.threshold_mut().expect("a threshold spec")
}

/// Target tracking of 50 rps per member, scale-in after 3 samples (mode and bounds as they are).
pub(crate) fn target(s: &mut GroupSpec) {
    s.policy = PolicySpec::TargetTracking(TargetSpec { metric: TargetMetric::Rps, target: 50.0, scale_in_samples: 3 });
}

/// The spec's target-tracking rule.
pub(crate) fn tt(s: &mut GroupSpec) -> &mut TargetSpec {
    match &mut s.policy {
        PolicySpec::TargetTracking(t) => t,
        other => panic!("not a target-tracking spec: {other:?}"),
    }
}

/// The seed-002 trigger: 10 requests within 60 s (mode and bounds as they are).
pub(crate) fn requests(s: &mut GroupSpec) {
    s.policy = PolicySpec::RequestCount(RequestCountSpec { requests: 10, window: Duration::from_secs(60) });
}

pub(crate) struct Case {
    name: &'static str,
    spec: fn(&mut GroupSpec),
    members: &'static str,
    samples: &'static str,
    primary: Option<&'static str>,
    pending: bool,
    prior: PolicyState,
    now: u64,
    want: Option<Want>,
    counters: Option<(u32, u32)>,
    desired: Option<Option<u32>>,
    last_sample: Option<u64>,
    stamped_out: Option<Option<u64>>,
    stamped_in: Option<Option<u64>>,
    reason: Option<&'static str>,
}

/// A case on the seed spec at now = 100 s with an empty prior state.
pub(crate) fn case(name: &'static str) -> Case {
    Case {
        name,
        spec: seed,
        members: "",
        samples: "",
        primary: None,
        pending: false,
        prior: PolicyState::default(),
        now: 100,
        want: None,
        counters: None,
        desired: None,
        last_sample: None,
        stamped_out: None,
        stamped_in: None,
        reason: None,
    }
}

impl Case {
    pub fn spec(mut self, f: fn(&mut GroupSpec)) -> Self {
        self.spec = f;
        self
    }
    pub fn members(mut self, dsl: &'static str) -> Self {
        self.members = dsl;
        self
    }
    pub fn samples(mut self, dsl: &'static str) -> Self {
        self.samples = dsl;
        self
    }
    pub fn primary(mut self, id: &'static str) -> Self {
        self.primary = Some(id);
        self
    }
    pub fn pending(mut self) -> Self {
        self.pending = true;
        self
    }
    /// Prior counters and the newest sample time already counted (seconds).
    pub fn prior(mut self, up: u32, down: u32, last_sample: u64) -> Self {
        self.prior.up_count = up;
        self.prior.down_count = down;
        self.prior.last_sample_at = t(last_sample);
        self
    }
    pub fn last_out(mut self, secs: u64) -> Self {
        self.prior.last_scale_out = Some(t(secs));
        self
    }
    pub fn last_in(mut self, secs: u64) -> Self {
        self.prior.last_scale_in = Some(t(secs));
        self
    }
    pub fn now(mut self, secs: u64) -> Self {
        self.now = secs;
        self
    }
    pub fn want(mut self, w: Want) -> Self {
        self.want = Some(w);
        self
    }
    pub fn hold(self, r: HoldReason) -> Self {
        self.want(Want::Hold(r))
    }
    /// Expected (up_count, down_count) of the returned state.
    pub fn counters(mut self, up: u32, down: u32) -> Self {
        self.counters = Some((up, down));
        self
    }
    /// Expected `desired` of the evaluation.
    pub fn desired(mut self, d: Option<u32>) -> Self {
        self.desired = Some(d);
        self
    }
    pub fn last_sample(mut self, secs: u64) -> Self {
        self.last_sample = Some(secs);
        self
    }
    /// Expected `last_scale_out` of the returned state (`None`: never stamped).
    pub fn stamped_out(mut self, secs: Option<u64>) -> Self {
        self.stamped_out = Some(secs);
        self
    }
    pub fn stamped_in(mut self, secs: Option<u64>) -> Self {
        self.stamped_in = Some(secs);
        self
    }
    pub fn reason(mut self, r: &'static str) -> Self {
        self.reason = Some(r);
        self
    }
}

/// Runs `decide` once, with the policy the spec names. Also used by the timeline-style tests.
pub(crate) fn run(
    spec: &GroupSpec,
    members: &[Instance],
    latest: &[Sample],
    primary: Option<&InstanceId>,
    pending: bool,
    state: &PolicyState,
    now: Timestamp,
) -> (Evaluation, PolicyState) {
    let view = GroupView { primary, operation_pending: pending, ..GroupView::new(spec, members, latest) };
    crate::decide(&view, state, now)
}

/// The invariants every decision keeps, whatever the inputs.
pub(crate) fn assert_safe(spec: &GroupSpec, members: &[Instance], d: &Decision, ctx: &str) {
    let state_of = |id: &InstanceId| members.iter().find(|m| &m.id == id).map(|m| &m.state);
    let running = members.iter().filter(|m| m.is_running()).count();
    let active = members.iter().filter(|m| m.state.is_capacity()).count();
    match d {
        Decision::Hold(_) => {}
        Decision::ScaleOut { count, .. } => {
            assert!(*count >= 1, "{ctx}: empty scale-out");
            assert!(active + *count as usize <= spec.max as usize, "{ctx}: scale-out above max: {d:?}");
        }
        Decision::ScaleIn { victims, .. } => {
            assert!(!victims.is_empty(), "{ctx}: empty scale-in");
            let mut seen = victims.clone();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), victims.len(), "{ctx}: duplicate victims {victims:?}");
            let mut running_victims = 0;
            for v in victims {
                match state_of(v) {
                    Some(InstanceState::Running) => running_victims += 1,
                    Some(InstanceState::Failed(_)) => {}
                    other => panic!("{ctx}: victim {v} is {other:?}"),
                }
            }
            assert!(
                running_victims == 0 || running_victims < running,
                "{ctx}: scale-in removes every running member: {d:?}"
            );
        }
        Decision::Handover { retire, successor, .. } => {
            assert_ne!(retire, successor, "{ctx}: hands over to itself");
            assert_eq!(state_of(retire), Some(&InstanceState::Running), "{ctx}: retire not running");
            assert_eq!(state_of(successor), Some(&InstanceState::Running), "{ctx}: successor not running");
            assert!(running >= 2, "{ctx}: handover leaves no running member");
        }
        Decision::Replace { old, cause, .. } => {
            assert!(!old.is_empty(), "{ctx}: empty replace");
            let batch = match cause {
                ReplaceCause::Outdated => spec.rollout.map_or(0, |r| r.max_unavailable.max(1) as usize),
                ReplaceCause::Unhealthy | ReplaceCause::Operator => {
                    spec.rollout.map_or(1, |r| r.max_unavailable.max(1) as usize)
                }
            };
            assert!(old.len() <= batch, "{ctx}: replace batch above max_unavailable: {d:?}");
            for v in old {
                let ok = match cause {
                    ReplaceCause::Outdated | ReplaceCause::Operator => state_of(v) == Some(&InstanceState::Running),
                    ReplaceCause::Unhealthy => {
                        matches!(state_of(v), Some(InstanceState::Running | InstanceState::Unknown(_)))
                    }
                };
                assert!(ok, "{ctx}: replaces {v} ({:?})", state_of(v));
            }
        }
    }
}

/// Runs one case; returns a description of every mismatch.
pub(crate) fn check(c: &Case) -> Vec<String> {
    let mut spec = GroupSpec::example("g");
    (c.spec)(&mut spec);
    let members = members(&spec, c.members);
    let latest = samples(c.samples);
    let primary = c.primary.map(InstanceId::new);
    let now = t(c.now);
    let (eval, st) = run(&spec, &members, &latest, primary.as_ref(), c.pending, &c.prior, now);
    assert_safe(&spec, &members, &eval.decision, c.name);

    // Pure: the same call gives the same answer.
    let again = run(&spec, &members, &latest, primary.as_ref(), c.pending, &c.prior, now);
    assert_eq!(again, (eval.clone(), st), "{}: not deterministic", c.name);

    let mut errs = Vec::new();
    let mut fail =
        |what: String| errs.push(format!("{}: {what}\n    got {:?}\n    state {:?}", c.name, eval.decision, st));
    if let Some(want) = &c.want {
        let ok = match (want, &eval.decision) {
            (Want::Hold(r), Decision::Hold(got)) => r == got,
            (Want::Out(n), Decision::ScaleOut { count, .. }) => n == count,
            (Want::In(ids), Decision::ScaleIn { victims, .. }) => {
                victims.iter().map(InstanceId::as_str).collect::<Vec<_>>() == *ids
            }
            (Want::Handover(r, s), Decision::Handover { retire, successor, .. }) => {
                retire.as_str() == *r && successor.as_str() == *s
            }
            _ => false,
        };
        if !ok {
            fail(format!("want {want:?}"));
        }
    }
    if let Some((up, down)) = c.counters {
        if (st.up_count, st.down_count) != (up, down) {
            fail(format!("want counters up={up} down={down}"));
        }
        if (eval.up_count, eval.down_count) != (st.up_count, st.down_count) {
            fail("evaluation counters differ from the state's".into());
        }
    }
    if let Some(want) = c.desired {
        if eval.desired != want {
            fail(format!("want desired {want:?}, got {:?}", eval.desired));
        }
    }
    if let Some(secs) = c.last_sample {
        if st.last_sample_at != t(secs) {
            fail(format!("want last_sample_at {secs}s"));
        }
    }
    if let Some(want) = c.stamped_out {
        if st.last_scale_out != want.map(t) {
            fail(format!("want last_scale_out {want:?}"));
        }
    }
    if let Some(want) = c.stamped_in {
        if st.last_scale_in != want.map(t) {
            fail(format!("want last_scale_in {want:?}"));
        }
    }
    if let Some(want) = c.reason {
        let got = match &eval.decision {
            Decision::ScaleOut { reason, .. }
            | Decision::ScaleIn { reason, .. }
            | Decision::Handover { reason, .. }
            | Decision::Replace { reason, .. } => reason.as_str(),
            Decision::Hold(_) => "",
        };
        if got != want {
            fail(format!("want reason {want:?}, got {got:?}"));
        }
    }
    errs
}

/// Runs a table; reports every failing case at once.
pub(crate) fn check_all(cases: &[Case]) {
    let errs: Vec<String> = cases.iter().flat_map(check).collect();
    assert!(errs.is_empty(), "{} of {} cases failed:\n{}", errs.len(), cases.len(), errs.join("\n"));
}
