//! The workload's HTTP surface over real 127.0.0.1 connections, and the helper binary end to end.

mod common;

use std::time::Duration;

use common::{request, Server};

#[tokio::test]
async fn work_burns_at_least_n_ms_and_names_the_member() {
    let srv = Server::start("web_1", 1).await;
    let started = tokio::time::Instant::now();
    let r = request(srv.addr, "GET", "/work?ms=150").await;
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "web_1 ms=150\n");
    assert_eq!(r.header("x-flotilla-member"), Some("web_1"));
    assert!(took >= Duration::from_millis(150), "took {took:?}");

    let r = request(srv.addr, "GET", "/work?ms=0").await;
    assert_eq!((r.status, r.body.as_str()), (200, "web_1 ms=0\n"));
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn sleep_answers_after_the_delay() {
    let srv = Server::start("web_1", 1).await;
    let started = tokio::time::Instant::now();
    let r = request(srv.addr, "GET", "/sleep?ms=300").await;
    assert_eq!((r.status, r.body.as_str()), (200, "web_1 slept ms=300\n"));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(request(srv.addr, "GET", "/sleep?ms=x").await.status, 400);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let srv = Server::start("web_1", 1).await;
    for path in ["/work", "/work?ms=", "/work?ms=abc", "/work?ms=-5", "/work?ms=1.5"] {
        let r = request(srv.addr, "GET", path).await;
        assert_eq!(r.status, 400, "{path}");
        assert!(r.body.contains("`ms`"), "{path}: {}", r.body);
    }
    for path in ["/load", "/load?duty=50", "/load?duty=1.5", "/load?duty=-0.1", "/load?duty=x"] {
        let r = request(srv.addr, "POST", path).await;
        assert_eq!(r.status, 400, "{path}");
        assert!(r.body.contains("`duty`"), "{path}: {}", r.body);
    }
    assert_eq!(request(srv.addr, "GET", "/load").await.body, r#"{"duty":0.0}"#, "refused requests start nothing");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn health_root_and_load_bookkeeping() {
    let srv = Server::start("web_2", 2).await;
    let r = request(srv.addr, "GET", "/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert_eq!(r.header("x-flotilla-member"), Some("web_2"));
    let r = request(srv.addr, "GET", "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "web_2\n"));

    let r = request(srv.addr, "GET", "/load").await;
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"duty":0.0}"#));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(request(srv.addr, "POST", "/load?duty=0.25").await.body, r#"{"duty":0.25}"#);
    assert_eq!(request(srv.addr, "POST", "/load?duty=0.1").await.body, r#"{"duty":0.1}"#, "replaces");
    assert_eq!(request(srv.addr, "GET", "/load").await.body, r#"{"duty":0.1}"#);
    assert_eq!(request(srv.addr, "DELETE", "/load").await.body, r#"{"duty":0.0}"#);
    assert_eq!(request(srv.addr, "GET", "/load").await.body, r#"{"duty":0.0}"#);
    assert_eq!(request(srv.addr, "DELETE", "/load").await.status, 200, "stopping twice is fine");
    assert_eq!(request(srv.addr, "GET", "/nope").await.status, 404);
    assert_eq!(request(srv.addr, "PUT", "/load").await.status, 405);

    // Shutdown with a load running stops it and returns cleanly.
    request(srv.addr, "POST", "/load?duty=0.1").await;
    srv.stop().await.unwrap();
}

/// The helper binary (the stand-in for `flotilla workload`): ready file, health, SIGTERM exit 0.
#[tokio::test]
async fn binary_writes_ready_file_serves_and_stops_on_sigterm() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let dir = std::env::temp_dir().join(format!("flotilla-workload-bin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("m.port");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla-workload"))
        .args(["workload", "--name", "bin_1", "--vcpus", "1", "--listen", "127.0.0.1:0", "--ready-file"])
        .arg(&ready)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let port: u16 = loop {
        if let Some(p) = std::fs::read_to_string(&ready).ok().and_then(|s| s.trim().parse().ok()) {
            break p;
        }
        assert!(tokio::time::Instant::now() < deadline, "no ready file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let r = request(addr, "GET", "/healthz").await;
    assert_eq!((r.status, r.header("x-flotilla-member")), (200, Some("bin_1")));

    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn binary_rejects_bad_flags() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla-workload"))
        .args(["workload", "--vcpus", "x", "--name", "n"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vcpus"));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla-workload")).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2), "--name is required");
}
