//! Request metrics: a ring of per-second buckets (count, errors, latency histogram) covering the
//! last [`RING_SECS`] seconds, one ring per backend (plus one per group for answers the balancer
//! gives itself). Rate, percentiles and error rate are read over a window of whole seconds.
//!
//! Why fixed log-linear latency buckets rather than an HDR histogram: recording is one index
//! computation and one increment, merging is a sum, and ~6 % relative precision is plenty for
//! scaling decisions.

use std::time::Duration;

use tokio::time::Instant;

/// Seconds of history kept; every window is clamped to it.
pub const RING_SECS: u64 = 300;

/// 0..16 µs exact, then 8 sub-buckets per power of two up to 2^28 µs (~268 s).
const HIST_BUCKETS: usize = 16 + 24 * 8;

fn bucket_of(us: u64) -> usize {
    if us < 16 {
        return us as usize;
    }
    let e = 63 - us.leading_zeros() as usize; // >= 4
    let sub = ((us >> (e - 3)) & 7) as usize;
    (16 + (e - 4) * 8 + sub).min(HIST_BUCKETS - 1)
}

/// Midpoint of a bucket, in microseconds.
fn bucket_mid_us(idx: usize) -> f64 {
    if idx < 16 {
        return idx as f64;
    }
    let e = (idx - 16) / 8 + 4;
    let sub = ((idx - 16) % 8) as u64;
    let width = 1u64 << (e - 3);
    ((8 + sub) * width) as f64 + width as f64 / 2.0
}

/// Upper bounds (seconds) of the latency histogram kept since a backend was added: Prometheus's
/// usual buckets, so `histogram_quantile` over any range works beside the ring's own percentiles.
pub const LATENCY_BOUNDS_S: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// The same bounds in microseconds, for the request path (integer compares only).
const LATENCY_BOUNDS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Every request's latency since the backend was added, in [`LATENCY_BOUNDS_S`] buckets.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LatencyHistogram {
    /// Requests per bucket (not cumulative): `buckets[i]` took at most `LATENCY_BOUNDS_S[i]` and
    /// more than the bound before; slower ones are only in `count`.
    pub buckets: [u64; LATENCY_BOUNDS_S.len()],
    pub count: u64,
    pub sum_us: u64,
}

impl LatencyHistogram {
    fn record(&mut self, us: u64) {
        if let Some(i) = LATENCY_BOUNDS_US.iter().position(|&b| us <= b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }
}

#[derive(Clone, Copy)]
struct Second {
    /// Which second (since the group's epoch) this slot holds; `u64::MAX` = never used.
    sec: u64,
    count: u32,
    errors: u32,
    hist: [u32; HIST_BUCKETS],
}

impl Second {
    const EMPTY: Second = Second { sec: u64::MAX, count: 0, errors: 0, hist: [0; HIST_BUCKETS] };
}

/// The last [`RING_SECS`] seconds of one backend (or of a group's own answers).
pub(crate) struct Ring {
    slots: Box<[Second]>,
    /// Since the ring was made, not only its window.
    pub(crate) lifetime: LatencyHistogram,
}

impl Ring {
    pub(crate) fn new() -> Self {
        Ring {
            slots: vec![Second::EMPTY; RING_SECS as usize].into_boxed_slice(),
            lifetime: LatencyHistogram::default(),
        }
    }

    pub(crate) fn record(&mut self, sec: u64, latency_us: u64, error: bool) {
        let slot = &mut self.slots[(sec % RING_SECS) as usize];
        if slot.sec != sec {
            // why: the slot last held a second 300 s (or more) ago; reuse it in place.
            *slot = Second::EMPTY;
            slot.sec = sec;
        }
        slot.count = slot.count.saturating_add(1);
        if error {
            slot.errors = slot.errors.saturating_add(1);
        }
        let b = &mut slot.hist[bucket_of(latency_us)];
        *b = b.saturating_add(1);
        self.lifetime.record(latency_us);
    }

    /// Requests (and errors) in the seconds `(now_sec - secs, now_sec]`.
    pub(crate) fn count(&self, now_sec: u64, secs: u64) -> (u64, u64) {
        let secs = secs.clamp(1, RING_SECS);
        self.slots
            .iter()
            .filter(|s| in_window(s.sec, now_sec, secs))
            .fold((0, 0), |(c, e), s| (c + u64::from(s.count), e + u64::from(s.errors)))
    }

    /// Adds the seconds `(now_sec - secs, now_sec]` into `agg`.
    pub(crate) fn merge_into(&self, now_sec: u64, secs: u64, agg: &mut Window) {
        let secs = secs.clamp(1, RING_SECS);
        for s in self.slots.iter().filter(|s| in_window(s.sec, now_sec, secs)) {
            agg.count += u64::from(s.count);
            agg.errors += u64::from(s.errors);
            for (a, &h) in agg.hist.iter_mut().zip(s.hist.iter()) {
                *a += u64::from(h);
            }
        }
    }
}

fn in_window(sec: u64, now_sec: u64, secs: u64) -> bool {
    sec != u64::MAX && sec <= now_sec && sec + secs > now_sec
}

/// Seconds since an epoch: the ring's clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epoch(pub Instant);

impl Epoch {
    pub(crate) fn sec(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.0).as_secs()
    }

    /// How long a `secs`-second window ending at `now` watched something that began at `since`:
    /// from the window's first second (or `since`, if later) to now. The current second is only
    /// partly over, so a full window is a little shorter than `secs`.
    pub(crate) fn watched(&self, now: Instant, secs: u64, since: Instant) -> Duration {
        let first = self.sec(now).saturating_sub(secs.saturating_sub(1));
        let start = (self.0 + Duration::from_secs(first)).max(since);
        now.saturating_duration_since(start)
    }
}

/// The least time a backend must be watched before its request rate is a reading.
pub const MIN_WATCHED: Duration = Duration::from_secs(1);

/// A window's aggregate, for percentiles.
pub(crate) struct Window {
    pub count: u64,
    pub errors: u64,
    hist: Box<[u64; HIST_BUCKETS]>,
}

impl Window {
    pub(crate) fn new() -> Self {
        Window { count: 0, errors: 0, hist: Box::new([0; HIST_BUCKETS]) }
    }

    pub(crate) fn add(&mut self, other: &Window) {
        self.count += other.count;
        self.errors += other.errors;
        for (a, &b) in self.hist.iter_mut().zip(other.hist.iter()) {
            *a += b;
        }
    }

    /// The `q` quantile (0..1) in milliseconds; `None` when the window is empty.
    pub(crate) fn percentile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.hist.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &n) in self.hist.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_mid_us(i) / 1000.0);
            }
        }
        None
    }
}

/// Traffic figures of a backend or of a whole group.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrafficStats {
    /// Requests answered since the backend was added (group: since bind, removed backends included).
    pub requests_total: u64,
    /// Of those, 5xx or proxy failures.
    pub errors_total: u64,
    /// Requests (TCP: connections) in flight now; for a group, plus those waiting in the queue.
    pub inflight: u64,
    /// Requests per second over the rate window (over the time it watched, if shorter).
    pub rps: f64,
    /// How long the rate window watched: the window, or less for a backend added (a balancer
    /// started) within it.
    pub watched: Duration,
    /// Latency percentiles (ms) over the rate window; `None` when the window saw no request.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// 5xx or proxy failures in percent of the requests in the rate window (0 when none).
    pub error_pct: f64,
    /// Requests in the rate window.
    pub requests_in_rate_window: u64,
    /// Requests in the count window (`Metric::Requests`).
    pub requests_in_count_window: u64,
    /// Every answered request's latency since the backend was added (a group's total: empty).
    pub latency: LatencyHistogram,
}

impl TrafficStats {
    /// Fills the window-derived fields from a rate-window aggregate and a count-window count.
    pub(crate) fn fill(&mut self, rate: &Window, watched: Duration, in_count_window: u64) {
        self.requests_in_rate_window = rate.count;
        self.watched = watched;
        // Less than a second watched says little; count it as a second (the metric source
        // reports no rate at all until a second is watched: `MIN_WATCHED`).
        self.rps = rate.count as f64 / watched.as_secs_f64().max(MIN_WATCHED.as_secs_f64());
        self.p50_ms = rate.percentile_ms(0.50);
        self.p95_ms = rate.percentile_ms(0.95);
        self.p99_ms = rate.percentile_ms(0.99);
        self.error_pct = if rate.count == 0 { 0.0 } else { rate.errors as f64 * 100.0 / rate.count as f64 };
        self.requests_in_count_window = in_count_window;
    }
}

/// One backend's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendStats {
    pub id: String,
    pub traffic: TrafficStats,
}

/// A group's figures: totals and per backend.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStats {
    pub group: String,
    pub total: TrafficStats,
    /// Requests (TCP: connections) waiting for an eligible backend now.
    pub queued: u64,
    /// Attempts that failed and were retried on another backend (never seen by clients).
    pub retried_total: u64,
    /// Requests answered 503 because no backend became eligible in time (or the queue was full).
    pub rejected_total: u64,
    pub backends: Vec<BackendStats>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_histogram_puts_each_latency_at_its_bound_and_counts_the_slow_ones() {
        #[allow(clippy::cast_precision_loss)]
        let same = LATENCY_BOUNDS_US.iter().map(|&us| us as f64 / 1e6).collect::<Vec<_>>();
        assert_eq!(same, LATENCY_BOUNDS_S, "the two tables say the same");
        let mut r = Ring::new();
        for us in [500, 1_000, 1_001, 30_000, 20_000_000] {
            r.record(1, us, false);
        }
        let h = &r.lifetime;
        assert_eq!((h.count, h.sum_us), (5, 20_032_501));
        assert_eq!(h.buckets[0], 2, "0.5 ms and exactly 1 ms are at most 1 ms");
        assert_eq!(h.buckets[1], 1, "1.001 ms is in the 2.5 ms bucket");
        assert_eq!(h.buckets[5], 1, "30 ms is in the 50 ms bucket");
        assert_eq!(h.buckets.iter().sum::<u64>(), 4, "20 s is above every bound: only in the count");
    }

    #[test]
    fn buckets_are_monotonic_and_close() {
        let mut last = 0;
        for us in [0u64, 1, 15, 16, 17, 31, 32, 100, 1000, 12_345, 1_000_000, 100_000_000] {
            let b = bucket_of(us);
            assert!(b >= last, "bucket of {us}");
            last = b;
            if us >= 16 {
                let mid = bucket_mid_us(b);
                assert!((mid - us as f64).abs() / us as f64 <= 0.07, "{us} -> {mid}");
            }
        }
        assert_eq!(bucket_of(u64::MAX), HIST_BUCKETS - 1);
    }

    #[test]
    fn window_counts_only_recent_seconds() {
        let mut r = Ring::new();
        for s in 0..20 {
            r.record(s, 1000, s % 5 == 0);
        }
        assert_eq!(r.count(19, 10), (10, 2));
        assert_eq!(r.count(19, 300), (20, 4));
        assert_eq!(r.count(400, 10), (0, 0));
        // a slot is reused once its second is 300 s old
        r.record(300, 1000, false);
        assert_eq!(r.count(300, 300), (20, 3));
    }

    #[test]
    fn percentiles_follow_the_distribution() {
        let mut r = Ring::new();
        for i in 0..100u64 {
            r.record(5, (i + 1) * 1000, false); // 1..100 ms
        }
        let mut w = Window::new();
        r.merge_into(5, 10, &mut w);
        let p50 = w.percentile_ms(0.5).unwrap();
        let p99 = w.percentile_ms(0.99).unwrap();
        assert!((47.0..=54.0).contains(&p50), "{p50}");
        assert!((93.0..=106.0).contains(&p99), "{p99}");
        assert_eq!(Window::new().percentile_ms(0.5), None);
    }
}
