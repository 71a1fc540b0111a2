//! One backend: serving state (health, draining), per-backend atomics for the hot path, its own
//! keep-alive pool, and its metrics ring.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::http::uri::Authority;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::body::ReqBody;
use crate::config::LbConfig;
use crate::stats::{Epoch, Ring, TrafficStats, Window};

pub(crate) type HttpClient = Client<HttpConnector, ReqBody>;

/// A backend as [`crate::GroupBalancer::backends`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStatus {
    pub id: String,
    pub addr: SocketAddr,
    pub weight: u32,
    /// Passed its active check (`rise` times) and not ejected since.
    pub healthy: bool,
    /// Not healthy for this long: since it was added, or since the check that took it out of
    /// rotation. `None` while healthy.
    pub unhealthy_for: Option<Duration>,
    pub draining: bool,
    /// Requests (TCP: connections) in flight now.
    pub inflight: u32,
    pub requests_total: u64,
    pub errors_total: u64,
}

pub(crate) struct Backend {
    pub id: String,
    pub addr: SocketAddr,
    /// `x-flotilla-backend` value, built once.
    pub id_header: HeaderValue,
    /// `addr` as a URI authority, built once (the pool key of the legacy client).
    pub authority: Authority,
    weight: AtomicU32,
    healthy: AtomicBool,
    /// When it last stopped serving (or was added); `None` while healthy. Written only when the
    /// health state flips, never on the request path.
    unhealthy_since: Mutex<Option<Instant>>,
    draining: AtomicBool,
    removed: AtomicBool,
    /// Bumped on every ejection, so a health check that began before it cannot re-admit.
    eject_epoch: AtomicU64,
    passes: AtomicU32,
    fails: AtomicU32,
    consecutive_5xx: AtomicU32,
    inflight: AtomicU32,
    requests_total: AtomicU64,
    errors_total: AtomicU64,
    retried_total: AtomicU64,
    /// Serving state for `wait_healthy` (healthy and not draining).
    serving_tx: watch::Sender<bool>,
    /// TCP mode: flips to true when open connections must be closed (drain deadline, removal).
    close_tx: watch::Sender<bool>,
    /// Woken when in-flight drops to zero while draining.
    idle: Notify,
    /// Group-wide "capacity appeared" signal for queued requests.
    capacity: Arc<Notify>,
    /// Own pool per backend, so a drain can close exactly this backend's idle connections.
    client: RwLock<Option<HttpClient>>,
    ring: Mutex<Ring>,
    epoch: Epoch,
    /// When it was added: before it, nothing was watched.
    added: Instant,
}

impl Backend {
    pub(crate) fn new(
        id: String,
        addr: SocketAddr,
        weight: u32,
        cfg: &LbConfig,
        capacity: Arc<Notify>,
        epoch: Epoch,
    ) -> Arc<Self> {
        let id_header = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid-id"));
        let authority = Authority::try_from(addr.to_string().as_str()).expect("socket address is a valid authority");
        let client = match cfg.mode {
            crate::Mode::Http => Some(build_client(cfg)),
            crate::Mode::Tcp => None,
        };
        Arc::new(Backend {
            id,
            addr,
            id_header,
            authority,
            weight: AtomicU32::new(weight.max(1)),
            healthy: AtomicBool::new(false),
            unhealthy_since: Mutex::new(Some(Instant::now())),
            draining: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            eject_epoch: AtomicU64::new(0),
            passes: AtomicU32::new(0),
            fails: AtomicU32::new(0),
            consecutive_5xx: AtomicU32::new(0),
            inflight: AtomicU32::new(0),
            requests_total: AtomicU64::new(0),
            errors_total: AtomicU64::new(0),
            retried_total: AtomicU64::new(0),
            serving_tx: watch::channel(false).0,
            close_tx: watch::channel(false).0,
            idle: Notify::new(),
            capacity,
            client: RwLock::new(client),
            ring: Mutex::new(Ring::new()),
            added: Instant::now(),
            epoch,
        })
    }

    // ---- state ----

    pub(crate) fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }
    pub(crate) fn set_weight(&self, w: u32) {
        self.weight.store(w.max(1), Ordering::Relaxed);
    }
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }
    /// How long it has not been healthy; `None` while healthy.
    pub(crate) fn unhealthy_for(&self) -> Option<Duration> {
        if self.is_healthy() {
            return None;
        }
        let since = *self.unhealthy_since.lock().unwrap_or_else(|e| e.into_inner());
        Some(since.map_or(Duration::ZERO, |t| t.elapsed()))
    }
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }
    /// Eligible for new requests.
    #[inline]
    pub(crate) fn is_serving(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.draining.load(Ordering::Relaxed)
    }
    pub(crate) fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }
    pub(crate) fn eject_epoch(&self) -> u64 {
        self.eject_epoch.load(Ordering::Acquire)
    }
    pub(crate) fn subscribe_serving(&self) -> watch::Receiver<bool> {
        self.serving_tx.subscribe()
    }
    pub(crate) fn subscribe_close(&self) -> watch::Receiver<bool> {
        self.close_tx.subscribe()
    }

    fn publish_serving(&self) {
        let serving = self.is_healthy() && !self.is_draining() && !self.is_removed();
        self.serving_tx.send_if_modified(|s| std::mem::replace(s, serving) != serving);
    }

    pub(crate) fn admit(&self) {
        if !self.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!(backend = %self.id, addr = %self.addr, "backend healthy: serving");
            *self.unhealthy_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
            self.consecutive_5xx.store(0, Ordering::Relaxed);
            self.publish_serving();
            // why: queued requests wait for exactly this.
            self.capacity.notify_waiters();
        }
    }

    /// Takes the backend out of rotation until the active check passes `rise` times again.
    pub(crate) fn eject(&self, reason: &str) {
        self.eject_epoch.fetch_add(1, Ordering::AcqRel);
        self.passes.store(0, Ordering::Release);
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(backend = %self.id, addr = %self.addr, reason, "backend ejected");
            self.unhealthy_since.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(Instant::now);
            self.publish_serving();
        }
    }

    /// One active-check result. `epoch` is [`Self::eject_epoch`] from before the check started.
    pub(crate) fn on_check(&self, ok: bool, epoch: u64, rise: u32, fall: u32) {
        if ok {
            self.fails.store(0, Ordering::Relaxed);
            if self.eject_epoch() != epoch {
                return; // ejected while the check ran: the pass predates the failure
            }
            let passes = self.passes.fetch_add(1, Ordering::AcqRel).saturating_add(1);
            if passes >= rise.max(1) && !self.is_healthy() {
                self.admit();
            }
        } else {
            self.passes.store(0, Ordering::Release);
            let fails = self.fails.fetch_add(1, Ordering::AcqRel).saturating_add(1);
            if fails >= fall.max(1) && self.is_healthy() {
                self.eject("active health check failed");
            }
        }
    }

    /// Passive check: a response head arrived with this status.
    #[inline]
    pub(crate) fn on_status(&self, status: u16, passive_5xx: u32) {
        if status >= 500 {
            self.on_failure(passive_5xx);
        } else if self.consecutive_5xx.load(Ordering::Relaxed) != 0 {
            self.consecutive_5xx.store(0, Ordering::Relaxed);
        }
    }

    /// Passive check: a 5xx or a failure after the request was sent.
    pub(crate) fn on_failure(&self, passive_5xx: u32) {
        let n = self.consecutive_5xx.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if passive_5xx > 0 && n >= passive_5xx {
            self.eject("consecutive 5xx/failures");
        }
    }

    pub(crate) fn set_draining(&self) -> bool {
        let was = self.draining.swap(true, Ordering::SeqCst);
        self.publish_serving();
        !was
    }

    pub(crate) fn mark_removed(&self) {
        self.removed.store(true, Ordering::Release);
        // why: a request holding an older snapshot must not pick it any more.
        self.healthy.store(false, Ordering::Release);
        self.publish_serving();
        self.drop_client();
        self.close_connections();
    }

    /// Drops this backend's pool: idle keep-alive connections close; in-use ones finish their
    /// current exchange and are then closed instead of returning to the pool.
    pub(crate) fn drop_client(&self) {
        let old = self.client.write().unwrap_or_else(|e| e.into_inner()).take();
        drop(old);
    }

    /// TCP mode: closes open proxied connections.
    pub(crate) fn close_connections(&self) {
        self.close_tx.send_replace(true);
    }

    // ---- in-flight ----

    /// Counts a request (connection) against this backend. `None` if it began draining meanwhile.
    #[inline]
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Attempt> {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        // why: pairs with `set_draining` (SeqCst on both sides): either drain sees this in-flight
        // request, or this request sees the drain and goes elsewhere. Nothing slips past a drain.
        if self.draining.load(Ordering::SeqCst) {
            self.release();
            return None;
        }
        Some(Attempt { backend: self.clone() })
    }

    #[inline]
    fn release(&self) {
        let prev = self.inflight.fetch_sub(1, Ordering::SeqCst);
        if prev == 1 && self.draining.load(Ordering::SeqCst) {
            self.idle.notify_waiters();
        }
    }

    /// Waits until nothing is in flight or `deadline` passes; true if idle.
    pub(crate) async fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.inflight.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.inflight.load(Ordering::SeqCst) == 0;
            }
        }
    }

    /// Sends through this backend's pool; `None` once the pool was dropped (drained/removed).
    #[inline]
    pub(crate) fn send(&self, req: hyper::Request<ReqBody>) -> Option<ResponseFuture> {
        let guard = self.client.read().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(|c| c.request(req))
    }

    // ---- metrics ----

    /// Records one finished request (the attempt that answered the client).
    pub(crate) fn record(&self, latency: Duration, error: bool, now: Instant) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors_total.fetch_add(1, Ordering::Relaxed);
        }
        let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).record(self.epoch.sec(now), us, error);
    }

    pub(crate) fn count_retry(&self) {
        self.retried_total.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn retried_total(&self) -> u64 {
        self.retried_total.load(Ordering::Relaxed)
    }
    pub(crate) fn totals(&self) -> (u64, u64) {
        (self.requests_total.load(Ordering::Relaxed), self.errors_total.load(Ordering::Relaxed))
    }

    pub(crate) fn status(&self) -> BackendStatus {
        let (requests_total, errors_total) = self.totals();
        BackendStatus {
            id: self.id.clone(),
            addr: self.addr,
            weight: self.weight(),
            healthy: self.is_healthy(),
            unhealthy_for: self.unhealthy_for(),
            draining: self.is_draining(),
            inflight: self.inflight(),
            requests_total,
            errors_total,
        }
    }

    /// Adds this backend's rate window into `agg` and returns its count-window count.
    pub(crate) fn window(&self, now: Instant, rate_secs: u64, count_secs: u64, agg: &mut Window) -> u64 {
        self.window_and_latency(now, rate_secs, count_secs, agg).0
    }

    /// [`Self::window`], with the latency histogram since the backend was added (one lock).
    fn window_and_latency(
        &self,
        now: Instant,
        rate_secs: u64,
        count_secs: u64,
        agg: &mut Window,
    ) -> (u64, crate::stats::LatencyHistogram) {
        let sec = self.epoch.sec(now);
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.merge_into(sec, rate_secs, agg);
        (ring.count(sec, count_secs).0, ring.lifetime.clone())
    }

    /// Its figures, with the rate window's aggregate added into `agg` (for the group's total).
    /// The rate is over the seconds it was watched when that is less than the window: a backend
    /// added a moment ago (a restart, a new member) serving 100 req/s reads 100, not 100 × the
    /// fraction of the window it was there.
    pub(crate) fn traffic(&self, now: Instant, rate_secs: u64, count_secs: u64, agg: &mut Window) -> TrafficStats {
        let mut w = Window::new();
        let (in_count, latency) = self.window_and_latency(now, rate_secs, count_secs, &mut w);
        let (requests_total, errors_total) = self.totals();
        let mut t = TrafficStats {
            requests_total,
            errors_total,
            inflight: u64::from(self.inflight()),
            latency,
            ..TrafficStats::default()
        };
        t.fill(&w, self.epoch.watched(now, rate_secs, self.added), in_count);
        agg.add(&w);
        t
    }
}

fn build_client(cfg: &LbConfig) -> HttpClient {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    conn.set_connect_timeout(Some(cfg.connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(cfg.idle_timeout)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(conn)
}

/// One request (TCP: connection) counted in a backend's in-flight; released on drop.
pub(crate) struct Attempt {
    backend: Arc<Backend>,
}

impl Attempt {
    pub(crate) fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.backend.release();
    }
}
