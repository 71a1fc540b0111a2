//! Flotilla's load generator: the seed's demo load as real HTTP requests.
//!
//! Workers hold keep-alive connections to one address (a group's balancer) and send `GET path`
//! either back to back (closed loop: `concurrency` requests in flight, the seed's "one core of
//! demand" with `concurrency: 1` and CPU-burning requests) or at a fixed total rate (open loop).
//! Every response is counted by status and by the member that served it (the balancer's
//! `x-flotilla-backend` header); every failure (connect error, reset, timeout) is counted too, so a
//! test can assert "0 failures, 0 5xx" over a whole scenario.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The response header naming the member that served a request.
pub use flotilla_model::vocab::BACKEND_HEADER;

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub target: SocketAddr,
    /// Path and query, e.g. `/work?ms=50`.
    pub path: String,
    /// Workers, each with its own keep-alive connection.
    pub concurrency: usize,
    /// Total requests per second across workers; `None` = closed loop (back to back).
    pub rate: Option<f64>,
    /// Per-request deadline; a request past it counts as a failure.
    pub timeout: Duration,
}

impl LoadSpec {
    pub fn closed(target: SocketAddr, path: impl Into<String>, concurrency: usize) -> Self {
        LoadSpec { target, path: path.into(), concurrency, rate: None, timeout: Duration::from_secs(60) }
    }
    pub fn open(target: SocketAddr, path: impl Into<String>, concurrency: usize, rate: f64) -> Self {
        LoadSpec { target, path: path.into(), concurrency, rate: Some(rate), timeout: Duration::from_secs(60) }
    }
}

/// Everything that happened, counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    pub sent: u64,
    /// Responses by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Responses by the member that served them (from `x-flotilla-backend`; `-` when absent).
    pub by_backend: BTreeMap<String, u64>,
    /// Requests that got no response: connect errors, resets, timeouts. Each with its reason.
    pub failures: u64,
    pub failure_reasons: BTreeMap<String, u64>,
    pub elapsed: Duration,
    /// Latencies in microseconds of answered requests (sorted on `finish`).
    latencies_us: Vec<u64>,
}

impl LoadReport {
    pub fn ok(&self) -> u64 {
        self.statuses.iter().filter(|(s, _)| (200..300).contains(*s)).map(|(_, n)| n).sum()
    }
    pub fn server_errors(&self) -> u64 {
        self.statuses.iter().filter(|(s, _)| **s >= 500).map(|(_, n)| n).sum()
    }
    pub fn answered(&self) -> u64 {
        self.statuses.values().sum()
    }
    /// Requests per second over the run.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.answered() as f64 / secs
        } else {
            0.0
        }
    }
    /// Latency percentile (0..=100) in milliseconds.
    pub fn latency_ms(&self, pct: f64) -> Option<f64> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let idx = ((pct / 100.0) * (self.latencies_us.len() - 1) as f64).round() as usize;
        Some(self.latencies_us[idx.min(self.latencies_us.len() - 1)] as f64 / 1000.0)
    }
    /// One line for people: totals, failures, and the split across members.
    pub fn summary(&self) -> String {
        let split: Vec<String> = self.by_backend.iter().map(|(b, n)| format!("{b}={n}")).collect();
        format!(
            "{} requests in {:.1}s ({:.0}/s): {} ok, {} 5xx, {} failed; by member: {}",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.ok(),
            self.server_errors(),
            self.failures,
            if split.is_empty() { "-".to_string() } else { split.join(", ") }
        )
    }
    fn merge(&mut self, other: &LoadReport) {
        self.sent += other.sent;
        self.failures += other.failures;
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.by_backend {
            *self.by_backend.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.failure_reasons {
            *self.failure_reasons.entry(k.clone()).or_default() += v;
        }
        self.latencies_us.extend_from_slice(&other.latencies_us);
    }
}

/// A running load. `snapshot` reads the counts so far; `stop` ends it and returns the final report.
pub struct Load {
    stop: watch::Sender<bool>,
    shared: Arc<Mutex<LoadReport>>,
    workers: JoinSet<()>,
    started: Instant,
}

impl Load {
    pub fn start(spec: LoadSpec) -> Load {
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Mutex::new(LoadReport::default()));
        let mut workers = JoinSet::new();
        let per_worker_interval =
            spec.rate.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(spec.concurrency.max(1) as f64 / r));
        for _ in 0..spec.concurrency.max(1) {
            workers.spawn(worker(spec.clone(), per_worker_interval, stop_rx.clone(), shared.clone()));
        }
        Load { stop, shared, workers, started: Instant::now() }
    }

    /// Counts so far (latencies excluded until `stop`).
    pub fn snapshot(&self) -> LoadReport {
        let mut r = self.shared.lock().expect("load report").clone();
        r.latencies_us.clear();
        r.elapsed = self.started.elapsed();
        r
    }

    /// Stops sending, waits for requests in flight to finish, and returns the report.
    pub async fn stop(mut self) -> LoadReport {
        let _ = self.stop.send(true);
        while self.workers.join_next().await.is_some() {}
        let mut r = self.shared.lock().expect("load report").clone();
        r.elapsed = self.started.elapsed();
        r.latencies_us.sort_unstable();
        r
    }

    /// Runs for `d`, then stops.
    pub async fn run_for(spec: LoadSpec, d: Duration) -> LoadReport {
        let load = Load::start(spec);
        tokio::time::sleep(d).await;
        load.stop().await
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn worker(
    spec: LoadSpec,
    interval: Option<Duration>,
    mut stop: watch::Receiver<bool>,
    shared: Arc<Mutex<LoadReport>>,
) {
    let mut ticker = interval.map(|i| {
        let mut t = tokio::time::interval(i);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut conn: Option<Sender> = None;
    // Flush local counts to the shared report now and then, not on every request.
    let mut local = LoadReport::default();
    let mut last_flush = Instant::now();
    loop {
        if *stop.borrow() {
            break;
        }
        if let Some(t) = ticker.as_mut() {
            tokio::select! {
                _ = t.tick() => {}
                _ = stop.changed() => break,
            }
        }
        local.sent += 1;
        let began = Instant::now();
        match tokio::time::timeout(spec.timeout, send(&spec, &mut conn)).await {
            Ok(Ok((status, backend))) => {
                *local.statuses.entry(status).or_default() += 1;
                *local.by_backend.entry(backend).or_default() += 1;
                local.latencies_us.push(began.elapsed().as_micros() as u64);
            }
            Ok(Err(reason)) => {
                conn = None;
                local.failures += 1;
                *local.failure_reasons.entry(reason).or_default() += 1;
            }
            Err(_) => {
                conn = None;
                local.failures += 1;
                *local.failure_reasons.entry("timeout".into()).or_default() += 1;
            }
        }
        if last_flush.elapsed() >= Duration::from_millis(100) {
            shared.lock().expect("load report").merge(&local);
            local = LoadReport::default();
            last_flush = Instant::now();
        }
    }
    shared.lock().expect("load report").merge(&local);
}

/// One request on the worker's connection, reconnecting when it has none (or it was closed by the
/// server between requests, which is not a failure of the service).
async fn send(spec: &LoadSpec, conn: &mut Option<Sender>) -> Result<(u16, String), String> {
    for attempt in 0..2 {
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            *conn = Some(connect(spec.target).await?);
        }
        let sender = conn.as_mut().expect("connected");
        if sender.ready().await.is_err() {
            *conn = None;
            continue;
        }
        let req = hyper::Request::get(&spec.path)
            .header(hyper::header::HOST, spec.target.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        match sender.send_request(req).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let backend =
                    resp.headers().get(BACKEND_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
                let close = resp
                    .headers()
                    .get(hyper::header::CONNECTION)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
                if close {
                    *conn = None;
                }
                return Ok((status, backend));
            }
            // A keep-alive connection the server closed just before our request was written is
            // retried once on a fresh connection: the request never reached the service.
            Err(e) if attempt == 0 && e.is_canceled() => {
                *conn = None;
            }
            Err(e) => return Err(format!("send: {e}")),
        }
    }
    Err("send: connection closed twice".into())
}

#[cfg(test)]
mod tests;
