//! Metric sources and windows: /proc maths for local members.
//!
//! `procfs` holds the pure parsers and the seed's percentage maths (unit tested on literal /proc
//! text, no I/O); `local` is the [`MetricSource`](flotilla_model::MetricSource) that applies them to
//! the processes of the `local` provider's members.

pub mod local;
pub mod procfs;

pub use local::LocalProcessSource;
