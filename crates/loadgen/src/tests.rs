use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::*;

/// A backend that answers `200 hi` (or 500 on `/fail`) with a member header.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| async move {
                    let status = if req.uri().path() == "/fail" { 500 } else { 200 };
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .status(status)
                            .header(BACKEND_HEADER, name)
                            .body(Full::new(Bytes::from_static(b"hi")))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn closed_loop_counts_every_response_by_member() {
    let addr = backend("m1").await;
    let r = Load::run_for(LoadSpec::closed(addr, "/", 2), Duration::from_millis(300)).await;
    assert!(r.sent > 10, "{r:?}");
    assert_eq!(r.failures, 0);
    assert_eq!(r.ok(), r.sent);
    assert_eq!(r.by_backend.get("m1"), Some(&r.sent));
    assert!(r.latency_ms(50.0).is_some());
    assert!(r.summary().contains("0 failed"), "{}", r.summary());
}

#[tokio::test]
async fn open_loop_holds_the_rate() {
    let addr = backend("m1").await;
    let r = Load::run_for(LoadSpec::open(addr, "/", 4, 200.0), Duration::from_secs(1)).await;
    // 200/s for 1 s: allow generous slack for a busy 2-core machine.
    assert!((120..=260).contains(&r.sent), "sent {}", r.sent);
}

#[tokio::test]
async fn errors_and_refusals_are_counted_not_hidden() {
    let addr = backend("m1").await;
    let r = Load::run_for(LoadSpec::closed(addr, "/fail", 1), Duration::from_millis(200)).await;
    assert!(r.server_errors() > 0 && r.server_errors() == r.sent);

    // Nothing listens here: every request is a failure with its reason.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let r = Load::run_for(LoadSpec::open(dead, "/", 1, 50.0), Duration::from_millis(200)).await;
    assert!(r.failures > 0 && r.failures == r.sent, "{r:?}");
    assert!(r.failure_reasons.keys().any(|k| k.contains("connect")), "{r:?}");
}
