//! A real kill -9 of a process in the middle of writing: the file stays consistent and everything the
//! dead process saw committed is there.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use flotilla_model::{
    Event, EventKind, GroupId, Instance, InstanceId, InstanceState, Metric, OpKind, OpState, Sample, Store, Timestamp,
};
use flotilla_store_sqlite::SqliteStore;

const CHILD_ENV: &str = "FLOTILLA_STORE_SQLITE_CRASH_CHILD";

/// The child: writes in a loop and reports each finished round on stdout until it is killed. Does
/// nothing when run as an ordinary test.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(std::path::Path::new(&path)).unwrap();
        let group = GroupId::new("web");
        store.ensure_group(&group).await.unwrap();
        for n in 0u64.. {
            let now = Timestamp(1_700_000_000_000 + n);
            let name = format!("web_{n}");
            let op = store
                .begin_operation(&group, &OpKind::ScaleOut { names: vec![name.clone()], clone: false }, now)
                .await
                .unwrap();
            let mut member = Instance::new(name.clone(), &group, now);
            member.state = InstanceState::Running;
            store.upsert_instance(&member).await.unwrap();
            let samples: Vec<Sample> =
                (0..20).map(|i| Sample::new(InstanceId::new(&name), now).with(Metric::Cpu, i as f64)).collect();
            store.push_samples(&group, &samples, 50).await.unwrap();
            store
                .record_event(&Event {
                    at: now,
                    group: group.clone(),
                    kind: EventKind::ScaleOut,
                    message: name,
                    data: None,
                })
                .await
                .unwrap();
            store.finish_operation(op.id, &OpState::Done, now).await.unwrap();
            println!("round {n} op {}", op.id.0);
        }
    });
}

#[test]
fn kill_9_mid_write_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flotilla.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut last_done = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("round ") {
            let (n, op) = rest.split_once(" op ").unwrap();
            last_done = Some(op.parse::<i64>().unwrap());
            if n == "30" {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let last_done = last_done.expect("the child finished some rounds");

    let check = rusqlite::Connection::open(&path).unwrap();
    let integrity: String = check.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");

    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&path).unwrap();
        let group = GroupId::new("web");
        let unfinished = store.unfinished_operations().await.unwrap();
        assert!(unfinished.len() <= 1, "{unfinished:?}");
        let history = store.operations(&group, 1000).await.unwrap();
        let seen = history.iter().find(|o| o.id.0 == last_done).expect("the last op the child saw finish");
        assert_eq!(seen.state, OpState::Done);
        assert!(history.iter().filter(|o| o.state == OpState::Pending).count() <= 1);
        assert!(store.samples(&group, 1000).await.unwrap().len() <= 50);
        assert!(store.instances(&group).await.unwrap().len() as i64 >= last_done);
        assert!(!store.events(Some(&group), 10).await.unwrap().is_empty());
    });
}
