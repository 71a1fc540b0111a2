//! Helpers for the black-box tests: run the real `flotilla` binary against a temporary state dir,
//! read its state through `flotilla status --output json`, and clean up every process the test
//! started (by PID) even when an assertion fails.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// Tests that burn CPU or time scaling decisions take turns across test binaries and runners
/// (cargo test and nextest alike): a shared lock file.
pub struct Serial(#[allow(dead_code)] nix::fcntl::Flock<File>);

pub fn serial() -> Serial {
    let path = std::env::temp_dir().join("flotilla-tests-serial.lock");
    let file = File::options().create(true).truncate(false).write(true).open(path).expect("lock file");
    Serial(nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e).expect("flock"))
}

pub struct Env {
    pub dir: tempfile::TempDir,
    daemons: Vec<Child>,
    _serial: Option<Serial>,
}

impl Env {
    pub fn new() -> Env {
        Env { dir: tempfile::tempdir().expect("tempdir"), daemons: Vec::new(), _serial: None }
    }
    /// An env whose test takes the serial lock (CPU-sensitive scenarios).
    pub fn serial() -> Env {
        let mut e = Env::new();
        e._serial = Some(serial());
        e
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
    /// A file only its owner may read (tokens, keys), as the daemon wants them.
    pub fn private_file(&self, name: &str, contents: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.file(name, contents);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--state-dir").arg(self.path().join("state")).args(args);
        c.env_remove("FLOTILLA_STATE_DIR").env_remove("FLOTILLA_FAILPOINT").env("RUST_LOG", "info");
        c.stdin(Stdio::null());
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run flotilla")
    }
    /// Runs and insists on success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "flotilla {args:?} failed: {}\n{}", out.status, text(&out.stderr));
        text(&out.stdout)
    }
    /// Starts a long-running flotilla (run/watch) with stderr going to `log`.
    pub fn spawn(&mut self, args: &[&str], log: &str, failpoint: Option<&str>) -> u32 {
        let log = File::create(self.path().join(log)).unwrap();
        let mut c = self.cmd(args);
        c.stdout(log.try_clone().unwrap()).stderr(log);
        if let Some(fp) = failpoint {
            c.env("FLOTILLA_FAILPOINT", fp);
        }
        let child = c.spawn().expect("spawn flotilla");
        let pid = child.id();
        self.daemons.push(child);
        pid
    }
    /// Puts a daemon the test started itself (with its own environment) in this env's care: it
    /// is stopped at the end like the others.
    pub fn adopt(&mut self, child: Child) -> u32 {
        let pid = child.id();
        self.daemons.push(child);
        pid
    }
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(name)).unwrap_or_default()
    }
    /// Sends SIGTERM to a daemon this env started and waits for it; returns its exit code.
    pub async fn stop(&mut self, pid: u32) -> Option<i32> {
        signal(pid, nix::sys::signal::Signal::SIGTERM);
        self.reap(pid, Duration::from_secs(30)).await
    }
    /// Waits for a daemon to exit on its own (e.g. after a failpoint's kill -9).
    pub async fn reap(&mut self, pid: u32, limit: Duration) -> Option<i32> {
        let idx = self.daemons.iter().position(|c| c.id() == pid).expect("our daemon");
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.daemons[idx].try_wait().unwrap() {
                // Already reaped by try_wait: waiting again just returns the same status.
                let _ = self.daemons.remove(idx).wait();
                use std::os::unix::process::ExitStatusExt;
                return status.code().or(status.signal().map(|s| 128 + s));
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("daemon {pid} did not exit within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    pub fn status(&self) -> Value {
        let out = self.ok(&["status", "--output", "json", "--events", "100"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("status json: {e}: {out}"))
    }
    /// (name, state) of a group's members, as the store knows them.
    pub fn members(&self, group: &str) -> Vec<(String, String)> {
        let st = self.status();
        let Some(g) = st["groups"].as_array().unwrap().iter().find(|g| g["name"] == group) else { return Vec::new() };
        g["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["name"].as_str().unwrap().to_string(), m["state"].as_str().unwrap().to_string()))
            .collect()
    }
    /// (name, address) of a group's running members, from `flotilla status`.
    pub fn running_members(&self, group: &str) -> Vec<(String, String)> {
        let st = self.status();
        let g = st["groups"].as_array().unwrap().iter().find(|g| g["name"] == group).cloned().unwrap_or_default();
        g["members"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter(|m| m["state"] == "running")
                    .map(|m| (m["name"].as_str().unwrap().to_string(), m["address"].as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }
    pub fn member_names(&self, group: &str) -> Vec<String> {
        let mut v: Vec<String> = self.members(group).into_iter().map(|(n, _)| n).collect();
        v.sort();
        v
    }
    /// Member processes of this env still alive (found by their state dir in the command line).
    pub fn member_pids(&self) -> Vec<u32> {
        let needle = self.path().join("state").display().to_string();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else { continue };
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(" workload ") && cmd.contains(&needle) {
                pids.push(pid);
            }
        }
        pids
    }
    /// Names of the members whose processes are alive, from their command lines.
    pub fn live_member_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .member_pids()
            .into_iter()
            .filter_map(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let args: Vec<String> =
                    cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
                let i = args.iter().position(|a| a == "--name")?;
                args.get(i + 1).cloned()
            })
            .collect();
        names.sort();
        names
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for c in &mut self.daemons {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in self.member_pids() {
            signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Every file under `dir` (recursively); none if it does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A small deterministic generator (xorshift64*), so a seed replays a run.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `FLOTILLA_KILL_SEED`, else from the clock; prints the seed (so a failure can be
    /// replayed) and returns it.
    pub fn from_env(what: &str) -> (Rng, u64) {
        let seed: u64 = std::env::var("FLOTILLA_KILL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
        eprintln!("{what}: seed {seed} (FLOTILLA_KILL_SEED={seed} replays it)");
        (Rng(seed), seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The names that occur more than once in a sorted list.
pub fn duplicates(names: &[String]) -> Vec<String> {
    let mut d: Vec<String> = names.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0].clone()).collect();
    d.dedup();
    d
}

/// One HTTP/1.1 request with an empty body on a fresh connection; the whole answer as text.
pub async fn raw_request(addr: &str, method: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A loopback port free a moment ago (for a listener the test configures).
pub fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Starts (`Some(duty)`) or stops the busy loop inside every running member of `group` (the
/// seed's `yes > /dev/null`).
pub async fn set_duty(env: &Env, group: &str, duty: Option<f64>) {
    for (name, addr) in env.running_members(group) {
        let (method, path) = match duty {
            Some(d) => ("POST", format!("/load?duty={d}")),
            None => ("DELETE", "/load".to_string()),
        };
        let out = raw_request(&addr, method, &path).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{name} {method} {path}: {out}");
    }
}

pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls `check` until it holds or `limit` passes.
pub async fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fast handover group for tests: samples every 500 ms, 3-sample streaks.
pub const FAST_HANDOVER: &str = r#"
groups:
  - name: vm-test
    mode: handover
    min: 1
    max: 2
    interval: 500ms
    stale_after: 2s
    cooldown_up: 0s
    cooldown_down: 1s
    policy:
      metric: max
      high: 80
      low: 20
      min_up: 3
      min_down: 3
"#;

/// An HTTP answer: status, head, and the body as JSON (Null if it is not).
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Value,
}

/// One request on a fresh connection, with extra headers.
pub async fn call(
    api: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(api).await.unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    // A TLS port resets a plain request: nothing read is status 0.
    let _ = s.read_to_string(&mut out).await;
    let (head, rest) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Reply { status, head: head.to_string(), body: serde_json::from_str(rest).unwrap_or(Value::Null) }
}
