//! SQLite-specific behaviour: durability across reopen, crash-recovery input, two processes sharing
//! the file, migrations, and damaged rows.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use flotilla_model::{
    ErrorKind, Event, EventKind, GroupId, Instance, InstanceId, InstanceState, Metric, OpKind, OpState, PolicyState,
    Sample, Store, Timestamp,
};
use flotilla_store_sqlite::{SqliteStore, SCHEMA_VERSION};

fn t(ms: u64) -> Timestamp {
    Timestamp(1_700_000_000_000 + ms)
}

fn raw(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).expect("raw open");
    c.busy_timeout(std::time::Duration::from_secs(5)).expect("busy_timeout");
    c
}

struct Written {
    group: GroupId,
    instance: Instance,
    sample: Sample,
    policy: PolicyState,
    event: Event,
    done: flotilla_model::Operation,
    pending: flotilla_model::Operation,
}

async fn write_everything(store: &dyn Store) -> Written {
    let group = GroupId::new("web");
    store.ensure_group(&group).await.unwrap();
    store.set_primary(&group, Some(&InstanceId::new("web_1"))).await.unwrap();
    let mut instance = Instance::new("web_1", &group, t(1));
    instance.state = InstanceState::Failed("crashed".into());
    instance.address = Some("127.0.0.1:4000".into());
    instance.tags = BTreeMap::from([("pid".to_string(), "77".to_string())]);
    store.upsert_instance(&instance).await.unwrap();
    let sample = Sample::new(InstanceId::new("web_1"), t(2)).with(Metric::Cpu, 12.5).with(Metric::Mem, 40.1);
    store.push_samples(&group, std::slice::from_ref(&sample), 10).await.unwrap();
    let policy = PolicyState {
        up_count: 2,
        down_count: 0,
        last_sample_at: t(2),
        last_scale_out: Some(t(1)),
        last_scale_in: None,
    };
    store.save_policy_state(&group, &policy).await.unwrap();
    let event =
        Event { at: t(3), group: group.clone(), kind: EventKind::ScaleOut, message: "added web_2".into(), data: None };
    store.record_event(&event).await.unwrap();
    let done = store
        .begin_operation(&group, &OpKind::ScaleIn { victims: vec![InstanceId::new("web_0")] }, t(4))
        .await
        .unwrap();
    store.finish_operation(done.id, &OpState::Done, t(5)).await.unwrap();
    let done = flotilla_model::Operation { state: OpState::Done, updated_at: t(5), ..done };
    let pending = store
        .begin_operation(&group, &OpKind::ScaleOut { names: vec!["web_2".into()], clone: true }, t(6))
        .await
        .unwrap();
    Written { group, instance, sample, policy, event, done, pending }
}

async fn assert_everything(store: &dyn Store, w: &Written) {
    assert_eq!(store.groups().await.unwrap(), vec![w.group.clone()]);
    assert_eq!(store.primary(&w.group).await.unwrap(), Some(InstanceId::new("web_1")));
    assert_eq!(store.instances(&w.group).await.unwrap(), vec![w.instance.clone()]);
    assert_eq!(store.samples(&w.group, 10).await.unwrap(), vec![w.sample.clone()]);
    assert_eq!(store.policy_state(&w.group).await.unwrap(), w.policy);
    assert_eq!(store.events(None, 10).await.unwrap(), vec![w.event.clone()]);
    assert_eq!(store.operations(&w.group, 10).await.unwrap(), vec![w.pending.clone(), w.done.clone()]);
    assert_eq!(store.unfinished_operations().await.unwrap(), vec![w.pending.clone()]);
}

#[tokio::test]
async fn everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flotilla.db");
    let written = {
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.path(), Some(path.as_path()));
        write_everything(&store).await
    };
    let store = SqliteStore::open(&path).unwrap();
    assert_everything(&store, &written).await;
}

/// What crash recovery starts from: the intent written before the provider call is still pending
/// after the process died, still blocks a second operation, and can be finished by the new process.
#[tokio::test]
async fn pending_operation_is_listed_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flotilla.db");
    let group = GroupId::new("web");
    let kind = OpKind::Handover { retire: InstanceId::new("web_1"), successor: InstanceId::new("web_clone_1") };
    let op = {
        let store = SqliteStore::open(&path).unwrap();
        store.ensure_group(&group).await.unwrap();
        let op = store.begin_operation(&group, &kind, t(10)).await.unwrap();
        // Simulate kill -9: no orderly shutdown of the connection.
        std::mem::forget(store);
        op
    };
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.unfinished_operations().await.unwrap(), vec![op.clone()]);
    let err = store.begin_operation(&group, &kind, t(20)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.message.contains("store: begin_operation"), "{err}");
    assert!(err.message.contains(&op.id.to_string()), "names the pending op: {err}");
    store.finish_operation(op.id, &OpState::Failed("abandoned after restart".into()), t(30)).await.unwrap();
    assert!(store.unfinished_operations().await.unwrap().is_empty());
}

/// The daemon and `flotilla status` hold the same file open at once.
#[tokio::test]
async fn two_handles_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flotilla.db");
    let daemon = SqliteStore::open(&path).unwrap();
    let status = SqliteStore::open(&path).unwrap();
    let written = write_everything(&daemon).await;
    assert_everything(&status, &written).await;

    // Writes from the second handle are seen by the first, and the pending-op rule holds across both.
    let err = status.begin_operation(&written.group, &OpKind::ScaleIn { victims: vec![] }, t(50)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    status.finish_operation(written.pending.id, &OpState::Done, t(51)).await.unwrap();
    assert!(daemon.unfinished_operations().await.unwrap().is_empty());
    status
        .record_event(&Event {
            at: t(52),
            group: written.group.clone(),
            kind: EventKind::Info,
            message: "hi".into(),
            data: None,
        })
        .await
        .unwrap();
    assert_eq!(daemon.events(Some(&written.group), 1).await.unwrap()[0].message, "hi");
}

/// Concurrent writers on two handles (two processes, in effect) wait for each other instead of
/// failing with SQLITE_BUSY, and exactly one of two racing begins wins.
#[tokio::test]
async fn concurrent_writers_on_two_handles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flotilla.db");
    let a = Arc::new(SqliteStore::open(&path).unwrap());
    let b = Arc::new(SqliteStore::open(&path).unwrap());
    let group = GroupId::new("race");
    a.ensure_group(&group).await.unwrap();

    let writer = |store: Arc<SqliteStore>, who: &'static str| {
        let group = group.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                for n in 0..100u64 {
                    let s = Sample::new(InstanceId::new(who), t(n)).with(Metric::Cpu, n as f64);
                    store.push_samples(&group, &[s], 1000).await.unwrap();
                    let e = Event {
                        at: t(n),
                        group: group.clone(),
                        kind: EventKind::Info,
                        message: format!("{who} {n}"),
                        data: None,
                    };
                    store.record_event(&e).await.unwrap();
                }
                store.begin_operation(&group, &OpKind::ScaleIn { victims: vec![] }, t(0)).await.map(|_| ())
            })
        })
    };
    let ra = writer(Arc::clone(&a), "a");
    let rb = writer(Arc::clone(&b), "b");
    let results = [ra.join().unwrap(), rb.join().unwrap()];
    assert_eq!(a.samples(&group, 1000).await.unwrap().len(), 200);
    assert_eq!(b.events(Some(&group), 1000).await.unwrap().len(), 200);
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "exactly one begin wins: {results:?}");
    let loser = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert_eq!(loser.kind(), ErrorKind::Conflict);
    assert_eq!(a.unfinished_operations().await.unwrap().len(), 1);
}

#[tokio::test]
async fn migrations_are_idempotent_and_tracked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("dirs").join("flotilla.db");
    let first = SqliteStore::open(&path).unwrap();
    let written = write_everything(&first).await;
    use std::os::unix::fs::PermissionsExt;
    for f in [path.clone(), path.with_extension("db-wal")] {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is owner-only", f.display());
    }
    drop(first);
    for _ in 0..3 {
        let store = SqliteStore::open(&path).unwrap();
        assert_everything(&store, &written).await;
    }
    let c = raw(&path);
    let version: u32 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let tables: i64 = c
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(
        tables, 10,
        "groups, instances, samples, policy_state, events, operations, name_numbers, group_controls, alarm_states, \
         signals_seen"
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flotilla.db");
    drop(SqliteStore::open(&path).unwrap());
    raw(&path).pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.message.contains("newer than this flotilla supports"), "{err}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flotilla.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(err.message.contains("store: open"), "{err}");
    assert!(err.message.contains("not a database"), "{err}");
}

#[tokio::test]
async fn the_database_enforces_one_pending_operation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flotilla.db");
    let store = SqliteStore::open(&path).unwrap();
    let group = GroupId::new("web");
    store.begin_operation(&group, &OpKind::ScaleIn { victims: vec![] }, t(0)).await.unwrap();
    // Even raw SQL that bypasses the store cannot add a second pending row.
    let err = raw(&path)
        .execute(
            "INSERT INTO operations (group_name, kind, payload_json, state, created_at_ms, updated_at_ms)
             VALUES ('web', 'scale-in', '{\"victims\":[]}', 'pending', 0, 0)",
            [],
        )
        .unwrap_err();
    assert!(err.to_string().contains("UNIQUE"), "{err}");
}

fn corrupt(path: &Path, sql: &str) {
    raw(path).execute_batch(sql).unwrap();
}

#[tokio::test]
async fn an_unreadable_operation_is_set_aside_not_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flotilla.db");
    let store = SqliteStore::open(&path).unwrap();
    let (web, api) = (GroupId::new("web"), GroupId::new("api"));
    store.ensure_group(&api).await.unwrap();
    let good =
        store.begin_operation(&api, &OpKind::ScaleIn { victims: vec![InstanceId::new("api_1")] }, t(1)).await.unwrap();
    corrupt(
        &path,
        "INSERT INTO operations (group_name, kind, payload_json, state, created_at_ms, updated_at_ms)
         VALUES ('web', 'teleport', '{}', 'pending', 0, 0)",
    );
    let id: i64 = raw(&path).query_row("SELECT max(id) FROM operations", [], |r| r.get(0)).unwrap();
    // The other group's operation is still resumed; the bad row is gone from the log...
    let pending = store.unfinished_operations().await.unwrap();
    assert_eq!(pending.iter().map(|o| o.id).collect::<Vec<_>>(), [good.id]);
    assert!(store.operations(&web, 10).await.unwrap().is_empty());
    // ...and kept, whole, in an error event of its group.
    let events = store.events(Some(&web), 10).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, EventKind::Error);
    let m = &events[0].message;
    assert!(m.contains(&format!("operation row {id} could not be read and was set aside")), "{m}");
    assert!(m.contains("unknown operation kind \"teleport\"") && m.contains("payload {}"), "{m}");
}

#[tokio::test]
async fn other_damaged_rows_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flotilla.db");
    let store = SqliteStore::open(&path).unwrap();
    let g = GroupId::new("web");
    let cases: [(&str, &str); 4] = [
        ("INSERT INTO samples (group_name, instance, at_ms, values_json) VALUES ('web', 'w', 0, '{\"gpu\":1}')", "unknown metric \"gpu\""),
        (
            "INSERT INTO instances (group_name, id, name, state, created_at_ms, tags_json) VALUES ('web', 'w', 'w', 'zombie', 0, '{}')",
            "unknown instance state \"zombie\"",
        ),
        ("INSERT INTO events (at_ms, group_name, kind, message) VALUES (0, 'web', 'party', 'x')", "unknown event kind \"party\""),
        (
            "INSERT INTO policy_state (group_name, up_count, down_count, last_sample_at_ms) VALUES ('web', -1, 0, 0)",
            "up_count is out of range",
        ),
    ];
    for (sql, expected) in cases {
        corrupt(&path, sql);
        let err = match () {
            _ if sql.contains("INTO samples") => store.samples(&g, 10).await.unwrap_err(),
            _ if sql.contains("INTO instances") => store.instances(&g).await.unwrap_err(),
            _ if sql.contains("INTO events") => store.events(Some(&g), 10).await.unwrap_err(),
            _ => store.policy_state(&g).await.unwrap_err(),
        };
        assert_eq!(err.kind(), ErrorKind::Bug, "{err}");
        assert!(err.message.contains(expected), "expected {expected:?} in {err}");
        corrupt(&path, "DELETE FROM operations; DELETE FROM samples; DELETE FROM instances; DELETE FROM events; DELETE FROM policy_state;");
    }
}

#[tokio::test]
async fn finished_operations_are_trimmed_per_group_pending_ones_never() {
    let store = SqliteStore::open_in_memory().unwrap().with_operations_kept(3);
    let (a, b) = (GroupId::new("a"), GroupId::new("b"));
    for g in [&a, &b] {
        store.ensure_group(g).await.unwrap();
    }
    let kind = OpKind::ScaleIn { victims: vec![InstanceId::new("x")] };
    let first_b = store.begin_operation(&b, &kind, t(0)).await.unwrap();
    store.finish_operation(first_b.id, &OpState::Done, t(0)).await.unwrap();
    for n in 0..6 {
        let op = store.begin_operation(&a, &kind, t(n)).await.unwrap();
        store.finish_operation(op.id, &OpState::Done, t(n)).await.unwrap();
    }
    let pending = store.begin_operation(&a, &kind, t(9)).await.unwrap();
    assert_eq!(store.operations(&a, 100).await.unwrap().len(), 4, "3 finished and the pending one");
    assert_eq!(store.unfinished_operations().await.unwrap()[0].id, pending.id);
    assert_eq!(store.operations(&b, 100).await.unwrap().len(), 1, "other groups keep theirs");
}

#[tokio::test]
async fn events_are_trimmed_per_group() {
    let store = SqliteStore::open_in_memory().unwrap().with_events_kept(5);
    assert_eq!(store.path(), None);
    let (a, b) = (GroupId::new("a"), GroupId::new("b"));
    for n in 0..3 {
        store
            .record_event(&Event {
                at: t(n),
                group: b.clone(),
                kind: EventKind::Info,
                message: format!("b{n}"),
                data: None,
            })
            .await
            .unwrap();
    }
    for n in 0..20 {
        store
            .record_event(&Event {
                at: t(n),
                group: a.clone(),
                kind: EventKind::Info,
                message: format!("a{n}"),
                data: None,
            })
            .await
            .unwrap();
    }
    let msgs: Vec<String> = store.events(Some(&a), 100).await.unwrap().into_iter().map(|e| e.message).collect();
    assert_eq!(msgs, ["a19", "a18", "a17", "a16", "a15"]);
    assert_eq!(store.events(Some(&b), 100).await.unwrap().len(), 3);
}

#[tokio::test]
async fn keep_zero_empties_the_window() {
    let store = SqliteStore::open_in_memory().unwrap();
    let g = GroupId::new("g");
    let s = Sample::new(InstanceId::new("m"), t(0)).with(Metric::Cpu, 1.0);
    store.push_samples(&g, &[s.clone(), s], 0).await.unwrap();
    assert!(store.samples(&g, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_input_is_refused_without_writing() {
    let store = SqliteStore::open_in_memory().unwrap();
    let g = GroupId::new("g");
    let good = Sample::new(InstanceId::new("m"), t(0)).with(Metric::Cpu, 1.0);
    let bad = Sample::new(InstanceId::new("m"), t(1)).with(Metric::Cpu, f64::NAN);
    let err = store.push_samples(&g, &[good, bad], 10).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(store.samples(&g, 10).await.unwrap().is_empty(), "nothing written");

    let huge = Instance::new("m", &g, Timestamp(u64::MAX));
    assert_eq!(store.upsert_instance(&huge).await.unwrap_err().kind(), ErrorKind::Invalid);

    let err = store.set_primary(&g, Some(&InstanceId::new("m"))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "set_primary needs ensure_group first: {err}");

    let op = store.begin_operation(&g, &OpKind::ScaleIn { victims: vec![] }, t(0)).await.unwrap();
    let err = store.finish_operation(op.id, &OpState::Pending, t(1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
}

/// A busy database (another process holding the write lock past the timeout) is Transient.
#[tokio::test]
async fn busy_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flotilla.db");
    let store = SqliteStore::open(&path).unwrap();
    let holder = raw(&path);
    holder.execute_batch("BEGIN IMMEDIATE; INSERT INTO groups (name) VALUES ('held');").unwrap();
    // The store waits the full busy timeout (5 s), as a real second writer would, then gives up.
    let err = store.begin_operation(&GroupId::new("g"), &OpKind::ScaleIn { victims: vec![] }, t(0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.message.starts_with("store: begin_operation: "), "{err}");
    holder.execute_batch("ROLLBACK").unwrap();
    store.begin_operation(&GroupId::new("g"), &OpKind::ScaleIn { victims: vec![] }, t(0)).await.unwrap();
}

/// The daemon creates and migrates a new file while `flotilla status` (polled by a user or a test)
/// opens it: both opens succeed, whichever switches the file to WAL first.
#[test]
fn two_processes_opening_a_new_file_at_once_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..500 {
        let path = dir.path().join(format!("new-{i}.db"));
        let other = {
            let path = path.clone();
            std::thread::spawn(move || SqliteStore::open(&path).map(drop))
        };
        let mine = SqliteStore::open(&path).map(drop);
        let theirs = other.join().unwrap();
        assert!(mine.is_ok() && theirs.is_ok(), "file #{i}: {mine:?} / {theirs:?}");
    }
}
