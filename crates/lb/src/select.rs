//! Choosing a backend among the eligible ones (healthy, not draining, not yet tried by this
//! request). Lock-free: a snapshot of the backend list plus per-backend atomics.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::backend::Backend;
use crate::config::Selection;

/// The backend list as one request sees it (replaced wholesale on add/remove).
pub(crate) type Snapshot = Arc<[Arc<Backend>]>;

/// Backends one request already tried (by address of their shared state); small and inline.
#[derive(Default)]
pub(crate) struct Tried {
    ids: [usize; 8],
    len: usize,
}

impl Tried {
    fn key(b: &Arc<Backend>) -> usize {
        Arc::as_ptr(b) as usize
    }
    pub(crate) fn push(&mut self, b: &Arc<Backend>) {
        let k = Self::key(b);
        if self.contains(b) {
            return;
        }
        // why: beyond 8 the oldest entry is forgotten; `retries` is small in practice.
        self.ids[self.len % self.ids.len()] = k;
        self.len += 1;
    }
    pub(crate) fn contains(&self, b: &Arc<Backend>) -> bool {
        let k = Self::key(b);
        self.ids[..self.len.min(self.ids.len())].contains(&k)
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

pub(crate) enum Pick {
    One(Arc<Backend>),
    /// Every eligible backend was tried already (and there is more than one): give up.
    Exhausted,
    /// No backend is eligible: wait for capacity.
    None,
}

/// Picks a backend. `rr` is the group's rotation counter (round-robin, weighted); `hint` rotates
/// least-outstanding ties per connection, so the hot path writes no shared cache line for it.
pub(crate) fn pick(sel: Selection, set: &[Arc<Backend>], tried: &Tried, rr: &AtomicUsize, hint: usize) -> Pick {
    let found = match sel {
        Selection::LeastOutstanding => least_outstanding(set, tried, hint),
        Selection::RoundRobin => round_robin(set, tried, rr),
        Selection::Weighted => weighted(set, tried, rr),
    };
    if let Some(b) = found {
        return Pick::One(b.clone());
    }
    if tried.is_empty() {
        return Pick::None;
    }
    // Nothing untried is eligible: the same backend again only if it is the only one.
    let mut eligible = set.iter().filter(|b| b.is_serving());
    match (eligible.next(), eligible.next()) {
        (Some(only), None) => Pick::One(only.clone()),
        (Some(_), Some(_)) => Pick::Exhausted,
        (None, _) => Pick::None,
    }
}

#[inline]
fn eligible(b: &Arc<Backend>, tried: &Tried) -> bool {
    b.is_serving() && (tried.is_empty() || !tried.contains(b))
}

fn least_outstanding<'a>(set: &'a [Arc<Backend>], tried: &Tried, hint: usize) -> Option<&'a Arc<Backend>> {
    let n = set.len();
    if n == 0 {
        return None;
    }
    let start = hint % n;
    let mut best: Option<(&Arc<Backend>, u64, u64)> = None;
    for i in 0..n {
        let b = &set[(start + i) % n];
        if !eligible(b, tried) {
            continue;
        }
        let (load, w) = (u64::from(b.inflight()) + 1, u64::from(b.weight()));
        // why: compare load/weight without division: a is better iff la * wb < lb * wa.
        match best {
            Some((_, bl, bw)) if load * bw >= bl * w => {}
            _ => best = Some((b, load, w)),
        }
    }
    best.map(|(b, _, _)| b)
}

fn round_robin<'a>(set: &'a [Arc<Backend>], tried: &Tried, rr: &AtomicUsize) -> Option<&'a Arc<Backend>> {
    let n = set.len();
    if n == 0 {
        return None;
    }
    let start = rr.fetch_add(1, Ordering::Relaxed) % n;
    (0..n).map(|i| &set[(start + i) % n]).find(|b| eligible(b, tried))
}

fn weighted<'a>(set: &'a [Arc<Backend>], tried: &Tried, rr: &AtomicUsize) -> Option<&'a Arc<Backend>> {
    let total: u64 = set.iter().filter(|b| eligible(b, tried)).map(|b| u64::from(b.weight())).sum();
    if total == 0 {
        return None;
    }
    let mut t = rr.fetch_add(1, Ordering::Relaxed) as u64 % total;
    for b in set.iter().filter(|b| eligible(b, tried)) {
        let w = u64::from(b.weight());
        if t < w {
            return Some(b);
        }
        t -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Epoch;
    use crate::LbConfig;
    use tokio::sync::Notify;

    fn backends(n: usize) -> Vec<Arc<Backend>> {
        let cfg = LbConfig::http("127.0.0.1:0".parse().unwrap());
        let epoch = Epoch(tokio::time::Instant::now());
        (0..n)
            .map(|i| {
                let addr = format!("127.0.0.1:{}", 1000 + i).parse().unwrap();
                let b = Backend::new(format!("b{i}"), addr, 1, &cfg, Arc::new(Notify::new()), epoch);
                b.on_check(true, b.eject_epoch(), 1, 1);
                b
            })
            .collect()
    }

    fn id(p: Pick) -> String {
        match p {
            Pick::One(b) => b.id.clone(),
            Pick::Exhausted => "exhausted".into(),
            Pick::None => "none".into(),
        }
    }

    #[test]
    fn tried_backends_are_skipped_and_the_only_one_may_repeat() {
        let set = backends(2);
        let rr = AtomicUsize::new(0);
        let mut tried = Tried::default();
        tried.push(&set[0]);
        for _ in 0..4 {
            assert_eq!(id(pick(Selection::RoundRobin, &set, &tried, &rr, 0)), "b1");
            assert_eq!(id(pick(Selection::LeastOutstanding, &set, &tried, &rr, 0)), "b1");
        }
        tried.push(&set[1]);
        assert_eq!(id(pick(Selection::Weighted, &set, &tried, &rr, 0)), "exhausted");
        set[1].eject("test");
        assert_eq!(id(pick(Selection::RoundRobin, &set, &tried, &rr, 0)), "b0", "the only eligible one, again");
        set[0].eject("test");
        assert_eq!(id(pick(Selection::RoundRobin, &set, &tried, &rr, 0)), "none");
    }

    #[test]
    fn draining_and_unhealthy_backends_are_not_eligible() {
        let set = backends(3);
        let rr = AtomicUsize::new(0);
        set[0].set_draining();
        set[1].eject("test");
        for sel in [Selection::RoundRobin, Selection::LeastOutstanding, Selection::Weighted] {
            for h in 0..5 {
                assert_eq!(id(pick(sel, &set, &Tried::default(), &rr, h)), "b2");
            }
        }
        assert!(set[0].try_acquire().is_none(), "a draining backend takes no new request");
    }

    #[test]
    fn least_outstanding_weighs_inflight_by_weight() {
        let set = backends(2);
        set[0].set_weight(3);
        let rr = AtomicUsize::new(0);
        let _a = set[0].try_acquire().unwrap();
        // b0: (1+1)/3 < b1: (0+1)/1
        assert_eq!(id(pick(Selection::LeastOutstanding, &set, &Tried::default(), &rr, 1)), "b0");
        let _b = set[0].try_acquire().unwrap();
        let _c = set[0].try_acquire().unwrap();
        assert_eq!(id(pick(Selection::LeastOutstanding, &set, &Tried::default(), &rr, 0)), "b1");
    }
}
