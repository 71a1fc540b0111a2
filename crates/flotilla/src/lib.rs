//! The flotilla binary's library half: configuration, wiring and the CLI verbs, so integration tests
//! can drive them without a subprocess where that is enough.
//!
//! Start-up follows phases: load (config) → validate → build (store, provider, sources, balancer;
//! may fail) → spawn (the controller loop) → drain (shutdown signal, in-flight work finishes).

/// The configuration lives in its own crate; `flotilla::config` keeps the verbs' paths short.
pub use flotilla_config as config;

pub mod balancer_router;
pub mod cli;
pub mod commands;
pub mod daemon;
pub mod failpoint;
pub mod faults;
pub mod libvirt;
pub mod limits;
pub mod load;
pub mod logging;
pub mod metered;
pub mod prom;
pub mod state_dir;
pub mod status;
pub mod wiring;

/// Bad input from the user (exit status 2), as opposed to a runtime failure (exit status 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Shorthand for returning a usage error.
pub fn usage<T>(msg: impl Into<String>) -> anyhow::Result<T> {
    Err(UsageError(msg.into()).into())
}

/// Whether an error is the user's input rather than the world: a provider refusing a name, a
/// password or a setting (`Invalid`, or `NotFound` for a thing the user named). Exit status 2.
pub fn is_bad_input(err: &anyhow::Error) -> bool {
    use flotilla_model::{ErrorKind, SeamError};
    err.chain()
        .filter_map(|e| e.downcast_ref::<SeamError>())
        .any(|e| matches!(e.kind(), ErrorKind::Invalid | ErrorKind::NotFound))
}
