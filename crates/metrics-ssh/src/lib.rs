//! In-guest metric sampling over SSH ([`SshSampler`], [`MetricSource`] name `ssh`).
//!
//! The seed read CPU and memory by opening two new SSH connections per sample. Here every member
//! has **one persistent session** (russh, public key login only), reused across samples; a sample
//! is **one exec channel** running [`SAMPLE_COMMAND`] (`cat /proc/stat /proc/meminfo`), parsed with
//! `flotilla-metrics`' procfs functions:
//!
//! * CPU % = the seed's maths, 1 − Δ(idle+iowait)/Δtotal against the member's previous reading
//!   ([`procfs::cpu_percent`]); a member's first reading (and the first after a reconnect) only
//!   records counters and gives no sample.
//! * Mem % = (MemTotal − MemAvailable)/MemTotal ([`procfs::mem_percent`]).
//!
//! **Where:** `tags["ssh_address"]` (`127.0.0.1:2201`), else the host part of `address` with
//! [`SshSettings::port`] (default 22); see [`ssh_target`].
//!
//! **Host keys** are pinned on first use per instance in `<pin_dir>/<instance id>.pub` (atomic
//! write). A different key later is an error naming the instance and both fingerprints, and the
//! member gives no sample; never a silent accept. [`SshSampler::forget`] removes a pin (the
//! provider deletes members; a new member gets a new id). `ssh-rsa` (SHA-1) is offered only with
//! [`SshSettings::allow_ssh_rsa`].
//!
//! **Failures:** members are sampled concurrently, each bounded by the connect and command
//! timeouts; a member that fails is absent from the result (missing data never scales in). A
//! failure is logged at warn once per change of state (not every tick), recovery at info. After a
//! failed connection the member waits (exponential backoff, 1 s → 30 s) before the next attempt; a
//! reused session that turns out dead is replaced at once. Members no longer passed to
//! [`MetricSource::sample`] for their group have their session closed. Key material is never
//! logged: only paths and fingerprints.

mod pins;
mod session;
mod settings;
mod target;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flotilla_model::{ErrorKind, GroupId, Instance, InstanceId, Metric, MetricSource, Sample, SeamError, Timestamp};
use flotilla_procfs::{self as procfs, CpuTimes};
use russh::keys::PrivateKey;
use tokio::sync::Mutex as AsyncMutex;

pub use pins::fingerprint;
pub use session::CommandOutput;
pub use settings::{SshSettings, DEFAULT_SSH_PORT, DEFAULT_TIMEOUT};
pub use target::{ssh_target, SshTarget, SSH_ADDRESS_TAG};

use pins::PinStore;
use session::{ConnectParams, ExecError, Failure, Session};

/// The one command a sample runs.
pub const SAMPLE_COMMAND: &str = "cat /proc/stat /proc/meminfo";

/// First and longest wait between connection attempts to a failing member.
pub const RECONNECT_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// What one [`SshSampler::sample_report`] call saw.
#[derive(Debug, Default)]
pub struct SampleReport {
    /// One per member that gave a reading with a previous reading to compare to, in member order.
    pub samples: Vec<Sample>,
    /// Members read for the first time (counters recorded, no sample yet).
    pub first_readings: Vec<InstanceId>,
    /// Members that could not be read, with why.
    pub failures: Vec<(InstanceId, SeamError)>,
}

/// In-guest CPU and memory over SSH; see the crate docs.
pub struct SshSampler {
    inner: Arc<Inner>,
}

struct Inner {
    settings: SshSettings,
    key: Arc<PrivateKey>,
    config: Arc<russh::client::Config>,
    pins: Arc<PinStore>,
    members: std::sync::Mutex<MemberMap>,
    connections: AtomicU64,
    backoff: (Duration, Duration),
}

/// Per (group, member) state: groups are sampled in separate calls, so "members not passed in" is
/// decided per group.
type MemberMap = HashMap<(GroupId, InstanceId), Arc<AsyncMutex<Member>>>;

/// Per-member state: its session, its previous counters, its failure streak.
struct Member {
    id: InstanceId,
    target: Option<SshTarget>,
    session: Option<Session>,
    prev: Option<CpuTimes>,
    failures: u32,
    retry_at: Option<tokio::time::Instant>,
    last_failure: Option<(&'static str, ErrorKind, String)>,
    health: Health,
}

/// What was last logged about a member, so a state is logged once, not every tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Unknown,
    Ok,
    Failing(&'static str),
}

impl Member {
    fn new(id: InstanceId) -> Self {
        Member {
            id,
            target: None,
            session: None,
            prev: None,
            failures: 0,
            retry_at: None,
            last_failure: None,
            health: Health::Unknown,
        }
    }

    fn drop_session(&mut self) {
        if let Some(s) = self.session.take() {
            session::close(s);
        }
    }
}

impl SshSampler {
    /// Loads the identity and opens (creating it if needed) the pin directory. Fails with
    /// [`ErrorKind::Invalid`] on bad settings (same checks as [`SshSettings::validate`]).
    pub fn new(settings: SshSettings, pin_dir: &Path) -> Result<Self, SeamError> {
        let problems = settings.validate();
        if !problems.is_empty() {
            let text: Vec<String> = problems.iter().map(|(f, m)| format!("{f}: {m}")).collect();
            return Err(SeamError::invalid(format!("ssh sampler settings: {}", text.join("; "))));
        }
        let key = settings::load_identity(&settings.identity_file)
            .map_err(|m| SeamError::invalid(format!("ssh sampler settings: identity_file: {m}")))?;
        let pins = PinStore::open(pin_dir).map_err(|e| {
            SeamError::invalid(format!("ssh sampler: pin directory `{}` cannot be created: {e}", pin_dir.display()))
        })?;
        if settings.allow_ssh_rsa {
            tracing::warn!(
                "ssh sampler: allow_ssh_rsa is on: legacy `ssh-rsa` (SHA-1) host keys and signatures are accepted"
            );
        }
        tracing::debug!(
            identity = %settings.identity_file.display(),
            key = %fingerprint(key.public_key()),
            pins = %pin_dir.display(),
            "ssh sampler ready"
        );
        let config = Arc::new(session::client_config(settings.allow_ssh_rsa));
        Ok(SshSampler {
            inner: Arc::new(Inner {
                settings,
                key: Arc::new(key),
                config,
                pins: Arc::new(pins),
                members: std::sync::Mutex::new(HashMap::new()),
                connections: AtomicU64::new(0),
                backoff: RECONNECT_BACKOFF,
            }),
        })
    }

    /// Changes the reconnect backoff (first wait, longest wait). For tests; call before sampling.
    pub fn with_reconnect_backoff(mut self, first: Duration, max: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.backoff = (first, max.max(first));
        }
        self
    }

    /// TCP connections opened so far (one per SSH session, including ones whose login failed).
    pub fn connections_opened(&self) -> u64 {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Members with state (a session, previous counters or a failure streak), over all groups.
    pub fn tracked(&self) -> usize {
        self.inner.lock_members().len()
    }

    /// Where the host key of `id` is pinned (the file may not exist yet).
    pub fn pin_path(&self, id: &InstanceId) -> PathBuf {
        self.inner.pins.path(id)
    }

    /// Removes the pin of `id` and closes its session (in every group). For members that were
    /// deleted; a member with this id that is sampled again is pinned anew.
    pub fn forget(&self, id: &InstanceId) -> Result<(), SeamError> {
        let removed: Vec<_> = {
            let mut map = self.inner.lock_members();
            let keys: Vec<_> = map.keys().filter(|(_, i)| i == id).cloned().collect();
            keys.into_iter().filter_map(|k| map.remove(&k)).collect()
        };
        removed.into_iter().for_each(close_member);
        self.inner.pins.forget(id).map(|_| ()).map_err(SeamError::transient)
    }

    /// Samples every member concurrently and says why each missing one is missing. Members of
    /// `group` that are not in `members` are dropped (session closed, counters forgotten).
    pub async fn sample_report(&self, group: &GroupId, members: &[Instance], now: Timestamp) -> SampleReport {
        let mut seen = HashSet::new();
        let members: Vec<&Instance> = members.iter().filter(|m| seen.insert(m.id.clone())).collect();
        let states: Vec<Arc<AsyncMutex<Member>>> = {
            let mut map = self.inner.lock_members();
            let gone: Vec<_> = map.keys().filter(|(g, id)| g == group && !seen.contains(id)).cloned().collect();
            for key in gone {
                if let Some(m) = map.remove(&key) {
                    tracing::debug!(group = %group, member = %key.1, "ssh: member gone, session closed");
                    close_member(m);
                }
            }
            members.iter().map(|m| self.inner.member_entry(&mut map, group, &m.id)).collect()
        };

        let mut tasks = tokio::task::JoinSet::new();
        for (index, (instance, state)) in members.iter().zip(states).enumerate() {
            let inner = self.inner.clone();
            let instance = (*instance).clone();
            let group = group.clone();
            tasks.spawn(async move {
                let mut m = state.lock().await;
                let result = inner.sample_guarded(&mut m, &instance, now).await;
                inner.note(&mut m, &group, &result);
                (index, result)
            });
        }
        let mut results = Vec::with_capacity(members.len());
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(r) => results.push(r),
                Err(e) => tracing::error!(group = %group, "ssh: a sampling task failed: {e}"),
            }
        }
        results.sort_by_key(|(i, _)| *i);
        let mut report = SampleReport::default();
        for (index, result) in results {
            match result {
                Ok(Some(sample)) => report.samples.push(sample),
                Ok(None) => report.first_readings.push(members[index].id.clone()),
                Err(f) => report.failures.push((members[index].id.clone(), f.error)),
            }
        }
        report
    }

    /// Runs `command` in the member's guest on its sampling session (connecting and pinning as a
    /// sample would), bounded by the connect and command timeouts. For operators and demos (start
    /// load in a guest); its output is not parsed. A command that outlives the command timeout
    /// costs the member its session (it is reopened on the next sample).
    pub async fn run_command(
        &self,
        group: &GroupId,
        instance: &Instance,
        command: &str,
    ) -> Result<CommandOutput, SeamError> {
        let state = {
            let mut map = self.inner.lock_members();
            self.inner.member_entry(&mut map, group, &instance.id)
        };
        let mut m = state.lock().await;
        let target = self.inner.target_of(&mut m, instance).map_err(|f| f.error)?;
        self.inner.run_on(&mut m, &target, command).await.map_err(|f| f.error)
    }
}

fn close_member(m: Arc<AsyncMutex<Member>>) {
    // A member busy in a sample keeps its session until that ends; dropping the last Arc then
    // drops the session, which ends it too.
    if let Ok(mut m) = m.try_lock() {
        m.drop_session();
    }
}

impl Inner {
    fn lock_members(&self) -> std::sync::MutexGuard<'_, MemberMap> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn member_entry(&self, map: &mut MemberMap, group: &GroupId, id: &InstanceId) -> Arc<AsyncMutex<Member>> {
        map.entry((group.clone(), id.clone()))
            .or_insert_with(|| Arc::new(AsyncMutex::new(Member::new(id.clone()))))
            .clone()
    }

    /// One member's sample with an overall bound on top of the per-step timeouts.
    async fn sample_guarded(
        &self,
        m: &mut Member,
        instance: &Instance,
        now: Timestamp,
    ) -> Result<Option<Sample>, Failure> {
        let s = &self.settings;
        let bound = s.connect_timeout + s.command_timeout * 2 + Duration::from_secs(1);
        match tokio::time::timeout(bound, self.sample_one(m, instance, now)).await {
            Ok(r) => r,
            Err(_) => {
                m.drop_session();
                Err(self.failed(
                    m,
                    Failure::new(
                        "timeout",
                        ErrorKind::Transient,
                        format!("instance `{}`: sampling took longer than {}", m.id, humantime::format_duration(bound)),
                    ),
                ))
            }
        }
    }

    async fn sample_one(&self, m: &mut Member, instance: &Instance, now: Timestamp) -> Result<Option<Sample>, Failure> {
        let target = self.target_of(m, instance)?;
        let out = self.run_on(m, &target, SAMPLE_COMMAND).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(cur) = procfs::parse_proc_stat_cpu(&text) else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr: String = stderr.trim().chars().take(200).collect();
            return Err(Failure::new(
                "output",
                ErrorKind::Invalid,
                format!(
                    "instance `{}`: `{SAMPLE_COMMAND}` on {target} gave no /proc/stat cpu line (exit status {:?}{}{})",
                    m.id,
                    out.exit_status,
                    if stderr.is_empty() { "" } else { ", stderr: " },
                    stderr
                ),
            ));
        };
        let mem = procfs::parse_meminfo(&text).map(|mi| procfs::mem_percent(&mi));
        let cpu = m.prev.and_then(|prev| procfs::cpu_percent(&prev, &cur));
        m.prev = Some(cur);
        let Some(cpu) = cpu else {
            // First reading, no clock tick in between, or counters that went backwards (a reboot).
            return Ok(None);
        };
        let mut sample = Sample::new(m.id.clone(), now).with(Metric::Cpu, cpu);
        match mem {
            Some(mem) => sample.set(Metric::Mem, mem),
            None => tracing::debug!(member = %m.id, "ssh: no MemTotal in /proc/meminfo: CPU only"),
        }
        Ok(Some(sample))
    }

    /// The member's target; a changed target starts over (new session, no previous counters).
    fn target_of(&self, m: &mut Member, instance: &Instance) -> Result<SshTarget, Failure> {
        let target = ssh_target(instance, self.settings.default_port())
            .map_err(|e| Failure::new("target", ErrorKind::Invalid, format!("instance `{}`: {e}", m.id)))?;
        if m.target.as_ref() != Some(&target) {
            m.drop_session();
            m.prev = None;
            m.failures = 0;
            m.retry_at = None;
            m.target = Some(target.clone());
        }
        Ok(target)
    }

    /// Runs `command` on the member's session, reconnecting once if the kept session is dead and
    /// connecting (subject to backoff) if there is none.
    async fn run_on(&self, m: &mut Member, target: &SshTarget, command: &str) -> Result<CommandOutput, Failure> {
        if let Some(session) = m.session.as_ref().filter(|s| !s.is_closed()) {
            match self.exec_bounded(session, &m.id, target, command).await {
                Ok(out) => return Ok(out),
                // The kept session died (guest rebooted, server restarted, idle cut): reconnect now.
                Err((true, f)) => {
                    tracing::debug!(member = %m.id, "ssh: kept session unusable ({}), reconnecting", f.error);
                    m.drop_session();
                }
                Err((false, f)) => {
                    m.drop_session();
                    return Err(self.failed(m, f));
                }
            }
        }
        m.drop_session();

        if let Some(at) = m.retry_at {
            let now = tokio::time::Instant::now();
            if now < at {
                let (category, kind, msg) =
                    m.last_failure.clone().unwrap_or(("connect", ErrorKind::Transient, "earlier failure".into()));
                let wait = humantime::format_duration(Duration::from_millis((at - now).as_millis() as u64));
                return Err(Failure::new(category, kind, format!("{msg} (next attempt in {wait})")));
            }
        }

        let params = ConnectParams {
            config: &self.config,
            pins: &self.pins,
            key: &self.key,
            user: &self.settings.user,
            allow_ssh_rsa: self.settings.allow_ssh_rsa,
            timeout: self.settings.connect_timeout,
        };
        let session = match session::connect(&params, &m.id, target, || {
            self.connections.fetch_add(1, Ordering::Relaxed);
        })
        .await
        {
            Ok(s) => s,
            Err(f) => return Err(self.failed(m, f)),
        };
        tracing::debug!(member = %m.id, %target, "ssh: session opened");
        // Counters of an earlier session may belong to an earlier boot: start over.
        m.prev = None;
        let result = self.exec_bounded(&session, &m.id, target, command).await;
        match result {
            Ok(out) => {
                m.session = Some(session);
                m.failures = 0;
                m.retry_at = None;
                m.last_failure = None;
                Ok(out)
            }
            Err((_, f)) => {
                session::close(session);
                Err(self.failed(m, f))
            }
        }
    }

    /// Runs one command within the command timeout. The flag says whether the session itself is
    /// broken (worth one immediate reconnect) rather than slow or refusing.
    async fn exec_bounded(
        &self,
        session: &Session,
        id: &InstanceId,
        target: &SshTarget,
        command: &str,
    ) -> Result<CommandOutput, (bool, Failure)> {
        let timeout = self.settings.command_timeout;
        match tokio::time::timeout(timeout, session::exec(session, command)).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(ExecError::Session(e))) => Err((
                true,
                Failure::new(
                    "command",
                    ErrorKind::Transient,
                    format!("instance `{id}`: session with {target} failed: {e}"),
                ),
            )),
            Ok(Err(ExecError::Refused)) => Err((
                false,
                Failure::new(
                    "command",
                    ErrorKind::Transient,
                    format!("instance `{id}`: {target} refused to run a command"),
                ),
            )),
            Ok(Err(ExecError::TooMuchOutput)) => Err((
                false,
                Failure::new(
                    "output",
                    ErrorKind::Invalid,
                    format!("instance `{id}`: the command printed more than {} bytes", session::OUTPUT_LIMIT),
                ),
            )),
            Err(_) => Err((
                false,
                Failure::new(
                    "timeout",
                    ErrorKind::Transient,
                    format!(
                        "instance `{id}`: command on {target} took longer than {}",
                        humantime::format_duration(timeout)
                    ),
                ),
            )),
        }
    }

    /// Records a failure: the streak, when to try connecting again, what to say meanwhile.
    fn failed(&self, m: &mut Member, f: Failure) -> Failure {
        m.failures = m.failures.saturating_add(1);
        let (first, max) = self.backoff;
        let wait = first.saturating_mul(1u32 << (m.failures - 1).min(16)).min(max);
        m.retry_at = Some(tokio::time::Instant::now() + wait);
        m.last_failure = Some((f.category, f.error.kind, f.error.message.clone()));
        f
    }

    /// Logs a member's change of state: a new kind of failure at warn, recovery at info.
    fn note(&self, m: &mut Member, group: &GroupId, result: &Result<Option<Sample>, Failure>) {
        match result {
            Ok(_) => {
                if let Health::Failing(_) = m.health {
                    tracing::info!(group = %group, member = %m.id, "ssh sampling recovered");
                }
                m.health = Health::Ok;
            }
            Err(f) => {
                if m.health != Health::Failing(f.category) {
                    tracing::warn!(
                        group = %group,
                        member = %m.id,
                        category = f.category,
                        kind = f.error.kind.as_str(),
                        "ssh sampling failed: {}",
                        f.error
                    );
                    m.health = Health::Failing(f.category);
                } else {
                    tracing::debug!(group = %group, member = %m.id, "ssh sampling still failing: {}", f.error);
                }
            }
        }
    }
}

#[async_trait]
impl MetricSource for SshSampler {
    fn name(&self) -> &str {
        "ssh"
    }

    async fn sample(&self, group: &GroupId, members: &[Instance], now: Timestamp) -> Result<Vec<Sample>, SeamError> {
        Ok(self.sample_report(group, members, now).await.samples)
    }

    /// A deleted member's pin goes: a new member is never refused for a key it never had.
    async fn forget(&self, group: &GroupId, member: &Instance) {
        if let Err(e) = SshSampler::forget(self, &member.id) {
            tracing::warn!(group = %group, member = %member.name, error = %e, "could not remove the member's host key pin");
        }
    }
}
