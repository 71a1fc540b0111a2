//! Fakes for each seam, clock helpers and scenario builders for tests.
//!
//! Every fake here stands beside a real test of the same path: the local provider has its own
//! real-process tests, the SQLite store runs the conformance suite, and the scenario tests in
//! `crates/flotilla/tests` drive real member processes.

pub mod fake_provider;
pub mod lab;
pub mod scripted_metrics;
pub mod store_conformance;
