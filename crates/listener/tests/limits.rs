//! The limits, against real sockets: a trickled head is cut off, the connection cap holds and
//! frees, a slow body gets 408, handlers see the peer, and stop lets the request in flight finish.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{HeaderMap, Request};
use axum::routing::{get, post};
use axum::Router;
use flotilla_listener::{read_body, serve, Limits, Throttled};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

async fn start(limits: Limits) -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route("/peer", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "done"
            }),
        )
        .route(
            "/body",
            post(move |headers: HeaderMap, req: Request<Body>| async move {
                match read_body(req.into_body(), &headers, 16, Duration::from_millis(300)).await {
                    Ok(b) => (axum::http::StatusCode::OK, format!("{} bytes", b.len())),
                    Err(e) => (e.status(), format!("{e:?}")),
                }
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(serve("test", listener, app, limits, None, rx));
    (addr, stop, task)
}

/// Sends raw bytes, then reads until the peer closes or `limit` passes; returns what came back.
async fn exchange(addr: SocketAddr, bytes: &[u8], limit: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(limit, s.read_to_end(&mut out)).await.is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

fn limits() -> Limits {
    Limits { header_timeout: Duration::from_millis(300), max_connections: 2, ..Limits::default() }
}

#[tokio::test]
async fn a_trickled_head_is_cut_off() {
    let (addr, _stop, _task) = start(limits()).await;
    let (_, closed) = exchange(addr, b"GET /peer HTTP/1.1\r\nHost: x\r\n", Duration::from_secs(5)).await;
    assert!(closed, "the connection was closed while the head was incomplete");
    // A whole request still works, and the handler sees the peer.
    let (out, _) =
        exchange(addr, b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("127.0.0.1:"), "{out}");
}

#[tokio::test]
async fn the_connection_cap_holds_and_frees() {
    let lim = Limits { header_timeout: Duration::from_secs(30), ..limits() };
    let (addr, _stop, _task) = start(lim).await;
    let a = TcpStream::connect(addr).await.unwrap();
    let b = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (out, closed) =
        exchange(addr, b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Duration::from_secs(5)).await;
    assert!(closed && out.is_empty(), "a third connection is closed unanswered: {out:?}");
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (out, _) =
        exchange(addr, b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 200"), "served again once a slot is free: {out}");
}

#[tokio::test]
async fn a_slow_or_large_body_is_refused() {
    let (addr, _stop, _task) = start(limits()).await;
    let slow = b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\nab";
    let (out, _) = exchange(addr, slow, Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    let big = b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\nConnection: close\r\n\r\n01234567890123456";
    let (out, _) = exchange(addr, big, Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    let ok = b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd";
    let (out, _) = exchange(addr, ok, Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("4 bytes"), "{out}");
}

#[tokio::test]
async fn stop_lets_the_request_in_flight_finish() {
    let (addr, stop, task) = start(limits()).await;
    let pending = tokio::spawn(exchange(addr, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(true).unwrap();
    let (out, closed) = pending.await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("done"), "{out}");
    assert!(closed, "and the connection closes after it");
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "no longer listening");
}

#[tokio::test(start_paused = true)]
async fn refusal_logs_are_throttled_and_counted() {
    let t = Throttled::new(Duration::from_secs(10));
    let now = tokio::time::Instant::now();
    assert_eq!(t.allow(now), Some(0));
    assert_eq!(t.allow(now + Duration::from_secs(1)), None);
    assert_eq!(t.allow(now + Duration::from_secs(2)), None);
    assert_eq!(t.allow(now + Duration::from_secs(11)), Some(2), "the next one says how many were held back");
}
