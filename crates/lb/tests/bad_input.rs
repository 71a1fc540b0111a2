//! Malformed requests get 400/431 from the balancer itself, connections past the cap are closed at
//! accept; the balancer keeps serving others.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(5);

async fn still_serves(lb: SocketAddr) {
    let resp = raw(lb, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", T).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "a good request right after: {resp:?}");
    assert!(resp.ends_with("b"), "{resp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_header_line_gets_400() {
    let b = TestBackend::start("b").await;
    let lb = balancer_with(fast_cfg(), &[&b]).await;
    let resp = raw(lb.local_addr(), b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n", T).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp:?}");
    let resp = raw(lb.local_addr(), b"GET / HTTP/1.1\r\nHost: x\r\nX-Ok: \x01\x02\r\n\r\n", T).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "control bytes in a value: {resp:?}");
    still_serves(lb.local_addr()).await;
    assert_eq!(b.hits(), 1, "nothing malformed reached the backend");
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_head_gets_431() {
    let b = TestBackend::start("b").await;
    let lb = balancer_with(fast_cfg(), &[&b]).await;
    let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 20 * 1024));
    req.extend_from_slice(b"\r\n\r\n");
    let resp = raw(lb.local_addr(), &req, T).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp:?}");
    still_serves(lb.local_addr()).await;
    assert_eq!(b.hits(), 1);
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunked_body_gets_400_before_reaching_a_backend() {
    let b = TestBackend::start("b").await;
    let lb = balancer_with(fast_cfg(), &[&b]).await;
    let req = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    let resp = raw(lb.local_addr(), req, T).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp:?}");
    still_serves(lb.local_addr()).await;
    assert_eq!(b.hits(), 1, "the broken body never reached the backend");
    // A valid chunked body goes through whole.
    let req = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let resp = raw(lb.local_addr(), req, T).await;
    assert!(resp.starts_with("HTTP/1.1 200") && resp.ends_with("b:11"), "{resp:?}");
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_small_bodies_arrive_whole() {
    let b = TestBackend::start("b").await;
    let lb = balancer_with(fast_cfg(), &[&b]).await;
    let c = client();
    for len in [0usize, 10, 64 * 1024, 64 * 1024 + 1, 300 * 1024] {
        let ans = send(&c, lb.local_addr(), "POST", "/echo", vec![7u8; len]).await.unwrap();
        assert_eq!((ans.status, ans.body), (200, format!("b:{len}")));
    }
    lb.shutdown().await;
}

/// At `max_connections` open client connections a new one is closed at once (and said in the log);
/// when one closes, the next is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_at_accept() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = TestBackend::start("b").await;
    let mut cfg = fast_cfg();
    cfg.max_connections = 2;
    let lb = balancer_with(cfg, &[&b]).await;
    assert!(lb.wait_healthy("b", std::time::Duration::from_secs(5)).await);
    let addr = lb.local_addr();
    // Two keep-alive connections, each answered once and left open.
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        open.push(s);
    }
    // The third: closed without an answer.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(2), third.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "the connection over the cap got {:?}", String::from_utf8_lossy(&buf[..n]));
    // One closes: the next is served.
    drop(open.pop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(get(&client(), addr, "/").await.unwrap().status, 200);
}

/// A client that sends its headers and then trickles (or stops sending) the body it announced is
/// answered 408 at the body timeout, and its connection closed; others are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_gets_408_at_the_body_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = TestBackend::start("b").await;
    let mut cfg = fast_cfg();
    cfg.body_timeout = Duration::from_millis(400);
    let lb = balancer_with(cfg, &[&b]).await;
    assert!(lb.wait_healthy("b", T).await);
    let mut s = tokio::net::TcpStream::connect(lb.local_addr()).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b").await.unwrap();
    still_serves(lb.local_addr()).await;
    let mut out = String::new();
    tokio::time::timeout(T, s.read_to_string(&mut out)).await.expect("answered and closed").unwrap();
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert_eq!(b.hits(), 1, "only the good request reached the backend");
}
