//! Starting one member: spawn detached, then wait until it is ready (ready file + `/healthz`).
//!
//! Members lead their own process group (`process_group(0)`), read /dev/null and write to their
//! log file, and are never killed on drop: they are meant to outlive the controller (and its
//! `kill -9`), like the VMs they stand in for. While the controller runs, a task reaps each child
//! so an exited member does not linger as a zombie.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::process;
use crate::record::MemberFiles;

const POLL: Duration = Duration::from_millis(50);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a member that failed to start gets between SIGTERM and SIGKILL.
pub const FAILED_START_GRACE: Duration = Duration::from_secs(2);

/// A freshly spawned member process.
pub struct Started {
    pub child: Child,
    pub pid: i32,
    pub starttime: u64,
}

/// Spawns `<exe> workload --name N --vcpus V --listen 127.0.0.1:0 --ready-file <members>/N.port`.
pub fn spawn(exe: &Path, name: &str, vcpus: u32, files: &MemberFiles, now_ms: u64) -> io::Result<Started> {
    std::fs::create_dir_all(files.dir())?;
    // A ready file left by an earlier member of this name must not pass for this one's.
    match std::fs::remove_file(files.port(name)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut log = OpenOptions::new().create(true).append(true).open(files.log(name))?;
    writeln!(log, "--- flotilla local provider: starting {name} at {now_ms} ms ({} workload)", exe.display())?;
    let child = Command::new(exe)
        .arg("workload")
        .args(["--name", name, "--vcpus", &vcpus.to_string(), "--listen", "127.0.0.1:0", "--ready-file"])
        .arg(files.port(name))
        .current_dir(files.dir())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()?;
    let pid =
        child.id().and_then(|p| i32::try_from(p).ok()).ok_or_else(|| io::Error::other("spawned child has no pid"))?;
    // spawn() returns after exec, so this is the member's own starttime (zombie or not).
    let starttime = process::starttime(pid).unwrap_or(0);
    Ok(Started { child, pid, starttime })
}

/// Waits until the member wrote its port and answers `/healthz`, or fails with a reason: it
/// exited, or `deadline` passed. Works for a member we spawned and for one adopted from a record.
/// Members started together share one deadline, so waiting for them one by one costs no extra time.
pub async fn wait_ready(
    name: &str,
    pid: i32,
    starttime: u64,
    files: &MemberFiles,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<u16, String> {
    let mut last = String::from("no ready file yet");
    loop {
        // Exit is judged from /proc (a zombie counts as exited) so our own child stays unreaped
        // and its process group id cannot be reused before cleanup signals it.
        if process::has_exited(pid, starttime) {
            return Err(format!("it exited before it was ready ({last})"));
        }
        if let Some(port) = files.read_port(name) {
            match flotilla_healthz::check(&format!("127.0.0.1:{port}"), name, PROBE_TIMEOUT).await {
                Ok(()) => return Ok(port),
                Err(e) => last = format!("port {port}: {e}"),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("not ready after {timeout:?} ({last})"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Stops a child we spawned that failed to start: SIGTERM its group, SIGKILL after the grace
/// period, then reap it. Safe without the identity check: until reaped, its pid (and so its
/// process group id) cannot belong to anyone else. Returns its exit status if it could be reaped.
pub async fn kill_started(started: &mut Started) -> Option<ExitStatus> {
    let group = Pid::from_raw(started.pid);
    let _ = killpg(group, Signal::SIGTERM);
    process::wait_exit(started.pid, started.starttime, FAILED_START_GRACE).await;
    // Always: also takes down anything the member left behind in its group.
    let _ = killpg(group, Signal::SIGKILL);
    tokio::time::timeout(Duration::from_secs(2), started.child.wait()).await.ok()?.ok()
}

/// Reaps a started member in the background whenever it exits, for as long as this runtime lives.
pub fn reap_when_done(name: String, mut child: Child) {
    tokio::spawn(async move {
        let status = child.wait().await;
        tracing::info!(member = %name, ?status, "member process exited");
    });
}
