//! Test support: the member binary, and a guard that kills every member a test made.
//!
//! How tests find the workload binary: a provider's `exe` must be a real executable, and Cargo
//! only exposes `CARGO_BIN_EXE_*` to tests of the package that owns the binary. So the first test
//! that needs it runs `$CARGO build -p flotilla-workload --bin flotilla-workload
//! --message-format=json` (same profile as this test binary) and takes the executable path from
//! Cargo's own JSON output — no guessing of target directories. Cargo releases its build lock
//! before running tests, so the nested build just waits for any concurrent build and is a no-op
//! when the binary is fresh. Set `FLOTILLA_WORKLOAD_EXE` to skip the build and use a given binary
//! (either `flotilla-workload` or the real `flotilla` CLI: both accept `workload --name ...`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use flotilla_provider_local::process;
use flotilla_provider_local::record::MemberFiles;
use flotilla_provider_local::{LocalConfig, LocalProvider};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// The workload binary (built once per test process).
pub fn workload_exe() -> PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        if let Some(exe) = std::env::var_os("FLOTILLA_WORKLOAD_EXE") {
            return PathBuf::from(exe);
        }
        let release = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent()?.parent()?.file_name().map(|n| n == "release"))
            .unwrap_or(false);
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "flotilla-workload", "--bin", "flotilla-workload", "--message-format=json"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build for the workload binary");
        assert!(out.status.success(), "building flotilla-workload failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "flotilla-workload")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no flotilla-workload executable")
    })
    .clone()
}

/// A state directory whose members are all SIGKILLed (by recorded pid, identity-checked) when the
/// test ends, pass or fail; extra process groups can be registered too.
pub struct Members {
    pub dir: tempfile::TempDir,
    extra: Mutex<Vec<(i32, u64)>>,
}

impl Members {
    pub fn new() -> Self {
        Members { dir: tempfile::tempdir().unwrap(), extra: Mutex::new(Vec::new()) }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn files(&self) -> MemberFiles {
        MemberFiles::new(self.path())
    }

    /// A provider on this state dir running `exe`.
    pub fn provider_with(&self, exe: &Path, start_timeout: Duration) -> LocalProvider {
        LocalProvider::new(LocalConfig { state_dir: self.path().into(), exe: exe.into(), start_timeout })
    }

    /// A provider on this state dir running the workload binary.
    pub fn provider(&self) -> LocalProvider {
        self.provider_with(&workload_exe(), Duration::from_secs(20))
    }

    /// Also kill this process group at the end.
    pub fn track(&self, pid: i32) {
        if let Some(st) = process::starttime(pid) {
            self.extra.lock().unwrap().push((pid, st));
        }
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        let mut targets = self.extra.lock().unwrap().clone();
        if let Ok(records) = self.files().scan() {
            targets.extend(records.into_iter().map(|r| (r.pid, r.starttime)));
        }
        for (pid, starttime) in targets {
            if process::has_exited(pid, starttime) {
                continue;
            }
            let leads = process::stat(pid).is_some_and(|s| s.pgrp == pid);
            let _ = if leads {
                killpg(Pid::from_raw(pid), Signal::SIGKILL)
            } else {
                kill(Pid::from_raw(pid), Signal::SIGKILL)
            };
        }
    }
}

/// Whether any live (non-zombie) process is in process group `pgid`.
pub fn group_has_live_processes(pgid: i32) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(process::stat)
        .any(|s| s.pgrp == pgid && !s.has_exited())
}

/// `GET path` on `addr`: (status, x-flotilla-member, body).
pub async fn get(addr: &str, path: &str) -> (u16, Option<String>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let member = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("x-flotilla-member"))
        .map(|(_, v)| v.trim().to_string());
    (status, member, body.to_string())
}
