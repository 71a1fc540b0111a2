//! The bounded wait for capacity: a request with no eligible backend waits here (up to
//! `queue_timeout`, at most `queue_limit` at once) instead of getting a 503 while the group changes.
//! Woken by the group's `capacity` [`Notify`] when a backend becomes healthy or is added.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::time::Instant;

pub(crate) struct Queue {
    pub(crate) capacity: Arc<Notify>,
    waiting: AtomicUsize,
    limit: usize,
    closed: AtomicBool,
    rejected: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// `queue_limit` requests are already waiting.
    Full,
    /// `queue_timeout` passed without capacity.
    Timeout,
    /// The balancer is shutting down.
    Closed,
}

impl Queue {
    pub(crate) fn new(limit: usize) -> Self {
        Queue {
            capacity: Arc::new(Notify::new()),
            waiting: AtomicUsize::new(0),
            limit,
            closed: AtomicBool::new(false),
            rejected: AtomicU64::new(0),
        }
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.capacity.notify_waiters();
    }

    /// Waits until `probe` yields something or `deadline` passes. `probe` runs after the waiter
    /// is registered, so a wake-up between probe and sleep is never lost.
    pub(crate) async fn wait<T>(
        &self,
        deadline: Instant,
        mut probe: impl FnMut() -> Option<T>,
    ) -> Result<T, QueueError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(self.reject(QueueError::Closed));
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.limit {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(self.reject(QueueError::Full));
        }
        let _leave = Leave(&self.waiting);
        loop {
            let woken = self.capacity.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.closed.load(Ordering::SeqCst) {
                return Err(self.reject(QueueError::Closed));
            }
            if let Some(t) = probe() {
                return Ok(t);
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return probe().ok_or_else(|| self.reject(QueueError::Timeout));
            }
        }
    }

    fn reject(&self, e: QueueError) -> QueueError {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        e
    }
}

struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
