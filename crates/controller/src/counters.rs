//! What the controller counts for monitoring (the binary exports it to Prometheus): decisions by
//! outcome, operations by kind and result with their durations, metric-source failures. Plain
//! numbers, kept per group; no exporter here.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_model::Decision;

/// One group's counters since the daemon started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupCounters {
    /// `hold`, `scale-out`, `scale-in`, `handover`, `replace`, and `held-back` (paused, dry run).
    pub decisions: BTreeMap<&'static str, u64>,
    /// (kind, `done` | `failed`) -> (count, seconds spent in all).
    pub operations: BTreeMap<(&'static str, &'static str), (u64, f64)>,
    /// Metric source name -> failed reads.
    pub source_errors: BTreeMap<String, u64>,
    /// Passes that ended in an error.
    pub pass_errors: u64,
}

impl GroupCounters {
    pub(crate) fn decided(&mut self, d: &Decision, held_back: bool) {
        *self.decisions.entry(if held_back { "held-back" } else { outcome(d) }).or_default() += 1;
    }

    pub(crate) fn operation(&mut self, kind: &'static str, ok: bool, took: Duration) {
        let e = self.operations.entry((kind, if ok { "done" } else { "failed" })).or_default();
        e.0 += 1;
        e.1 += took.as_secs_f64();
    }
}

/// A decision's outcome, in the words the API and the metrics use.
pub fn outcome(d: &Decision) -> &'static str {
    match d {
        Decision::Hold(_) => "hold",
        Decision::ScaleOut { .. } => "scale-out",
        Decision::ScaleIn { .. } => "scale-in",
        Decision::Handover { .. } => "handover",
        Decision::Replace { .. } => "replace",
    }
}
