//! Active health checks: admission after `rise`, removal after `fall`, re-admission.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_backend_gets_no_traffic_until_healthy() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    b.set_healthy(false);
    let mut cfg = fast_cfg();
    cfg.health.rise = 3;
    let lb = balancer_with(cfg, &[&a]).await;
    lb.add_backend("b".into(), b.addr, 1);
    assert!(!lb.wait_healthy("b", Duration::from_millis(600)).await, "b's health check fails");
    let c = client();
    for _ in 0..20 {
        assert_eq!(get(&c, lb.local_addr(), "/").await.unwrap().body, "a");
    }
    assert_eq!(b.hits(), 0);
    let st = lb.backends().into_iter().find(|s| s.id == "b").unwrap();
    assert!(!st.healthy && !st.draining);

    // Passing now: admitted after three consecutive passes, then it gets its share.
    b.set_healthy(true);
    assert!(lb.wait_healthy("b", Duration::from_secs(10)).await);
    let mut got_b = 0;
    for _ in 0..20 {
        if get(&c, lb.local_addr(), "/").await.unwrap().body == "b" {
            got_b += 1;
        }
    }
    assert!(got_b > 0);
    assert!(!lb.wait_healthy("nobody", Duration::from_millis(50)).await, "unknown id is never healthy");
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_backend_is_taken_out_and_comes_back() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let mut cfg = fast_cfg();
    cfg.health.fall = 2;
    cfg.health.rise = 2;
    let lb = balancer_with(cfg, &[&a, &b]).await;
    let c = client();

    b.set_healthy(false);
    eventually("b taken out after `fall` failures", Duration::from_secs(10), || {
        lb.backends().iter().any(|s| s.id == "b" && !s.healthy)
    })
    .await;
    let before = b.hits();
    for _ in 0..20 {
        assert_eq!(get(&c, lb.local_addr(), "/").await.unwrap().body, "a");
    }
    assert_eq!(b.hits(), before, "no traffic to an unhealthy backend");

    b.set_healthy(true);
    assert!(lb.wait_healthy("b", Duration::from_secs(10)).await, "re-admitted after `rise` passes");
    let mut got_b = 0;
    for _ in 0..20 {
        if get(&c, lb.local_addr(), "/").await.unwrap().body == "b" {
            got_b += 1;
        }
    }
    assert!(got_b > 0);
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_5xx_eject_the_backend_passively() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let mut cfg = fast_cfg();
    cfg.passive_5xx = 3;
    // Slow checks: the passive ejection must not be undone by a check before we look.
    cfg.health.interval = Duration::from_secs(30);
    let lb = balancer_with(cfg, &[&a, &b]).await;
    b.set_fail(true);
    let c = client();
    let mut fives = 0;
    for _ in 0..30 {
        let ans = get(&c, lb.local_addr(), "/").await.unwrap();
        if ans.status == 500 {
            fives += 1;
        }
    }
    assert_eq!(fives, 3, "5xx pass through until `passive_5xx` in a row eject the backend");
    let st = lb.backends().into_iter().find(|s| s.id == "b").unwrap();
    assert!(!st.healthy);
    assert_eq!(st.errors_total, 3);
    lb.shutdown().await;
}

/// No active check (`flotilla lb`'s default, like HAProxy's servers without `check`): a backend
/// serves at once whatever its `/healthz` says (an ordinary web server has none); passive ejection
/// still takes out one that fails, and it is tried again after `interval`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_active_checks_a_backend_serves_at_once_and_passive_ejection_still_works() {
    let plain = TestBackend::start("plain").await;
    plain.set_healthy(false); // its /healthz answers 503, as a server without one would 404
    let mut cfg = fast_cfg();
    cfg.health.check = flotilla_lb::HealthCheck::None;
    cfg.health.interval = Duration::from_millis(300);
    cfg.queue_timeout = Duration::from_secs(2);
    cfg.passive_5xx = 2;
    cfg.retries = 0;
    let lb = balancer_with(cfg, &[&plain]).await;
    let c = client();
    let first = tokio::time::timeout(Duration::from_millis(500), get(&c, lb.local_addr(), "/")).await;
    assert_eq!(first.expect("answered at once").unwrap().status, 200, "in rotation without a check");

    // Two 500s in a row: ejected; no traffic until `interval` has passed, then back.
    plain.set_fail(true);
    for _ in 0..2 {
        assert_eq!(get(&c, lb.local_addr(), "/").await.unwrap().status, 500);
    }
    assert!(!lb.backends()[0].healthy, "ejected by passive checks");
    plain.set_fail(false);
    assert!(lb.wait_healthy("plain", Duration::from_secs(3)).await, "tried again after the interval");
    assert_eq!(get(&c, lb.local_addr(), "/").await.unwrap().status, 200);
}
