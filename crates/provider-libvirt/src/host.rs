//! One libvirt connection per configured host: opened lazily, shared by the provider and the
//! metric source, dropped and reopened with exponential backoff (1 s → 60 s) after it fails.
//!
//! Every libvirt call blocks, so each call (a closure over the connection, usually several libvirt
//! calls in a row) runs on `tokio::task::spawn_blocking`, under a time limit; a connection that
//! does not answer in time, or that `virConnectIsAlive` says is dead after an error, is marked
//! down. libvirt connections are thread-safe, so calls on one host may run at the same time.

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use flotilla_model::{ErrorKind, SeamError};
use virt::connect::Connect;
use virt::error::{Error as VirtError, ErrorNumber};

use crate::settings::HostSettings;
use crate::xml::MemberMeta;

/// How long opening a connection may take (an SSH transport to a dead host can hang).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one call (a closure of libvirt calls) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The hypervisor driver behind a connection (`virConnectGetType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driver {
    Qemu,
    /// libvirt's in-process test driver: no guests run; state lives as long as the connection.
    Test,
    Other(String),
}

impl Driver {
    fn from_type(t: &str) -> Self {
        match t.to_ascii_uppercase().as_str() {
            "QEMU" => Driver::Qemu,
            "TEST" => Driver::Test,
            _ => Driver::Other(t.to_string()),
        }
    }
}

/// A domain of ours as a host reports it.
#[derive(Debug, Clone)]
pub struct Found {
    pub meta: MemberMeta,
    pub uuid: String,
    pub state: DomState,
}

/// A domain's state, simplified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomState {
    Running,
    /// Anything else, with a reason for people (`shut off (destroyed)`, `crashed`, `paused`).
    Stopped(String),
}

/// What one listing of a host found.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Domains with our metadata, all groups (before [`crate::owners`] picks one entry per member).
    pub ours: Vec<Found>,
    /// Names of domains without our metadata (or with metadata we cannot read).
    pub foreign: Vec<String>,
    /// Node memory (KiB) and CPUs, when asked for.
    pub node: Option<(u64, u32)>,
}

/// A host as `hosts_status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStatus {
    pub name: String,
    pub uri: String,
    /// Connected, and the last call on it worked.
    pub up: bool,
    /// False until the provider first needed the host (connections open lazily).
    pub contacted: bool,
    pub last_error: Option<String>,
    /// Flotilla's members on it at the last listing (all groups).
    pub members: usize,
    /// `QEMU`, `TEST`, ... once connected.
    pub driver: Option<String>,
}

#[derive(Default)]
struct HostState {
    conn: Option<Arc<Connect>>,
    driver: Option<Driver>,
    last_error: Option<String>,
    failures: u32,
    retry_at: Option<tokio::time::Instant>,
    contacted: bool,
    /// The last listing's members attributed to this host, for reporting while it is down.
    known: Option<Vec<Found>>,
}

/// One configured host.
pub struct Host {
    pub index: usize,
    pub name: String,
    pub uri: String,
    pub max_members: Option<u32>,
    state: Mutex<HostState>,
    connecting: tokio::sync::Mutex<()>,
}

static QUIET: Once = Once::new();

/// libvirt prints every error to stderr unless told not to; errors reach us as values anyway.
fn quiet_libvirt() {
    QUIET.call_once(virt::error::clear_error_callback);
}

/// Backoff after `failures` consecutive failures: 1 s, 2 s, 4 s, ... up to [`MAX_BACKOFF`].
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_BACKOFF)
}

/// The [`ErrorKind`] of a libvirt error.
pub fn kind_of(e: &VirtError) -> ErrorKind {
    use ErrorNumber::*;
    match e.code().known() {
        Some(NoDomain) => ErrorKind::NotFound,
        Some(DomExist) => ErrorKind::Conflict,
        Some(
            XmlError | XmlDetail | InvalidArg | NoSupport | ConfSyntax | NoKernel | NoRoot | NoSource | NoTarget
            | NoName | NoOs | NoDevice | OsType | AuthFailed | AuthCancelled | ConfigUnsupported | XmlInvalidSchema
            | ArgumentUnsupported,
        ) => ErrorKind::Invalid,
        _ => ErrorKind::Transient,
    }
}

/// True if the error is about the domain not existing.
pub fn is_no_domain(e: &VirtError) -> bool {
    e.code().is(ErrorNumber::NoDomain)
}

impl Host {
    pub fn new(index: usize, s: &HostSettings) -> Self {
        Host {
            index,
            name: s.name.clone(),
            uri: s.uri.clone(),
            max_members: s.max_members,
            state: Mutex::new(HostState::default()),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `host `lab` (hosts[0].uri = qemu:///system)`: names the config field, for every message.
    pub fn label(&self) -> String {
        format!("host `{}` (hosts[{}].uri = {})", self.name, self.index, self.uri)
    }

    pub fn driver(&self) -> Option<Driver> {
        self.st().driver.clone()
    }

    /// The error a caller gets while the host is down.
    pub fn down_error(&self) -> Option<SeamError> {
        let st = self.st();
        if st.conn.is_some() || !st.contacted {
            return None;
        }
        let err = st.last_error.clone().unwrap_or_else(|| "unknown error".into());
        let wait = st
            .retry_at
            .map(|t| t.saturating_duration_since(tokio::time::Instant::now()))
            .map(|d| format!("; next try in {}s", d.as_secs_f64().ceil() as u64))
            .unwrap_or_default();
        Some(SeamError::transient(format!("{} is down: {err}{wait}", self.label())))
    }

    fn mark_down(&self, conn: Option<&Arc<Connect>>, why: String) {
        let mut st = self.st();
        if let (Some(cur), Some(c)) = (&st.conn, conn) {
            if !Arc::ptr_eq(cur, c) {
                return; // a newer connection replaced it already
            }
        }
        st.conn = None;
        st.failures += 1;
        st.retry_at = Some(tokio::time::Instant::now() + backoff(st.failures));
        st.contacted = true;
        tracing::warn!(host = %self.name, uri = %self.uri, error = %why, failures = st.failures, "libvirt host down");
        st.last_error = Some(why);
    }

    fn mark_ok(&self) {
        let mut st = self.st();
        st.failures = 0;
        st.retry_at = None;
        st.last_error = None;
    }

    /// The open connection, opening it if needed (not before the backoff has passed).
    pub async fn connection(&self) -> Result<Arc<Connect>, SeamError> {
        {
            let st = self.st();
            if let Some(c) = &st.conn {
                return Ok(c.clone());
            }
            if st.retry_at.is_some_and(|t| tokio::time::Instant::now() < t) {
                drop(st);
                return Err(self
                    .down_error()
                    .unwrap_or_else(|| SeamError::transient(format!("{} is down", self.label()))));
            }
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(c) = &self.st().conn {
            return Ok(c.clone());
        }
        let uri = self.uri.clone();
        let job = tokio::task::spawn_blocking(move || {
            quiet_libvirt();
            let c = Connect::open(Some(&uri))?;
            let t = c.driver_type()?;
            Ok::<_, VirtError>((c, t))
        });
        let why = match tokio::time::timeout(CONNECT_TIMEOUT, job).await {
            Ok(Ok(Ok((c, t)))) => {
                let c = Arc::new(c);
                let driver = Driver::from_type(&t);
                {
                    let mut st = self.st();
                    st.conn = Some(c.clone());
                    st.driver = Some(driver.clone());
                    st.contacted = true;
                }
                self.mark_ok();
                tracing::info!(host = %self.name, uri = %self.uri, driver = ?driver, "libvirt host connected");
                return Ok(c);
            }
            Ok(Ok(Err(e))) => {
                let kind = kind_of(&e);
                let msg = format!("cannot connect: {}", e.message());
                self.mark_down(None, msg.clone());
                return Err(SeamError::new(
                    if kind == ErrorKind::Invalid { kind } else { ErrorKind::Transient },
                    format!("{}: {msg}", self.label()),
                )
                .with_source(e));
            }
            Ok(Err(join)) => format!("connecting panicked: {join}"),
            Err(_) => format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()),
        };
        self.mark_down(None, why.clone());
        Err(SeamError::transient(format!("{}: {why}", self.label())))
    }

    /// Runs `f` on the connection off the async runtime. `what` names the step in errors
    /// (`define vm-a_1`). A failing call whose connection is no longer alive marks the host down.
    pub async fn call<T, F>(&self, what: &str, f: F) -> Result<T, SeamError>
    where
        T: Send + 'static,
        F: FnOnce(&Connect) -> Result<T, VirtError> + Send + 'static,
    {
        let conn = self.connection().await?;
        let c = conn.clone();
        let job = tokio::task::spawn_blocking(move || {
            let r = f(&c);
            let alive = r.is_ok() || c.is_alive().unwrap_or(false);
            (r, alive)
        });
        match tokio::time::timeout(CALL_TIMEOUT, job).await {
            Ok(Ok((Ok(v), _))) => Ok(v),
            Ok(Ok((Err(e), alive))) => {
                if !alive {
                    self.mark_down(Some(&conn), format!("connection lost during {what}: {}", e.message()));
                }
                Err(SeamError::new(kind_of(&e), format!("{}: {what}: {}", self.label(), e.message())).with_source(e))
            }
            Ok(Err(join)) => {
                Err(SeamError::bug(format!("{}: {what}: the libvirt call panicked: {join}", self.label())))
            }
            Err(_) => {
                let why = format!("{what}: no answer within {}s", CALL_TIMEOUT.as_secs());
                self.mark_down(Some(&conn), why.clone());
                Err(SeamError::transient(format!("{}: {why}", self.label())))
            }
        }
    }

    /// Lists every domain, sorting ours from foreign ones by metadata; with `node`, also node info.
    pub async fn list(&self, node: bool) -> Result<Listing, SeamError> {
        let listing = self.call("list domains", move |c| list_domains(c, node)).await?;
        Ok(listing)
    }

    /// Remembers the members attributed to this host (for reporting while it is down).
    pub fn set_known(&self, found: Vec<Found>) {
        self.st().known = Some(found);
    }

    pub fn known(&self) -> Option<Vec<Found>> {
        self.st().known.clone()
    }

    /// Adds (or replaces) a member made on this host since the last listing.
    pub fn remember(&self, found: Found) {
        let mut st = self.st();
        let known = st.known.get_or_insert_with(Vec::new);
        known.retain(|f| f.meta.instance != found.meta.instance);
        known.push(found);
    }

    pub fn forget(&self, name: &str) {
        if let Some(k) = self.st().known.as_mut() {
            k.retain(|f| f.meta.instance != name);
        }
    }

    pub fn status(&self) -> HostStatus {
        let st = self.st();
        HostStatus {
            name: self.name.clone(),
            uri: self.uri.clone(),
            up: st.conn.is_some() && st.last_error.is_none(),
            contacted: st.contacted,
            last_error: st.last_error.clone(),
            members: st.known.as_ref().map_or(0, Vec::len),
            driver: st.driver.as_ref().map(|d| match d {
                Driver::Qemu => "QEMU".to_string(),
                Driver::Test => "TEST".to_string(),
                Driver::Other(s) => s.clone(),
            }),
        }
    }
}

/// Reads our metadata element of a domain: `Ok(None)` if it has none.
pub fn read_meta(dom: &virt::domain::Domain) -> Result<Option<Result<MemberMeta, String>>, VirtError> {
    match dom.metadata(virt::sys::VIR_DOMAIN_METADATA_ELEMENT as i32, Some(crate::xml::NS), 0) {
        Ok(xml) => Ok(Some(crate::xml::parse_metadata(&xml))),
        Err(e) if e.code().is(ErrorNumber::NoDomainMetadata) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The simplified state of a domain.
pub fn dom_state(dom: &virt::domain::Domain) -> Result<DomState, VirtError> {
    use virt::domain::{DomainState as S, DomainStateReason as R};
    let (state, reason) = dom.state()?;
    let why = |r: virt::domain::DomainStateReasonEnum| -> String {
        use virt::enumutil::Enum;
        let s = match r {
            Enum::Known(R::Shutoff(Enum::Known(x))) => format!("{x:?}"),
            Enum::Known(R::Crashed(Enum::Known(x))) => format!("{x:?}"),
            Enum::Known(R::Paused(Enum::Known(x))) => format!("{x:?}"),
            Enum::Known(R::Shutdown(Enum::Known(x))) => format!("{x:?}"),
            _ => "unknown reason".to_string(),
        };
        s.to_lowercase()
    };
    Ok(match state.known() {
        Some(S::Running | S::Blocked) => DomState::Running,
        Some(S::Shutoff) => DomState::Stopped(format!("shut off ({})", why(reason))),
        Some(S::Crashed) => DomState::Stopped(format!("crashed ({})", why(reason))),
        Some(S::Paused) => DomState::Stopped(format!("paused ({})", why(reason))),
        Some(S::Shutdown) => DomState::Stopped("shutting down".into()),
        Some(S::PMSuspended) => DomState::Stopped("suspended".into()),
        Some(S::NoState) | None => DomState::Stopped("no state".into()),
    })
}

fn list_domains(c: &Connect, node: bool) -> Result<Listing, VirtError> {
    let mut out = Listing::default();
    for dom in c.list_all_domains(0)? {
        let name = match dom.name() {
            Ok(n) => n,
            Err(e) if is_no_domain(&e) => continue,
            Err(e) => return Err(e),
        };
        let meta = match read_meta(&dom) {
            Ok(m) => m,
            Err(e) if is_no_domain(&e) => continue, // undefined meanwhile
            Err(e) => return Err(e),
        };
        match meta {
            None => out.foreign.push(name),
            Some(Err(why)) => {
                tracing::warn!(domain = %name, %why, "domain carries Flotilla's metadata namespace but it is unreadable: never touched");
                out.foreign.push(name);
            }
            Some(Ok(meta)) => {
                if meta.instance != name {
                    tracing::warn!(domain = %name, instance = %meta.instance, "metadata names another instance (renamed domain?): never touched");
                    out.foreign.push(name);
                    continue;
                }
                let (uuid, state) = match (dom.uuid_string(), dom_state(&dom)) {
                    (Ok(u), Ok(s)) => (u, s),
                    (Err(e), _) | (_, Err(e)) if is_no_domain(&e) => continue,
                    (Err(e), _) | (_, Err(e)) => return Err(e),
                };
                out.ours.push(Found { meta, uuid, state });
            }
        }
    }
    if node {
        let n = c.node_info()?;
        out.node = Some((n.memory, n.cpus));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let s: Vec<u64> = (1..=9).map(|f| backoff(f).as_secs()).collect();
        assert_eq!(s, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(0).as_secs(), 1);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[tokio::test]
    async fn a_refused_uri_is_down_with_backoff() {
        let h = Host::new(
            2,
            &HostSettings { name: "dead".into(), uri: "qemu+tcp://127.0.0.1:1/system".into(), max_members: None },
        );
        let e = h.connection().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert!(e.message.contains("host `dead` (hosts[2].uri = qemu+tcp://127.0.0.1:1/system)"), "{}", e.message);
        let st = h.status();
        assert!(!st.up && st.contacted && st.last_error.is_some(), "{st:?}");
        // within the backoff no new attempt is made
        let e2 = h.connection().await.unwrap_err();
        assert!(e2.message.contains("is down") && e2.message.contains("next try in"), "{}", e2.message);
    }

    #[tokio::test]
    async fn the_test_driver_lists_its_own_domain_as_foreign() {
        let h = Host::new(0, &HostSettings { name: "t".into(), uri: "test:///default".into(), max_members: None });
        let l = h.list(true).await.unwrap();
        assert!(l.ours.is_empty());
        assert_eq!(l.foreign, ["test"]);
        assert!(l.node.is_some_and(|(m, c)| m > 0 && c > 0));
        assert_eq!(h.driver(), Some(Driver::Test));
        assert!(h.status().up);
    }
}
