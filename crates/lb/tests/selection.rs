//! Selection: round-robin, least-outstanding, weighted.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use flotilla_lb::Selection;

async fn spread(lb: std::net::SocketAddr, n: usize) -> HashMap<String, usize> {
    let c = client();
    let mut seen = HashMap::new();
    for _ in 0..n {
        let a = get(&c, lb, "/").await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.backend.as_deref(), Some(a.body.as_str()), "x-flotilla-backend names who answered");
        *seen.entry(a.body).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_splits_evenly() {
    let (a, b, c) = (TestBackend::start("a").await, TestBackend::start("b").await, TestBackend::start("c").await);
    let mut cfg = fast_cfg();
    cfg.selection = Selection::RoundRobin;
    let lb = balancer_with(cfg, &[&a, &b, &c]).await;
    let seen = spread(lb.local_addr(), 90).await;
    assert_eq!(seen.get("a"), Some(&30), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&30), "{seen:?}");
    assert_eq!(seen.get("c"), Some(&30), "{seen:?}");
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_prefers_the_idle_backend() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let lb = balancer_with(fast_cfg(), &[&a, &b]).await;
    let addr = lb.local_addr();
    // One slow request occupies one backend...
    let slow = tokio::spawn(async move { get(&client(), addr, "/slow?ms=1500").await.unwrap() });
    eventually("slow request in flight", Duration::from_secs(5), || {
        lb.backends().iter().map(|b| b.inflight).sum::<u32>() == 1
    })
    .await;
    let busy = lb.backends().into_iter().find(|b| b.inflight == 1).unwrap().id;
    // ...so every quick request goes to the other one.
    let seen = spread(addr, 20).await;
    assert_eq!(seen.get(&busy), None, "busy backend {busy} got requests: {seen:?}");
    assert_eq!(seen.values().sum::<usize>(), 20);
    let slow = slow.await.unwrap();
    assert_eq!((slow.status, slow.body.as_str()), (200, busy.as_str()));
    // Idle again: ties rotate, both get traffic.
    let seen = spread(addr, 20).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_three_to_one() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let mut cfg = fast_cfg();
    cfg.selection = Selection::Weighted;
    let lb = flotilla_lb::GroupBalancer::bind("w".into(), cfg).await.unwrap();
    lb.add_backend("a".into(), a.addr, 3);
    lb.add_backend("b".into(), b.addr, 1);
    assert!(lb.wait_healthy("a", Duration::from_secs(10)).await);
    assert!(lb.wait_healthy("b", Duration::from_secs(10)).await);
    let seen = spread(lb.local_addr(), 200).await;
    let (na, nb) = (seen["a"], seen["b"]);
    assert!((140..=160).contains(&na) && (40..=60).contains(&nb), "{seen:?}");
    // Re-adding a known id only changes its weight.
    lb.add_backend("b".into(), b.addr, 3);
    assert_eq!(lb.backends().len(), 2);
    let seen = spread(lb.local_addr(), 200).await;
    assert!((80..=120).contains(&seen["b"]), "{seen:?}");
    lb.shutdown().await;
}
