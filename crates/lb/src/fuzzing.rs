//! Entry point for the fuzz target `lb_head` (`fuzz/`), not an API: one client request head
//! through hyper's HTTP/1.1 server and the proxy's own head handling, with its invariants checked.

use std::sync::{Arc, OnceLock};

use hyper::header::{HeaderValue, CONNECTION, TE, TRAILER, UPGRADE};
use hyper::http::uri::PathAndQuery;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backend::Backend;
use crate::body::ReqBody;
use crate::http_proxy::{forward_headers, upstream_request, KEEP_ALIVE, PROXY_CONNECTION, X_FORWARDED_FOR};
use crate::stats::Epoch;
use crate::LbConfig;

const CLIENT_IP: &str = "192.0.2.7";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"))
}

fn backend() -> &'static Arc<Backend> {
    static B: OnceLock<Arc<Backend>> = OnceLock::new();
    B.get_or_init(|| {
        let addr = "127.0.0.1:9".parse().expect("address");
        runtime().block_on(async {
            Backend::new("fuzz".into(), addr, 1, &LbConfig::http(addr), Arc::new(Notify::new()), Epoch(Instant::now()))
        })
    })
}

/// Serves `data` (the first byte picks whether forwarded headers are trusted) as one client
/// connection; returns what the server wrote back. Panics if a head the server accepted leaves
/// the proxy with a hop-by-hop header, or a client's own `X-Forwarded-For` it must not trust.
pub fn request_head(data: &[u8]) -> Vec<u8> {
    let (trust, data) = match data.split_first() {
        Some((b, rest)) => (b & 1 == 1, rest),
        None => (false, data),
    };
    let backend = backend();
    runtime().block_on(async move {
        let (mut client, server) = tokio::io::duplex(16 * 1024);
        let svc = service_fn(move |req: Request<hyper::body::Incoming>| async move {
            let (mut parts, _body) = req.into_parts();
            let ip = HeaderValue::from_static(CLIENT_IP);
            forward_headers(&mut parts.headers, &ip, false, trust);
            for n in [&CONNECTION, &KEEP_ALIVE, &PROXY_CONNECTION, &TE, &TRAILER, &UPGRADE] {
                assert!(!parts.headers.contains_key(n), "hop-by-hop {n} forwarded: {:?}", parts.headers);
            }
            let xff: Vec<&HeaderValue> = parts.headers.get_all(&X_FORWARDED_FOR).iter().collect();
            assert_eq!(xff.len(), 1, "one X-Forwarded-For field: {xff:?}");
            let xff = xff[0].as_bytes();
            if trust {
                assert!(xff.ends_with(CLIENT_IP.as_bytes()), "the client's address comes last: {xff:?}");
            } else {
                assert_eq!(xff, CLIENT_IP.as_bytes(), "a client's own claim is not kept");
            }
            let pq = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
            if let Some(up) = upstream_request(&parts, &pq, backend, ReqBody::Empty) {
                assert_eq!(up.uri().path_and_query(), Some(&pq));
            }
            Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::<hyper::body::Bytes>::new()))
        });
        // Half-close: the client shuts its side after the bytes; the answer must still come back.
        let conn = http1::Builder::new().half_close(true).serve_connection(TokioIo::new(server), svc);
        let (mut rd, mut wr) = tokio::io::split(&mut client);
        let write = async {
            let _ = wr.write_all(data).await;
            let _ = wr.shutdown().await;
        };
        let mut out = Vec::new();
        let read = rd.read_to_end(&mut out);
        let _ = tokio::join!(conn, write, read);
        out
    })
}
