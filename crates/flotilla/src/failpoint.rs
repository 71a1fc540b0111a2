//! Crash testing: `FLOTILLA_FAILPOINT=<name>` makes the process kill itself with SIGKILL when the
//! controller reaches that point, exactly like an operator's `kill -9` at the worst moment.
//! Names: `scale-out:after-begin`, `scale-out:after-create`, `scale-in:after-begin`,
//! `handover:after-begin`, `handover:after-primary`, `retire:after-drain`, `retire:after-delete`.

use std::sync::Arc;

use flotilla_controller::Failpoint;

pub const ENV: &str = "FLOTILLA_FAILPOINT";

/// The failpoint hook for the controller, if the environment asks for one.
pub fn from_env() -> Option<Failpoint> {
    let wanted = std::env::var(ENV).ok().filter(|s| !s.is_empty())?;
    tracing::warn!(failpoint = %wanted, "failpoint armed: this process will kill -9 itself there");
    Some(Arc::new(move |name: &str| {
        if name == wanted {
            eprintln!("failpoint {name}: kill -9");
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
        }
    }))
}
