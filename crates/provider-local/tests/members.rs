//! The local provider against real member processes (the `flotilla-workload` binary; see
//! `support` for how it is found). Every test's members are killed by its `Members` guard, even
//! when an assertion fails.

mod support;

use std::sync::Arc;
use std::time::Duration;

use flotilla_model::{ErrorKind, FakeClock, GroupId, InstanceId, InstanceSpec, InstanceState, Provider, Timestamp};
use flotilla_provider_local::process;
use flotilla_provider_local::record::MemberRecord;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{get, group_has_live_processes, workload_exe, Members};

fn names(ns: &[&str]) -> Vec<String> {
    ns.iter().map(|s| s.to_string()).collect()
}

fn ids(ns: &[&str]) -> Vec<InstanceId> {
    ns.iter().map(|s| InstanceId::new(*s)).collect()
}

fn spec(vcpus: u32) -> InstanceSpec {
    InstanceSpec { base_name: "web".into(), clone_base: "web_clone".into(), vcpus }
}

fn pid_of(i: &flotilla_model::Instance) -> i32 {
    i.tag("pid").unwrap().parse().unwrap()
}

#[tokio::test]
async fn create_is_idempotent_survives_a_restart_and_delete_cleans_up() {
    let m = Members::new();
    let clock = FakeClock::new(Timestamp(1_234));
    let p = m.provider().with_clock(Arc::new(clock));
    let g = GroupId::new("web");

    let made = p.create(&g, &spec(2), &names(&["web_1", "web_2"])).await.unwrap();
    assert_eq!(made.len(), 2);
    for (i, name) in made.iter().zip(["web_1", "web_2"]) {
        assert_eq!((i.id.as_str(), i.name.as_str(), &i.group), (name, name, &g));
        assert_eq!(i.state, InstanceState::Running);
        assert_eq!(i.created_at, Timestamp(1_234));
        assert_eq!(i.tag("vcpus"), Some("2"));
        let starttime = process::starttime(pid_of(i)).map(|st| st.to_string());
        assert_eq!(i.tag("starttime"), starttime.as_deref());
        let addr = i.address.clone().unwrap();
        assert_eq!(addr, format!("127.0.0.1:{}", i.tag("port").unwrap()));
        let (status, member, body) = get(&addr, "/healthz").await;
        assert_eq!((status, member.as_deref(), body.as_str()), (200, Some(name), "ok"));
        assert!(m.files().record(name).exists() && m.files().port(name).exists());
    }
    let pids: Vec<i32> = made.iter().map(pid_of).collect();
    assert_ne!(pids[0], pids[1]);

    let listed = p.list(Some(&g)).await.unwrap();
    assert_eq!(listed, made, "list reports exactly what create returned");
    assert_eq!(p.list(None).await.unwrap().len(), 2);
    assert!(p.list(Some(&GroupId::new("other"))).await.unwrap().is_empty());

    // Same names again: the same members, no duplicates.
    let again = p.create(&g, &spec(2), &names(&["web_1", "web_2", "web_1"])).await.unwrap();
    assert_eq!(again.iter().map(pid_of).collect::<Vec<_>>(), pids);

    // A controller restart: a new provider on the same state dir adopts them.
    drop(p);
    let p2 = m.provider();
    let listed = p2.list(Some(&g)).await.unwrap();
    assert_eq!(listed.iter().map(pid_of).collect::<Vec<_>>(), pids);
    assert!(listed.iter().all(|i| i.state == InstanceState::Running));
    let adopted = p2.create(&g, &spec(2), &names(&["web_2"])).await.unwrap();
    assert_eq!(pid_of(&adopted[0]), pids[1]);

    let starttimes: Vec<u64> = pids.iter().map(|&pid| process::starttime(pid).unwrap()).collect();
    p2.delete(&g, &ids(&["web_1", "web_2"])).await.unwrap();
    for ((&pid, &st), name) in pids.iter().zip(&starttimes).zip(["web_1", "web_2"]) {
        assert!(process::has_exited(pid, st), "{name} still running");
        assert!(!m.files().record(name).exists() && !m.files().port(name).exists());
        assert!(m.files().log(name).exists(), "the log stays for post-mortems");
    }
    assert!(p2.list(None).await.unwrap().is_empty());
    p2.delete(&g, &ids(&["web_1", "never_existed"])).await.unwrap();
}

#[tokio::test]
async fn a_killed_member_is_failed_until_recreated() {
    let m = Members::new();
    let p = m.provider();
    let g = GroupId::new("web");
    let made = p.create(&g, &spec(1), &names(&["web_1"])).await.unwrap();
    let pid = pid_of(&made[0]);

    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let failed = loop {
        let listed = p.list(Some(&g)).await.unwrap();
        if listed[0].state != InstanceState::Running {
            break listed[0].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "still Running after kill -9");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failed.state, InstanceState::Failed("process exited".into()));
    assert!(m.files().record("web_1").exists(), "kept so the controller sees the failure");

    // Creating the name again replaces the stale record with a new process.
    let again = p.create(&g, &spec(1), &names(&["web_1"])).await.unwrap();
    assert_ne!(pid_of(&again[0]), pid);
    assert_eq!(again[0].state, InstanceState::Running);
    let (status, ..) = get(again[0].address.as_deref().unwrap(), "/healthz").await;
    assert_eq!(status, 200);
    p.delete(&g, &ids(&["web_1"])).await.unwrap();
}

#[tokio::test]
async fn a_name_belongs_to_one_group() {
    let m = Members::new();
    let p = m.provider();
    let (g1, g2) = (GroupId::new("one"), GroupId::new("two"));
    let made = p.create(&g1, &spec(1), &names(&["a_1"])).await.unwrap();

    let err = p.create(&g2, &spec(1), &names(&["b_1", "a_1"])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.message.contains("a_1") && err.message.contains("one"), "{err}");
    assert!(!m.files().record("b_1").exists(), "a conflicting call starts nothing");

    let err = p.delete(&g2, &ids(&["a_1"])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(p.list(Some(&g1)).await.unwrap()[0].state, InstanceState::Running, "untouched");
    assert_eq!(pid_of(&p.list(None).await.unwrap()[0]), pid_of(&made[0]));
    p.delete(&g1, &ids(&["a_1"])).await.unwrap();
}

#[tokio::test]
async fn a_member_that_exits_at_once_is_cleaned_up() {
    let m = Members::new();
    let p = m.provider_with(std::path::Path::new("/bin/false"), Duration::from_secs(10));
    let g = GroupId::new("web");
    let started = tokio::time::Instant::now();
    let err = p.create(&g, &spec(1), &names(&["web_1"])).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(8), "an exit is noticed, not waited out");
    assert_eq!(err.kind(), ErrorKind::Transient);
    let log = m.files().log("web_1");
    assert!(err.message.contains("web_1") && err.message.contains(&log.display().to_string()), "{err}");
    assert!(err.message.contains("exited"), "{err}");
    assert!(!m.files().record("web_1").exists() && !m.files().port("web_1").exists());
    assert!(log.exists());
    assert!(p.list(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_member_that_never_gets_ready_is_killed_with_its_group() {
    use std::os::unix::fs::PermissionsExt;

    let m = Members::new();
    let script = m.path().join("never-ready.sh");
    let pid_file = m.path().join("never-ready.pid");
    // Stays alive (with a child in its process group) but never writes the ready file.
    std::fs::write(&script, format!("#!/bin/sh\necho $$ > '{}'\nsleep 30\n", pid_file.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = m.provider_with(&script, Duration::from_secs(1));
    let g = GroupId::new("web");

    let err = p.create(&g, &spec(1), &names(&["web_1"])).await.unwrap_err();
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    m.track(pid);
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(err.message.contains("not ready after"), "{err}");
    assert!(err.message.contains("web_1.log"), "{err}");
    assert!(!group_has_live_processes(pid), "the script and its `sleep` are gone");
    assert!(!m.files().record("web_1").exists());
    assert!(p.list(None).await.unwrap().is_empty());
}

/// A member process started the way the provider starts one, as a controller would have just
/// before it died; tracked by the guard.
fn spawn_by_hand(m: &Members, name: &str) -> (tokio::process::Child, i32) {
    let files = m.files();
    std::fs::create_dir_all(files.dir()).unwrap();
    let child = tokio::process::Command::new(workload_exe())
        .args(["workload", "--name", name, "--vcpus", "1", "--listen", "127.0.0.1:0", "--ready-file"])
        .arg(files.port(name))
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap() as i32;
    m.track(pid);
    (child, pid)
}

/// A controller died between spawning a member and seeing it ready: the record has a pid but no
/// port. `create` adopts that process instead of starting a second one.
#[tokio::test]
async fn a_half_started_member_is_adopted_not_duplicated() {
    let m = Members::new();
    let files = m.files();
    let (mut child, pid) = spawn_by_hand(&m, "web_9");
    let starttime = process::starttime(pid).unwrap();
    let rec = MemberRecord {
        group: "web".into(),
        name: "web_9".into(),
        pid,
        port: None,
        vcpus: 1,
        created_at_ms: 5,
        starttime,
    };
    files.write(&rec).unwrap();

    let p = m.provider();
    let g = GroupId::new("web");
    let listed = p.list(Some(&g)).await.unwrap();
    assert_eq!(pid_of(&listed[0]), pid);
    assert!(matches!(listed[0].state, InstanceState::Creating | InstanceState::Running), "{:?}", listed[0].state);

    let made = p.create(&g, &spec(1), &names(&["web_9"])).await.unwrap();
    assert_eq!(pid_of(&made[0]), pid, "adopted, not duplicated");
    assert_eq!(made[0].state, InstanceState::Running);
    assert_eq!(files.read("web_9").unwrap().unwrap().port, made[0].tag("port").map(|p| p.parse().unwrap()));

    p.delete(&g, &ids(&["web_9"])).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "SIGTERM is a graceful stop: {status:?}");
}

/// A controller killed between spawning a member and writing its record left a process nobody
/// knows of. `create` of that name finds it by its ready-file path and adopts it: one process, not
/// two.
#[tokio::test]
async fn an_unrecorded_member_process_is_found_and_adopted() {
    let m = Members::new();
    let files = m.files();
    let (mut child, pid) = spawn_by_hand(&m, "web_8");
    assert!(files.read("web_8").unwrap().is_none(), "no record: the kill came before it");

    let p = m.provider();
    let g = GroupId::new("web");
    let made = p.create(&g, &spec(1), &names(&["web_8"])).await.unwrap();
    assert_eq!(pid_of(&made[0]), pid, "adopted, not a second process");
    assert_eq!(made[0].state, InstanceState::Running);
    assert_eq!(files.read("web_8").unwrap().unwrap().pid, pid, "recorded now");
    // A process of the same name in another state directory is not ours.
    let other = Members::new();
    assert!(flotilla_provider_local::process::find_unrecorded(&other.files(), "web_8").is_none());

    p.delete(&g, &ids(&["web_8"])).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "SIGTERM is a graceful stop: {status:?}");
}

/// No processes: records of dead pids, junk files, bad names.
#[tokio::test]
async fn records_of_dead_processes_junk_files_and_bad_names() {
    let m = Members::new();
    let files = m.files();
    let dead = MemberRecord {
        group: "web".into(),
        name: "ghost_1".into(),
        pid: i32::MAX, // above any pid_max: never a live process
        port: Some(1),
        vcpus: 1,
        created_at_ms: 1,
        starttime: 1,
    };
    files.write(&dead).unwrap();
    std::fs::write(files.dir().join("broken.json"), "{").unwrap();
    std::fs::write(files.dir().join("README"), "not a member").unwrap();
    std::fs::write(files.dir().join("ghost_1.log"), "old output").unwrap();

    let p = m.provider();
    let g = GroupId::new("web");
    let listed = p.list(None).await.unwrap();
    assert_eq!(listed.len(), 1, "malformed and non-json files are skipped");
    assert_eq!(listed[0].state, InstanceState::Failed("process exited".into()));

    // A malformed record for a name being created is refused, not overwritten.
    let err = p.create(&g, &spec(1), &names(&["broken"])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");

    for bad in ["../escape", "-rf", "", "a b"] {
        let err = p.create(&g, &spec(1), &names(&[bad])).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{bad:?}");
    }
    p.delete(&g, &ids(&["../escape"])).await.unwrap();

    p.delete(&g, &ids(&["ghost_1"])).await.unwrap();
    assert!(!files.record("ghost_1").exists());
    assert!(p.list(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_exe_is_invalid() {
    let m = Members::new();
    let p = m.provider_with(&m.path().join("no-such-binary"), Duration::from_secs(1));
    let err = p.create(&GroupId::new("web"), &spec(1), &names(&["web_1"])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(!m.files().record("web_1").exists());
}

/// The "controller" process of `members_survive_a_killed_controller`: does nothing unless that
/// test starts it (with `FLOTILLA_TEST_CONTROLLER_DIR`).
#[tokio::test]
#[ignore = "helper process of members_survive_a_killed_controller"]
async fn controller_process() {
    let Some(dir) = std::env::var_os("FLOTILLA_TEST_CONTROLLER_DIR") else { return };
    let p = flotilla_provider_local::LocalProvider::new(flotilla_provider_local::LocalConfig {
        state_dir: dir.into(),
        exe: workload_exe(),
        start_timeout: Duration::from_secs(20),
    });
    p.create(&GroupId::new("web"), &spec(1), &names(&["web_1"])).await.unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await; // until the test kills it
}

/// Members are detached: `kill -9` of the process that created them leaves them serving, and the
/// next controller adopts them.
#[tokio::test]
async fn members_survive_a_killed_controller() {
    let m = Members::new();
    let mut controller = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "controller_process", "--test-threads=1"])
        .env("FLOTILLA_TEST_CONTROLLER_DIR", m.path())
        .env("FLOTILLA_WORKLOAD_EXE", workload_exe())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let rec = loop {
        if let Some(rec) = m.files().read("web_1").ok().flatten().filter(|r| r.port.is_some()) {
            break rec;
        }
        assert!(tokio::time::Instant::now() < deadline, "the controller process never made web_1");
        assert!(controller.try_wait().unwrap().is_none(), "the controller process exited early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    controller.kill().await.unwrap(); // SIGKILL, then reaped

    assert!(process::is_member_alive(rec.pid, rec.starttime, "web_1"));
    let addr = format!("127.0.0.1:{}", rec.port.unwrap());
    assert_eq!(get(&addr, "/healthz").await.0, 200);

    let p = m.provider();
    let g = GroupId::new("web");
    let listed = p.list(Some(&g)).await.unwrap();
    assert_eq!((pid_of(&listed[0]), &listed[0].state), (rec.pid, &InstanceState::Running));
    p.delete(&g, &ids(&["web_1"])).await.unwrap();
    assert!(process::has_exited(rec.pid, rec.starttime));
}
