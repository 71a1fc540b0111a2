//! Crash testing: `FLOTILLA_FAILPOINT=<name>` makes the process kill itself with SIGKILL when the
//! controller reaches that point, exactly like an operator's `kill -9` at the worst moment.
//! Names: [`flotilla_controller::FAILPOINTS`]; an unknown name is refused at start (a typo would
//! otherwise make a crash test pass without crashing).

use std::sync::Arc;

use flotilla_controller::Failpoint;

pub const ENV: &str = "FLOTILLA_FAILPOINT";

/// The failpoint hook for the controller, if the environment asks for one.
pub fn from_env() -> anyhow::Result<Option<Failpoint>> {
    let Some(wanted) = std::env::var(ENV).ok().filter(|s| !s.is_empty()) else { return Ok(None) };
    if !flotilla_controller::FAILPOINTS.contains(&wanted.as_str()) {
        anyhow::bail!("{ENV}={wanted} names no failpoint; known: {}", flotilla_controller::FAILPOINTS.join(", "));
    }
    tracing::warn!(failpoint = %wanted, "failpoint armed: this process will kill -9 itself there");
    Ok(Some(Arc::new(move |name: &str| {
        if name == wanted {
            eprintln!("failpoint {name}: kill -9");
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
        }
    })))
}
