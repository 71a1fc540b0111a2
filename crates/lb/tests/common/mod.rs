//! Test backends (tiny hyper servers on 127.0.0.1 that answer with their id and can be told to
//! delay, fail, turn unhealthy, or die abruptly) and client helpers.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_lb::{GroupBalancer, HealthCheck, HealthConfig, LbConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Fast health checks so tests don't wait seconds for a backend to be admitted.
pub fn fast_cfg() -> LbConfig {
    let mut cfg = LbConfig::http(localhost());
    cfg.health = HealthConfig {
        check: HealthCheck::Http { path: "/healthz".into() },
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
        rise: 1,
        fall: 2,
    };
    cfg.connect_timeout = Duration::from_secs(1);
    cfg
}

#[derive(Default)]
pub struct Knobs {
    /// Requests served (health checks excluded).
    pub hits: AtomicU64,
    /// `/healthz` answers 200 when true, 503 when false.
    pub healthy: AtomicBool,
    /// Every non-health request gets 500.
    pub fail: AtomicBool,
    /// Extra delay for every non-health request, in ms.
    pub delay_ms: AtomicU64,
    /// Client connections open now.
    pub open_conns: AtomicUsize,
    /// Requests being handled now.
    pub inflight: AtomicUsize,
}

/// An in-process HTTP backend that answers with its id.
pub struct TestBackend {
    pub id: String,
    pub addr: SocketAddr,
    pub knobs: Arc<Knobs>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl TestBackend {
    pub async fn start(id: &str) -> TestBackend {
        let listener = TcpListener::bind(localhost()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let knobs = Arc::new(Knobs { healthy: AtomicBool::new(true), ..Default::default() });
        let id_s = id.to_string();
        let k = knobs.clone();
        let server = tokio::spawn(async move {
            // The JoinSet lives in this task: aborting the task drops every connection at once.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let _ = stream.set_nodelay(true);
                        let (id, k) = (id_s.clone(), k.clone());
                        conns.spawn(async move {
                            k.open_conns.fetch_add(1, Ordering::SeqCst);
                            let kk = k.clone();
                            let svc = service_fn(move |req| handle(id.clone(), kk.clone(), req));
                            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                            k.open_conns.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        TestBackend { id: id.to_string(), addr, knobs, server: Mutex::new(Some(server)) }
    }

    pub fn hits(&self) -> u64 {
        self.knobs.hits.load(Ordering::SeqCst)
    }
    pub fn set_healthy(&self, v: bool) {
        self.knobs.healthy.store(v, Ordering::SeqCst);
    }
    pub fn set_fail(&self, v: bool) {
        self.knobs.fail.store(v, Ordering::SeqCst);
    }
    pub fn set_delay(&self, ms: u64) {
        self.knobs.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Abrupt death: the listener and every connection (mid-request or idle) are dropped.
    pub async fn kill(&self) {
        let h = self.server.lock().unwrap().take();
        if let Some(h) = h {
            h.abort();
            let _ = h.await;
        }
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        if let Some(h) = self.server.lock().unwrap().take() {
            h.abort();
        }
    }
}

fn query_ms(q: Option<&str>) -> u64 {
    q.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ms="))).and_then(|v| v.parse().ok()).unwrap_or(0)
}

async fn handle(id: String, k: Arc<Knobs>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        let ok = k.healthy.load(Ordering::SeqCst);
        let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        return Ok(Response::builder().status(status).body(Full::new(Bytes::from_static(b"ok"))).unwrap());
    }
    k.hits.fetch_add(1, Ordering::SeqCst);
    k.inflight.fetch_add(1, Ordering::SeqCst);
    let delay = k.delay_ms.load(Ordering::SeqCst) + if path == "/slow" { query_ms(req.uri().query()) } else { 0 };
    let headers = req.headers().clone();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    k.inflight.fetch_sub(1, Ordering::SeqCst);
    if k.fail.load(Ordering::SeqCst) {
        return Ok(Response::builder().status(500).body(Full::new(Bytes::from(format!("{id} failing")))).unwrap());
    }
    let resp = match path.as_str() {
        "/headers" => {
            let mut dump = String::new();
            for (n, v) in &headers {
                dump.push_str(&format!("{}: {}\n", n, v.to_str().unwrap_or("?")));
            }
            Response::new(Full::new(Bytes::from(dump)))
        }
        "/hop" => Response::builder()
            .header("connection", "x-hop-resp")
            .header("x-hop-resp", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("trailer", "x-t")
            .header("x-end-to-end", "kept")
            .body(Full::new(Bytes::from(id.clone())))
            .unwrap(),
        "/echo" => Response::new(Full::new(Bytes::from(format!("{id}:{}", body.len())))),
        _ => Response::new(Full::new(Bytes::from(id.clone()))),
    };
    Ok(resp)
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// What a client saw: status, `x-flotilla-backend`, body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub backend: Option<String>,
    pub body: String,
    pub headers: hyper::HeaderMap,
}

pub async fn send(c: &TestClient, lb: SocketAddr, method: &str, path: &str, body: Vec<u8>) -> Result<Answer, String> {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{lb}{path}"))
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = c.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let backend = headers.get("x-flotilla-backend").map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.map_err(|e| format!("body: {e:?}"))?.to_bytes();
    Ok(Answer { status, backend, body: String::from_utf8_lossy(&body).into_owned(), headers })
}

pub async fn get(c: &TestClient, lb: SocketAddr, path: &str) -> Result<Answer, String> {
    send(c, lb, "GET", path, Vec::new()).await
}

/// Starts a balancer with these backends added and waits until all serve.
pub async fn balancer_with(cfg: LbConfig, backends: &[&TestBackend]) -> Arc<GroupBalancer> {
    let lb = GroupBalancer::bind("test".into(), cfg).await.unwrap();
    for b in backends {
        lb.add_backend(b.id.clone(), b.addr, 1);
    }
    for b in backends {
        assert!(lb.wait_healthy(&b.id, Duration::from_secs(10)).await, "{} never became healthy", b.id);
    }
    lb
}

/// Polls `f` until true or the (generous) deadline passes.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends raw bytes on a new connection and returns everything read until close or `timeout`.
pub async fn raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                // one response is enough once its head and a short body are in
                if out.windows(4).any(|w| w == b"\r\n\r\n") && out.len() > 12 {
                    let text = String::from_utf8_lossy(&out);
                    if let Some(cl) = content_length(&text) {
                        let head_end = text.find("\r\n\r\n").unwrap() + 4;
                        if out.len() >= head_end + cl {
                            break;
                        }
                    }
                }
            }
            Ok(Err(_)) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn content_length(text: &str) -> Option<usize> {
    text.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().ok()))
        .flatten()
}
