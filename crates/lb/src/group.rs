//! One group's balancer: its listener, its backend set, its queue and its metrics.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use flotilla_model::{DrainReport, Instance, Metric, Sample, Timestamp};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::backend::{Attempt, Backend, BackendStatus};
use crate::config::{LbConfig, Mode};
use crate::queue::{Queue, QueueError};
use crate::select::{self, Pick, Snapshot, Tried};
use crate::stats::{BackendStats, Epoch, GroupStats, Ring, TrafficStats, Window, MIN_WATCHED, RING_SECS};

/// How long `shutdown` lets open connections finish before closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Resolves once the flag is true (or its sender is gone). Drops the watch guard before returning,
/// so callers' futures stay `Send`.
pub(crate) async fn until_set(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Why a request got no backend.
pub(crate) enum Refusal {
    /// Every eligible backend was tried already.
    Exhausted,
    Queue(QueueError),
}

/// State shared by the listener task, every connection task and the control API.
pub(crate) struct Shared {
    pub name: String,
    pub cfg: LbConfig,
    /// Replaced wholesale on add/remove; readers cache it per connection and re-read it only
    /// when `generation` moved, so the hot path takes no lock.
    set: RwLock<Snapshot>,
    generation: AtomicU64,
    pub rr: AtomicUsize,
    pub conn_seq: AtomicUsize,
    pub queue: Queue,
    pub epoch: Epoch,
    /// Answers the balancer gave without a backend (queue 503s, bad bodies).
    local: Mutex<Ring>,
    local_requests: AtomicU64,
    local_errors: AtomicU64,
    /// Totals of removed backends, so group totals never go backwards.
    retired_requests: AtomicU64,
    retired_errors: AtomicU64,
    retired_retries: AtomicU64,
    pub shutdown: watch::Sender<bool>,
    rt: Handle,
}

impl Shared {
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn snapshot(&self) -> (u64, Snapshot) {
        let set = self.set.read().unwrap_or_else(|e| e.into_inner());
        (self.generation(), set.clone())
    }

    /// Re-reads the set only if it changed since `snap`.
    #[inline]
    pub(crate) fn refresh(&self, snap: &mut (u64, Snapshot)) {
        if snap.0 != self.generation() {
            *snap = self.snapshot();
        }
    }

    fn update_set(&self, f: impl FnOnce(&mut Vec<Arc<Backend>>)) {
        let mut set = self.set.write().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<Arc<Backend>> = set.iter().cloned().collect();
        f(&mut list);
        *set = list.into();
        // why: bumped under the write lock, so a reader that sees the new generation then
        // takes the read lock gets the new list.
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn find(&self, id: &str) -> Option<Arc<Backend>> {
        self.snapshot().1.iter().find(|b| b.id == id).cloned()
    }

    pub(crate) fn record_local(&self, start: Instant, error: bool) {
        let now = Instant::now();
        self.local_requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.local_errors.fetch_add(1, Ordering::Relaxed);
        }
        let us = now.saturating_duration_since(start).as_micros() as u64;
        self.local.lock().unwrap_or_else(|e| e.into_inner()).record(self.epoch.sec(now), us, error);
    }

    /// select → (queue) → count against the chosen backend. `queue_deadline` is set the first
    /// time this request queues, so retries never wait longer than `queue_timeout` in total.
    pub(crate) async fn acquire(
        &self,
        snap: &mut (u64, Snapshot),
        tried: &Tried,
        hint: usize,
        queue_deadline: &mut Option<Instant>,
    ) -> Result<Attempt, Refusal> {
        self.refresh(snap);
        for _ in 0..4 {
            match select::pick(self.cfg.selection, &snap.1, tried, &self.rr, hint) {
                Pick::One(b) => match b.try_acquire() {
                    Some(a) => return Ok(a),
                    None => continue, // began draining just now; pick again
                },
                Pick::Exhausted => return Err(Refusal::Exhausted),
                Pick::None => break,
            }
        }
        let deadline = *queue_deadline.get_or_insert_with(|| Instant::now() + self.cfg.queue_timeout);
        let got = self
            .queue
            .wait(deadline, || {
                let (_, set) = self.snapshot();
                match select::pick(self.cfg.selection, &set, tried, &self.rr, hint) {
                    Pick::One(b) => b.try_acquire().map(Ok),
                    Pick::Exhausted => Some(Err(Refusal::Exhausted)),
                    Pick::None => None,
                }
            })
            .await;
        self.refresh(snap);
        match got {
            Ok(r) => r,
            Err(e) => Err(Refusal::Queue(e)),
        }
    }

    /// Accepts connections until shutdown, then lets open ones finish (bounded).
    pub(crate) async fn accept_loop<F, Fut>(self: Arc<Self>, listener: TcpListener, mut on_conn: F)
    where
        F: FnMut(TcpStream, SocketAddr) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut shutdown = self.shutdown.subscribe();
        let mut conns = JoinSet::new();
        // Refusals at the cap: logged at most once per 10 s, with how many since the last line.
        let (mut refused, mut last_said): (u64, Option<Instant>) = (0, None);
        loop {
            tokio::select! {
                biased;
                _ = until_set(&mut shutdown) => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) if conns.len() >= self.cfg.max_connections.max(1) => {
                        drop(stream);
                        refused += 1;
                        if last_said.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                            tracing::warn!(group = %self.name, %peer, max = self.cfg.max_connections, refused,
                                "connection refused: at the connection limit (max_connections)");
                            (refused, last_said) = (0, Some(Instant::now()));
                        }
                    }
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        conns.spawn(on_conn(stream, peer));
                    }
                    Err(e) => {
                        // why: EMFILE and friends; back off instead of spinning.
                        tracing::warn!(group = %self.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while conns.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(group = %self.name, open = conns.len(), "shutdown grace over; closing connections");
            conns.abort_all();
        }
    }
}

/// One group's balancer: one listener, one backend set.
pub struct GroupBalancer {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl GroupBalancer {
    /// Binds `cfg.listen` and starts serving (no backends yet: requests queue).
    pub async fn bind(name: String, cfg: LbConfig) -> std::io::Result<Arc<GroupBalancer>> {
        let listener = TcpListener::bind(cfg.listen).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name,
            queue: Queue::new(cfg.queue_limit),
            cfg,
            set: RwLock::new(Vec::new().into()),
            generation: AtomicU64::new(0),
            rr: AtomicUsize::new(0),
            conn_seq: AtomicUsize::new(0),
            epoch: Epoch(Instant::now()),
            local: Mutex::new(Ring::new()),
            local_requests: AtomicU64::new(0),
            local_errors: AtomicU64::new(0),
            retired_requests: AtomicU64::new(0),
            retired_errors: AtomicU64::new(0),
            retired_retries: AtomicU64::new(0),
            shutdown: watch::channel(false).0,
            rt: Handle::current(),
        });
        let server = match shared.cfg.mode {
            Mode::Http => tokio::spawn(crate::http_proxy::serve(shared.clone(), listener)),
            Mode::Tcp => tokio::spawn(crate::tcp_proxy::serve(shared.clone(), listener)),
        };
        tracing::info!(group = %shared.name, listen = %local_addr, mode = ?shared.cfg.mode, "balancer listening");
        Ok(Arc::new(GroupBalancer { shared, local_addr, server: Mutex::new(Some(server)) }))
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn config(&self) -> &LbConfig {
        &self.shared.cfg
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Adds a backend; it gets traffic once its active check passed `rise` times (at once with
    /// [`crate::HealthCheck::None`]). Re-adding a
    /// known id only updates its weight; re-adding a draining id is ignored (remove it first).
    pub fn add_backend(&self, id: String, addr: SocketAddr, weight: u32) {
        if let Some(b) = self.shared.find(&id) {
            if b.is_draining() {
                tracing::warn!(group = %self.shared.name, backend = %id, "add of a draining backend ignored");
            } else {
                if b.addr != addr {
                    tracing::warn!(group = %self.shared.name, backend = %id, known = %b.addr, asked = %addr,
                        "add of a known backend with another address ignored (remove it first)");
                }
                b.set_weight(weight);
            }
            return;
        }
        let b = Backend::new(id, addr, weight, &self.shared.cfg, self.shared.queue.capacity.clone(), self.shared.epoch);
        let unchecked = self.shared.cfg.health.check == crate::config::HealthCheck::None;
        if unchecked {
            tracing::info!(group = %self.shared.name, backend = %b.id, %addr, weight, "backend added (no active check: serving)");
        } else {
            tracing::info!(group = %self.shared.name, backend = %b.id, %addr, weight, "backend added (not serving until healthy)");
        }
        self.shared.update_set(|list| list.push(b.clone()));
        if unchecked {
            b.admit();
        }
        crate::health::spawn(&self.shared, &b, &self.shared.rt);
    }

    /// Waits until the backend is healthy and not draining; false on timeout or unknown id.
    pub async fn wait_healthy(&self, id: &str, timeout: Duration) -> bool {
        let Some(b) = self.shared.find(id) else { return false };
        let mut rx = b.subscribe_serving();
        drop(b);
        let serving = tokio::time::timeout(timeout, async { rx.wait_for(|s| *s).await.is_ok() }).await;
        serving.unwrap_or(false)
    }

    /// Stops new requests (connections) to the backend, waits up to `timeout` for in-flight ones,
    /// then closes its idle keep-alive connections (its pool is dropped). TCP: connections still
    /// open at the deadline are closed. Unknown id: completed at once.
    pub async fn drain(&self, id: &str, timeout: Duration) -> DrainReport {
        let start = Instant::now();
        let Some(b) = self.shared.find(id) else {
            return DrainReport { completed: true, inflight_left: 0, waited: Duration::ZERO };
        };
        if b.set_draining() {
            tracing::info!(group = %self.shared.name, backend = %id, inflight = b.inflight(), "draining");
        }
        let idle = b.wait_idle(start + timeout).await;
        let left = if idle { 0 } else { b.inflight() };
        b.drop_client();
        if !idle && self.shared.cfg.mode == Mode::Tcp {
            b.close_connections();
        }
        let waited = start.elapsed();
        tracing::info!(group = %self.shared.name, backend = %id, completed = idle, inflight_left = left, ?waited, "drained");
        DrainReport { completed: idle, inflight_left: left, waited }
    }

    /// Forgets the backend (TCP: closes its open connections). Unknown id: nothing happens.
    pub fn remove_backend(&self, id: &str) {
        let mut removed = None;
        self.shared.update_set(|list| {
            if let Some(i) = list.iter().position(|b| b.id == id) {
                removed = Some(list.remove(i));
            }
        });
        if let Some(b) = removed {
            b.mark_removed();
            let (r, e) = b.totals();
            self.shared.retired_requests.fetch_add(r, Ordering::Relaxed);
            self.shared.retired_errors.fetch_add(e, Ordering::Relaxed);
            self.shared.retired_retries.fetch_add(b.retried_total(), Ordering::Relaxed);
            tracing::info!(group = %self.shared.name, backend = %id, "backend removed");
        }
    }

    /// Makes the backend set `wanted` (id, address, weight), as `Balancer::sync` describes: a
    /// backend not wanted is forgotten; a wanted one that is draining (its retire failed) or moved
    /// to another address starts over, serving again once its health check passes.
    pub fn sync_backends(&self, wanted: &[(String, SocketAddr, u32)]) {
        let (_, current) = self.shared.snapshot();
        for b in current.iter() {
            match wanted.iter().find(|(id, ..)| id == &b.id) {
                None => self.remove_backend(&b.id),
                Some((_, addr, _)) if b.is_draining() || *addr != b.addr => {
                    tracing::info!(group = %self.shared.name, backend = %b.id, draining = b.is_draining(),
                        known = %b.addr, %addr, "backend starts over (wanted again, or moved)");
                    self.remove_backend(&b.id);
                }
                Some(_) => {}
            }
        }
        for (id, addr, weight) in wanted {
            self.add_backend(id.clone(), *addr, *weight);
        }
    }

    pub fn backends(&self) -> Vec<BackendStatus> {
        self.shared.snapshot().1.iter().map(|b| b.status()).collect()
    }

    fn windows(&self) -> (u64, u64) {
        let secs = |d: Duration| d.as_secs_f64().round().clamp(1.0, RING_SECS as f64) as u64;
        (secs(self.shared.cfg.rate_window), secs(self.shared.cfg.count_window))
    }

    pub fn stats(&self) -> GroupStats {
        let now = Instant::now();
        let (rate_secs, count_secs) = self.windows();
        let sh = &self.shared;
        let mut all = Window::new();
        let mut total = TrafficStats {
            requests_total: sh.retired_requests.load(Ordering::Relaxed) + sh.local_requests.load(Ordering::Relaxed),
            errors_total: sh.retired_errors.load(Ordering::Relaxed) + sh.local_errors.load(Ordering::Relaxed),
            inflight: sh.queue.waiting() as u64,
            ..TrafficStats::default()
        };
        let mut in_count = {
            let local = sh.local.lock().unwrap_or_else(|e| e.into_inner());
            let sec = sh.epoch.sec(now);
            local.merge_into(sec, rate_secs, &mut all);
            local.count(sec, count_secs).0
        };
        let mut retried = sh.retired_retries.load(Ordering::Relaxed);
        let mut backends = Vec::new();
        for b in sh.snapshot().1.iter() {
            let t = b.traffic(now, rate_secs, count_secs, &mut all);
            total.requests_total += t.requests_total;
            total.errors_total += t.errors_total;
            total.inflight += t.inflight;
            in_count += t.requests_in_count_window;
            retried += b.retried_total();
            backends.push(BackendStats { id: b.id.clone(), traffic: t });
        }
        // The group's rate, like a backend's, is over the seconds it was watched.
        total.fill(&all, sh.epoch.watched(now, rate_secs, sh.epoch.0), in_count);
        GroupStats {
            group: sh.name.clone(),
            total,
            queued: sh.queue.waiting() as u64,
            retried_total: retried,
            rejected_total: sh.queue.rejected(),
            backends,
        }
    }

    /// Requests a backend answered in the last `window` (whole seconds, at most 300 s; the
    /// current second counts). `None` for an unknown id.
    pub fn requests_in(&self, id: &str, window: Duration) -> Option<u64> {
        let b = self.shared.find(id)?;
        let secs = window.as_secs_f64().round().clamp(1.0, RING_SECS as f64) as u64;
        Some(b.window(Instant::now(), 1, secs, &mut Window::new()))
    }

    /// One sample per member the balancer knows (by id), stamped `at`. Latency percentiles only
    /// when the rate window saw requests.
    pub fn samples(&self, members: &[Instance], at: Timestamp) -> Vec<Sample> {
        let now = Instant::now();
        let (rate_secs, count_secs) = self.windows();
        let (_, set) = self.shared.snapshot();
        members
            .iter()
            .filter_map(|m| {
                let b = set.iter().find(|b| b.id == m.id.as_str())?;
                let t = b.traffic(now, rate_secs, count_secs, &mut Window::new());
                let mut s = Sample::new(m.id.clone(), at)
                    .with(Metric::Requests, t.requests_in_count_window as f64)
                    .with(Metric::Inflight, t.inflight as f64)
                    .with(Metric::ErrorRate, t.error_pct);
                // A rate from a moment's watching (just after a restart) is no reading yet.
                if t.watched >= MIN_WATCHED {
                    s.set(Metric::RequestRate, t.rps);
                }
                if t.requests_in_rate_window > 0 {
                    let p = [
                        (Metric::LatencyP50, t.p50_ms),
                        (Metric::LatencyP95, t.p95_ms),
                        (Metric::LatencyP99, t.p99_ms),
                    ];
                    for (metric, v) in p {
                        if let Some(v) = v {
                            s.set(metric, v);
                        }
                    }
                }
                Some(s)
            })
            .collect()
    }

    /// Stops accepting, answers queued requests 503, lets in-flight requests finish (up to 10 s),
    /// then closes what is left and stops the health checks.
    pub async fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        self.shared.queue.close();
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(server) = server {
            let _ = server.await;
        }
        for b in self.shared.snapshot().1.iter() {
            b.drop_client();
        }
        tracing::info!(group = %self.shared.name, "balancer stopped");
    }
}

impl Drop for GroupBalancer {
    fn drop(&mut self) {
        // why: the listener and health tasks hold `Shared`, not `GroupBalancer`; without this
        // they would outlive a balancer nobody can reach any more.
        self.shared.shutdown.send_replace(true);
        self.shared.queue.close();
    }
}

impl std::fmt::Debug for GroupBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupBalancer").field("name", &self.shared.name).field("listen", &self.local_addr).finish()
    }
}
