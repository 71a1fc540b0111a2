//! The model seams: `Balancer` and `MetricSource` through `EmbeddedBalancer`; stats; standalone mode.

mod common;

use std::time::Duration;

use common::*;
use flotilla_lb::{run_standalone, EmbeddedBalancer, HealthCheck, MIN_WATCHED};
use flotilla_model::{Backend, Balancer, ErrorKind, GroupId, Instance, InstanceId, Metric, MetricSource, Timestamp};

fn backend(id: &str, addr: std::net::SocketAddr) -> Backend {
    Backend { id: InstanceId::new(id), address: addr.to_string(), weight: 1 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balancer_trait_conformance() {
    let eb = EmbeddedBalancer::new();
    let g = GroupId::new("web");
    let addr = eb.register(g.clone(), fast_cfg()).await.unwrap();
    assert_eq!(eb.register(g.clone(), fast_cfg()).await.unwrap(), addr, "registering twice is idempotent");
    let lb: &dyn Balancer = &eb;
    let (a, b) = (TestBackend::start("m-a").await, TestBackend::start("m-b").await);
    let (ia, ib) = (InstanceId::new("m-a"), InstanceId::new("m-b"));

    lb.add(&g, backend("m-a", a.addr)).await.unwrap();
    lb.add(&g, backend("m-a", a.addr)).await.unwrap(); // idempotent
    assert!(lb.wait_healthy(&g, &ia, Duration::from_secs(10)).await.unwrap());
    assert_eq!(get(&client(), addr, "/").await.unwrap().body, "m-a");

    lb.add(&g, backend("m-b", b.addr)).await.unwrap();
    assert!(lb.wait_healthy(&g, &ib, Duration::from_secs(10)).await.unwrap());
    let r = lb.drain(&g, &ia, Duration::from_secs(5)).await.unwrap();
    assert!(r.completed && r.inflight_left == 0, "{r:?}");
    assert!(!lb.wait_healthy(&g, &ia, Duration::from_millis(50)).await.unwrap(), "drained is not serving");
    for _ in 0..5 {
        assert_eq!(get(&client(), addr, "/").await.unwrap().body, "m-b");
    }
    lb.remove(&g, &ia).await.unwrap();
    lb.remove(&g, &ia).await.unwrap(); // removing twice is fine
    assert!(!lb.wait_healthy(&g, &ia, Duration::from_millis(50)).await.unwrap(), "removed is unknown");
    let r = lb.drain(&g, &InstanceId::new("ghost"), Duration::from_secs(5)).await.unwrap();
    assert!(r.completed);

    // Bad input is Invalid, naming what is wrong.
    let e = lb
        .add(&g, Backend { id: InstanceId::new("x"), address: "not-an-address".into(), weight: 1 })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message.contains("not-an-address"), "{e}");
    let other = GroupId::new("unregistered");
    let e = lb.add(&other, backend("x", a.addr)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message.contains("unregistered"), "{e}");

    assert!(eb.group(&g).is_some() && eb.group(&other).is_none());
    eb.shutdown().await;
    assert!(eb.group(&g).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_makes_the_backend_set_what_is_wanted() {
    let eb = EmbeddedBalancer::new();
    let g = GroupId::new("web");
    let addr = eb.register(g.clone(), fast_cfg()).await.unwrap();
    let lb: &dyn Balancer = &eb;
    let (a, b, c) = (TestBackend::start("m-a").await, TestBackend::start("m-b").await, TestBackend::start("m-c").await);
    let (ia, ib) = (InstanceId::new("m-a"), InstanceId::new("m-b"));
    let bodies = |n: usize| async move {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..n {
            seen.insert(get(&client(), addr, "/").await.unwrap().body);
        }
        seen.into_iter().collect::<Vec<_>>()
    };

    // Missing backends are added and serve once healthy.
    lb.sync(&g, &[backend("m-a", a.addr), backend("m-b", b.addr)]).await.unwrap();
    assert!(lb.wait_healthy(&g, &ia, Duration::from_secs(10)).await.unwrap());
    assert!(lb.wait_healthy(&g, &ib, Duration::from_secs(10)).await.unwrap());
    assert_eq!(bodies(8).await, ["m-a", "m-b"]);

    // A retire drained m-a, then its delete failed: wanted again, it serves again.
    lb.drain(&g, &ia, Duration::from_secs(5)).await.unwrap();
    assert_eq!(bodies(6).await, ["m-b"]);
    lb.sync(&g, &[backend("m-a", a.addr), backend("m-b", b.addr)]).await.unwrap();
    assert!(lb.wait_healthy(&g, &ia, Duration::from_secs(10)).await.unwrap(), "back in service");
    assert_eq!(bodies(8).await, ["m-a", "m-b"]);

    // m-b is no longer wanted; m-a moved to another address (c's).
    lb.sync(&g, &[backend("m-a", c.addr)]).await.unwrap();
    assert!(lb.wait_healthy(&g, &ia, Duration::from_secs(10)).await.unwrap());
    assert!(!lb.wait_healthy(&g, &ib, Duration::from_millis(50)).await.unwrap(), "m-b forgotten");
    assert_eq!(bodies(6).await, ["m-c"], "m-a is now served from its new address");

    // A bad address changes nothing.
    let bad = Backend { id: InstanceId::new("x"), address: "nowhere".into(), weight: 1 };
    let e = lb.sync(&g, &[bad]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(bodies(4).await, ["m-c"]);

    // Nothing wanted: nothing served.
    lb.sync(&g, &[]).await.unwrap();
    assert!(eb.group(&g).unwrap().backends().is_empty());
    eb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_names_the_backends_that_fail_their_check_and_since_when() {
    let eb = EmbeddedBalancer::new();
    let g = GroupId::new("web");
    eb.register(g.clone(), fast_cfg()).await.unwrap();
    let lb: &dyn Balancer = &eb;
    let (a, b) = (TestBackend::start("m-a").await, TestBackend::start("m-b").await);
    let (ia, ib) = (InstanceId::new("m-a"), InstanceId::new("m-b"));
    let now = || Timestamp::from_millis(1_000_000);
    let failing = || async { lb.unhealthy(&g, now()).await.unwrap() };

    // Added and not yet checked: failing since it was added (a moment ago).
    b.set_healthy(false);
    lb.sync(&g, &[backend("m-a", a.addr), backend("m-b", b.addr)]).await.unwrap();
    assert!(lb.wait_healthy(&g, &ia, Duration::from_secs(10)).await.unwrap());
    let f = failing().await;
    assert_eq!(f.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), ["m-b"], "{f:?}");
    assert!(now().since(f[0].since) < Duration::from_secs(10), "{f:?}");

    // A healthy backend that starts failing is reported once ejected, with time counting up.
    b.set_healthy(true);
    assert!(lb.wait_healthy(&g, &ib, Duration::from_secs(10)).await.unwrap());
    assert!(failing().await.is_empty());
    a.set_healthy(false);
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen = failing().await;
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(seen.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), ["m-a"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = failing().await;
    assert!(later[0].since < seen[0].since, "the time failing counts up: {seen:?} then {later:?}");

    // A backend being drained is on its way out: not reported; healthy again: not reported.
    lb.drain(&g, &ia, Duration::from_secs(1)).await.unwrap();
    assert!(failing().await.is_empty());
    a.set_healthy(true);
    lb.sync(&g, &[backend("m-a", a.addr), backend("m-b", b.addr)]).await.unwrap();
    assert!(lb.wait_healthy(&g, &ia, Duration::from_secs(10)).await.unwrap());
    assert!(failing().await.is_empty());
    eb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balancer_that_just_started_reports_the_rate_it_saw_not_a_fraction_of_it() {
    // After a restart (or when a member is added) the balancer has watched a member for a moment
    // only. Its rate must be over the time it watched: spread over the whole 10 s window, a
    // steady 100 req/s would read as 10, and a target policy on rps would scale a loaded group in.
    let eb = EmbeddedBalancer::new();
    let g = GroupId::new("web");
    let addr = eb.register(g.clone(), fast_cfg()).await.unwrap();
    let a = TestBackend::start("m-a").await;
    let members = [Instance::new("m-a", &g, Timestamp::ZERO)];
    let before_add = tokio::time::Instant::now();
    eb.add(&g, backend("m-a", a.addr)).await.unwrap();
    let after_add = tokio::time::Instant::now();
    assert!(eb.wait_healthy(&g, &InstanceId::new("m-a"), Duration::from_secs(10)).await.unwrap());
    let c = client();
    let n = 30u32;
    for i in 0..n {
        assert_eq!(get(&c, addr, "/").await.unwrap().status, 200);
        if i == 0 {
            // Less than a second watched: no rate yet (the other figures are there).
            let s = &eb.sample(&g, &members, Timestamp::from_millis(1)).await.unwrap()[0];
            assert_eq!((s.get(Metric::RequestRate), s.get(Metric::Requests)), (None, Some(1.0)), "{s:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before_sample = tokio::time::Instant::now();
    let s = &eb.sample(&g, &members, Timestamp::from_millis(1)).await.unwrap()[0];
    let after_sample = tokio::time::Instant::now();
    let rps = s.get(Metric::RequestRate).expect("a rate once a second was watched");
    let (lo, hi) = (
        f64::from(n) / (after_sample - before_add).as_secs_f64(),
        f64::from(n) / (before_sample - after_add).as_secs_f64(),
    );
    assert!(rps >= lo * 0.999 && rps <= hi * 1.001, "{rps} req/s; between {lo} and {hi} ({n} requests)");
    let group = eb.group(&g).unwrap().stats();
    let b = &group.backends[0].traffic;
    assert!(b.rps >= lo * 0.999 && b.rps <= hi * 1.001, "the group's figures agree: {b:?}");
    assert!(group.total.rps >= lo * 0.999, "the group's total too: {:?}", group.total);
    eb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_source_reports_what_the_balancer_saw() {
    let eb = EmbeddedBalancer::new();
    let g = GroupId::new("web");
    let addr = eb.register(g.clone(), fast_cfg()).await.unwrap();
    let a = TestBackend::start("m-a").await;
    eb.add(&g, backend("m-a", a.addr)).await.unwrap();
    assert!(eb.wait_healthy(&g, &InstanceId::new("m-a"), Duration::from_secs(10)).await.unwrap());

    let n = 40;
    let c = client();
    for _ in 0..n {
        assert_eq!(get(&c, addr, "/slow?ms=20").await.unwrap().status, 200);
    }
    tokio::time::sleep(MIN_WATCHED).await; // a rate is a reading once a second was watched
    let now = Timestamp::from_millis(1_000);
    let members = [Instance::new("m-a", &g, Timestamp::ZERO), Instance::new("m-unknown", &g, Timestamp::ZERO)];
    let src: &dyn MetricSource = &eb;
    assert_eq!(src.name(), "lb");
    let samples = src.sample(&g, &members, now).await.unwrap();
    assert_eq!(samples.len(), 1, "members the balancer does not know are absent: {samples:?}");
    let s = &samples[0];
    assert_eq!((s.instance.as_str(), s.at), ("m-a", now));
    assert_eq!(s.get(Metric::Requests), Some(n as f64), "all {n} requests are in the 60 s count window");
    // Requests in the 10 s rate window over the time the balancer watched (here 1 to 3 s).
    let over_watched = |rps: f64, n: u64| (n as f64 / 3.0..=n as f64).contains(&rps);
    let rps = s.get(Metric::RequestRate).unwrap();
    assert!(over_watched(rps, n), "{rps} req/s for {n} requests");
    assert_eq!(s.get(Metric::Inflight), Some(0.0));
    assert_eq!(s.get(Metric::ErrorRate), Some(0.0));
    let (p50, p95, p99) =
        (s.get(Metric::LatencyP50).unwrap(), s.get(Metric::LatencyP95).unwrap(), s.get(Metric::LatencyP99).unwrap());
    assert!((19.0..2000.0).contains(&p50), "p50 {p50}");
    assert!(p50 <= p95 && p95 <= p99, "{p50} {p95} {p99}");

    // Errors count into the error rate.
    a.set_fail(true);
    for _ in 0..2 {
        assert_eq!(get(&c, addr, "/").await.unwrap().status, 500);
    }
    let s = &src.sample(&g, &members, now).await.unwrap()[0];
    let want = 2.0 * 100.0 / (n as f64 + 2.0);
    assert!((s.get(Metric::ErrorRate).unwrap() - want).abs() < 1e-9, "{s:?}");

    // Group stats agree.
    let st = eb.group(&g).unwrap().stats();
    assert_eq!(st.total.requests_total, n + 2);
    assert_eq!(st.total.errors_total, 2);
    assert_eq!(st.total.requests_in_count_window, n + 2);
    assert_eq!(st.backends.len(), 1);
    assert_eq!(st.backends[0].traffic.requests_total, n + 2);
    assert!(over_watched(st.backends[0].traffic.rps, n + 2), "{:?}", st.backends[0]);
    let group = eb.group(&g).unwrap();
    assert_eq!(group.requests_in("m-a", Duration::from_secs(300)), Some(n + 2));
    assert_eq!(group.requests_in("nobody", Duration::from_secs(300)), None);

    // A group without a balancer: no samples, no error.
    assert!(src.sample(&GroupId::new("other"), &members, now).await.unwrap().is_empty());
    // A known member with no traffic in the window has no latency figures.
    let quiet = TestBackend::start("m-q").await;
    eb.add(&g, backend("m-q", quiet.addr)).await.unwrap();
    let s = src.sample(&g, &[Instance::new("m-q", &g, Timestamp::ZERO)], now).await.unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].get(Metric::Requests), Some(0.0));
    assert_eq!(s[0].get(Metric::LatencyP50), None);
    eb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_serves_until_shutdown() {
    let (b0, b1) = (TestBackend::start("x").await, TestBackend::start("y").await);
    // Reserve a port for the standalone listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut cfg = flotilla_lb::LbConfig::http(port);
    cfg.health.check = HealthCheck::Tcp;
    cfg.health.interval = Duration::from_millis(100);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run_standalone(cfg, vec![b0.addr, b1.addr], async {
        let _ = stop_rx.await;
    }));
    let c = client();
    let mut ids = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ids.len() < 2 && tokio::time::Instant::now() < deadline {
        if let Ok(a) = get(&c, port, "/").await {
            assert_eq!(a.status, 200);
            ids.insert(a.backend.unwrap());
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(ids, ["b0".to_string(), "b1".to_string()].into_iter().collect(), "backends are b0, b1");
    drop(c);
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), server).await.unwrap().unwrap().unwrap();
}
