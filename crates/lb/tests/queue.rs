//! Queueing: no eligible backend → wait (bounded) instead of 503.

mod common;

use std::time::Duration;

use common::*;
use flotilla_lb::GroupBalancer;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_a_backend_to_become_healthy() {
    let lb = GroupBalancer::bind("q".into(), fast_cfg()).await.unwrap();
    let addr = lb.local_addr();
    let start = Instant::now();
    let waiting = tokio::spawn(async move { get(&client(), addr, "/").await });
    eventually("request queued", Duration::from_secs(5), || lb.stats().queued == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = TestBackend::start("late").await;
    lb.add_backend("late".into(), b.addr, 1);
    let ans = waiting.await.unwrap().unwrap();
    assert_eq!((ans.status, ans.body.as_str()), (200, "late"));
    assert!(start.elapsed() >= Duration::from_millis(300), "it waited");
    assert_eq!(lb.stats().queued, 0);
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_timeout_gives_503_with_retry_after() {
    let mut cfg = fast_cfg();
    cfg.queue_timeout = Duration::from_millis(300);
    let lb = GroupBalancer::bind("q".into(), cfg).await.unwrap();
    // A backend that never passes its check does not count as capacity.
    let b = TestBackend::start("sick").await;
    b.set_healthy(false);
    lb.add_backend("sick".into(), b.addr, 1);
    let start = Instant::now();
    let ans = get(&client(), lb.local_addr(), "/").await.unwrap();
    assert_eq!(ans.status, 503);
    assert_eq!(ans.headers.get("retry-after").unwrap(), "1");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(b.hits(), 0);
    let st = lb.stats();
    assert_eq!((st.rejected_total, st.total.errors_total), (1, 1));
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_queue_limit_503_at_once() {
    let mut cfg = fast_cfg();
    cfg.queue_limit = 2;
    cfg.queue_timeout = Duration::from_secs(20);
    let lb = GroupBalancer::bind("q".into(), cfg).await.unwrap();
    let addr = lb.local_addr();
    let waiters: Vec<_> = (0..2).map(|_| tokio::spawn(async move { get(&client(), addr, "/").await })).collect();
    eventually("two requests queued", Duration::from_secs(5), || lb.stats().queued == 2).await;
    let start = Instant::now();
    let ans = get(&client(), addr, "/").await.unwrap();
    assert_eq!(ans.status, 503);
    assert_eq!(ans.headers.get("retry-after").unwrap(), "1");
    assert!(start.elapsed() < Duration::from_secs(10), "rejected without waiting for queue_timeout");
    // The queued ones are served as soon as capacity appears.
    let b = TestBackend::start("b").await;
    lb.add_backend("b".into(), b.addr, 1);
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap().status, 200);
    }
    lb.shutdown().await;
}
