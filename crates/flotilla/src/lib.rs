//! The flotilla binary's library half: configuration, wiring and the CLI verbs, so integration tests
//! can drive them without a subprocess where that is enough.

pub mod config;
