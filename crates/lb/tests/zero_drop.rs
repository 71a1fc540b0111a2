//! No request is lost while the group changes: backends added, drained and removed, replaced, or
//! killed outright under a steady stream of keep-alive clients.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use flotilla_lb::GroupBalancer;
use tokio::time::Instant;

#[derive(Default)]
struct Tally {
    ok: u64,
    failures: Vec<String>,
    by_backend: HashMap<String, u64>,
}

/// `workers` sequential keep-alive clients until `stop`; every 4th request is a small POST to
/// `/echo`, every 8th a 100 ms GET, the rest quick GETs; `pause` between requests.
fn load(lb: SocketAddr, workers: usize, pause: Duration, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<Tally>> {
    (0..workers)
        .map(|w| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let c = client();
                let mut t = Tally::default();
                let mut i = w;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let res = match i % 8 {
                        0 => get(&c, lb, "/slow?ms=100").await,
                        2 | 6 => send(&c, lb, "POST", "/echo", b"payload".to_vec()).await,
                        _ => get(&c, lb, "/").await,
                    };
                    match res {
                        Ok(a) if a.status == 200 => {
                            t.ok += 1;
                            *t.by_backend.entry(a.backend.unwrap_or_default()).or_default() += 1;
                        }
                        Ok(a) => t.failures.push(format!("status {} from {:?}: {}", a.status, a.backend, a.body)),
                        Err(e) => t.failures.push(e),
                    }
                    tokio::time::sleep(pause).await;
                }
                t
            })
        })
        .collect()
}

async fn collect(handles: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut all = Tally::default();
    for h in handles {
        let t = h.await.unwrap();
        all.ok += t.ok;
        all.failures.extend(t.failures);
        for (k, v) in t.by_backend {
            *all.by_backend.entry(k).or_default() += v;
        }
    }
    all
}

async fn add(lb: &GroupBalancer, b: &TestBackend) {
    lb.add_backend(b.id.clone(), b.addr, 1);
    assert!(lb.wait_healthy(&b.id, Duration::from_secs(10)).await, "{} healthy", b.id);
}

/// The controller's order for taking a member out: drain, remove, then the member goes away.
async fn retire(lb: &GroupBalancer, b: &TestBackend) {
    let r = lb.drain(&b.id, Duration::from_secs(10)).await;
    assert!(r.completed, "drain of {}: {r:?}", b.id);
    lb.remove_backend(&b.id);
    b.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_failures_while_backends_are_added_drained_removed_and_replaced() {
    let lb = GroupBalancer::bind("zd".into(), fast_cfg()).await.unwrap();
    for round in 0..3 {
        let name = |n: &str| format!("r{round}-{n}");
        let (b1, b2) = (TestBackend::start(&name("b1")).await, TestBackend::start(&name("b2")).await);
        add(&lb, &b1).await;
        add(&lb, &b2).await;

        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let handles = load(lb.local_addr(), 8, Duration::from_millis(10), stop.clone());

        tokio::time::sleep(Duration::from_millis(800)).await;
        let b3 = TestBackend::start(&name("b3")).await; // scale out
        add(&lb, &b3).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        retire(&lb, &b1).await; // scale in
        tokio::time::sleep(Duration::from_millis(800)).await;
        let b4 = TestBackend::start(&name("b4")).await; // replace b2 by b4 (handover)
        add(&lb, &b4).await;
        retire(&lb, &b2).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        let b5 = TestBackend::start(&name("b5")).await;
        add(&lb, &b5).await;
        let left = Duration::from_secs(6).saturating_sub(start.elapsed());
        tokio::time::sleep(left).await;
        stop.store(true, Ordering::SeqCst);
        let elapsed = start.elapsed();
        let t = collect(handles).await;

        assert!(
            t.failures.is_empty(),
            "round {round}: {} failures, first: {:?}",
            t.failures.len(),
            &t.failures[..t.failures.len().min(5)]
        );
        let rate = t.ok as f64 / elapsed.as_secs_f64();
        assert!(rate >= 200.0, "round {round}: steady stream of at least 200 req/s, got {rate:.0}");
        for b in [&b1, &b2, &b3, &b4, &b5] {
            assert!(
                t.by_backend.get(&b.id).copied().unwrap_or(0) > 0,
                "round {round}: {} served nothing: {:?}",
                b.id,
                t.by_backend
            );
        }
        let st = lb.stats();
        println!(
            "round {round}: {} ok in {elapsed:?} ({rate:.0} req/s), retried {}, by backend {:?}",
            t.ok, st.retried_total, t.by_backend
        );
        assert_eq!(st.total.errors_total, 0, "round {round}: {st:?}");
        // Clean up the round: the remaining members go the same way.
        for b in [&b3, &b4, &b5] {
            retire(&lb, b).await;
        }
        assert!(lb.backends().is_empty());
    }
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_costs_no_request() {
    let (a, b, c) = (TestBackend::start("a").await, TestBackend::start("b").await, TestBackend::start("c").await);
    let lb = balancer_with(fast_cfg(), &[&a, &b, &c]).await;
    let addr = lb.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let handles = load(addr, 8, Duration::from_millis(5), stop.clone());
    // Make sure `b` has requests in flight when it dies: these are mid-request at the kill.
    let slow: Vec<_> =
        (0..6).map(|_| tokio::spawn(async move { get(&client(), addr, "/slow?ms=800").await })).collect();
    eventually("requests in flight at b", Duration::from_secs(5), || b.knobs.inflight.load(Ordering::SeqCst) > 0).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = lb.backends().into_iter().find(|s| s.id == "b").unwrap();
    assert!(!st.healthy, "b ejected: {st:?}");
    let served_by_b = st.requests_total;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let t = collect(handles).await;
    for s in slow {
        let a = s.await.unwrap().unwrap();
        assert_eq!(a.status, 200, "{a:?}");
        assert_ne!(a.backend.as_deref(), Some("b"));
    }
    assert!(
        t.failures.is_empty(),
        "{} failures, first: {:?}",
        t.failures.len(),
        &t.failures[..t.failures.len().min(5)]
    );
    let st = lb.backends().into_iter().find(|s| s.id == "b").unwrap();
    assert!(!st.healthy);
    assert_eq!(st.requests_total, served_by_b, "no more traffic to the dead backend");
    assert_eq!(st.inflight, 0);
    let stats = lb.stats();
    println!("{} ok, retried {}, by backend {:?}", t.ok, stats.retried_total, t.by_backend);
    assert!(stats.retried_total >= 1, "the in-flight requests were retried: {stats:?}");
    assert_eq!(stats.total.errors_total, 0);
    lb.shutdown().await;
}
