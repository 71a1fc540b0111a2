//! The embedded default provider: members are detached local processes running `flotilla workload`.
//!
//! A "VM" here is a process group led by `<exe> workload --name N --vcpus V ...`. Everything the
//! provider knows lives in files under `<state_dir>/members/` (see [`record`]), so a restarted
//! controller — even after `kill -9` — lists and adopts the members the previous one made, and a
//! name is never started twice. Pids are only trusted together with their starttime and command
//! line (see [`process`]), so a reused pid is never mistaken for, or signalled as, a member.

pub mod process;
pub mod record;
mod spawn;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
pub use flotilla_model::name::{check_member_name as validate_name, MAX_NAME_LEN};
use flotilla_model::{
    Clock, ErrorKind, GroupId, Instance, InstanceId, InstanceSpec, InstanceState, Provider, SeamError, SystemClock,
    Timestamp,
};

use record::{MemberFiles, MemberRecord};
use spawn::Started;

/// How long a deleted member gets between SIGTERM and SIGKILL.
pub const DELETE_GRACE: Duration = Duration::from_secs(5);

/// Where members' files live and what they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// Member files go to `<state_dir>/members/`.
    pub state_dir: PathBuf,
    /// The binary members run as `<exe> workload --name N --vcpus V --listen 127.0.0.1:0
    /// --ready-file F`: normally the flotilla binary itself.
    pub exe: PathBuf,
    /// How long a new member may take to write its ready file and answer `/healthz`.
    pub start_timeout: Duration,
}

/// The `local` provider.
pub struct LocalProvider {
    cfg: LocalConfig,
    files: MemberFiles,
    clock: Arc<dyn Clock>,
    /// Serialises the check-then-spawn step of `create` (not the wait for readiness), so two
    /// concurrent creates of one name in this process cannot both spawn it.
    spawning: tokio::sync::Mutex<()>,
}

/// What `create` does for one name.
enum Plan {
    /// Alive and ready: returned as it is.
    Ready(Instance),
    /// Alive, but never reported ready (a controller died mid-create): wait for it.
    Adopt(MemberRecord),
    /// Spawned by this call: wait for it.
    Spawned(MemberRecord, Started),
    Failed(SeamError),
}

impl LocalProvider {
    pub fn new(cfg: LocalConfig) -> Self {
        let files = MemberFiles::new(&cfg.state_dir);
        LocalProvider { cfg, files, clock: Arc::new(SystemClock), spawning: tokio::sync::Mutex::new(()) }
    }

    /// Uses `clock` for members' `created_at`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn config(&self) -> &LocalConfig {
        &self.cfg
    }

    /// `<state_dir>/members`.
    pub fn members_dir(&self) -> &Path {
        self.files.dir()
    }

    fn instance(&self, rec: &MemberRecord, state: InstanceState, port: Option<u16>) -> Instance {
        let mut i = Instance::new(rec.name.clone(), &GroupId::new(rec.group.clone()), Timestamp(rec.created_at_ms));
        i.state = state;
        i.address = port.map(|p| format!("127.0.0.1:{p}"));
        i.tags.insert("pid".into(), rec.pid.to_string());
        i.tags.insert("vcpus".into(), rec.vcpus.to_string());
        // Lets a metric source tell the member from a later process that reuses its pid.
        i.tags.insert("starttime".into(), rec.starttime.to_string());
        if let Some(p) = port {
            i.tags.insert("port".into(), p.to_string());
        }
        i.tags.insert("log".into(), self.files.log(&rec.name).display().to_string());
        i
    }

    fn read_record(&self, name: &str) -> Result<Option<MemberRecord>, SeamError> {
        self.files.read(name).map_err(|e| {
            SeamError::invalid(format!(
                "member file {} is unreadable ({e}); inspect and remove it by hand",
                self.files.record(name).display()
            ))
        })
    }

    /// Records a member process found without a record, then waits for it like any adopted one.
    fn adopt_unrecorded(&self, group: &GroupId, name: &str, vcpus: u32, pid: i32, starttime: u64) -> Plan {
        tracing::warn!(member = name, %group, pid, "found the member's process without its record (a crash between spawn and record): adopting it");
        let rec = MemberRecord {
            group: group.as_str().to_string(),
            name: name.to_string(),
            pid,
            port: None,
            vcpus,
            created_at_ms: self.clock.now().as_millis(),
            starttime,
        };
        match self.files.write(&rec) {
            Ok(()) => Plan::Adopt(rec),
            Err(e) => Plan::Failed(SeamError::transient(format!(
                "member {name} (pid {pid}): cannot write its member file: {e}"
            ))),
        }
    }

    /// Spawns `name` and records it at once (pid known, port not yet).
    fn spawn_member(&self, group: &GroupId, name: &str, vcpus: u32) -> Plan {
        let now = self.clock.now().as_millis();
        let mut started = match spawn::spawn(&self.cfg.exe, name, vcpus, &self.files, now) {
            Ok(s) => s,
            Err(e) => {
                let kind = match e.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => ErrorKind::Invalid,
                    _ => ErrorKind::Transient,
                };
                let msg = format!("member {name}: cannot run {}: {e}", self.cfg.exe.display());
                return Plan::Failed(SeamError::new(kind, msg).with_source(e));
            }
        };
        let rec = MemberRecord {
            group: group.as_str().to_string(),
            name: name.to_string(),
            pid: started.pid,
            port: None,
            vcpus,
            created_at_ms: now,
            starttime: started.starttime,
        };
        match self.files.write(&rec) {
            Ok(()) => {
                tracing::info!(member = name, %group, pid = started.pid, "member spawned");
                Plan::Spawned(rec, started)
            }
            Err(e) => {
                // Without a record nobody could find it again: don't leave it running.
                let pid = started.pid;
                let files = self.files.clone();
                let name = name.to_string();
                tokio::spawn(async move {
                    spawn::kill_started(&mut started).await;
                    let _ = files.remove(&name);
                });
                Plan::Failed(SeamError::transient(format!(
                    "member {} (pid {pid}, now being stopped): cannot write its member file: {e}",
                    rec.name
                )))
            }
        }
    }

    /// Waits for a spawned or adopted member; on failure stops it and removes its files.
    async fn finish(&self, plan: Plan, deadline: tokio::time::Instant) -> Result<Instance, SeamError> {
        let timeout = self.cfg.start_timeout;
        match plan {
            Plan::Ready(i) => Ok(i),
            Plan::Failed(e) => Err(e),
            Plan::Spawned(rec, mut started) => {
                match spawn::wait_ready(&rec.name, rec.pid, rec.starttime, &self.files, deadline, timeout).await {
                    Ok(port) => {
                        spawn::reap_when_done(rec.name.clone(), started.child);
                        self.mark_ready(rec, port)
                    }
                    Err(reason) => {
                        let status = spawn::kill_started(&mut started).await;
                        let status = status.map(|s| format!(" (exit: {s})")).unwrap_or_default();
                        Err(self.start_failed(&rec, &format!("{reason}{status}")))
                    }
                }
            }
            Plan::Adopt(rec) => {
                match spawn::wait_ready(&rec.name, rec.pid, rec.starttime, &self.files, deadline, timeout).await {
                    Ok(port) => self.mark_ready(rec, port),
                    Err(reason) => {
                        process::stop_member(rec.pid, rec.starttime, &rec.name, spawn::FAILED_START_GRACE).await;
                        Err(self.start_failed(&rec, &reason))
                    }
                }
            }
        }
    }

    fn mark_ready(&self, mut rec: MemberRecord, port: u16) -> Result<Instance, SeamError> {
        rec.port = Some(port);
        self.files.write(&rec).map_err(|e| {
            SeamError::transient(format!(
                "member {} is running but its member file could not be updated: {e}",
                rec.name
            ))
        })?;
        tracing::info!(member = %rec.name, group = %rec.group, pid = rec.pid, port, "member ready");
        Ok(self.instance(&rec, InstanceState::Running, Some(port)))
    }

    fn start_failed(&self, rec: &MemberRecord, reason: &str) -> SeamError {
        if let Err(e) = self.files.remove(&rec.name) {
            tracing::warn!(member = %rec.name, error = %e, "could not remove the files of a member that failed to start");
        }
        let log = self.files.log(&rec.name);
        tracing::warn!(member = %rec.name, pid = rec.pid, reason, log = %log.display(), "member failed to start");
        SeamError::transient(format!("member {} did not start: {reason}; see its log {}", rec.name, log.display()))
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    async fn list(&self, group: Option<&GroupId>) -> Result<Vec<Instance>, SeamError> {
        let records = self.files.scan().map_err(|e| {
            SeamError::transient(format!("cannot read {}: {e}", self.files.dir().display())).with_source(e)
        })?;
        Ok(records
            .into_iter()
            .filter(|r| group.is_none_or(|g| g.as_str() == r.group))
            .map(|r| {
                if !process::is_member_alive(r.pid, r.starttime, &r.name) {
                    return self.instance(&r, InstanceState::Failed("process exited".into()), r.port);
                }
                // A port file without a port in the record: the controller stopped between the
                // member becoming ready and the record being updated. The member serves.
                match r.port.or_else(|| self.files.read_port(&r.name)) {
                    Some(port) => self.instance(&r, InstanceState::Running, Some(port)),
                    None => self.instance(&r, InstanceState::Creating, None),
                }
            })
            .collect())
    }

    async fn create(&self, group: &GroupId, spec: &InstanceSpec, names: &[String]) -> Result<Vec<Instance>, SeamError> {
        let mut unique: Vec<&str> = Vec::with_capacity(names.len());
        for name in names {
            validate_name(name)?;
            if !unique.contains(&name.as_str()) {
                unique.push(name);
            }
        }
        let vcpus = spec.vcpus.max(1);

        let spawning = self.spawning.lock().await;
        // Check every name before starting anything, so a conflict has no side effects.
        let mut existing = Vec::with_capacity(unique.len());
        for &name in &unique {
            let rec = self.read_record(name)?;
            if let Some(r) = &rec {
                if r.group != group.as_str() {
                    return Err(SeamError::new(
                        ErrorKind::Conflict,
                        format!("member name {name} is taken by group {}", r.group),
                    ));
                }
            }
            existing.push(rec);
        }
        let mut plans = Vec::with_capacity(unique.len());
        for (&name, rec) in unique.iter().zip(existing) {
            let plan = match rec {
                Some(r) if process::is_member_alive(r.pid, r.starttime, name) => match r.port {
                    Some(port) => Plan::Ready(self.instance(&r, InstanceState::Running, Some(port))),
                    None => Plan::Adopt(r),
                },
                Some(r) => {
                    tracing::info!(member = name, pid = r.pid, "member file of an exited process: starting anew");
                    match self.files.remove(name) {
                        Ok(()) => self.spawn_member(group, name, vcpus),
                        Err(e) => Plan::Failed(SeamError::transient(format!(
                            "member {name}: cannot remove its stale files: {e}"
                        ))),
                    }
                }
                None => match process::find_unrecorded(&self.files, name) {
                    Some((pid, starttime)) => self.adopt_unrecorded(group, name, vcpus, pid, starttime),
                    None => self.spawn_member(group, name, vcpus),
                },
            };
            plans.push(plan);
        }
        drop(spawning);

        let deadline = tokio::time::Instant::now() + self.cfg.start_timeout;
        let mut out = Vec::with_capacity(plans.len());
        let mut errors = Vec::new();
        for plan in plans {
            match self.finish(plan, deadline).await {
                Ok(i) => out.push(i),
                Err(e) => errors.push(e),
            }
        }
        SeamError::combine(errors)?;
        Ok(out)
    }

    async fn delete(&self, group: &GroupId, ids: &[InstanceId]) -> Result<(), SeamError> {
        let mut errors = Vec::new();
        for id in ids {
            let name = id.as_str();
            if validate_name(name).is_err() {
                continue; // no file can have this name: not ours, already gone
            }
            let rec = match self.read_record(name) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if rec.group != group.as_str() {
                errors.push(SeamError::new(
                    ErrorKind::Conflict,
                    format!("member {name} belongs to group {}, not {group}", rec.group),
                ));
                continue;
            }
            if !process::stop_member(rec.pid, rec.starttime, name, DELETE_GRACE).await {
                errors.push(SeamError::transient(format!(
                    "member {name} (pid {}) did not exit after SIGTERM and SIGKILL",
                    rec.pid
                )));
                continue;
            }
            match self.files.remove(name) {
                Ok(()) => tracing::info!(member = name, %group, pid = rec.pid, "member deleted"),
                Err(e) => errors.push(SeamError::transient(format!("member {name} stopped but its files remain: {e}"))),
            }
        }
        SeamError::combine(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["web_1", "a", "x.y-z", &"n".repeat(MAX_NAME_LEN)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "-flag", "a/b", "..", "a b", "é", &"n".repeat(MAX_NAME_LEN + 1)] {
            assert_eq!(validate_name(bad).unwrap_err().kind(), ErrorKind::Invalid, "{bad}");
        }
    }
}
