//! Draining: in-flight requests finish, no new ones arrive, idle pooled connections close.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_the_long_request_and_sends_nothing_new() {
    let old = TestBackend::start("old").await;
    let lb = balancer_with(fast_cfg(), &[&old]).await;
    let addr = lb.local_addr();
    // Warm a few pooled connections to `old`.
    let c = client();
    for _ in 0..5 {
        assert_eq!(get(&c, addr, "/").await.unwrap().body, "old");
    }
    let long = tokio::spawn(async move {
        let a = get(&client(), addr, "/slow?ms=2500").await.unwrap();
        (a, Instant::now())
    });
    eventually("long request at the backend", Duration::from_secs(5), || {
        old.knobs.inflight.load(Ordering::SeqCst) == 1
    })
    .await;

    let new = TestBackend::start("new").await;
    lb.add_backend("new".into(), new.addr, 1);
    assert!(lb.wait_healthy("new", Duration::from_secs(10)).await);

    let drain = {
        let lb = lb.clone();
        tokio::spawn(async move {
            let r = lb.drain("old", Duration::from_secs(20)).await;
            (r, Instant::now())
        })
    };
    eventually("old marked draining", Duration::from_secs(5), || {
        lb.backends().iter().any(|b| b.id == "old" && b.draining)
    })
    .await;
    assert!(!lb.wait_healthy("old", Duration::from_millis(10)).await, "a draining backend is not serving");
    let hits_before = old.hits();
    for _ in 0..20 {
        let a = get(&c, addr, "/").await.unwrap();
        assert_eq!((a.status, a.body.as_str()), (200, "new"));
    }
    assert_eq!(old.hits(), hits_before, "no new request reached the draining backend");

    let (long, long_done) = long.await.unwrap();
    assert_eq!((long.status, long.body.as_str()), (200, "old"), "the in-flight request completed");
    let (report, drain_done) = drain.await.unwrap();
    assert!(report.completed, "{report:?}");
    assert_eq!(report.inflight_left, 0);
    assert!(report.waited >= Duration::from_millis(1000), "drain waited for the long request: {report:?}");
    assert!(drain_done + Duration::from_millis(200) >= long_done, "drain returned only after the request ended");
    // Its pool was dropped: the idle keep-alive connections to `old` close.
    eventually("old's idle connections closed", Duration::from_secs(10), || {
        old.knobs.open_conns.load(Ordering::SeqCst) == 0
    })
    .await;
    lb.remove_backend("old");
    assert_eq!(lb.backends().len(), 1);
    assert_eq!(get(&c, addr, "/").await.unwrap().body, "new");
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_with_a_short_deadline_reports_what_is_left() {
    let b = TestBackend::start("b").await;
    let lb = balancer_with(fast_cfg(), &[&b]).await;
    let addr = lb.local_addr();
    let long = tokio::spawn(async move { get(&client(), addr, "/slow?ms=2000").await.unwrap() });
    eventually("long request in flight", Duration::from_secs(5), || lb.backends()[0].inflight == 1).await;
    let report = lb.drain("b", Duration::from_millis(200)).await;
    assert!(!report.completed, "{report:?}");
    assert_eq!(report.inflight_left, 1);
    assert!(report.waited >= Duration::from_millis(200));
    // In HTTP mode the request still in flight is not cut off.
    let long = long.await.unwrap();
    assert_eq!(long.status, 200);
    // Unknown ids drain at once.
    let r = lb.drain("nobody", Duration::from_secs(5)).await;
    assert!(r.completed && r.inflight_left == 0 && r.waited == Duration::ZERO);
    // Re-adding a draining id is ignored.
    lb.add_backend("b".into(), b.addr, 1);
    assert!(lb.backends()[0].draining);
    lb.shutdown().await;
}

/// A backend that takes a request and never answers: the client gets 504 at the response timeout
/// (not a hung connection), the backend a passive failure, and a drain of it still ends by its
/// deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_never_answers_gives_504_and_does_not_hold_a_drain() {
    let slow = TestBackend::start("slow").await;
    slow.set_delay(30_000);
    let mut cfg = fast_cfg();
    cfg.response_timeout = Duration::from_millis(400);
    let lb = balancer_with(cfg, &[&slow]).await;
    assert!(lb.wait_healthy("slow", Duration::from_secs(5)).await);
    let c = client();
    let asked = Instant::now();
    let a = get(&c, lb.local_addr(), "/").await.unwrap();
    assert_eq!(a.status, 504, "{}", a.body);
    assert!(asked.elapsed() < Duration::from_secs(5), "answered at the timeout, not at the backend's pace");
    assert_eq!(lb.stats().backends[0].traffic.errors_total, 1);

    // Another hung request; a drain with a 1 s deadline returns by then, whatever the request does.
    let lb2 = lb.clone();
    let pending = tokio::spawn(async move { get(&client(), lb2.local_addr(), "/").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    lb.drain("slow", Duration::from_secs(1)).await;
    assert!(t.elapsed() < Duration::from_secs(2), "the drain kept its deadline: {:?}", t.elapsed());
    assert_eq!(pending.await.unwrap().unwrap().status, 504);
}
