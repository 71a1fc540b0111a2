//! A backend-neutral conformance suite for [`Store`]: every check goes through the trait only.
//!
//! Run [`run_all`] against a fresh store of each backend (SQLite now, PostgreSQL later); each check is
//! also a `pub async fn` of its own, so a failure points at the check. Checks use group names unique to
//! the process and the moment (see [`unique_group`]), so they can share one store, and even one
//! long-lived database, with each other and with earlier runs; they never assume the store is empty.
//!
//! The contract pinned here, beyond the trait's doc comments:
//! - sample values come back as a set: a backend may reorder a sample's `(Metric, f64)` pairs (a
//!   JSON object has no order), so samples are compared with their values sorted by metric;
//! - `instances` has no defined order (compared sorted by id);
//! - "newest first" for samples and events means most recently written first;
//! - removing a member that is not there is not an error;
//! - finishing an unknown operation is NotFound; a second pending operation of a group is Conflict.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use flotilla_model::{
    ErrorKind, Event, EventFilter, EventKind, GroupControls, GroupId, Instance, InstanceId, InstanceState, Metric,
    OpId, OpKind, OpState, OperatorRequest, PolicyState, Sample, Store, Timestamp,
};

/// A base time for the checks' timestamps (2023-11-14), well inside every backend's range.
const T0: u64 = 1_700_000_000_000;

fn t(offset_ms: u64) -> Timestamp {
    Timestamp(T0 + offset_ms)
}

/// A group name no other check, and no earlier run against the same database, uses.
pub fn unique_group(check: &str) -> GroupId {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    GroupId(format!("conf-{check}-{}-{nanos:x}-{seq}", std::process::id()))
}

/// Runs every check in turn. Panics (with the check's name in the message) on the first failure.
pub async fn run_all(store: &dyn Store) {
    check_groups(store).await;
    check_primary(store).await;
    check_instances(store).await;
    check_instance_states(store).await;
    check_samples(store).await;
    check_policy_state(store).await;
    check_events(store).await;
    check_operation_lifecycle(store).await;
    check_one_pending_operation_per_group(store).await;
    check_operation_payloads(store).await;
    check_finish_unknown_operation(store).await;
    check_name_numbers(store).await;
    check_controls(store).await;
    check_alarm_states(store).await;
    check_signals(store).await;
}

/// Alarm states are per group and per name, replaced as a whole, kept in name order; a group
/// never registered is NotFound.
pub async fn check_alarm_states(store: &dyn Store) {
    use flotilla_model::{AlarmState, AlarmStatus};
    let ctx = "check_alarm_states";
    let g = unique_group("alarms");
    let other = unique_group("alarms-other");
    store.ensure_group(&g).await.expect(ctx);
    store.ensure_group(&other).await.expect(ctx);
    assert!(store.alarm_states(&g).await.expect(ctx).is_empty(), "{ctx}: none at first");
    let high = AlarmStatus {
        name: "cpu high".into(),
        state: AlarmState::InsufficientData,
        since: Timestamp(1_700_000_000_001),
        updated: Timestamp(1_700_000_000_002),
        reason: "no \"data\" yet".into(),
    };
    let low = AlarmStatus { name: "a-low".into(), state: AlarmState::Ok, ..high.clone() };
    store.save_alarm_state(&g, &high).await.expect(ctx);
    store.save_alarm_state(&g, &low).await.expect(ctx);
    assert_eq!(store.alarm_states(&g).await.expect(ctx), vec![low.clone(), high.clone()], "{ctx}: by name");
    let fired = AlarmStatus { state: AlarmState::Alarm, since: Timestamp(5), updated: Timestamp(6), ..high.clone() };
    store.save_alarm_state(&g, &fired).await.expect(ctx);
    assert_eq!(store.alarm_states(&g).await.expect(ctx), vec![low, fired], "{ctx}: replaced");
    assert!(store.alarm_states(&other).await.expect(ctx).is_empty(), "{ctx}: per group");
    let e = store.save_alarm_state(&unique_group("alarms-none"), &high).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{ctx}: {e}");
}

/// A signal key is new once; noted again within `keep` it is a replay; past `keep` it is forgotten.
pub async fn check_signals(store: &dyn Store) {
    let ctx = "check_signals";
    let key = unique_group("signal").0;
    let keep = std::time::Duration::from_secs(60);
    let t0 = Timestamp(1_700_000_000_000);
    assert!(store.note_signal(&key, t0, keep).await.expect(ctx), "{ctx}: new");
    assert!(!store.note_signal(&key, t0.plus(keep / 2), keep).await.expect(ctx), "{ctx}: a replay");
    assert!(store.note_signal(&format!("{key}-2"), t0, keep).await.expect(ctx), "{ctx}: another key");
    let later = t0.plus(keep * 3);
    assert!(store.note_signal(&key, later, keep).await.expect(ctx), "{ctx}: forgotten past keep");
}

/// Controls default to nothing, are per group, replace as a whole and outlive `ensure_group`; a
/// group never registered is NotFound.
pub async fn check_controls(store: &dyn Store) {
    let ctx = "check_controls";
    let g = unique_group("controls");
    let other = unique_group("controls-other");
    store.ensure_group(&g).await.expect(ctx);
    store.ensure_group(&other).await.expect(ctx);
    assert_eq!(store.controls(&g).await.expect(ctx), GroupControls::default(), "{ctx}: nothing at first");
    let set = GroupControls {
        paused: true,
        dry_run: true,
        protected: [InstanceId::new("web_1"), InstanceId::new("web_\"odd\" 2")].into_iter().collect(),
        request: Some(OperatorRequest::Drain(InstanceId::new("web_1"))),
        replace_before: Some(Timestamp(1_700_000_000_123)),
    };
    store.save_controls(&g, &set).await.expect(ctx);
    assert_eq!(store.controls(&g).await.expect(ctx), set, "{ctx}: round trip");
    assert_eq!(store.controls(&other).await.expect(ctx), GroupControls::default(), "{ctx}: per group");
    store.ensure_group(&g).await.expect(ctx);
    assert_eq!(store.controls(&g).await.expect(ctx), set, "{ctx}: ensure_group keeps them");
    for request in
        [OperatorRequest::Desired(3), OperatorRequest::Handover, OperatorRequest::Replace(InstanceId::new("a b"))]
    {
        let with = GroupControls { request: Some(request), ..set.clone() };
        store.save_controls(&g, &with).await.expect(ctx);
        assert_eq!(store.controls(&g).await.expect(ctx), with, "{ctx}: request round trip");
    }
    let cleared = GroupControls { dry_run: true, ..GroupControls::default() };
    store.save_controls(&g, &cleared).await.expect(ctx);
    assert_eq!(store.controls(&g).await.expect(ctx), cleared, "{ctx}: replaced as a whole");
    let e = store.save_controls(&unique_group("controls-none"), &set).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{ctx}: {e}");
}

/// Member numbers are reserved past the highest ever used, never handed out twice.
pub async fn check_name_numbers(store: &dyn Store) {
    let base = unique_group("names").0;
    let ctx = "check_name_numbers";
    assert_eq!(store.reserve_numbers(&base, 0, 1).await.expect(ctx), 1, "{ctx}: first number");
    assert_eq!(store.reserve_numbers(&base, 0, 2).await.expect(ctx), 2, "{ctx}: next two start at 2");
    // Members numbered higher exist (made by an older version, or by hand): past them.
    assert_eq!(store.reserve_numbers(&base, 10, 1).await.expect(ctx), 11, "{ctx}: past the highest in use");
    // The members are gone: their numbers are still not handed out.
    assert_eq!(store.reserve_numbers(&base, 0, 1).await.expect(ctx), 12, "{ctx}: never reused");
    let other = format!("{base}_clone");
    assert_eq!(store.reserve_numbers(&other, 0, 1).await.expect(ctx), 1, "{ctx}: one count per base");
}

fn normalized(mut samples: Vec<Sample>) -> Vec<Sample> {
    for s in &mut samples {
        s.values.sort_by_key(|&(m, _)| m);
    }
    samples
}

fn sorted(mut instances: Vec<Instance>) -> Vec<Instance> {
    instances.sort_by(|a, b| a.id.cmp(&b.id));
    instances
}

/// `ensure_group` is idempotent and `groups` lists every registered group once.
pub async fn check_groups(store: &dyn Store) {
    let a = unique_group("groups-a");
    let b = unique_group("groups-b");
    store.ensure_group(&a).await.expect("check_groups: ensure_group a");
    store.ensure_group(&a).await.expect("check_groups: ensure_group a again is not an error");
    store.ensure_group(&b).await.expect("check_groups: ensure_group b");
    let groups = store.groups().await.expect("check_groups: groups");
    assert_eq!(groups.iter().filter(|g| **g == a).count(), 1, "check_groups: {a} listed exactly once in {groups:?}");
    assert_eq!(groups.iter().filter(|g| **g == b).count(), 1, "check_groups: {b} listed exactly once in {groups:?}");
}

/// The primary starts unset, can be set, replaced and unset, and is per group.
pub async fn check_primary(store: &dyn Store) {
    let g = unique_group("primary");
    let other = unique_group("primary-other");
    store.ensure_group(&g).await.expect("check_primary: ensure_group");
    store.ensure_group(&other).await.expect("check_primary: ensure_group other");
    assert_eq!(store.primary(&g).await.expect("check_primary: primary"), None, "check_primary: unset at first");

    let p1 = InstanceId::new("web_1");
    store.set_primary(&g, Some(&p1)).await.expect("check_primary: set");
    assert_eq!(store.primary(&g).await.expect("check_primary: primary"), Some(p1.clone()), "check_primary: set");
    assert_eq!(store.primary(&other).await.expect("check_primary: other"), None, "check_primary: per group");

    let p2 = InstanceId::new("web_clone_1");
    store.set_primary(&g, Some(&p2)).await.expect("check_primary: replace");
    assert_eq!(store.primary(&g).await.expect("check_primary: primary"), Some(p2), "check_primary: replaced");

    store.ensure_group(&g).await.expect("check_primary: ensure_group again");
    assert!(store.primary(&g).await.expect("check_primary: primary").is_some(), "check_primary: ensure_group keeps it");

    store.set_primary(&g, None).await.expect("check_primary: unset");
    assert_eq!(store.primary(&g).await.expect("check_primary: primary"), None, "check_primary: unset again");
}

fn member(id: &str, group: &GroupId, at: u64) -> Instance {
    Instance::new(id, group, t(at))
}

/// Upsert inserts then replaces every field; remove removes (and is idempotent); groups are separate.
pub async fn check_instances(store: &dyn Store) {
    let g = unique_group("instances");
    let other = unique_group("instances-other");
    store.ensure_group(&g).await.expect("check_instances: ensure_group");
    store.ensure_group(&other).await.expect("check_instances: ensure_group other");
    assert!(
        store.instances(&g).await.expect("check_instances: instances").is_empty(),
        "check_instances: empty at first"
    );

    let mut a = member("web_1", &g, 1);
    a.name = "web-1.example".to_string();
    a.state = InstanceState::Running;
    a.address = Some("127.0.0.1:41234".to_string());
    a.tags = BTreeMap::from([
        ("pid".to_string(), "4242".to_string()),
        ("vcpus".to_string(), "2".to_string()),
        ("odd \"key\" ü".to_string(), "line\nbreak, {json: [1]}".to_string()),
        ("empty".to_string(), String::new()),
    ]);
    let b = member("web_2", &g, 2);
    // Same id in another group: a different member.
    let mut a_elsewhere = member("web_1", &other, 3);
    a_elsewhere.state = InstanceState::Draining;

    for i in [&a, &b, &a_elsewhere] {
        store.upsert_instance(i).await.expect("check_instances: upsert");
    }
    assert_eq!(
        sorted(store.instances(&g).await.expect("check_instances: instances")),
        vec![a.clone(), b.clone()],
        "check_instances: both members, every field as written"
    );
    assert_eq!(
        store.instances(&other).await.expect("check_instances: instances other"),
        vec![a_elsewhere.clone()],
        "check_instances: same id in another group is separate"
    );

    // Update: every field replaced, including tags removed and the address cleared.
    let mut a2 = a.clone();
    a2.name = "web-1-renamed".to_string();
    a2.state = InstanceState::Failed("exited with status 137".to_string());
    a2.address = None;
    a2.created_at = t(10);
    a2.tags = BTreeMap::from([("pid".to_string(), "4343".to_string())]);
    store.upsert_instance(&a2).await.expect("check_instances: upsert update");
    assert_eq!(
        sorted(store.instances(&g).await.expect("check_instances: instances")),
        vec![a2.clone(), b.clone()],
        "check_instances: update replaces the row, no duplicate"
    );

    store.remove_instance(&g, &a.id).await.expect("check_instances: remove");
    assert_eq!(
        store.instances(&g).await.expect("check_instances: instances"),
        vec![b.clone()],
        "check_instances: removed"
    );
    assert_eq!(
        store.instances(&other).await.expect("check_instances: instances other"),
        vec![a_elsewhere],
        "check_instances: removing from one group leaves the other alone"
    );
    store.remove_instance(&g, &a.id).await.expect("check_instances: removing a gone member is not an error");
    store.remove_instance(&g, &b.id).await.expect("check_instances: remove b");
    assert!(store.instances(&g).await.expect("check_instances: instances").is_empty(), "check_instances: all gone");
}

/// Every `InstanceState` survives the round trip, `Failed` with its reason (including an empty one).
pub async fn check_instance_states(store: &dyn Store) {
    let g = unique_group("instance-states");
    store.ensure_group(&g).await.expect("check_instance_states: ensure_group");
    let states = [
        InstanceState::Creating,
        InstanceState::Running,
        InstanceState::Draining,
        InstanceState::Deleting,
        InstanceState::Failed("out of memory: killed".to_string()),
        InstanceState::Failed(String::new()),
        InstanceState::Unknown("host down: connection refused".to_string()),
    ];
    let mut written = Vec::new();
    for (n, state) in states.iter().enumerate() {
        let mut i = member(&format!("m_{n}"), &g, n as u64);
        i.state = state.clone();
        store.upsert_instance(&i).await.expect("check_instance_states: upsert");
        written.push(i);
    }
    assert_eq!(
        sorted(store.instances(&g).await.expect("check_instance_states: instances")),
        written,
        "check_instance_states: every state round-trips"
    );
    // A member moving through its life, state by state, on the same row.
    let mut i = member("life", &g, 100);
    for state in &states {
        i.state = state.clone();
        store.upsert_instance(&i).await.expect("check_instance_states: upsert life");
        let got = store.instances(&g).await.expect("check_instance_states: instances");
        let got = got.iter().find(|m| m.id == i.id).expect("check_instance_states: life member present");
        assert_eq!(got, &i, "check_instance_states: transition to {state:?}");
    }
}

/// The window keeps the newest `keep` per group, reads newest first, honours `limit`.
pub async fn check_samples(store: &dyn Store) {
    let g = unique_group("samples");
    let other = unique_group("samples-other");
    store.ensure_group(&g).await.expect("check_samples: ensure_group");
    store.ensure_group(&other).await.expect("check_samples: ensure_group other");
    assert!(store.samples(&g, 10).await.expect("check_samples: samples").is_empty(), "check_samples: empty at first");

    let s = |n: u64| {
        let mut s = Sample::new(InstanceId::new(format!("web_{}", n % 2)), t(n * 1000));
        // Deliberately not in metric order, and values that need every bit to round-trip.
        s.set(Metric::Mem, 40.1 + n as f64);
        s.set(Metric::Cpu, 0.1 + 0.2 + n as f64);
        if n % 3 == 2 {
            s.set(Metric::RequestRate, 1.0 / 3.0);
        }
        s
    };
    let mut empty = Sample::new(InstanceId::new("web_9"), t(99));
    empty.values.clear();

    store.push_samples(&other, &[s(100), empty.clone()], 10).await.expect("check_samples: push other");
    store.push_samples(&g, &[s(1), s(2), s(3), s(4), s(5)], 3).await.expect("check_samples: push 5 keep 3");
    assert_eq!(
        normalized(store.samples(&g, 10).await.expect("check_samples: samples")),
        normalized(vec![s(5), s(4), s(3)]),
        "check_samples: newest 3, newest first"
    );
    store.push_samples(&g, &[s(6), s(7)], 3).await.expect("check_samples: push 2 keep 3");
    assert_eq!(
        normalized(store.samples(&g, 10).await.expect("check_samples: samples")),
        normalized(vec![s(7), s(6), s(5)]),
        "check_samples: window slides across pushes"
    );
    assert_eq!(
        normalized(store.samples(&g, 2).await.expect("check_samples: samples limit 2")),
        normalized(vec![s(7), s(6)]),
        "check_samples: limit"
    );
    assert!(store.samples(&g, 0).await.expect("check_samples: limit 0").is_empty(), "check_samples: limit 0");
    store.push_samples(&g, &[], 2).await.expect("check_samples: push nothing, keep 2");
    assert_eq!(
        normalized(store.samples(&g, 10).await.expect("check_samples: samples")),
        normalized(vec![s(7), s(6)]),
        "check_samples: an empty push still trims to keep"
    );
    assert_eq!(
        normalized(store.samples(&other, 10).await.expect("check_samples: samples other")),
        normalized(vec![empty, s(100)]),
        "check_samples: trimming one group leaves another alone; a sample without values round-trips"
    );
}

/// No saved state reads as the default; saved state (with and without stamps) round-trips exactly.
pub async fn check_policy_state(store: &dyn Store) {
    let g = unique_group("policy");
    let other = unique_group("policy-other");
    store.ensure_group(&g).await.expect("check_policy_state: ensure_group");
    assert_eq!(
        store.policy_state(&g).await.expect("check_policy_state: read"),
        PolicyState::default(),
        "check_policy_state: default when never saved"
    );

    let full = PolicyState {
        up_count: 3,
        down_count: 0,
        last_sample_at: t(5_000),
        last_scale_out: Some(t(1_000)),
        last_scale_in: Some(t(2_000)),
    };
    store.save_policy_state(&g, &full).await.expect("check_policy_state: save full");
    assert_eq!(store.policy_state(&g).await.expect("check_policy_state: read"), full, "check_policy_state: full");

    let partial = PolicyState {
        up_count: 0,
        down_count: u32::MAX,
        last_sample_at: t(6_000),
        last_scale_out: None,
        last_scale_in: Some(t(3_000)),
    };
    store.save_policy_state(&g, &partial).await.expect("check_policy_state: overwrite");
    assert_eq!(
        store.policy_state(&g).await.expect("check_policy_state: read"),
        partial,
        "check_policy_state: overwrite, a stamp back to None"
    );

    let none = PolicyState { last_scale_in: None, ..partial };
    store.save_policy_state(&g, &none).await.expect("check_policy_state: save no stamps");
    assert_eq!(store.policy_state(&g).await.expect("check_policy_state: read"), none, "check_policy_state: no stamps");
    assert_eq!(
        store.policy_state(&other).await.expect("check_policy_state: other"),
        PolicyState::default(),
        "check_policy_state: per group"
    );
}

/// Events read newest first, filtered by group or not, at most `limit`; every kind round-trips.
pub async fn check_events(store: &dyn Store) {
    let a = unique_group("events-a");
    let b = unique_group("events-b");
    store.ensure_group(&a).await.expect("check_events: ensure_group a");
    store.ensure_group(&b).await.expect("check_events: ensure_group b");
    assert!(store.events(Some(&a), 10).await.expect("check_events: events").is_empty(), "check_events: none at first");

    let kinds = [
        EventKind::ScaleOut,
        EventKind::ScaleIn,
        EventKind::Handover,
        EventKind::MemberUp,
        EventKind::MemberGone,
        EventKind::Recovered,
        EventKind::Error,
        EventKind::Info,
    ];
    let mut written = Vec::new();
    for (n, kind) in kinds.iter().enumerate() {
        let group = if n % 3 == 2 { &b } else { &a };
        let e = Event {
            at: t(n as u64 * 10),
            group: group.clone(),
            kind: *kind,
            message: format!("event {n}: {} «ü» \"quoted\"\nsecond line", kind.as_str()),
            // Every other event carries its detail, which comes back as it went in.
            data: (n % 2 == 0).then(|| format!(r#"{{"n":{n},"why":"«ü»"}}"#)),
        };
        store.record_event(&e).await.expect("check_events: record");
        written.push(e);
    }
    let newest_first = |group: Option<&GroupId>| -> Vec<Event> {
        written.iter().rev().filter(|e| group.is_none_or(|g| &e.group == g)).cloned().collect()
    };

    assert_eq!(
        store.events(Some(&a), 100).await.expect("check_events: a"),
        newest_first(Some(&a)),
        "check_events: group a"
    );
    assert_eq!(
        store.events(Some(&b), 100).await.expect("check_events: b"),
        newest_first(Some(&b)),
        "check_events: group b"
    );
    assert_eq!(
        store.events(Some(&a), 2).await.expect("check_events: a limit 2"),
        newest_first(Some(&a))[..2].to_vec(),
        "check_events: group and limit"
    );
    assert!(store.events(Some(&a), 0).await.expect("check_events: limit 0").is_empty(), "check_events: limit 0");

    // All groups: other checks (or runs) may have written events too, so look at ours only.
    let all = store.events(None, 10_000).await.expect("check_events: all");
    let ours: Vec<Event> = all.iter().filter(|e| e.group == a || e.group == b).cloned().collect();
    assert_eq!(ours, newest_first(None), "check_events: all groups, newest first");
    let two = store.events(None, 2).await.expect("check_events: all limit 2");
    assert_eq!(two.len(), 2, "check_events: all groups honours limit");

    // Filters the store applies: each the same as filtering the whole history.
    let by = |f: &dyn Fn(&Event) -> bool| -> Vec<Event> { newest_first(None).into_iter().filter(|e| f(e)).collect() };
    let cases: Vec<(EventFilter, Vec<Event>)> = vec![
        (EventFilter { group: Some(a.clone()), ..EventFilter::default() }, by(&|e| e.group == a)),
        (
            EventFilter { group: Some(a.clone()), kind: Some(EventKind::Error), ..EventFilter::default() },
            by(&|e| e.group == a && e.kind == EventKind::Error),
        ),
        (
            EventFilter { group: Some(b.clone()), since: Some(t(20)), before: Some(t(60)), ..EventFilter::default() },
            by(&|e| e.group == b && e.at >= t(20) && e.at < t(60)),
        ),
        (
            EventFilter { group: Some(a.clone()), before: Some(t(40)), ..EventFilter::default() },
            by(&|e| e.group == a && e.at < t(40)),
        ),
    ];
    for (filter, want) in cases {
        let got = store.find_events(&filter, 100).await.expect("check_events: find_events");
        assert_eq!(got, want, "check_events: find_events {filter:?}");
    }
    let all_before = EventFilter { before: Some(t(30)), ..EventFilter::default() };
    let got = store.find_events(&all_before, 10_000).await.expect("check_events: find_events, all groups");
    let ours: Vec<Event> = got.into_iter().filter(|e| e.group == a || e.group == b).collect();
    assert_eq!(ours, by(&|e| e.at < t(30)), "check_events: find_events across groups");
}

/// begin writes a pending intent listed by `unfinished_operations` (oldest first over all groups);
/// finishing Done or Failed(reason) removes it from there and keeps it in `operations` (newest first).
pub async fn check_operation_lifecycle(store: &dyn Store) {
    let a = unique_group("ops-a");
    let b = unique_group("ops-b");
    store.ensure_group(&a).await.expect("check_operation_lifecycle: ensure_group a");
    store.ensure_group(&b).await.expect("check_operation_lifecycle: ensure_group b");
    let ours = |ops: Vec<flotilla_model::Operation>| -> Vec<flotilla_model::Operation> {
        ops.into_iter().filter(|o| o.group == a || o.group == b).collect()
    };
    assert!(
        ours(store.unfinished_operations().await.expect("check_operation_lifecycle: unfinished")).is_empty(),
        "check_operation_lifecycle: nothing pending at first"
    );

    let kind_a = OpKind::ScaleOut { names: vec!["web_2".to_string()], clone: false };
    let op_a = store.begin_operation(&a, &kind_a, t(100)).await.expect("check_operation_lifecycle: begin a");
    assert_eq!(op_a.group, a, "check_operation_lifecycle: begin returns the group");
    assert_eq!(op_a.kind, kind_a, "check_operation_lifecycle: begin returns the kind");
    assert_eq!(op_a.state, OpState::Pending, "check_operation_lifecycle: begin returns Pending");
    assert_eq!((op_a.created_at, op_a.updated_at), (t(100), t(100)), "check_operation_lifecycle: begin stamps");

    let kind_b = OpKind::ScaleIn { victims: vec![InstanceId::new("web_1")] };
    let op_b = store.begin_operation(&b, &kind_b, t(200)).await.expect("check_operation_lifecycle: begin b");
    assert_ne!(op_a.id, op_b.id, "check_operation_lifecycle: distinct ids");

    assert_eq!(
        ours(store.unfinished_operations().await.expect("check_operation_lifecycle: unfinished")),
        vec![op_a.clone(), op_b.clone()],
        "check_operation_lifecycle: both pending, oldest first, exactly as begun"
    );
    assert_eq!(
        store.operations(&a, 10).await.expect("check_operation_lifecycle: operations a"),
        vec![op_a.clone()],
        "check_operation_lifecycle: operations of a group"
    );

    store.finish_operation(op_a.id, &OpState::Done, t(150)).await.expect("check_operation_lifecycle: finish a");
    assert_eq!(
        ours(store.unfinished_operations().await.expect("check_operation_lifecycle: unfinished")),
        vec![op_b.clone()],
        "check_operation_lifecycle: a done, b still pending"
    );
    let reason = "provider said: quota exceeded (cores)".to_string();
    store
        .finish_operation(op_b.id, &OpState::Failed(reason.clone()), t(250))
        .await
        .expect("check_operation_lifecycle: finish b");
    assert!(
        ours(store.unfinished_operations().await.expect("check_operation_lifecycle: unfinished")).is_empty(),
        "check_operation_lifecycle: nothing pending after both finished"
    );

    let done_a = flotilla_model::Operation { state: OpState::Done, updated_at: t(150), ..op_a.clone() };
    let failed_b = flotilla_model::Operation { state: OpState::Failed(reason), updated_at: t(250), ..op_b.clone() };
    assert_eq!(
        store.operations(&a, 10).await.expect("check_operation_lifecycle: operations a"),
        vec![done_a.clone()],
        "check_operation_lifecycle: Done kept in history with its finish time"
    );
    assert_eq!(
        store.operations(&b, 10).await.expect("check_operation_lifecycle: operations b"),
        vec![failed_b],
        "check_operation_lifecycle: Failed kept with its reason"
    );

    // A finished operation frees the group: the next one begins, and history is newest first.
    let kind_a2 = OpKind::Handover { retire: InstanceId::new("web_1"), successor: InstanceId::new("web_clone_1") };
    let op_a2 = store.begin_operation(&a, &kind_a2, t(300)).await.expect("check_operation_lifecycle: begin a again");
    assert_eq!(
        store.operations(&a, 10).await.expect("check_operation_lifecycle: operations a"),
        vec![op_a2.clone(), done_a.clone()],
        "check_operation_lifecycle: newest first"
    );
    assert_eq!(
        store.operations(&a, 1).await.expect("check_operation_lifecycle: operations a limit 1"),
        vec![op_a2.clone()],
        "check_operation_lifecycle: limit"
    );
    store.finish_operation(op_a2.id, &OpState::Done, t(350)).await.expect("check_operation_lifecycle: finish a2");
}

/// A second `begin_operation` for a group with a pending one is a Conflict, and changes nothing; other
/// groups are not affected; once the first finishes, the group can begin again.
pub async fn check_one_pending_operation_per_group(store: &dyn Store) {
    let g = unique_group("ops-one-pending");
    let other = unique_group("ops-one-pending-other");
    store.ensure_group(&g).await.expect("check_one_pending: ensure_group");
    store.ensure_group(&other).await.expect("check_one_pending: ensure_group other");
    let kind = OpKind::ScaleOut { names: vec!["web_3".to_string()], clone: true };

    let first = store.begin_operation(&g, &kind, t(10)).await.expect("check_one_pending: begin first");
    let err = store
        .begin_operation(&g, &OpKind::ScaleIn { victims: vec![InstanceId::new("web_1")] }, t(20))
        .await
        .expect_err("check_one_pending: a second pending operation must be refused");
    assert_eq!(err.kind(), ErrorKind::Conflict, "check_one_pending: refused as Conflict, got {err}");
    assert_eq!(
        store.operations(&g, 10).await.expect("check_one_pending: operations"),
        vec![first.clone()],
        "check_one_pending: the refused operation left no trace"
    );

    let elsewhere =
        store.begin_operation(&other, &kind, t(30)).await.expect("check_one_pending: other group may begin");

    store.finish_operation(first.id, &OpState::Done, t(40)).await.expect("check_one_pending: finish first");
    let second = store.begin_operation(&g, &kind, t(50)).await.expect("check_one_pending: begin after finish");
    store
        .finish_operation(second.id, &OpState::Failed("gave up".to_string()), t(60))
        .await
        .expect("check_one_pending: finish second");
    store.finish_operation(elsewhere.id, &OpState::Done, t(70)).await.expect("check_one_pending: finish other");
}

/// Every `OpKind` payload round-trips exactly through begin → unfinished → operations.
pub async fn check_operation_payloads(store: &dyn Store) {
    let kinds = [
        OpKind::ScaleOut {
            names: vec!["web_2".to_string(), "web_3".to_string(), "wéb \"4\"".to_string()],
            clone: true,
        },
        OpKind::ScaleOut { names: vec!["web_5".to_string()], clone: false },
        OpKind::ScaleOut { names: Vec::new(), clone: false },
        OpKind::ScaleIn { victims: vec![InstanceId::new("web_1"), InstanceId::new("web_2")] },
        OpKind::ScaleIn { victims: Vec::new() },
        OpKind::Stop { victims: vec![InstanceId::new("web_1")] },
        OpKind::Handover { retire: InstanceId::new("web_1"), successor: InstanceId::new("web_clone_1") },
    ];
    for (n, kind) in kinds.iter().enumerate() {
        let g = unique_group(&format!("ops-payload-{n}"));
        store.ensure_group(&g).await.expect("check_operation_payloads: ensure_group");
        let op = store.begin_operation(&g, kind, t(n as u64)).await.expect("check_operation_payloads: begin");
        assert_eq!(&op.kind, kind, "check_operation_payloads: begin returns the kind");
        let pending = store.unfinished_operations().await.expect("check_operation_payloads: unfinished");
        let found = pending.iter().find(|o| o.id == op.id).expect("check_operation_payloads: listed as unfinished");
        assert_eq!(found, &op, "check_operation_payloads: {} read back from unfinished", kind.as_str());
        store.finish_operation(op.id, &OpState::Done, t(1000)).await.expect("check_operation_payloads: finish");
        let history = store.operations(&g, 1).await.expect("check_operation_payloads: operations");
        assert_eq!(history.len(), 1, "check_operation_payloads: in history");
        assert_eq!(&history[0].kind, kind, "check_operation_payloads: {} read back from history", kind.as_str());
    }
}

/// Finishing an operation the store never wrote is NotFound, not a silent success.
pub async fn check_finish_unknown_operation(store: &dyn Store) {
    let err = store
        .finish_operation(OpId(i64::MAX - 7), &OpState::Done, t(0))
        .await
        .expect_err("check_finish_unknown_operation: must fail");
    assert_eq!(err.kind(), ErrorKind::NotFound, "check_finish_unknown_operation: NotFound, got {err}");
}
