//! Finding and stopping member processes without ever hitting a stranger.
//!
//! Pids are reused, so a pid alone is not an identity: a member is "this process" only while
//! /proc/<pid>/stat still shows the recorded starttime and /proc/<pid>/cmdline still names the
//! member. Signals go only to processes that pass that check (or to a child we still hold).

use std::time::Duration;

use flotilla_procfs::{parse_pid_stat, PidStat};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// How often exit is polled.
const POLL: Duration = Duration::from_millis(50);

/// /proc/<pid>/stat, or `None` if there is no such process.
pub fn stat(pid: i32) -> Option<PidStat> {
    parse_pid_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The starttime of `pid` right now (recorded right after spawn).
pub fn starttime(pid: i32) -> Option<u64> {
    stat(pid).map(|s| s.starttime)
}

/// Whether `cmdline` (NUL-separated) has `name` as an argument (`--name N` or `--name=N`).
pub fn cmdline_names(cmdline: &[u8], name: &str) -> bool {
    let eq = format!("--name={name}");
    cmdline.split(|&b| b == 0).any(|arg| arg == name.as_bytes() || arg == eq.as_bytes())
}

/// The recorded member process is running: same pid, same starttime, not exited, and its command
/// line names the member.
pub fn is_member_alive(pid: i32, starttime: u64, name: &str) -> bool {
    match stat(pid) {
        Some(s) if s.starttime == starttime && !s.has_exited() => {
            std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| cmdline_names(&c, name)).unwrap_or(false)
        }
        _ => false,
    }
}

/// A running member process of `name` that has no record (its controller was killed between the
/// spawn and the record): the process whose command line names this state directory's ready file
/// for `name`, which no other member can have. Returns its pid and starttime.
pub fn find_unrecorded(files: &crate::record::MemberFiles, name: &str) -> Option<(i32, u64)> {
    let ready = files.port(name);
    let ready = ready.as_os_str().as_encoded_bytes();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let mut args = cmdline.split(|&b| b == 0);
        let names_it = args.any(|a| a == b"--ready-file") && args.next() == Some(ready);
        if names_it && cmdline_names(&cmdline, name) {
            match stat(pid) {
                Some(s) if !s.has_exited() => return Some((pid, s.starttime)),
                _ => continue,
            }
        }
    }
    None
}

/// The process `pid` with `starttime` is no longer running (gone, a zombie, or a new process).
pub fn has_exited(pid: i32, starttime: u64) -> bool {
    match stat(pid) {
        Some(s) => s.starttime != starttime || s.has_exited(),
        None => true,
    }
}

/// Sends `sig` to the member's process group (its pid, since members lead their own group), or to
/// the pid alone if it somehow left that group. Only for a process already identified as ours.
pub fn signal_member(pid: i32, sig: Signal) {
    let leads_group = stat(pid).is_some_and(|s| s.pgrp == pid);
    let result = if leads_group { killpg(Pid::from_raw(pid), sig) } else { kill(Pid::from_raw(pid), sig) };
    if let Err(e) = result {
        tracing::debug!(pid, ?sig, error = %e, "signal not delivered (already gone?)");
    }
}

/// Waits up to `timeout` for the process to exit; true if it did.
pub async fn wait_exit(pid: i32, starttime: u64, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if has_exited(pid, starttime) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// SIGTERM the member's group, wait up to `grace`, then SIGKILL (re-checking identity before each
/// signal). True once the process has exited.
pub async fn stop_member(pid: i32, starttime: u64, name: &str, grace: Duration) -> bool {
    if !is_member_alive(pid, starttime, name) {
        return true;
    }
    signal_member(pid, Signal::SIGTERM);
    if wait_exit(pid, starttime, grace).await {
        return true;
    }
    if is_member_alive(pid, starttime, name) {
        tracing::warn!(pid, member = name, ?grace, "member ignored SIGTERM: SIGKILL");
        signal_member(pid, Signal::SIGKILL);
    }
    wait_exit(pid, starttime, Duration::from_secs(2)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_matching_is_per_argument() {
        let c = b"/usr/bin/flotilla\0workload\0--name\0web_1\0--vcpus\x001\0";
        assert!(cmdline_names(c, "web_1"));
        assert!(!cmdline_names(c, "web_"), "no substring matches");
        assert!(!cmdline_names(c, "web_10"));
        assert!(cmdline_names(b"x\0--name=web_2\0", "web_2"));
    }

    #[test]
    fn this_process_is_alive_under_its_own_identity_only() {
        let me = std::process::id() as i32;
        let st = starttime(me).unwrap();
        assert!(!has_exited(me, st));
        assert!(has_exited(me, st + 1), "a different starttime is a different process");
        assert!(!is_member_alive(me, st, "certainly-not-in-my-cmdline"));
        assert!(has_exited(i32::MAX, 0), "no such pid");
    }
}
