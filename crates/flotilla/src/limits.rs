//! Process limits: the open-file limit is raised to its hard maximum at start, where the system
//! allows, since every balancer connection (client and backend side), member probe and store file
//! is a descriptor, and the usual soft limit of 1024 is reached at about 500 proxied connections.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raises the soft open-file limit to the hard one; returns (before, after). Never fails the start:
/// a system that refuses keeps its limit, and the log says so.
pub fn raise_open_files() -> Option<(u64, u64)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft >= hard {
        return Some((soft, soft));
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::debug!(from = soft, to = hard, "open-file limit raised");
            Some((soft, hard))
        }
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "could not raise the open-file limit");
            Some((soft, soft))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let (_, after) = super::raise_open_files().unwrap();
        let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(soft, after);
        assert_eq!(soft, hard);
    }
}
