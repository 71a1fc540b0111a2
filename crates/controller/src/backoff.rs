//! The error policy: how long a group waits after a failed reconcile, by error kind.

use std::time::Duration;

use flotilla_model::ErrorKind;

/// Per-group backoff state. Transient errors back off exponentially; quota and invalid-input errors
/// pause only the failing group for a long, fixed time (retrying them fast only burns API calls).
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    consecutive: u32,
}

impl Backoff {
    pub fn reset(&mut self) {
        self.consecutive = 0;
    }

    pub fn failures(&self) -> u32 {
        self.consecutive
    }

    /// Records a failure and returns the delay before the next attempt.
    pub fn next(&mut self, kind: ErrorKind) -> Duration {
        self.consecutive = self.consecutive.saturating_add(1);
        let exp = |base_ms: u64, cap_ms: u64| {
            let shift = (self.consecutive - 1).min(16);
            Duration::from_millis(base_ms.saturating_mul(1 << shift).min(cap_ms))
        };
        match kind {
            ErrorKind::Transient | ErrorKind::NotFound => exp(1_000, 60_000),
            ErrorKind::Conflict => exp(2_000, 30_000),
            ErrorKind::Quota => Duration::from_secs(300),
            ErrorKind::Invalid => Duration::from_secs(300),
            ErrorKind::Bug => Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_grows_and_caps_then_resets() {
        let mut b = Backoff::default();
        let got: Vec<u64> = (0..8).map(|_| b.next(ErrorKind::Transient).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        b.reset();
        assert_eq!(b.next(ErrorKind::Transient), Duration::from_secs(1));
    }

    #[test]
    fn quota_pauses_long() {
        let mut b = Backoff::default();
        assert_eq!(b.next(ErrorKind::Quota), Duration::from_secs(300));
        assert_eq!(b.next(ErrorKind::Invalid), Duration::from_secs(300));
    }
}
