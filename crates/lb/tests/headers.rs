//! Forwarding headers and hop-by-hop stripping, both directions.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(5);

fn header<'a>(dump: &'a str, name: &str) -> Vec<&'a str> {
    dump.lines().filter_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": "))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_reach_the_backend_and_hop_by_hop_ones_do_not() {
    let b = TestBackend::start("b1").await;
    let lb = balancer_with(fast_cfg(), &[&b]).await;
    let req = "GET /headers HTTP/1.1\r\nHost: app.example\r\n\
               Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=300\r\n\
               Proxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: websocket\r\n\
               X-Forwarded-For: 10.0.0.1\r\nX-End-To-End: kept\r\n\r\n";
    let resp = raw(lb.local_addr(), req.as_bytes(), T).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let (head, dump) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.to_ascii_lowercase().contains("x-flotilla-backend: b1"), "{head}");
    assert_eq!(header(dump, "x-forwarded-for"), ["127.0.0.1"], "a client's claim is not believed by default");
    assert_eq!(header(dump, "x-forwarded-proto"), ["http"]);
    assert_eq!(header(dump, "via"), ["1.1 flotilla"]);
    assert_eq!(header(dump, "host"), ["app.example"], "Host passes through");
    assert_eq!(header(dump, "x-end-to-end"), ["kept"]);
    for gone in ["x-hop", "keep-alive", "proxy-connection", "te", "upgrade"] {
        assert!(header(dump, gone).is_empty(), "{gone} reached the backend:\n{dump}");
    }
    // The only `connection` header the backend may see is the one hyper's client adds itself.
    assert!(header(dump, "connection").iter().all(|v| !v.to_ascii_lowercase().contains("x-hop")), "{dump}");
    lb.shutdown().await;

    // Behind a trusted proxy: its list is kept and ours appended.
    let mut cfg = fast_cfg();
    cfg.trust_forwarded = true;
    let lb = balancer_with(cfg, &[&b]).await;
    let resp = raw(lb.local_addr(), req.as_bytes(), T).await;
    let (_, dump) = resp.split_once("\r\n\r\n").unwrap();
    assert_eq!(header(dump, "x-forwarded-for"), ["10.0.0.1, 127.0.0.1"]);
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_of_the_response_are_stripped() {
    let b = TestBackend::start("b1").await;
    let lb = balancer_with(fast_cfg(), &[&b]).await;
    let ans = get(&client(), lb.local_addr(), "/hop").await.unwrap();
    assert_eq!(ans.status, 200);
    assert_eq!(ans.backend.as_deref(), Some("b1"));
    assert_eq!(ans.headers.get("x-end-to-end").unwrap(), "kept");
    for gone in ["x-hop-resp", "keep-alive", "proxy-connection", "trailer"] {
        assert!(ans.headers.get(gone).is_none(), "{gone} reached the client: {:?}", ans.headers);
    }
    assert!(ans.headers.get_all("via").iter().any(|v| v == "1.1 flotilla"));
    lb.shutdown().await;
}
