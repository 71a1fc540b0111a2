//! The seed's life cycle, tick by tick, on a fake clock (5 s interval). Every tick is decided twice,
//! as a controller retrying on the same data would: the second call must change nothing.

use flotilla_model::{
    Decision, GroupSpec, HoldReason, Instance, InstanceId, InstanceState, Metric, PolicyState, Sample,
};

use super::{assert_safe, run, t};

struct Seed {
    spec: GroupSpec,
    members: Vec<Instance>,
    primary: Option<InstanceId>,
    state: PolicyState,
    now: u64,
    log: Vec<(u64, Decision)>,
}

impl Seed {
    /// One tick: every running member reports `pct` (cpu and mem), then decide twice.
    fn tick(&mut self, pct: f64) -> Decision {
        self.now += 5;
        let now = t(self.now);
        let latest: Vec<Sample> = self
            .members
            .iter()
            .filter(|m| m.is_running())
            .map(|m| Sample::new(m.id.clone(), now).with(Metric::Cpu, pct).with(Metric::Mem, pct))
            .collect();
        let (e, st) = run(&self.spec, &self.members, &latest, self.primary.as_ref(), false, &self.state, now);
        assert_safe(&self.spec, &self.members, &e.decision, "timeline");
        let (e2, st2) = run(&self.spec, &self.members, &latest, self.primary.as_ref(), false, &st, now);
        assert!(!e2.decision.is_action(), "second call on the same data acted: {:?}", e2.decision);
        assert_eq!(
            (st2.up_count, st2.down_count, st2.last_sample_at),
            (st.up_count, st.down_count, st.last_sample_at),
            "second call on the same data changed the counters"
        );
        self.state = st;
        self.log.push((self.now, e.decision.clone()));
        e.decision
    }

    fn set_state(&mut self, id: &str, state: InstanceState) {
        self.members.iter_mut().find(|m| m.id.as_str() == id).expect("member").state = state;
    }
}

fn hold(r: HoldReason) -> Decision {
    Decision::Hold(r)
}

#[test]
fn seed_timeline() {
    let spec = GroupSpec::example("web");
    let mut baseline = Instance::new("web_1", &spec.id, t(0));
    baseline.state = InstanceState::Running;
    let mut s = Seed {
        spec,
        members: vec![baseline],
        primary: Some(InstanceId::new("web_1")),
        state: PolicyState::default(),
        now: 1000,
        log: Vec::new(),
    };

    // The baseline at 100%: three samples build the streak, the fourth adds exactly one clone.
    for n in 1..=3 {
        assert_eq!(s.tick(100.0), hold(HoldReason::Steady), "sample {n}");
        assert_eq!(s.state.up_count, n);
    }
    match s.tick(100.0) {
        Decision::ScaleOut { count: 1, reason } => {
            assert_eq!(reason, "cpu/mem max 100.0 >= 80 for 4 samples")
        }
        d => panic!("want one clone, got {d:?}"),
    }
    assert_eq!(s.state.last_scale_out, Some(t(s.now)));
    assert_eq!((s.state.up_count, s.state.down_count), (0, 0));

    // The clone is being created: nothing else happens, however hot the baseline.
    s.members.push(Instance::new("web_clone_1", &s.spec.id, t(s.now)));
    let before = s.state;
    for _ in 0..5 {
        assert_eq!(s.tick(100.0), hold(HoldReason::InProgress));
        assert_eq!(s.state, before);
    }

    // Both running at 50%: steady, for as long as it lasts.
    s.set_state("web_clone_1", InstanceState::Running);
    for _ in 0..200 {
        assert_eq!(s.tick(50.0), hold(HoldReason::Steady));
        assert_eq!((s.state.up_count, s.state.down_count), (0, 0));
    }

    // Both at 3%: after four samples the primary hands over to the clone.
    for n in 1..=3 {
        assert_eq!(s.tick(3.0), hold(HoldReason::Steady), "low sample {n}");
        assert_eq!(s.state.down_count, n);
    }
    match s.tick(3.0) {
        Decision::Handover { retire, successor, reason } => {
            assert_eq!((retire.as_str(), successor.as_str()), ("web_1", "web_clone_1"));
            assert_eq!(reason, "cpu/mem max 3.0 <= 20 for 4 samples");
        }
        d => panic!("want a handover, got {d:?}"),
    }
    let handover_at = s.now;
    assert_eq!(s.state.last_scale_in, Some(t(handover_at)));

    // The controller drains the old primary (in progress), deletes it; the clone is the primary.
    s.set_state("web_1", InstanceState::Draining);
    assert_eq!(s.tick(3.0), hold(HoldReason::InProgress));
    s.members.retain(|m| m.id.as_str() != "web_1");
    s.primary = Some(InstanceId::new("web_clone_1"));

    // Idle and alone: the last member is never retired.
    for _ in 0..50 {
        let d = s.tick(3.0);
        assert!(matches!(d, Decision::Hold(HoldReason::Steady | HoldReason::AtBound)), "{d:?}");
    }

    // Exactly one scale-out and one handover over the whole run.
    let outs = s.log.iter().filter(|(_, d)| matches!(d, Decision::ScaleOut { .. })).count();
    let handovers: Vec<u64> =
        s.log.iter().filter(|(_, d)| matches!(d, Decision::Handover { .. })).map(|(at, _)| *at).collect();
    assert_eq!(outs, 1);
    assert_eq!(handovers, [handover_at]);
    assert!(s.log.iter().all(|(_, d)| !matches!(d, Decision::ScaleIn { .. })));
}
