//! The HTTP/1.1 reverse proxy: hyper's h1 server towards clients, one hyper-util legacy client
//! (own keep-alive pool) per backend. The request lifecycle is in the crate docs.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, EXPECT, RETRY_AFTER, TE, TRAILER, UPGRADE, VIA,
};
use hyper::http::request::Parts;
use hyper::http::uri::{self, PathAndQuery, Scheme};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::backend::Backend;
use crate::body::{Completion, ReqBody, RespBody, Source};
use crate::group::{Refusal, Shared};
use crate::queue::QueueError;
use crate::select::{Snapshot, Tried};

/// hyper refuses a smaller read buffer.
const HYPER_MIN_BUF: usize = 8192;

static X_FLOTILLA_BACKEND: HeaderName = HeaderName::from_static(flotilla_model::vocab::BACKEND_HEADER);
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
pub(crate) static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub(crate) static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const VIA_VALUE: &str = "1.1 flotilla";

pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let mut builder = http1::Builder::new();
    builder.keep_alive(true).max_buf_size(shared.cfg.max_header_bytes.max(HYPER_MIN_BUF)).timer(TokioTimer::new());
    let sh = shared.clone();
    shared.accept_loop(listener, move |stream, peer| connection(&sh, &builder, stream, peer)).await;
}

/// Per-connection state: the cached backend list and the least-outstanding tie rotation.
struct ConnCtx {
    shared: Arc<Shared>,
    client_ip: HeaderValue,
    snap: RefCell<(u64, Snapshot)>,
    hint: Cell<usize>,
}

impl ConnCtx {
    fn next(&self) -> ((u64, Snapshot), usize) {
        let mut snap = self.snap.borrow_mut();
        self.shared.refresh(&mut snap);
        let h = self.hint.get();
        self.hint.set(h.wrapping_add(1));
        (snap.clone(), h)
    }
}

fn connection(
    shared: &Arc<Shared>,
    builder: &http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let ctx = ConnCtx {
        shared: shared.clone(),
        client_ip: HeaderValue::from_str(&peer.ip().to_string()).expect("an IP address is a valid header value"),
        snap: RefCell::new(shared.snapshot()),
        hint: Cell::new(shared.conn_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
    };
    let svc = service_fn(move |req| {
        let (snap, hint) = ctx.next();
        proxy(ctx.shared.clone(), ctx.client_ip.clone(), snap, hint, req)
    });
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    let mut shutdown = shared.shutdown.subscribe();
    async move {
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "client connection ended with an error");
                }
            }
            _ = crate::group::until_set(&mut shutdown) => {
                // why: finish the request in progress, then close instead of keeping alive.
                conn.as_mut().graceful_shutdown();
                let _ = conn.as_mut().await;
            }
        }
    }
}

fn is_idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

/// One client request, through every phase (see the crate docs).
async fn proxy(
    shared: Arc<Shared>,
    client_ip: HeaderValue,
    mut snap: (u64, Snapshot),
    hint: usize,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    let start = Instant::now();
    let cfg = &shared.cfg;
    if req.method() == Method::CONNECT {
        shared.record_local(start, false);
        return Ok(local(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported\n"));
    }
    let (mut parts, body) = req.into_parts();

    // buffer body: errors here (invalid chunking, client gone) reach no backend. A client that
    // trickles its body is cut off at the body timeout (no timer at all for a request without one).
    let read = if hyper::body::Body::is_end_stream(&body) {
        Ok(Source::read(body, cfg.retry_buffer).await)
    } else {
        tokio::time::timeout(cfg.body_timeout, Source::read(body, cfg.retry_buffer)).await
    };
    let Ok(read) = read else {
        tracing::debug!(group = %shared.name, timeout = ?cfg.body_timeout, "request body too slow: 408");
        shared.record_local(start, false);
        let mut resp = local(StatusCode::REQUEST_TIMEOUT, "request body too slow\n");
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        return Ok(resp);
    };
    let source = match read {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(group = %shared.name, error = %e, "bad request body");
            shared.record_local(start, false);
            let mut resp = local(StatusCode::BAD_REQUEST, "bad request body\n");
            resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            return Ok(resp);
        }
    };
    forward_headers(&mut parts.headers, &client_ip, source.is_buffered(), cfg.trust_forwarded);
    let pq = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let idempotent = is_idempotent(&parts.method);

    let mut tried = Tried::default();
    let mut extra = 0u32;
    let mut queue_deadline = None;
    let mut last: Option<Arc<Backend>> = None;
    loop {
        // select (or queue)
        let attempt = match shared.acquire(&mut snap, &tried, hint, &mut queue_deadline).await {
            Ok(a) => a,
            Err(Refusal::Queue(e)) => {
                tracing::debug!(group = %shared.name, reason = ?e, "no backend: 503");
                shared.record_local(start, true);
                return Ok(unavailable(e));
            }
            Err(Refusal::Exhausted) => return Ok(bad_gateway(&shared, last.as_deref(), start)),
        };
        let backend = attempt.backend().clone();
        let Some(body) = source.replay() else {
            return Ok(bad_gateway(&shared, Some(&backend), start));
        };
        let Some(upstream) = upstream_request(&parts, &pq, &backend, body) else {
            shared.record_local(start, false);
            return Ok(local(StatusCode::BAD_REQUEST, "bad request target\n"));
        };
        // send
        let Some(sent) = backend.send(upstream) else {
            // drained meanwhile: its pool is gone, nothing was sent.
            tried.push(&backend);
            continue;
        };
        let Ok(sent) = tokio::time::timeout(cfg.response_timeout, sent).await else {
            // Sent and never answered: not retried (it may have been acted on), never waited on
            // past the timeout (a drain's deadline holds).
            backend.on_failure(cfg.passive_5xx);
            drop(attempt);
            tracing::warn!(group = %shared.name, backend = %backend.id, timeout = ?cfg.response_timeout,
                "backend did not answer in time: 504");
            return Ok(gateway_timeout(&backend, start));
        };
        match sent {
            Ok(resp) => return Ok(respond(resp, attempt, start, cfg.passive_5xx)),
            Err(e) => {
                let connect = e.is_connect();
                if connect {
                    backend.eject("connect failed");
                } else {
                    backend.on_failure(cfg.passive_5xx);
                }
                drop(attempt);
                // retry edges: not sent at all, or idempotent with the whole body in hand.
                let retryable = (connect || (idempotent && source.is_buffered())) && source.replay().is_some();
                if retryable && extra < cfg.retries {
                    tracing::debug!(group = %shared.name, backend = %backend.id, error = %e, connect, "attempt failed; retrying elsewhere");
                    extra += 1;
                    backend.count_retry();
                    tried.push(&backend);
                    last = Some(backend);
                    continue;
                }
                tracing::warn!(group = %shared.name, backend = %backend.id, error = ?e, "proxy failure: 502");
                return Ok(bad_gateway(&shared, Some(&backend), start));
            }
        }
    }
}

pub(crate) fn upstream_request(
    parts: &Parts,
    pq: &PathAndQuery,
    b: &Backend,
    body: ReqBody,
) -> Option<Request<ReqBody>> {
    let mut up = uri::Parts::default();
    up.scheme = Some(Scheme::HTTP);
    up.authority = Some(b.authority.clone());
    up.path_and_query = Some(pq.clone());
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = Uri::from_parts(up).ok()?;
    // why: HTTP/1.1 upstream whatever the client spoke, so backend connections stay pooled.
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = parts.headers.clone();
    Some(req)
}

/// respond + headers: the backend's answer with hop-by-hop headers stripped and ours added.
fn respond(
    resp: Response<Incoming>,
    attempt: crate::backend::Attempt,
    start: Instant,
    passive_5xx: u32,
) -> Response<RespBody> {
    let (mut parts, inner) = resp.into_parts();
    let b = attempt.backend();
    b.on_status(parts.status.as_u16(), passive_5xx);
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(X_FLOTILLA_BACKEND.clone(), b.id_header.clone());
    parts.headers.append(VIA, HeaderValue::from_static(VIA_VALUE));
    let error = parts.status.is_server_error();
    Response::from_parts(parts, RespBody::Proxied { inner, done: Completion::new(attempt, start, error) })
}

/// Removes hop-by-hop headers: `Connection` and every header it names, plus the fixed list.
/// Framing (`Content-Length`, `Transfer-Encoding`) is left to hyper.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap) {
    if h.contains_key(CONNECTION) {
        let listed: Vec<HeaderName> = h
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for n in listed {
            h.remove(n);
        }
        h.remove(CONNECTION);
    }
    for n in [&KEEP_ALIVE, &PROXY_CONNECTION, &TE, &TRAILER, &UPGRADE] {
        if h.contains_key(n) {
            h.remove(n);
        }
    }
}

pub(crate) fn forward_headers(h: &mut HeaderMap, client_ip: &HeaderValue, buffered: bool, trust: bool) {
    strip_hop_by_hop(h);
    if !trust {
        // why: a client's own claims about where it comes from are not evidence.
        for n in [&X_FORWARDED_FOR, &FORWARDED, &X_REAL_IP] {
            h.remove(n);
        }
    }
    if buffered {
        // why: the body is already read (hyper answered any 100-continue); the backend must not
        // wait for a continue that will never be asked for.
        h.remove(EXPECT);
    }
    append_list(h, &X_FORWARDED_FOR, client_ip.clone());
    // why: set, not kept: this listener is plain HTTP, and a client must not claim otherwise
    // (as nginx's `$scheme` and HAProxy's `set-header` do).
    h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    append_list(h, &VIA, HeaderValue::from_static(VIA_VALUE));
}

/// Appends `v` to a comma-separated list header, in one field (some backends read only one).
fn append_list(h: &mut HeaderMap, name: &HeaderName, v: HeaderValue) {
    if !h.contains_key(name) {
        h.insert(name.clone(), v);
        return;
    }
    let mut joined = Vec::new();
    for prev in h.get_all(name) {
        joined.extend_from_slice(prev.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(v.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.insert(name.clone(), v);
    }
}

fn local(status: StatusCode, text: &'static str) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::local(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

fn unavailable(e: QueueError) -> Response<RespBody> {
    let text = match e {
        QueueError::Full => "no backend available (queue full)\n",
        QueueError::Timeout => "no backend available\n",
        QueueError::Closed => "balancer shutting down\n",
    };
    let mut resp = local(StatusCode::SERVICE_UNAVAILABLE, text);
    resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// The backend took the request and did not answer within the response timeout.
fn gateway_timeout(b: &Backend, start: Instant) -> Response<RespBody> {
    let now = Instant::now();
    b.record(now.saturating_duration_since(start), true, now);
    local(StatusCode::GATEWAY_TIMEOUT, "backend did not answer in time\n")
}

/// Every allowed attempt failed: the failure counts against the last backend tried.
fn bad_gateway(shared: &Shared, last: Option<&Backend>, start: Instant) -> Response<RespBody> {
    let now = Instant::now();
    match last {
        Some(b) => b.record(now.saturating_duration_since(start), true, now),
        None => shared.record_local(start, true),
    }
    local(StatusCode::BAD_GATEWAY, "backend failed\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_go() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, X-Private , upgrade"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert(TRAILER, HeaderValue::from_static("x-t"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("content-length", HeaderValue::from_static("3"));
        h.insert("x-end", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["content-length", "x-end"]);
    }

    #[test]
    fn forwarding_headers_append_to_what_came_in() {
        let ip = HeaderValue::from_static("127.0.0.1");
        let mut h = HeaderMap::new();
        forward_headers(&mut h, &ip, true, true);
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h[VIA], "1.1 flotilla");

        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert(VIA, HeaderValue::from_static("1.1 edge"));
        h.insert(EXPECT, HeaderValue::from_static("100-continue"));
        forward_headers(&mut h, &ip, true, true);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 127.0.0.1");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-proto"], "http", "what the client reached us with, whatever it claims");
        assert_eq!(h[VIA], "1.1 edge, 1.1 flotilla");
        assert!(h.get(EXPECT).is_none(), "the body is already buffered");
    }

    #[test]
    fn a_clients_forwarding_claims_are_dropped_unless_trusted() {
        let ip = HeaderValue::from_static("127.0.0.1");
        let claims = || {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_static("10.9.9.9"));
            h.insert("forwarded", HeaderValue::from_static("for=10.9.9.9"));
            h.insert("x-real-ip", HeaderValue::from_static("10.9.9.9"));
            h
        };
        let mut h = claims();
        forward_headers(&mut h, &ip, true, false);
        assert_eq!(h["x-forwarded-for"], "127.0.0.1", "the client's address alone");
        assert!(h.get("forwarded").is_none() && h.get("x-real-ip").is_none());
        let mut h = claims();
        forward_headers(&mut h, &ip, true, true);
        assert_eq!(h["x-forwarded-for"], "10.9.9.9, 127.0.0.1");
        assert_eq!(h["forwarded"], "for=10.9.9.9");
    }

    #[test]
    fn idempotent_methods() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS, Method::PUT, Method::DELETE, Method::TRACE] {
            assert!(is_idempotent(&m), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!is_idempotent(&m), "{m}");
        }
    }
}
