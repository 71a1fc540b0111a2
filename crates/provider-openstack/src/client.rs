//! The REST client: Keystone v3 tokens, the service catalog, Nova microversions, error mapping.
//!
//! One [`Cloud`] per set of credentials, cheap to clone (an `Arc`). Every HTTP request goes through
//! [`Cloud::request`], which adds the token (re-issued five minutes before it expires, and once on
//! a 401), the compute microversion header, counts the call, and turns a failure into a
//! [`SeamError`] whose kind the control loop can act on and whose message names the request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flotilla_model::{ErrorKind, SeamError};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Method;
use serde_json::{json, Value};

use crate::config::{AuthMethod, CloudConfig, NamedRef};
use crate::util::{clip, parse_iso8601_ms, wall_ms};

/// The compute microversion Flotilla asks for at most. Lower ones are used when the cloud offers
/// less: tags need 2.26 (filters) / 2.52 (at create), `createImage` returns the image id from 2.45,
/// diagnostics are standardised from 2.48, the flavor is embedded in servers from 2.47.
pub const WANTED_COMPUTE_MICROVERSION: Microversion = Microversion(2, 96);

/// A compute API microversion `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Microversion(pub u16, pub u16);

impl Microversion {
    pub fn parse(s: &str) -> Option<Microversion> {
        let (a, b) = s.trim().split_once('.')?;
        Some(Microversion(a.parse().ok()?, b.parse().ok()?))
    }
    /// At least `minor` (within major 2).
    pub fn at_least(self, minor: u16) -> bool {
        self >= Microversion(2, minor)
    }
}

impl std::fmt::Display for Microversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// The OpenStack services Flotilla talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    Compute,
    Network,
    Image,
    /// Aodh (alarms), paths under `/v2`.
    Alarming,
    /// Octavia (load balancers), paths under `/v2`.
    LoadBalancer,
}

impl Service {
    /// The catalog type.
    pub fn catalog_type(self) -> &'static str {
        match self {
            Service::Compute => "compute",
            Service::Network => "network",
            Service::Image => "image",
            Service::Alarming => "alarming",
            Service::LoadBalancer => "load-balancer",
        }
    }
}

/// A successful reply: status, headers, JSON body (`Null` when empty, a string when not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

struct Session {
    token: String,
    expires_ms: u64,
    issued_ms: u64,
    project_id: String,
    endpoints: BTreeMap<Service, String>,
}

struct Inner {
    config: CloudConfig,
    http: reqwest::Client,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    calls: AtomicU64,
    compute_version: Microversion,
    neutron_extensions: tokio::sync::OnceCell<Vec<String>>,
    /// Neutron refused tags in a create body once (despite `tag-creation`): tag afterwards.
    no_inline_tags: AtomicBool,
}

/// An authenticated connection to one cloud. Clones share the token and the call counter.
#[derive(Clone)]
pub struct Cloud {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloud")
            .field("name", &self.inner.config.name)
            .field("compute_microversion", &self.inner.compute_version)
            .finish_non_exhaustive()
    }
}

static INSECURE_WARNED: AtomicBool = AtomicBool::new(false);
static PLAIN_HTTP_WARNED: AtomicBool = AtomicBool::new(false);

/// Same scheme, host and port: where a request may be redirected with its token.
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

/// A plain-HTTP Keystone that is not on this host: passwords and tokens cross the network in clear.
fn plain_http_beyond_loopback(auth_url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(auth_url) else { return false };
    let host = u.host_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    u.scheme() == "http" && !loopback
}

impl Cloud {
    /// Authenticates (so bad credentials fail here, with a clear message) and negotiates the
    /// compute microversion. Two API calls.
    pub async fn connect(config: CloudConfig) -> Result<Cloud, SeamError> {
        let http = build_http(&config)?;
        let mut inner = Inner {
            config,
            http,
            session: tokio::sync::Mutex::new(None),
            calls: AtomicU64::new(0),
            compute_version: Microversion(2, 1),
            neutron_extensions: tokio::sync::OnceCell::new(),
            no_inline_tags: AtomicBool::new(false),
        };
        let session = authenticate(&inner).await?;
        let compute = session.endpoints.get(&Service::Compute).cloned();
        *inner.session.get_mut() = Some(Arc::new(session));
        if let Some(url) = compute {
            inner.compute_version = negotiate(&inner, &url).await;
        }
        tracing::debug!(cloud = %inner.config.name, microversion = %inner.compute_version, "connected");
        Ok(Cloud { inner: Arc::new(inner) })
    }

    /// Loads `cloud` the standard way ([`CloudConfig::load`]) and connects.
    pub async fn from_env(cloud: Option<&str>) -> Result<Cloud, SeamError> {
        Cloud::connect(CloudConfig::load(cloud)?).await
    }

    pub fn config(&self) -> &CloudConfig {
        &self.inner.config
    }

    /// HTTP requests made so far by this connection and its clones (token requests included).
    pub fn api_calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// The compute microversion in use.
    pub fn compute_microversion(&self) -> Microversion {
        self.inner.compute_version
    }

    /// The project the token is scoped to.
    pub async fn project_id(&self) -> Result<String, SeamError> {
        Ok(self.session().await?.project_id.clone())
    }

    /// The catalog URL of `service` (network and image with their version: `/v2.0`, `/v2`).
    pub async fn endpoint(&self, service: Service) -> Result<String, SeamError> {
        let s = self.session().await?;
        s.endpoints.get(&service).cloned().ok_or_else(|| {
            SeamError::invalid(format!(
                "the service catalog of cloud {} has no {} endpoint for interface {}{}",
                self.inner.config.name,
                service.catalog_type(),
                self.inner.config.interface,
                self.inner.config.region.as_ref().map(|r| format!(" in region {r}")).unwrap_or_default()
            ))
        })
    }

    /// Neutron extension aliases (fetched once).
    pub async fn neutron_has(&self, alias: &str) -> Result<bool, SeamError> {
        let exts = self
            .inner
            .neutron_extensions
            .get_or_try_init(|| async {
                let r = self.request(Service::Network, Method::GET, "/extensions", None).await?;
                Ok::<_, SeamError>(
                    r.body["extensions"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|e| e["alias"].as_str().map(str::to_string)).collect())
                        .unwrap_or_default(),
                )
            })
            .await?;
        Ok(exts.iter().any(|a| a == alias))
    }

    pub(crate) fn inline_tags_refused(&self) -> bool {
        self.inner.no_inline_tags.load(Ordering::Relaxed)
    }

    pub(crate) fn refuse_inline_tags(&self) {
        self.inner.no_inline_tags.store(true, Ordering::Relaxed);
    }

    async fn session(&self) -> Result<Arc<Session>, SeamError> {
        let mut guard = self.inner.session.lock().await;
        if let Some(s) = guard.as_ref() {
            let lifetime = s.expires_ms.saturating_sub(s.issued_ms);
            let margin = (lifetime / 4).min(300_000);
            if wall_ms() + margin < s.expires_ms {
                return Ok(s.clone());
            }
            tracing::debug!(cloud = %self.inner.config.name, "token near expiry: re-issuing");
        }
        let s = Arc::new(authenticate(&self.inner).await?);
        *guard = Some(s.clone());
        Ok(s)
    }

    /// Test hook: replaces the token with a wrong one (same expiry), so the next call gets a 401
    /// and must re-issue it.
    #[doc(hidden)]
    pub async fn poison_token(&self) {
        let mut guard = self.inner.session.lock().await;
        if let Some(s) = guard.as_ref() {
            let bad = Session {
                token: "gAAAAA-not-a-token".into(),
                expires_ms: s.expires_ms,
                issued_ms: s.issued_ms,
                project_id: s.project_id.clone(),
                endpoints: s.endpoints.clone(),
            };
            *guard = Some(Arc::new(bad));
        }
    }

    async fn drop_session(&self, stale: &Arc<Session>) {
        let mut guard = self.inner.session.lock().await;
        if guard.as_ref().is_some_and(|s| Arc::ptr_eq(s, stale)) {
            *guard = None;
        }
    }

    /// One API call. `path` is relative to the service's endpoint (with its query string);
    /// non-2xx answers become errors (see the crate docs for the kinds). A 401 re-issues the token
    /// and repeats the call once; a GET/PUT/DELETE that could not be sent is repeated once.
    pub async fn request(
        &self,
        service: Service,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, SeamError> {
        let mut reauthed = false;
        let mut resent = false;
        loop {
            let session = self.session().await?;
            let base = session.endpoints.get(&service).cloned();
            let Some(base) = base else {
                return Err(self.endpoint(service).await.err().unwrap_or_else(|| SeamError::bug("endpoint vanished")));
            };
            let url = format!("{}{}", base.trim_end_matches('/'), path);
            let mut rb = self
                .inner
                .http
                .request(method.clone(), &url)
                .header("X-Auth-Token", session.token.as_str())
                .header("Accept", "application/json");
            if service == Service::Compute {
                let v = self.inner.compute_version.to_string();
                rb = rb
                    .header("OpenStack-API-Version", format!("compute {v}"))
                    .header("X-OpenStack-Nova-API-Version", v);
            }
            if let Some(b) = body {
                rb = rb.json(b);
            }
            self.inner.calls.fetch_add(1, Ordering::Relaxed);
            let what = format!("{method} {} {path}", service.catalog_type());
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) => {
                    let idempotent = matches!(method, Method::GET | Method::PUT | Method::DELETE | Method::HEAD);
                    if idempotent && !resent && e.is_connect() {
                        resent = true;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    return Err(transport_error(&what, &url, &e));
                }
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let text = resp.text().await.map_err(|e| transport_error(&what, &url, &e))?;
            if status == 401 && !reauthed {
                reauthed = true;
                tracing::info!(cloud = %self.inner.config.name, "token refused (401): re-issuing it once");
                self.drop_session(&session).await;
                continue;
            }
            if !(200..300).contains(&status) {
                return Err(status_error(&what, status, &text, &headers));
            }
            let body = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            };
            return Ok(Reply { status, headers, body });
        }
    }

    pub async fn get(&self, service: Service, path: &str) -> Result<Value, SeamError> {
        Ok(self.request(service, Method::GET, path, None).await?.body)
    }

    /// GET that answers `None` for a 404.
    pub async fn get_opt(&self, service: Service, path: &str) -> Result<Option<Value>, SeamError> {
        match self.get(service, path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn post(&self, service: Service, path: &str, body: &Value) -> Result<Reply, SeamError> {
        self.request(service, Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, service: Service, path: &str, body: Option<&Value>) -> Result<Reply, SeamError> {
        self.request(service, Method::PUT, path, body).await
    }

    /// DELETE; a 404 (already gone) is success.
    pub async fn delete(&self, service: Service, path: &str) -> Result<(), SeamError> {
        match self.request(service, Method::DELETE, path, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn build_http(config: &CloudConfig) -> Result<reqwest::Client, SeamError> {
    if plain_http_beyond_loopback(&config.identity_v3()) && !PLAIN_HTTP_WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            cloud = %config.name, auth_url = %config.identity_v3(),
            "Keystone is reached over plain http: the password and every token cross the network unencrypted"
        );
    }
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        // A redirect keeps the X-Auth-Token header, so it is followed only within the same origin;
        // one to another host comes back as it is.
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let same = attempt.previous().last().is_some_and(|prev| same_origin(prev, attempt.url()));
            if same && attempt.previous().len() <= 5 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("flotilla-provider-openstack/", env!("CARGO_PKG_VERSION")));
    if !config.verify {
        if !INSECURE_WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                cloud = %config.name,
                "TLS certificate verification is OFF for this cloud (verify: false): anyone on the path can read the credentials"
            );
        }
        b = b.danger_accept_invalid_certs(true);
    }
    if let Some(ca) = &config.cacert {
        let pem = std::fs::read(ca)
            .map_err(|e| SeamError::invalid(format!("cacert {} of cloud {}: {e}", ca.display(), config.name)))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            SeamError::invalid(format!("cacert {} of cloud {} is not a PEM bundle: {e}", ca.display(), config.name))
        })?;
        if certs.is_empty() {
            return Err(SeamError::invalid(format!(
                "cacert {} of cloud {} holds no certificate",
                ca.display(),
                config.name
            )));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| SeamError::invalid(format!("cannot build the HTTP client: {e}")))
}

fn named_json(r: &NamedRef, with_domain: bool) -> Value {
    let mut o = serde_json::Map::new();
    if let Some(id) = &r.id {
        o.insert("id".into(), json!(id));
    } else if let Some(n) = &r.name {
        o.insert("name".into(), json!(n));
        if with_domain {
            let d = match (&r.domain_id, &r.domain_name) {
                (Some(id), _) => json!({ "id": id }),
                (None, Some(n)) => json!({ "name": n }),
                (None, None) => json!({ "id": "default" }),
            };
            o.insert("domain".into(), d);
        }
    }
    Value::Object(o)
}

fn auth_body(auth: &AuthMethod) -> Value {
    match auth {
        AuthMethod::Password { user, password, project } => {
            let mut u = named_json(user, true);
            u["password"] = json!(password);
            json!({ "auth": {
                "identity": { "methods": ["password"], "password": { "user": u } },
                "scope": { "project": named_json(project, true) }
            }})
        }
        AuthMethod::ApplicationCredential { id, name, user, secret } => {
            let mut ac = serde_json::Map::new();
            if let Some(id) = id {
                ac.insert("id".into(), json!(id));
            } else {
                ac.insert("name".into(), json!(name));
                ac.insert("user".into(), named_json(user, true));
            }
            ac.insert("secret".into(), json!(secret));
            json!({ "auth": { "identity": {
                "methods": ["application_credential"],
                "application_credential": Value::Object(ac)
            }}})
        }
    }
}

async fn authenticate(inner: &Inner) -> Result<Session, SeamError> {
    let cfg = &inner.config;
    let url = format!("{}/auth/tokens", cfg.identity_v3());
    inner.calls.fetch_add(1, Ordering::Relaxed);
    let resp = inner.http.post(&url).json(&auth_body(&cfg.auth)).send().await.map_err(|e| {
        let mut m = format!("cannot reach Keystone at {} (cloud {}): {}", cfg.identity_v3(), cfg.name, chain(&e));
        if e.is_timeout() {
            m.push_str(" (timed out)");
        }
        SeamError::transient(m)
    })?;
    let status = resp.status().as_u16();
    let token = resp.headers().get("X-Subject-Token").and_then(|v| v.to_str().ok()).map(str::to_string);
    let text = resp.text().await.unwrap_or_default();
    if status == 401 {
        return Err(SeamError::invalid(format!(
            "Keystone at {} refused the credentials of {} (cloud {}, from {}): wrong username or password, or no access to the project (HTTP 401: {})",
            cfg.identity_v3(),
            cfg.who(),
            cfg.name,
            cfg.source,
            error_text(&text)
        )));
    }
    if status == 404 {
        return Err(SeamError::invalid(format!(
            "{} is not a Keystone v3 endpoint (POST /auth/tokens answered 404); check auth_url of cloud {}",
            cfg.identity_v3(),
            cfg.name
        )));
    }
    if !(200..300).contains(&status) {
        let e = status_error(&format!("POST identity {url}"), status, &text, &HeaderMap::new());
        return Err(e.context(format!("Keystone authentication for cloud {}", cfg.name)));
    }
    let token = token.ok_or_else(|| SeamError::bug("Keystone answered without X-Subject-Token"))?;
    let body: Value = serde_json::from_str(&text)
        .map_err(|e| SeamError::transient(format!("Keystone at {} answered non-JSON: {e}", cfg.identity_v3())))?;
    let t = &body["token"];
    let now = wall_ms();
    let expires_ms = t["expires_at"].as_str().and_then(parse_iso8601_ms).unwrap_or(now + 3_600_000);
    let project_id = t["project"]["id"].as_str().unwrap_or_default().to_string();
    if project_id.is_empty() {
        return Err(SeamError::invalid(format!(
            "Keystone issued {} an unscoped token (cloud {}): set project_name/project_id",
            cfg.who(),
            cfg.name
        )));
    }
    let mut endpoints = BTreeMap::new();
    let catalog = t["catalog"].as_array().cloned().unwrap_or_default();
    for svc in [Service::Compute, Service::Network, Service::Image, Service::Alarming, Service::LoadBalancer] {
        let entry = catalog.iter().find(|e| e["type"] == svc.catalog_type());
        let Some(entry) = entry else { continue };
        let eps = entry["endpoints"].as_array().cloned().unwrap_or_default();
        let pick = eps.iter().find(|ep| {
            ep["interface"].as_str() == Some(cfg.interface.as_str())
                && cfg.region.as_ref().is_none_or(|r| {
                    ep["region_id"].as_str() == Some(r.as_str()) || ep["region"].as_str() == Some(r.as_str())
                })
        });
        if let Some(u) = pick.and_then(|ep| ep["url"].as_str()) {
            let u = u.trim_end_matches('/').to_string();
            let u = match svc {
                Service::Network if !u.ends_with("/v2.0") => format!("{u}/v2.0"),
                Service::Image | Service::Alarming | Service::LoadBalancer if !u.ends_with("/v2") => {
                    format!("{u}/v2")
                }
                _ => u,
            };
            endpoints.insert(svc, u);
        }
    }
    tracing::debug!(cloud = %cfg.name, expires_at = t["expires_at"].as_str().unwrap_or(""), "token issued");
    Ok(Session { token, expires_ms, issued_ms: now, project_id, endpoints })
}

/// GET of the compute version document; the newest microversion both sides know.
async fn negotiate(inner: &Inner, compute_url: &str) -> Microversion {
    // The version document lives at `.../v2.1/` (a project id after it would be a different resource).
    let root = match compute_url.find("/v2.1") {
        Some(i) => format!("{}/", &compute_url[..i + 5]),
        None => format!("{}/", compute_url.trim_end_matches('/')),
    };
    inner.calls.fetch_add(1, Ordering::Relaxed);
    let got = async {
        let r = inner.http.get(&root).header("Accept", "application/json").send().await.ok()?;
        let v: Value = r.json().await.ok()?;
        let max = v["version"]["version"].as_str().and_then(Microversion::parse)?;
        Some(max)
    }
    .await;
    match got {
        Some(max) => max.min(WANTED_COMPUTE_MICROVERSION),
        None => {
            tracing::warn!(url = %root, "could not read the compute version document: using microversion 2.1 (no tags)");
            Microversion(2, 1)
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn transport_error(what: &str, url: &str, e: &reqwest::Error) -> SeamError {
    let kind = if e.is_decode() || e.is_builder() { ErrorKind::Bug } else { ErrorKind::Transient };
    let host = url.split('/').take(3).collect::<Vec<_>>().join("/");
    SeamError::new(kind, format!("{what}: cannot reach {host}: {}", chain(e)))
}

/// The human part of an OpenStack error body: Nova `{"itemNotFound": {"message": ..}}`, Neutron
/// `{"NeutronError": {"message": ..}}`, Keystone `{"error": {"message": ..}}`, Glance HTML/text.
pub(crate) fn error_text(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        if let Some(m) = v["message"].as_str() {
            return clip(m, 400);
        }
        if let Some(o) = v.as_object() {
            for (_, inner) in o {
                if let Some(m) = inner["message"].as_str() {
                    return clip(m, 400);
                }
                if let Some(m) = inner.as_str() {
                    return clip(m, 400);
                }
            }
        }
        return clip(&v.to_string(), 400);
    }
    // Strip tags from an HTML page (Glance, proxies).
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    clip(&out.split_whitespace().collect::<Vec<_>>().join(" "), 400)
}

fn is_quota(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("quota") || m.contains("overlimit") || m.contains("over limit") || m.contains("exceeded")
}

/// Maps an HTTP failure to a kind: 400 → Invalid, 401/403 → Invalid (403 naming a quota → Quota),
/// 404 → NotFound, 409 → Conflict (naming a quota → Quota), 413 → Quota (429 with it → Transient),
/// 429/5xx → Transient.
pub(crate) fn status_error(what: &str, status: u16, body: &str, headers: &HeaderMap) -> SeamError {
    let msg = error_text(body);
    let kind = match status {
        400 | 422 => ErrorKind::Invalid,
        401 => ErrorKind::Invalid,
        403 if is_quota(&msg) => ErrorKind::Quota,
        403 => ErrorKind::Invalid,
        404 => ErrorKind::NotFound,
        409 if is_quota(&msg) => ErrorKind::Quota,
        409 => ErrorKind::Conflict,
        413 if headers.get("Retry-After").is_some() && !is_quota(&msg) => ErrorKind::Transient,
        413 => ErrorKind::Quota,
        429 => ErrorKind::Transient,
        500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Bug,
    };
    let label = match kind {
        ErrorKind::Quota => "quota exceeded: ",
        _ if status == 403 => "forbidden: ",
        _ => "",
    };
    let req = headers.get("x-openstack-request-id").or_else(|| headers.get("x-compute-request-id"));
    let req = req.and_then(|v: &HeaderValue| v.to_str().ok()).map(|r| format!(" [{r}]")).unwrap_or_default();
    SeamError::new(kind, format!("{what}: HTTP {status}: {label}{msg}{req}"))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `?k=v&k2=v2` with the values encoded (empty for no pairs).
pub fn query(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let q: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
    format!("?{}", q.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_statuses() {
        let h = HeaderMap::new();
        let q = status_error(
            "POST compute /servers",
            403,
            r#"{"forbidden": {"code": 403, "message": "Quota exceeded for instances: Requested 1, but already used 1 of 1 instances"}}"#,
            &h,
        );
        assert_eq!(q.kind, ErrorKind::Quota);
        assert!(q.message.contains("quota exceeded: Quota exceeded for instances"), "{q}");
        let n = status_error(
            "GET",
            404,
            r#"{"itemNotFound": {"code": 404, "message": "Flavor x could not be found."}}"#,
            &h,
        );
        assert_eq!(n.kind, ErrorKind::NotFound);
        assert!(n.message.ends_with("Flavor x could not be found."));
        let c = status_error(
            "POST",
            409,
            r#"{"NeutronError": {"type": "OverQuota", "message": "Quota exceeded for resources: ['floatingip'].", "detail": ""}}"#,
            &h,
        );
        assert_eq!(c.kind, ErrorKind::Quota);
        assert_eq!(
            status_error("PUT", 409, r#"{"conflictingRequest": {"message": "busy"}}"#, &h).kind,
            ErrorKind::Conflict
        );
        assert_eq!(status_error("GET", 503, "<html><h1>503</h1> down</html>", &h).kind, ErrorKind::Transient);
        assert_eq!(error_text("<html><body><h1>404 Not Found</h1>gone</body></html>"), "404 Not Found gone");
    }

    #[test]
    fn encodes_queries_and_versions() {
        assert_eq!(
            query(&[("tags", "flotilla:group=a b"), ("name", "^x$")]),
            "?tags=flotilla%3Agroup%3Da%20b&name=%5Ex%24"
        );
        assert_eq!(Microversion::parse("2.100"), Some(Microversion(2, 100)));
        assert!(Microversion(2, 100) > Microversion(2, 96));
        assert!(Microversion(2, 52).at_least(26));
    }

    #[test]
    fn tls_settings_are_checked() {
        let mut c = test_cloud("https://keystone.invalid:5000/v3");
        c.verify = false;
        assert!(build_http(&c).is_ok(), "verify: false builds (with a warning)");
        c.cacert = Some("/nonexistent/ca.pem".into());
        let e = build_http(&c).unwrap_err();
        assert!(e.message.contains("cacert /nonexistent/ca.pem of cloud x"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate").unwrap();
        c.cacert = Some(f);
        assert!(build_http(&c).is_err());
    }

    /// A cloud with an application credential, verifying TLS.
    fn test_cloud(auth_url: &str) -> CloudConfig {
        CloudConfig {
            name: "x".into(),
            source: "test".into(),
            auth_url: auth_url.into(),
            auth: AuthMethod::ApplicationCredential {
                id: Some("a".into()),
                name: None,
                user: NamedRef::default(),
                secret: "s".into(),
            },
            region: None,
            interface: "public".into(),
            verify: true,
            cacert: None,
        }
    }

    #[test]
    fn plain_http_is_flagged_beyond_loopback_only() {
        assert!(plain_http_beyond_loopback("http://keystone.example:5000/v3"));
        assert!(plain_http_beyond_loopback("http://10.0.0.5/identity/v3"));
        assert!(!plain_http_beyond_loopback("http://127.0.0.1:5000/v3"));
        assert!(!plain_http_beyond_loopback("http://localhost:5000/v3"));
        assert!(!plain_http_beyond_loopback("https://keystone.example:5000/v3"));
    }

    /// A token-bearing request redirected to another origin is not followed: the other host never
    /// sees the token. Within one origin redirects are followed.
    #[tokio::test]
    async fn a_token_never_follows_a_redirect_to_another_host() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        async fn server(reply: String) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let _ = tx.send(String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase());
                    let _ = s.write_all(reply.replace("{port}", &port.to_string()).as_bytes()).await;
                }
            });
            (port, rx)
        }
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_string();
        let (other, mut other_seen) = server(ok.clone()).await;
        // `localhost` is another origin than `127.0.0.1`, though the same machine.
        let away = format!("HTTP/1.1 302 Found\r\nlocation: http://localhost:{other}/stolen\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        let (first, _) = server(away).await;
        let c = test_cloud("http://127.0.0.1:1/v3");
        let http = build_http(&c).unwrap();
        let r = http
            .get(format!("http://127.0.0.1:{first}/servers"))
            .header("X-Auth-Token", "secret-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "handed back, not followed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(other_seen.try_recv().is_err(), "the other host saw no request at all");

        let here =
            "HTTP/1.1 302 Found\r\nlocation: /moved\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n".to_string();
        let (same, mut seen) = server(here).await;
        let _ = http.get(format!("http://127.0.0.1:{same}/servers")).header("X-Auth-Token", "t").send().await.unwrap();
        let _first = seen.recv().await.unwrap();
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), seen.recv()).await.unwrap().unwrap();
        assert!(second.starts_with("get /moved") && second.contains("x-auth-token: t"), "{second}");
    }

    #[test]
    fn auth_bodies_carry_scope() {
        let b = auth_body(&AuthMethod::Password {
            user: NamedRef { name: Some("demo".into()), domain_name: Some("Default".into()), ..Default::default() },
            password: "pw".into(),
            project: NamedRef { id: Some("p1".into()), ..Default::default() },
        });
        assert_eq!(b["auth"]["identity"]["password"]["user"]["domain"]["name"], "Default");
        assert_eq!(b["auth"]["scope"]["project"]["id"], "p1");
        let a = auth_body(&AuthMethod::ApplicationCredential {
            id: Some("ac".into()),
            name: None,
            user: NamedRef::default(),
            secret: "s".into(),
        });
        assert_eq!(a["auth"]["identity"]["application_credential"]["id"], "ac");
        assert!(a["auth"].get("scope").is_none());
    }
}
