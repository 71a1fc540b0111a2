//! [`PushSource`]: the HTTP listener, its handlers, and the `MetricSource` over what was pushed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use flotilla_model::{Clock, GroupId, Instance, MetricSource, Sample, SeamError, SystemClock, Timestamp};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use flotilla_listener::{BodyError, Limits, Throttled};

use crate::parse::{check_group, parse_alarm, parse_samples, AlarmStatus};
use crate::settings::PushSettings;
use crate::table::Table;

/// The largest samples body read (1 MiB, some thousands of samples).
pub const MAX_SAMPLES_BODY: usize = 1 << 20;
/// The largest alarm notification body read (64 KiB).
pub const MAX_ALARM_BODY: usize = 64 << 10;
/// How long [`PushSource::shutdown`] lets requests in flight finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The listener's bounds: heads within 10 s, bodies within 30 s, 256 connections at once.
const LIMITS: Limits = Limits {
    header_timeout: Duration::from_secs(10),
    body_timeout: Duration::from_secs(30),
    max_connections: 256,
    max_connection_age: Duration::from_secs(600),
    log_every: Duration::from_secs(10),
};

struct Shared {
    token: String,
    clock: Arc<dyn Clock>,
    table: Mutex<Table>,
    stopped: AtomicBool,
    /// Refused pushes are logged at most once per 10 s, with a count.
    refusals: Throttled,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent between statements; a panic elsewhere must not stop sampling.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A [`MetricSource`] (`"push"`) fed over HTTP. See the crate docs for the endpoints.
///
/// The server runs in a tokio task from [`PushSource::start`] until [`PushSource::shutdown`] or
/// until the source is dropped.
pub struct PushSource {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for PushSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushSource").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl PushSource {
    /// Binds `settings.listen` and serves on the wall clock. Returns the source and the address it
    /// listens on (the real port when `listen` asks for port 0, which tests do).
    ///
    /// Refuses settings with a bad `token` or `max_age` (see [`PushSettings::validate`]); a port in
    /// use, or an address not on this host, is an `Invalid` error naming the address.
    pub async fn start(settings: PushSettings) -> Result<(Arc<PushSource>, SocketAddr), SeamError> {
        Self::start_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`PushSource::start`] with a clock of the caller's: receive times come from it, so it must be
    /// the clock the controller's `now` comes from (tests pass a `FakeClock`).
    pub async fn start_with_clock(
        settings: PushSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<(Arc<PushSource>, SocketAddr), SeamError> {
        let problems: Vec<String> = settings
            .validate()
            .into_iter()
            // Port 0 is refused in the config (nobody could push to it) but fine here.
            .filter(|(field, _)| field != "listen")
            .map(|(field, msg)| format!("metrics.push.{field}: {msg}"))
            .collect();
        if !problems.is_empty() {
            return Err(SeamError::invalid(problems.join("; ")));
        }
        let listener =
            tokio::net::TcpListener::bind(settings.listen).await.map_err(|e| bind_error(settings.listen, e))?;
        let addr = listener.local_addr().map_err(|e| bind_error(settings.listen, e))?;
        if !addr.ip().is_loopback() {
            tracing::warn!(
                %addr,
                "metrics push endpoint listens beyond loopback over plain HTTP: the token crosses the network in clear \
                 text; keep it on a trusted network or behind a TLS proxy"
            );
        }
        let shared = Arc::new(Shared {
            token: settings.token,
            clock,
            table: Mutex::new(Table::new(settings.max_age)),
            stopped: AtomicBool::new(false),
            refusals: Throttled::new(LIMITS.log_every),
        });
        let app = router(Arc::clone(&shared));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(flotilla_listener::serve("metrics push", listener, app, LIMITS, None, stopped));
        tracing::info!(%addr, max_age = ?settings.max_age, "metrics push endpoint listening");
        let source = Arc::new(PushSource { shared, addr, stop, task: Mutex::new(Some(task)) });
        Ok((source, addr))
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The last notification of every Aodh alarm posted for the group, by alarm id. Alarm states do
    /// not expire with `max_age` (Aodh notifies on transitions only, unless `repeat_actions`), so
    /// look at `received_at` to judge them.
    pub fn alarm_state(&self, group: &GroupId) -> Vec<AlarmStatus> {
        self.shared.table().alarms(group.as_str())
    }

    /// Stops accepting pushes and waits (up to 5 s) for requests in flight to finish. Idempotent.
    /// Pushed values stay readable through `sample` until they expire.
    pub async fn shutdown(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut task) = task {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await.is_err() {
                task.abort();
            }
            tracing::info!(addr = %self.addr, "metrics push endpoint stopped");
        }
    }
}

impl Drop for PushSource {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        // No waiting in drop: stop the server task (connections are told to close).
        if let Some(task) = self.task.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

#[async_trait]
impl MetricSource for PushSource {
    fn name(&self) -> &str {
        "push"
    }

    /// The live pushed values of each listed member (matched by name or id), never older than
    /// `max_age` relative to `now`; members without any are absent.
    async fn sample(&self, group: &GroupId, members: &[Instance], now: Timestamp) -> Result<Vec<Sample>, SeamError> {
        Ok(self.shared.table().sample(group.as_str(), members, now))
    }

    /// A deleted member's pushed values go, under its name and its id.
    async fn forget(&self, group: &GroupId, member: &Instance) {
        self.shared.table().forget(group.as_str(), &[member.name.as_str(), member.id.as_str()]);
    }
}

fn bind_error(addr: SocketAddr, e: std::io::Error) -> SeamError {
    use std::io::ErrorKind as K;
    let (invalid, why) = match e.kind() {
        K::AddrInUse => {
            (true, "address already in use (another program, or another Flotilla, listens there)".to_string())
        }
        K::AddrNotAvailable => (true, "address not available on this host".to_string()),
        K::PermissionDenied => (true, "permission denied (ports below 1024 need privileges)".to_string()),
        _ => (false, e.to_string()),
    };
    let msg = format!("metrics push endpoint cannot listen on {addr}: {why}");
    if invalid { SeamError::invalid(msg) } else { SeamError::transient(msg) }.with_source(e)
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/groups/{group}/samples", post(push_samples))
        .route("/v1/groups/{group}/alarm", post(push_alarm))
        // The handlers read bodies themselves, after the token check, with their own limits.
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    json(status, serde_json::json!({ "error": msg.into() }))
}

async fn healthz() -> Response {
    json(StatusCode::OK, serde_json::json!({ "status": "ok" }))
}

/// Compares in time that depends on the lengths only, never on where the first difference is.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for i in 0..given.len().max(expected.len()) {
        let a = given.get(i).copied().unwrap_or(0);
        let b = expected.get(i).copied().unwrap_or(0);
        diff |= usize::from(a ^ b);
    }
    std::hint::black_box(diff) == 0
}

/// Where a request's token came from.
enum Presented<'a> {
    Header(&'a str),
    Query(String),
    /// An `Authorization` header that is not `Bearer <token>`.
    OtherScheme,
    Nothing,
}

fn presented<'a>(headers: &'a HeaderMap, query_token: Option<String>) -> Presented<'a> {
    match headers.get(AUTHORIZATION) {
        Some(v) => {
            let v = v.to_str().unwrap_or("");
            match v.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Presented::Header(token.trim()),
                _ => Presented::OtherScheme,
            }
        }
        None => query_token.map_or(Presented::Nothing, Presented::Query),
    }
}

/// `Ok` if the request carries the token; else why not (for the 401). Logs the refusal, never a
/// token.
fn authorize(
    s: &Shared,
    headers: &HeaderMap,
    query_token: Option<String>,
    peer: SocketAddr,
    endpoint: &str,
) -> Result<(), &'static str> {
    let msg = match presented(headers, query_token) {
        Presented::Header(t) if constant_time_eq(t.as_bytes(), s.token.as_bytes()) => return Ok(()),
        Presented::Query(t) if constant_time_eq(t.as_bytes(), s.token.as_bytes()) => return Ok(()),
        Presented::Header(_) | Presented::Query(_) => "wrong token",
        Presented::OtherScheme => "the Authorization header must be `Bearer <token>`",
        Presented::Nothing => "missing token: send `Authorization: Bearer <token>`",
    };
    if let Some(held_back) = s.refusals.allow(tokio::time::Instant::now()) {
        tracing::warn!(%peer, endpoint, reason = msg, held_back, "metrics push refused");
    }
    Err(msg)
}

fn unauthorized(msg: &str) -> Response {
    let mut res = error(StatusCode::UNAUTHORIZED, msg);
    res.headers_mut().insert(WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
    res
}

/// Reads at most `limit` bytes of body within the listener's body timeout: 413 beyond the
/// limit, 408 when it does not arrive in time.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<axum::body::Bytes, Response> {
    flotilla_listener::read_body(body, headers, limit, LIMITS.body_timeout).await.map_err(|e| {
        let msg = match e {
            BodyError::TooLarge => format!("body larger than {limit} bytes"),
            BodyError::TooSlow => format!("the body did not arrive within {:?}", LIMITS.body_timeout),
            BodyError::Broken => "could not read the request body".to_string(),
        };
        error(e.status(), msg)
    })
}

/// `POST /v1/groups/{group}/samples`.
async fn push_samples(
    State(s): State<Arc<Shared>>,
    Path(group): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    if s.stopped.load(Ordering::SeqCst) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let (parts, body) = req.into_parts();
    if let Err(msg) = authorize(&s, &parts.headers, None, peer, "samples") {
        let in_query = parts.uri.query().is_some_and(|q| q.split('&').any(|kv| kv.starts_with("token=")));
        if in_query && parts.headers.get(AUTHORIZATION).is_none() {
            return unauthorized(
                "this endpoint takes the token in the `Authorization: Bearer` header only (`?token=` is for the alarm webhook)",
            );
        }
        return unauthorized(msg);
    }
    if let Err(msg) = check_group(&group) {
        return error(StatusCode::BAD_REQUEST, msg);
    }
    let bytes = match read_body(body, &parts.headers, MAX_SAMPLES_BODY).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    let samples = match parse_samples(&bytes) {
        Ok(s) => s,
        Err(msg) => {
            tracing::debug!(%peer, %group, error = %msg, "metrics push rejected");
            return error(StatusCode::BAD_REQUEST, msg);
        }
    };
    let now = s.clock.now();
    let outcome = s.table().push(&group, samples, now);
    match outcome {
        Ok(o) => {
            if o.expired > 0 {
                tracing::warn!(
                    %peer, %group, expired = o.expired,
                    "pushed samples were older than max_age when they arrived (their at_ms); is the pushing host's clock behind?"
                );
            }
            tracing::debug!(%peer, %group, accepted = o.accepted, "metrics pushed");
            json(StatusCode::ACCEPTED, serde_json::json!({ "accepted": o.accepted, "expired": o.expired }))
        }
        Err(msg) => {
            tracing::warn!(%peer, %group, error = %msg, "metrics push refused: full");
            error(StatusCode::TOO_MANY_REQUESTS, msg)
        }
    }
}

/// `POST /v1/groups/{group}/alarm`: an Aodh webhook notification.
async fn push_alarm(
    State(s): State<Arc<Shared>>,
    Path(group): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    if s.stopped.load(Ordering::SeqCst) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let (parts, body) = req.into_parts();
    let query_token =
        Query::<HashMap<String, String>>::try_from_uri(&parts.uri).ok().and_then(|Query(mut q)| q.remove("token"));
    if let Err(msg) = authorize(&s, &parts.headers, query_token, peer, "alarm") {
        return unauthorized(msg);
    }
    if let Err(msg) = check_group(&group) {
        return error(StatusCode::BAD_REQUEST, msg);
    }
    let bytes = match read_body(body, &parts.headers, MAX_ALARM_BODY).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    let now = s.clock.now();
    let status = match parse_alarm(&bytes, now) {
        Ok(a) => a,
        Err(msg) => {
            tracing::debug!(%peer, %group, error = %msg, "alarm notification rejected");
            return error(StatusCode::BAD_REQUEST, msg);
        }
    };
    tracing::info!(
        %group,
        alarm_id = %status.alarm_id,
        alarm_name = status.alarm_name.as_deref().unwrap_or(""),
        current = %status.current,
        previous = status.previous.map(|p| p.as_str()).unwrap_or(""),
        "alarm notification"
    );
    let reply = serde_json::json!({ "group": group, "alarm_id": status.alarm_id, "current": status.current.as_str() });
    match s.table().set_alarm(&group, status, now) {
        Ok(()) => json(StatusCode::ACCEPTED, reply),
        Err(msg) => error(StatusCode::TOO_MANY_REQUESTS, msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert!(matches!(presented(&h, None), Presented::Nothing));
        assert!(matches!(presented(&h, Some("q".into())), Presented::Query(t) if t == "q"));
        h.insert(AUTHORIZATION, "bearer  tok ".parse().unwrap());
        assert!(matches!(presented(&h, Some("q".into())), Presented::Header("tok")));
        h.insert(AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
        assert!(matches!(presented(&h, None), Presented::OtherScheme));
        h.insert(AUTHORIZATION, "Bearer".parse().unwrap());
        assert!(matches!(presented(&h, None), Presented::OtherScheme));
    }
}
