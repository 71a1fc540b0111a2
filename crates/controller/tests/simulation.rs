//! Whole scenarios on fakes with a fake clock: the real controller and the real SQLite store (in
//! memory), a fake provider and scripted metrics. The same scenario with real member processes is
//! in `crates/flotilla/tests/scenario_local.rs`.

use std::sync::Arc;
use std::time::Duration;

use flotilla_controller::{Controller, ControllerParts, Options};
use flotilla_lb::{BalancerCall, RecordingBalancer};
use flotilla_model::{
    Clock, Decision, ErrorKind, FakeClock, GroupId, GroupSpec, HoldReason, InstanceId, InstanceState, Mode, OpKind,
    OpState, SeamError, Store, Timestamp,
};
use flotilla_store_sqlite::SqliteStore;
use flotilla_testkit::fake_provider::FakeProvider;
use flotilla_testkit::scripted_metrics::ScriptedMetrics;

struct Sim {
    clock: FakeClock,
    provider: Arc<FakeProvider>,
    metrics: Arc<ScriptedMetrics>,
    balancer: Arc<RecordingBalancer>,
    store: Arc<SqliteStore>,
    ctl: Arc<Controller>,
    group: GroupId,
}

impl Sim {
    fn new(spec: GroupSpec) -> Sim {
        let clock = FakeClock::new(Timestamp::from_millis(1_700_000_000_000));
        let provider = Arc::new(FakeProvider::new(clock.clone()));
        let metrics = Arc::new(ScriptedMetrics::new());
        let balancer = Arc::new(RecordingBalancer::new());
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let group = spec.id.clone();
        let ctl = Self::controller(&clock, &provider, &metrics, &balancer, &store, spec);
        Sim { clock, provider, metrics, balancer, store, ctl, group }
    }

    fn controller(
        clock: &FakeClock,
        provider: &Arc<FakeProvider>,
        metrics: &Arc<ScriptedMetrics>,
        balancer: &Arc<RecordingBalancer>,
        store: &Arc<SqliteStore>,
        spec: GroupSpec,
    ) -> Arc<Controller> {
        Controller::new(ControllerParts {
            store: store.clone(),
            provider: provider.clone(),
            sources: vec![metrics.clone()],
            balancer: balancer.clone(),
            clock: Arc::new(clock.clone()),
            groups: vec![spec],
            options: Options::default(),
        })
    }

    /// Advances one interval and reconciles; returns the decision.
    async fn tick(&self) -> Decision {
        self.clock.advance(Duration::from_secs(5));
        let out = self.ctl.reconcile(&self.group).await.expect("reconcile");
        out.evaluation.expect("evaluation").decision
    }

    /// The seed group after its spike: baseline `vm-test_1` and clone `vm-test_clone_1`, both running.
    async fn with_clone() -> Sim {
        let sim = Sim::new(seed_spec());
        sim.ctl.recover().await.unwrap();
        sim.tick().await;
        sim.metrics.set_all(100.0, 1.0);
        for _ in 0..4 {
            sim.tick().await;
        }
        assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_clone_1"]);
        sim
    }

    fn names(&self) -> Vec<String> {
        self.provider.names()
    }
}

fn seed_spec() -> GroupSpec {
    GroupSpec::example("vm-test") // handover, min 1, max 2, high 80, low 20, min_up/down 4, metric max
}

#[tokio::test]
async fn seed_timeline_spike_split_then_handover() {
    let sim = Sim::new(seed_spec());
    sim.ctl.recover().await.unwrap();

    // Bounds repair: the group starts with its baseline.
    assert!(matches!(sim.tick().await, Decision::ScaleOut { count: 1, .. }));
    assert_eq!(sim.names(), vec!["vm-test_1"]);

    // 100% spike on the baseline: exactly one clone after 4 samples.
    sim.metrics.set_all(100.0, 10.0);
    let mut decisions = Vec::new();
    for _ in 0..4 {
        decisions.push(sim.tick().await);
    }
    assert!(decisions[..3].iter().all(|d| !d.is_action()), "{decisions:?}");
    assert!(matches!(decisions[3], Decision::ScaleOut { count: 1, .. }), "{decisions:?}");
    assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_clone_1"]);

    // Load keeps the baseline hot for a while after the clone exists: at max, no second clone.
    for _ in 0..6 {
        assert!(!matches!(sim.tick().await, Decision::ScaleOut { .. }));
    }

    // 50/50 split: no further action, however long.
    sim.metrics.set_all(50.0, 10.0);
    for _ in 0..20 {
        assert_eq!(sim.tick().await, Decision::Hold(HoldReason::Steady));
    }

    // Load stops: handover after 4 low samples; the baseline is drained before it is deleted.
    sim.metrics.set_all(2.0, 10.0);
    let mut handed = None;
    for i in 0..4 {
        let d = sim.tick().await;
        if let Decision::Handover { retire, successor, .. } = &d {
            handed = Some((i, retire.clone(), successor.clone()));
        }
    }
    let (at, retire, successor) = handed.expect("handover");
    assert_eq!(at, 3);
    assert_eq!(retire, InstanceId::new("vm-test_1"));
    assert_eq!(successor, InstanceId::new("vm-test_clone_1"));
    assert_eq!(sim.names(), vec!["vm-test_clone_1"]);
    assert_eq!(sim.store.primary(&sim.group).await.unwrap(), Some(successor.clone()));

    let calls = sim.balancer.calls();
    let drain = calls.iter().position(|c| matches!(c, BalancerCall::Drain(_, id) if id == &retire)).unwrap();
    let remove = calls.iter().position(|c| matches!(c, BalancerCall::Remove(_, id) if id == &retire)).unwrap();
    assert!(drain < remove);
    // Every member was added to the balancer and waited for before it counted as up.
    let added: Vec<_> = calls.iter().filter(|c| matches!(c, BalancerCall::Add(..))).collect();
    assert_eq!(added.len(), 2);

    // Low load with one member left: nothing more to do, the last member is never deleted.
    for _ in 0..10 {
        assert!(!sim.tick().await.is_action());
    }
    assert_eq!(sim.names(), vec!["vm-test_clone_1"]);

    // The cycle repeats: a new spike clones the new primary.
    sim.metrics.set_all(95.0, 10.0);
    for _ in 0..4 {
        sim.tick().await;
    }
    assert_eq!(sim.names(), vec!["vm-test_clone_1", "vm-test_clone_2"]);
    assert_eq!(sim.provider.counts(), (3, 1));

    let events = sim.store.events(Some(&sim.group), 100).await.unwrap();
    assert!(events.iter().any(|e| e.message.contains("vm-test_clone_1 is the new primary")), "{events:?}");
}

#[tokio::test]
async fn scale_mode_respects_max_and_increment() {
    let mut spec = GroupSpec::example("web");
    spec.mode = Mode::Scale;
    spec.min = 1;
    spec.max = 5;
    spec.increment = 2;
    let t = spec.policy.threshold_mut().expect("the example is a threshold group");
    t.min_up = 2;
    t.min_down = 2;
    spec.instance.vcpus = 2;
    let sim = Sim::new(spec);
    sim.ctl.recover().await.unwrap();
    sim.tick().await;
    sim.metrics.set_all(99.0, 1.0);
    let mut max_seen = 0;
    for _ in 0..30 {
        sim.tick().await;
        max_seen = max_seen.max(sim.names().len());
    }
    assert_eq!(max_seen, 5, "never above max, and reaches it");
    assert_eq!(sim.names(), vec!["web_1", "web_2", "web_3", "web_4", "web_5"]);
    // Members join the balancer weighted by their vCPUs.
    let weights: Vec<u32> = sim
        .balancer
        .calls()
        .iter()
        .filter_map(|c| if let BalancerCall::Add(_, b) = c { Some(b.weight) } else { None })
        .collect();
    assert_eq!(weights, vec![2; 5]);
    sim.metrics.set_all(1.0, 1.0);
    for _ in 0..30 {
        sim.tick().await;
    }
    assert_eq!(sim.names().len(), 1, "scaled in to min, never to zero");
}

#[tokio::test]
async fn a_pending_scale_out_is_resumed_exactly_once_after_a_crash() {
    let sim = Sim::new(seed_spec());
    sim.ctl.recover().await.unwrap();
    sim.tick().await; // baseline
                      // A previous run stored its intent and died before (or after) calling the provider.
    let kind = OpKind::ScaleOut { names: vec!["vm-test_clone_1".into()], clone: true };
    let op = sim.store.begin_operation(&sim.group, &kind, sim.clock.now()).await.unwrap();

    // Restart: a fresh controller on the same store and provider.
    let ctl = Sim::controller(&sim.clock, &sim.provider, &sim.metrics, &sim.balancer, &sim.store, seed_spec());
    assert_eq!(ctl.recover().await.unwrap(), 1);
    assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_clone_1"]);
    // Resuming again (a second crash right after) creates nothing new.
    let again = sim.store.operations(&sim.group, 10).await.unwrap();
    assert!(again.iter().all(|o| o.state != OpState::Pending));
    assert_eq!(again.iter().find(|o| o.id == op.id).unwrap().state, OpState::Done);
    let ctl2 = Sim::controller(&sim.clock, &sim.provider, &sim.metrics, &sim.balancer, &sim.store, seed_spec());
    assert_eq!(ctl2.recover().await.unwrap(), 0);
    assert_eq!(sim.provider.counts(), (2, 0));
}

#[tokio::test]
async fn a_pending_handover_whose_delete_already_happened_just_finishes() {
    let sim = Sim::with_clone().await;
    // Crash after the provider deleted the baseline but before the operation was marked done.
    let kind = OpKind::Handover { retire: InstanceId::new("vm-test_1"), successor: InstanceId::new("vm-test_clone_1") };
    sim.store.begin_operation(&sim.group, &kind, sim.clock.now()).await.unwrap();
    use flotilla_model::Provider;
    sim.provider.delete(&sim.group, &[InstanceId::new("vm-test_1")]).await.unwrap();

    let ctl = Sim::controller(&sim.clock, &sim.provider, &sim.metrics, &sim.balancer, &sim.store, seed_spec());
    assert_eq!(ctl.recover().await.unwrap(), 1);
    assert_eq!(sim.names(), vec!["vm-test_clone_1"]);
    assert_eq!(sim.store.primary(&sim.group).await.unwrap(), Some(InstanceId::new("vm-test_clone_1")));
    assert!(sim.store.instances(&sim.group).await.unwrap().iter().all(|i| i.name == "vm-test_clone_1"));
}

#[tokio::test]
async fn facts_of_the_create_outlive_lists_that_do_not_repeat_them() {
    let sim = Sim::with_clone().await;
    // What a provider reported at create (the boot time) but does not report on a list.
    let mut stored = sim.store.instances(&sim.group).await.unwrap();
    stored[0].tags.insert(flotilla_model::READY_TAG.to_string(), "7300".to_string());
    stored[0].tags.insert("floating_ip".to_string(), "203.0.113.9".to_string());
    sim.store.upsert_instance(&stored[0]).await.unwrap();
    sim.tick().await;
    let after = sim.store.instances(&sim.group).await.unwrap();
    let m = after.iter().find(|i| i.id == stored[0].id).unwrap();
    assert_eq!(m.tag(flotilla_model::READY_TAG), Some("7300"), "kept");
    assert_eq!(m.tag("floating_ip"), None, "other tags follow the provider's list");
}

#[tokio::test]
async fn handover_never_deletes_the_baseline_without_a_running_clone() {
    let sim = Sim::with_clone().await;
    // The clone breaks; load drops. The failed clone is removed and replaced before any handover.
    sim.provider.set_state("vm-test_clone_1", InstanceState::Failed("crashed".into()));
    sim.metrics.set_all(1.0, 1.0);
    for _ in 0..8 {
        sim.tick().await;
        assert!(sim.names().contains(&"vm-test_1".to_string()) || sim.names().len() == 1);
    }
    assert!(!sim.names().is_empty());
    assert!(!sim.names().contains(&"vm-test_clone_1".to_string()), "failed member removed");
}

#[tokio::test]
async fn provider_errors_fail_the_operation_and_back_off_by_kind() {
    let sim = Sim::new(seed_spec());
    sim.ctl.recover().await.unwrap();
    sim.provider.fail_next("create", ErrorKind::Quota);
    sim.clock.advance(Duration::from_secs(5));
    let err = sim.ctl.reconcile(&sim.group).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Quota);
    let ops = sim.store.operations(&sim.group, 10).await.unwrap();
    assert!(matches!(&ops[0].state, OpState::Failed(reason) if reason.contains("injected create failure")), "{ops:?}");
    assert!(sim.names().is_empty(), "nothing half-created");
    // The error policy pauses this group for five minutes and says why, once per distinct error.
    let again = SeamError::new(ErrorKind::Quota, err.message.clone());
    assert_eq!(sim.ctl.after_reconcile(&sim.group, Err(err)).await, Some(Duration::from_secs(300)));
    assert_eq!(sim.ctl.after_reconcile(&sim.group, Err(again)).await, Some(Duration::from_secs(300)));
    let paused: Vec<_> = sim
        .store
        .events(Some(&sim.group), 20)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.message.starts_with("group paused for 300s: quota: "))
        .collect();
    assert_eq!(paused.len(), 1, "{paused:?}");
    // The next pass (after the error policy's pause) succeeds, under a new number: the failed
    // attempt's name is never handed out again.
    assert!(matches!(sim.tick().await, Decision::ScaleOut { count: 1, .. }));
    assert_eq!(sim.names(), vec!["vm-test_2"]);
}

#[tokio::test]
async fn missing_samples_never_hand_over() {
    let sim = Sim::with_clone().await;
    // The metric source goes silent while the load has dropped: no data is not low data.
    sim.metrics.set_all(0.0, 0.0);
    sim.metrics.go_silent(true);
    for _ in 0..10 {
        assert!(!sim.tick().await.is_action());
    }
    assert_eq!(sim.names().len(), 2);
}

/// A scale-mode group of 3 made from template `v1`, then the template changes to `v2`.
async fn rolled_group(batch: u32) -> Sim {
    let mut spec = seed_spec();
    spec.mode = Mode::Scale;
    spec.min = 3;
    spec.max = 4;
    spec.template_version = "v1".into();
    spec.rollout = Some(flotilla_model::Rollout { max_unavailable: batch });
    let mut sim = Sim::new(spec.clone());
    sim.ctl.recover().await.unwrap();
    sim.metrics.set_all(50.0, 10.0);
    assert!(matches!(sim.tick().await, Decision::ScaleOut { count: 3, .. }));
    assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_2", "vm-test_3"]);
    // "Restart" with the new template.
    spec.template_version = "v2".into();
    sim.ctl = Sim::controller(&sim.clock, &sim.provider, &sim.metrics, &sim.balancer, &sim.store, spec);
    sim.ctl.recover().await.unwrap();
    sim
}

async fn versions(sim: &Sim) -> Vec<(String, String)> {
    let mut v: Vec<_> = sim
        .store
        .instances(&sim.group)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.name.clone(), i.tag(flotilla_model::TEMPLATE_TAG).unwrap_or("-").to_string()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_template_change_rolls_members_one_batch_at_a_time_new_before_old() {
    let sim = rolled_group(1).await;
    for round in 0..3 {
        let d = sim.tick().await;
        assert!(matches!(&d, Decision::Replace { old, .. } if old.len() == 1), "round {round}: {d:?}");
    }
    assert_eq!(
        versions(&sim).await,
        [("vm-test_4".into(), "v2".into()), ("vm-test_5".into(), "v2".into()), ("vm-test_6".into(), "v2".into())]
    );
    // Each new member was healthy behind the balancer before its predecessor drained.
    let calls = sim.balancer.calls();
    for (new, old) in [("vm-test_4", "vm-test_1"), ("vm-test_5", "vm-test_2"), ("vm-test_6", "vm-test_3")] {
        let healthy = calls.iter().position(|c| matches!(c, BalancerCall::WaitHealthy(_, id) if id.as_str() == new));
        let drained = calls.iter().position(|c| matches!(c, BalancerCall::Drain(_, id) if id.as_str() == old));
        assert!(healthy.unwrap() < drained.unwrap(), "{new} before {old}: {calls:?}");
    }
    // Done: nothing more to roll.
    assert_eq!(sim.tick().await, Decision::Hold(HoldReason::Steady));
    let ops = sim.store.operations(&sim.group, 10).await.unwrap();
    assert_eq!(ops.iter().filter(|o| matches!(o.kind, OpKind::Replace { .. })).count(), 3);
}

#[tokio::test]
async fn a_failed_new_member_stops_the_rollout_and_leaves_nothing_behind() {
    let sim = rolled_group(2).await;
    sim.provider.fail_next("create", ErrorKind::Invalid);
    let d = sim.ctl.reconcile(&sim.group).await;
    assert!(d.is_err(), "the batch fails");
    // The old members all still serve; no new member was left.
    assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_2", "vm-test_3"]);
    let ops = sim.store.operations(&sim.group, 1).await.unwrap();
    assert!(matches!(&ops[0].state, OpState::Failed(reason) if reason.contains("rollout stopped")), "{ops:?}");
    // Stopped for this version: later ticks hold (after the backoff the error policy applies).
    for _ in 0..3 {
        assert_eq!(sim.tick().await, Decision::Hold(HoldReason::Steady));
    }
    assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_2", "vm-test_3"]);
}

#[tokio::test]
async fn a_failed_delete_returns_the_drained_member_to_service() {
    // The retire drains, the provider refuses the delete: the member still exists and must serve
    // again, or a later handover could retire the only serving member.
    let sim = Sim::with_clone().await;
    sim.metrics.set_all(1.0, 1.0);
    sim.provider.fail_next("delete", ErrorKind::Transient);
    let mut failed = false;
    for _ in 0..6 {
        sim.clock.advance(Duration::from_secs(5));
        if sim.ctl.reconcile(&sim.group).await.is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "the handover's delete failed");
    assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_clone_1"], "nothing deleted");
    let baseline = InstanceId::new("vm-test_1");
    assert!(!sim.balancer.serving(&sim.group).contains(&baseline), "drained by the failed retire");
    // The next pass sees the operation failed and the member still running: it serves again.
    sim.metrics.set_all(50.0, 1.0);
    sim.tick().await;
    assert_eq!(
        sim.balancer.serving(&sim.group),
        vec![InstanceId::new("vm-test_1"), InstanceId::new("vm-test_clone_1")]
    );
    let stored = sim.store.instances(&sim.group).await.unwrap();
    assert!(stored.iter().all(|i| i.state == InstanceState::Running), "{stored:?}");
}

/// A balancer-like source: a request rate for every member, stamped `now` on every tick.
struct RateSource;

#[async_trait::async_trait]
impl flotilla_model::MetricSource for RateSource {
    fn name(&self) -> &str {
        "rate"
    }
    async fn sample(
        &self,
        _group: &GroupId,
        members: &[flotilla_model::Instance],
        now: Timestamp,
    ) -> Result<Vec<flotilla_model::Sample>, SeamError> {
        Ok(members
            .iter()
            .map(|m| flotilla_model::Sample::new(m.id.clone(), now).with(flotilla_model::Metric::RequestRate, 3.0))
            .collect())
    }
}

#[tokio::test]
async fn a_reading_counts_once_and_a_merge_never_freshens_it() {
    // Seen on a real run: one pushed CPU reading of 5 %, then silence; the balancer's samples,
    // stamped on every tick, made the old reading count again and again until it scaled in.
    let mut spec = GroupSpec::example("web");
    spec.mode = Mode::Scale;
    spec.max = 3;
    let t = spec.policy.threshold_mut().unwrap();
    t.metric = flotilla_model::MetricChoice::Cpu;
    t.min_down = 3;
    let pushed = Arc::new(ScriptedMetrics::new());
    let clock = FakeClock::new(Timestamp::from_millis(1_700_000_000_000));
    let provider = Arc::new(FakeProvider::new(clock.clone()));
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    let group = spec.id.clone();
    let ctl = Controller::new(ControllerParts {
        store: store.clone(),
        provider: provider.clone(),
        sources: vec![pushed.clone(), Arc::new(RateSource)],
        balancer: Arc::new(RecordingBalancer::new()),
        clock: Arc::new(clock.clone()),
        groups: vec![spec],
        options: Options::default(),
    });
    ctl.recover().await.unwrap();
    let tick = || async {
        clock.advance(Duration::from_secs(5));
        ctl.reconcile(&group).await.unwrap().evaluation.unwrap()
    };
    tick().await; // web_1
    pushed.set_all(95.0, 10.0);
    for _ in 0..4 {
        tick().await;
    }
    assert_eq!(provider.names(), vec!["web_1", "web_2"]);

    // One low reading, then the pusher stops; its last reading is served as it was.
    pushed.set_all(5.0, 10.0);
    pushed.stamp(Some(clock.now()));
    let mut downs = Vec::new();
    for _ in 0..8 {
        let e = tick().await;
        downs.push(e.down_count);
        assert!(!matches!(e.decision, Decision::ScaleIn { .. }), "scaled in on one reading: {downs:?}");
    }
    assert!(downs.iter().all(|&d| d <= 1), "the reading counted more than once: {downs:?}");
    assert_eq!(provider.names(), vec!["web_1", "web_2"]);
}

#[tokio::test]
async fn a_resumed_rollout_that_fails_never_removes_the_members_that_serve() {
    // A previous run created the new member, retired the old one, and died before finishing. On
    // resume the (idempotent) create fails: the undo must not remove the member that now serves.
    let sim = rolled_group(1).await;
    let kind = OpKind::Replace {
        old: vec![InstanceId::new("vm-test_1")],
        names: vec!["vm-test_4".into()],
        version: "v2".into(),
        cause: flotilla_model::ReplaceCause::Outdated,
    };
    use flotilla_model::Provider;
    let spec =
        flotilla_model::InstanceSpec { base_name: "vm-test".into(), clone_base: "vm-test_clone".into(), vcpus: 1 };
    sim.provider.create(&sim.group, &spec, &["vm-test_4".into()]).await.unwrap();
    sim.provider.delete(&sim.group, &[InstanceId::new("vm-test_1")]).await.unwrap();
    sim.store.begin_operation(&sim.group, &kind, sim.clock.now()).await.unwrap();
    sim.provider.fail_next("create", ErrorKind::Transient);
    let ctl = Sim::controller(&sim.clock, &sim.provider, &sim.metrics, &sim.balancer, &sim.store, {
        let mut s = seed_spec();
        s.mode = Mode::Scale;
        s.min = 3;
        s.max = 4;
        s.template_version = "v2".into();
        s
    });
    let _ = ctl.recover().await;
    assert_eq!(sim.names(), vec!["vm-test_2", "vm-test_3", "vm-test_4"], "the serving new member stays");
}

#[tokio::test]
async fn a_failed_resume_at_start_fails_that_operation_not_the_daemon() {
    let sim = Sim::new(seed_spec());
    sim.ctl.recover().await.unwrap();
    sim.tick().await; // baseline
    let kind = OpKind::ScaleOut { names: vec!["vm-test_clone_1".into()], clone: true };
    sim.store.begin_operation(&sim.group, &kind, sim.clock.now()).await.unwrap();
    sim.provider.fail_next("create", ErrorKind::Transient);
    let ctl = Sim::controller(&sim.clock, &sim.provider, &sim.metrics, &sim.balancer, &sim.store, seed_spec());
    assert_eq!(ctl.recover().await.unwrap(), 0, "nothing resumed, and no error");
    let ops = sim.store.operations(&sim.group, 1).await.unwrap();
    assert!(matches!(&ops[0].state, OpState::Failed(r) if r.contains("injected create failure")), "{ops:?}");
}

#[tokio::test]
async fn a_resumed_scale_in_keeps_the_last_serving_member() {
    // The intent was to remove vm-test_1 while vm-test_2 served; by the restart vm-test_2 is gone.
    let mut spec = seed_spec();
    spec.mode = Mode::Scale;
    spec.max = 3;
    let sim = Sim::new(spec.clone());
    sim.ctl.recover().await.unwrap();
    sim.tick().await;
    use flotilla_model::Provider;
    let ispec = spec.instance.clone();
    sim.provider.create(&sim.group, &ispec, &["vm-test_2".into()]).await.unwrap();
    sim.tick().await;
    let kind = OpKind::ScaleIn { victims: vec![InstanceId::new("vm-test_1")] };
    sim.store.begin_operation(&sim.group, &kind, sim.clock.now()).await.unwrap();
    sim.provider.delete(&sim.group, &[InstanceId::new("vm-test_2")]).await.unwrap();
    let ctl = Sim::controller(&sim.clock, &sim.provider, &sim.metrics, &sim.balancer, &sim.store, spec);
    let _ = ctl.recover().await;
    assert_eq!(sim.names(), vec!["vm-test_1"], "the only serving member stays");
}

#[tokio::test]
async fn a_panicking_pass_pauses_its_group_and_says_so() {
    let sim = Sim::new(seed_spec());
    sim.ctl.recover().await.unwrap();
    sim.provider.panic_next("list");
    let shutdown = flotilla_controller::Shutdown::default();
    let run = tokio::spawn(flotilla_controller::run(sim.ctl.clone(), shutdown.clone(), Duration::from_secs(1)));
    let mut seen = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let events = sim.store.events(Some(&sim.group), 20).await.unwrap();
        if events.iter().any(|e| e.message.contains("bug") && e.message.contains("injected list panic")) {
            seen = true;
            break;
        }
    }
    shutdown.trigger();
    run.await.unwrap().unwrap();
    assert!(seen, "the panic is reported as an event of its group");
    assert!(sim.ctl.status(&sim.group).unwrap().last_error.unwrap().contains("injected list panic"));
}

#[tokio::test]
async fn a_stop_removes_every_member_and_an_interrupted_one_is_not_resumed() {
    let sim = Sim::with_clone().await;
    // `run --stop-members` died mid-way: the next plain run must not finish the stop.
    let everyone = vec![InstanceId::new("vm-test_1"), InstanceId::new("vm-test_clone_1")];
    sim.store.begin_operation(&sim.group, &OpKind::Stop { victims: everyone.clone() }, sim.clock.now()).await.unwrap();
    let ctl = Sim::controller(&sim.clock, &sim.provider, &sim.metrics, &sim.balancer, &sim.store, seed_spec());
    assert_eq!(ctl.recover().await.unwrap(), 0);
    assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_clone_1"], "members kept");
    let ops = sim.store.operations(&sim.group, 1).await.unwrap();
    assert!(matches!(&ops[0].state, OpState::Failed(r) if r.contains("not resumed")), "{ops:?}");
    // A stop asked for now removes them all, the last one included.
    ctl.perform(&sim.group, OpKind::Stop { victims: everyone }).await.unwrap();
    assert!(sim.names().is_empty());
}

#[tokio::test]
async fn a_name_is_never_reused() {
    let mut spec = seed_spec();
    spec.mode = Mode::Scale;
    spec.max = 3;
    let sim = Sim::new(spec);
    sim.ctl.recover().await.unwrap();
    sim.tick().await;
    sim.metrics.set_all(95.0, 10.0);
    for _ in 0..4 {
        sim.tick().await;
    }
    assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_2"]);
    sim.metrics.set_all(5.0, 10.0);
    for _ in 0..4 {
        sim.tick().await;
    }
    assert_eq!(sim.names().len(), 1, "scaled in");
    sim.metrics.set_all(95.0, 10.0);
    for _ in 0..4 {
        sim.tick().await;
    }
    let names = sim.names();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"vm-test_3".to_string()), "a new member gets a new number: {names:?}");
}

#[tokio::test]
async fn sources_forget_a_member_that_is_gone() {
    let sim = Sim::with_clone().await;
    sim.metrics.set_all(1.0, 1.0);
    for _ in 0..5 {
        sim.tick().await;
    }
    assert_eq!(sim.names(), vec!["vm-test_clone_1"], "handed over");
    assert_eq!(sim.metrics.forgotten(), vec!["vm-test_1"], "retired: forgotten once");
    // A member that disappears on its own is forgotten too.
    use flotilla_model::Provider;
    sim.provider.delete(&sim.group, &[InstanceId::new("vm-test_clone_1")]).await.unwrap();
    sim.tick().await;
    assert_eq!(sim.metrics.forgotten(), vec!["vm-test_1", "vm-test_clone_1"]);
}

/// A scale-mode group of 3 (steady load) whose members are judged by their health check: grace
/// 60 s from creation, replaced after 20 s of failing.
async fn health_group() -> Sim {
    let mut spec = seed_spec();
    spec.mode = Mode::Scale;
    spec.min = 3;
    spec.max = 4;
    spec.rollout = None;
    spec.health_replace =
        Some(flotilla_model::HealthReplace { grace: Duration::from_secs(60), after: Duration::from_secs(20) });
    let sim = Sim::new(spec);
    sim.ctl.recover().await.unwrap();
    sim.metrics.set_all(50.0, 10.0);
    assert!(matches!(sim.tick().await, Decision::ScaleOut { count: 3, .. }));
    sim
}

fn replaced_for_health(d: &Decision) -> Option<Vec<&str>> {
    match d {
        Decision::Replace { old, cause: flotilla_model::ReplaceCause::Unhealthy, .. } => {
            Some(old.iter().map(InstanceId::as_str).collect())
        }
        _ => None,
    }
}

#[tokio::test]
async fn a_member_failing_its_health_check_is_replaced_new_before_old_after_its_grace() {
    let sim = health_group().await;
    let sick = InstanceId::new("vm-test_2");
    sim.balancer.set_failing(&sick, Some(sim.clock.now()));
    // Made 5 s ago and failing since now: judged once 60 s old and 20 s failing, not before.
    let mut ticks = 0;
    let d = loop {
        let d = sim.tick().await;
        ticks += 1;
        if d.is_action() || ticks > 30 {
            break d;
        }
        assert_eq!(d, Decision::Hold(HoldReason::Steady));
    };
    assert_eq!(replaced_for_health(&d), Some(vec!["vm-test_2"]), "{d:?}");
    assert_eq!(ticks, 12, "at 60 s of age (5 s per tick), not before");
    assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_3", "vm-test_4"]);
    let calls = sim.balancer.calls();
    let healthy =
        calls.iter().position(|c| matches!(c, BalancerCall::WaitHealthy(_, id) if id.as_str() == "vm-test_4"));
    let drained = calls.iter().position(|c| matches!(c, BalancerCall::Drain(_, id) if id == &sick));
    assert!(healthy.unwrap() < drained.unwrap(), "new before old: {calls:?}");
    let events = sim.store.events(Some(&sim.group), 10).await.unwrap();
    let said = |needle: &str| events.iter().any(|e| e.message.contains(needle));
    assert!(said("replacing: vm-test_2 failing its health check for 60s"), "{events:?}");
    assert!(said("replaced vm-test_2 with vm-test_4 (failing their health check)"), "{events:?}");
    // The new member is healthy: nothing more.
    for _ in 0..5 {
        assert_eq!(sim.tick().await, Decision::Hold(HoldReason::Steady));
    }
}

#[tokio::test]
async fn an_unhealthy_member_that_cannot_be_deleted_is_retried_without_adding_members() {
    // The member's host does not answer (Unknown) and its delete fails: the retry finds the new
    // member it already made, so the group never grows one member per attempt.
    let sim = health_group().await;
    sim.provider.set_state("vm-test_2", InstanceState::Unknown("host down".into()));
    sim.balancer.set_failing(&InstanceId::new("vm-test_2"), Some(sim.clock.now()));
    sim.clock.advance(Duration::from_secs(60));
    sim.provider.fail_next("delete", ErrorKind::Transient);
    sim.clock.advance(Duration::from_secs(5));
    assert!(sim.ctl.reconcile(&sim.group).await.is_err(), "the delete fails");
    assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_2", "vm-test_3", "vm-test_4"]);
    for _ in 0..3 {
        sim.tick().await;
    }
    assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_3", "vm-test_4"], "retried with the same name");
    let ops = sim.store.operations(&sim.group, 10).await.unwrap();
    let names: Vec<&Vec<String>> = ops
        .iter()
        .filter_map(|o| match &o.kind {
            OpKind::Replace { names, .. } => Some(names),
            _ => None,
        })
        .collect();
    assert_eq!(names, [&vec!["vm-test_4".to_string()], &vec!["vm-test_4".to_string()]], "{ops:?}");
}

#[tokio::test]
async fn a_replacement_whose_new_member_never_serves_waits_one_grace_period() {
    let sim = health_group().await;
    sim.balancer.set_failing(&InstanceId::new("vm-test_2"), Some(sim.clock.now()));
    sim.clock.advance(Duration::from_secs(60));
    sim.provider.fail_next("create", ErrorKind::Transient);
    sim.clock.advance(Duration::from_secs(5));
    assert!(sim.ctl.reconcile(&sim.group).await.is_err(), "the new member fails");
    assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_2", "vm-test_3"], "nothing left behind");
    let ops = sim.store.operations(&sim.group, 1).await.unwrap();
    assert!(matches!(&ops[0].state, OpState::Failed(r) if r.contains("waits one grace period")), "{ops:?}");
    // 60 s of grace at 5 s per tick: held for 11 ticks, then tried again (with a new name).
    let mut held = 0;
    let d = loop {
        let d = sim.tick().await;
        if d.is_action() || held > 30 {
            break d;
        }
        held += 1;
    };
    assert_eq!(held, 11);
    assert_eq!(replaced_for_health(&d), Some(vec!["vm-test_2"]));
    assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_3", "vm-test_5"]);
}

/// A scale-mode group of 2 (min 1, max 3) at steady load.
async fn controlled_group() -> Sim {
    let mut spec = seed_spec();
    spec.mode = Mode::Scale;
    spec.min = 2;
    spec.max = 3;
    let sim = Sim::new(spec.clone());
    sim.ctl.recover().await.unwrap();
    sim.metrics.set_all(50.0, 10.0);
    assert!(matches!(sim.tick().await, Decision::ScaleOut { count: 2, .. }));
    // From now on one member may go.
    spec.min = 1;
    let ctl = Sim::controller(&sim.clock, &sim.provider, &sim.metrics, &sim.balancer, &sim.store, spec);
    Sim { ctl, ..sim }
}

#[tokio::test]
async fn a_paused_group_holds_through_a_spike_and_acts_once_resumed() {
    let sim = controlled_group().await;
    sim.ctl.update_controls(&sim.group, "pause", |c| c.paused = true).await.unwrap();
    sim.metrics.set_all(100.0, 10.0);
    for _ in 0..8 {
        sim.tick().await;
    }
    assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_2"], "nothing made while paused");
    let events = sim.store.events(Some(&sim.group), 20).await.unwrap();
    let would: Vec<&str> =
        events.iter().filter(|e| e.message.starts_with("paused: would")).map(|e| e.message.as_str()).collect();
    assert_eq!(would.len(), 1, "said once, not every pass: {would:?}");
    assert!(would[0].starts_with("paused: would scale out by 1"), "{would:?}");
    assert!(events.iter().any(|e| e.message == "operator: pause"), "{events:?}");
    sim.ctl.update_controls(&sim.group, "resume", |c| c.paused = false).await.unwrap();
    assert!(matches!(sim.tick().await, Decision::ScaleOut { count: 1, .. }), "the streak was kept");
    assert_eq!(sim.names().len(), 3);
}

#[tokio::test]
async fn dry_run_records_what_it_would_do_and_makes_no_provider_call() {
    let sim = controlled_group().await;
    sim.ctl.update_controls(&sim.group, "dry run on", |c| c.dry_run = true).await.unwrap();
    let calls = sim.provider.counts();
    sim.metrics.set_all(1.0, 1.0);
    for _ in 0..6 {
        sim.tick().await;
    }
    assert_eq!(sim.provider.counts(), calls, "no create and no delete");
    assert_eq!(sim.names().len(), 2);
    let events = sim.store.events(Some(&sim.group), 20).await.unwrap();
    assert!(events.iter().any(|e| e.message.starts_with("dry run: would scale in, removing vm-test_1")), "{events:?}");
}

#[tokio::test]
async fn a_protected_member_survives_a_scale_in_that_would_pick_it() {
    let sim = controlled_group().await;
    let oldest = InstanceId::new("vm-test_1");
    sim.ctl
        .update_controls(&sim.group, "protect vm-test_1", |c| {
            c.protected.insert(oldest.clone());
        })
        .await
        .unwrap();
    sim.metrics.set_all(1.0, 1.0);
    let mut scaled = None;
    for _ in 0..6 {
        if let Decision::ScaleIn { victims, .. } = sim.tick().await {
            scaled = Some(victims);
        }
    }
    assert_eq!(scaled, Some(vec![InstanceId::new("vm-test_2")]), "the oldest (the default victim) is protected");
    assert_eq!(sim.names(), vec!["vm-test_1"]);
    // Restarted: the protection is kept.
    let controls = sim.store.controls(&sim.group).await.unwrap();
    assert!(controls.protected.contains(&oldest));
}

#[tokio::test]
async fn each_change_of_decision_is_an_event_with_its_numbers_and_steady_holds_are_said_once() {
    let sim = controlled_group().await;
    for _ in 0..6 {
        sim.tick().await;
    }
    sim.metrics.set_all(100.0, 10.0);
    for _ in 0..4 {
        sim.tick().await; // min_up is 4
    }
    let events = sim.store.events(Some(&sim.group), 100).await.unwrap();
    let decisions: Vec<&str> = events
        .iter()
        .rev()
        .filter(|e| e.kind == flotilla_model::EventKind::Decision)
        .map(|e| e.message.as_str())
        .collect();
    // The first scale-out to min, a steady hold (said once over six passes), then the spike:
    // counting towards min_up is still "steady", then the scale-out, then "in progress"/steady.
    let holds = decisions.iter().filter(|m| m.starts_with("hold (steady)")).count();
    assert!(holds <= 3, "steady holds said once per stretch, not per pass: {decisions:#?}");
    let out = decisions
        .iter()
        .find(|m| m.starts_with("scale-out: scale out by 1 (cpu"))
        .unwrap_or_else(|| panic!("no spike scale-out: {decisions:#?}"));
    assert!(out.contains("[metrics] cpu=100.0"), "{out}");
    let status = sim.ctl.status(&sim.group).unwrap();
    assert_eq!(status.inputs.len(), 2, "the scale-out's pass saw two running: {:?}", status.inputs);
    assert!(status
        .inputs
        .iter()
        .all(|i| i.values.iter().any(|(m, v, _)| *m == flotilla_model::Metric::Cpu && *v == 100.0)));
    assert!(status.summary.unwrap().starts_with("[metrics] cpu=100.0"));
}

fn messages(events: &[flotilla_model::Event]) -> Vec<&str> {
    events.iter().map(|e| e.message.as_str()).collect()
}

#[tokio::test]
async fn an_operators_desired_count_is_carried_out_once_and_the_policy_does_not_undo_it_at_once() {
    use flotilla_model::OperatorRequest;
    let sim = controlled_group().await; // 2 members, min 1, max 3, steady load
    let mut spec = sim.ctl.groups().next().unwrap().clone();
    // 30 s: counted from the group's first scale-out it would be over by the fifth low pass.
    spec.cooldown_down = Duration::from_secs(30);
    let ctl = Sim::controller(&sim.clock, &sim.provider, &sim.metrics, &sim.balancer, &sim.store, spec);
    let sim = Sim { ctl, ..sim };
    sim.ctl.request(&sim.group, OperatorRequest::Desired(3)).await.unwrap();
    // One at a time: a second request while the first waits is refused and names the first.
    match sim.ctl.request(&sim.group, OperatorRequest::Desired(1)).await {
        Err(flotilla_controller::RequestError::Busy(w)) => assert_eq!(w, OperatorRequest::Desired(3)),
        other => panic!("want busy, got {other:?}"),
    }
    let d = sim.tick().await;
    assert!(
        matches!(&d, Decision::ScaleOut { count: 1, reason } if reason == "operator set desired 3 (was 2)"),
        "{d:?}"
    );
    assert_eq!(sim.names().len(), 3);
    assert_eq!(sim.store.controls(&sim.group).await.unwrap().request, None, "answered");
    // Low load: the policy wants fewer, but the operator's change stamped the cooldown.
    sim.metrics.set_all(1.0, 1.0);
    for _ in 0..5 {
        assert!(!sim.tick().await.is_action(), "no scale-in within the cooldown the change stamped");
    }
    // Desired down, the same as now, and out of bounds.
    sim.ctl.request(&sim.group, OperatorRequest::Desired(1)).await.unwrap();
    let d = sim.tick().await;
    assert!(matches!(&d, Decision::ScaleIn { victims, .. } if victims.len() == 2), "{d:?}");
    assert_eq!(sim.names().len(), 1);
    sim.ctl.request(&sim.group, OperatorRequest::Desired(1)).await.unwrap();
    sim.tick().await;
    sim.ctl.request(&sim.group, OperatorRequest::Desired(9)).await.unwrap();
    sim.tick().await;
    let events = sim.store.events(Some(&sim.group), 100).await.unwrap();
    let said = messages(&events);
    assert!(said.contains(&"operator: desired 3 carried out as: scale out by 1"), "{said:?}");
    assert!(said.contains(&"operator: desired 1: already 1 members"), "{said:?}");
    assert!(said.contains(&"operator: desired 9 refused: desired 9 is outside min 1 .. max 3"), "{said:?}");
    assert_eq!(sim.store.controls(&sim.group).await.unwrap().request, None);
}

#[tokio::test]
async fn an_operator_drains_or_replaces_one_member_and_a_paused_group_keeps_the_request() {
    use flotilla_model::OperatorRequest;
    let sim = controlled_group().await;
    let second = InstanceId::new("vm-test_2");
    sim.ctl.update_controls(&sim.group, "pause", |c| c.paused = true).await.unwrap();
    sim.ctl.request(&sim.group, OperatorRequest::Replace(second.clone())).await.unwrap();
    for _ in 0..3 {
        assert!(!sim.tick().await.is_action(), "paused");
    }
    assert_eq!(sim.store.controls(&sim.group).await.unwrap().request, Some(OperatorRequest::Replace(second.clone())));
    sim.ctl.update_controls(&sim.group, "resume", |c| c.paused = false).await.unwrap();
    let d = sim.tick().await;
    assert!(
        matches!(&d, Decision::Replace { old, cause: flotilla_model::ReplaceCause::Operator, .. } if old == std::slice::from_ref(&second)),
        "{d:?}"
    );
    assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_3"], "new before old");
    let calls = sim.balancer.calls();
    let healthy =
        calls.iter().position(|c| matches!(c, BalancerCall::WaitHealthy(_, id) if id.as_str() == "vm-test_3"));
    let drained = calls.iter().position(|c| matches!(c, BalancerCall::Drain(_, id) if id.as_str() == "vm-test_2"));
    assert!(healthy.unwrap() < drained.unwrap(), "{calls:?}");

    // Drain: the group shrinks by one; a second drain would go below min and is refused.
    sim.ctl.request(&sim.group, OperatorRequest::Drain(InstanceId::new("vm-test_3"))).await.unwrap();
    assert!(matches!(sim.tick().await, Decision::ScaleIn { .. }));
    assert_eq!(sim.names(), vec!["vm-test_1"]);
    sim.ctl.request(&sim.group, OperatorRequest::Drain(InstanceId::new("vm-test_1"))).await.unwrap();
    sim.tick().await;
    assert_eq!(sim.names(), vec!["vm-test_1"]);
    let events = sim.store.events(Some(&sim.group), 100).await.unwrap();
    let said = messages(&events);
    assert!(said.contains(&"operator: drain vm-test_1 refused: 1 running, min 1: replace it instead"), "{said:?}");
}

#[tokio::test]
async fn an_operators_rolling_replacement_replaces_everyone_a_batch_at_a_time_then_ends() {
    let sim = controlled_group().await;
    sim.clock.advance(Duration::from_millis(1)); // the request comes after the members were made
    sim.ctl.replace_all(&sim.group).await.unwrap();
    for round in 0..2 {
        let d = sim.tick().await;
        assert!(
            matches!(&d, Decision::Replace { old, cause: flotilla_model::ReplaceCause::Operator, .. } if old.len() == 1),
            "round {round}: {d:?}"
        );
    }
    assert_eq!(sim.names(), vec!["vm-test_3", "vm-test_4"]);
    assert!(!sim.tick().await.is_action(), "everyone is new: it ends");
    assert_eq!(sim.store.controls(&sim.group).await.unwrap().replace_before, None);
    let events = sim.store.events(Some(&sim.group), 100).await.unwrap();
    assert!(messages(&events).contains(&"operator: rolling replacement finished"));
}

#[tokio::test]
async fn a_failed_batch_stops_the_operators_rolling_replacement() {
    let sim = controlled_group().await;
    sim.clock.advance(Duration::from_millis(1));
    sim.ctl.replace_all(&sim.group).await.unwrap();
    sim.provider.fail_next("create", ErrorKind::Invalid);
    sim.clock.advance(Duration::from_secs(5));
    assert!(sim.ctl.reconcile(&sim.group).await.is_err());
    for _ in 0..3 {
        assert!(!sim.tick().await.is_action(), "stopped");
    }
    assert_eq!(sim.names(), vec!["vm-test_1", "vm-test_2"]);
    let controls = sim.store.controls(&sim.group).await.unwrap();
    assert_eq!(controls.replace_before, None);
    let events = sim.store.events(Some(&sim.group), 100).await.unwrap();
    assert!(
        messages(&events).iter().any(|m| m.starts_with("operator: rolling replacement stopped: a batch failed")),
        "{:?}",
        messages(&events)
    );
}
