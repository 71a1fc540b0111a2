//! The CLI's way to a running daemon: its REST API, found through the state directory (`api.url`,
//! written by `flotilla run` while it serves and holds the directory's lock) or named (`--api`,
//! `FLOTILLA_API`), with a bearer token from `FLOTILLA_API_TOKEN` or a file (`--token-file`,
//! `FLOTILLA_API_TOKEN_FILE`). With no daemon, the verbs that can work on the store alone do.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;

use crate::cli::DaemonArgs;
use crate::state_dir::{self, Claim, Claimed};

/// The file in the state directory that says where the daemon's API answers.
pub const URL_FILE: &str = "api.url";

/// Says where this daemon's API answers (`url` as it logs it; an unspecified listen address is
/// reached on loopback).
pub fn advertise(state_dir: &Path, url: &str) -> std::io::Result<()> {
    let url = url.replacen("://0.0.0.0:", "://127.0.0.1:", 1).replacen("://[::]:", "://[::1]:", 1);
    state_dir::write_private(&state_dir.join(URL_FILE), format!("{url}\n").as_bytes())
}

/// The daemon no longer answers there.
pub fn withdraw(state_dir: &Path) {
    let _ = std::fs::remove_file(state_dir.join(URL_FILE));
}

/// Where a verb goes: the running daemon, or the store (with the directory's lock held, so no
/// daemon starts while the verb writes).
pub enum Target {
    Daemon(Daemon),
    Offline(Claim),
}

/// For a read: the daemon named, or the one whose address the state directory holds (a file left by
/// a killed daemon leads to an unreachable address, which the caller reports and reads the store).
/// Never takes the directory's lock, so a read cannot stop a daemon from starting.
pub fn find_for_read(state_dir: &Path, args: &DaemonArgs) -> anyhow::Result<Option<Daemon>> {
    let token = token(args)?;
    if let Some(url) = args.api.as_deref().filter(|u| !u.is_empty()) {
        return Ok(Some(Daemon::new(url, token, args)?));
    }
    match std::fs::read_to_string(state_dir.join(URL_FILE)) {
        Ok(url) => Ok(Some(Daemon::new(url.trim(), token, args)?)),
        Err(_) => Ok(None),
    }
}

/// For a change: the daemon named or running on `state_dir`, else the directory claimed (held for
/// milliseconds; a daemon starting meanwhile waits for it).
pub fn find(state_dir: &Path, args: &DaemonArgs) -> anyhow::Result<Target> {
    let token = token(args)?;
    if let Some(url) = args.api.as_deref().filter(|u| !u.is_empty()) {
        return Ok(Target::Daemon(Daemon::new(url, token, args)?));
    }
    match state_dir::claim(state_dir)? {
        Claimed::Ours(claim) => Ok(Target::Offline(claim)),
        Claimed::Held(pid) => {
            let who = pid.map_or_else(|| "a flotilla".to_string(), |p| format!("a flotilla (pid {p})"));
            match std::fs::read_to_string(state_dir.join(URL_FILE)) {
                Ok(url) => Ok(Target::Daemon(Daemon::new(url.trim(), token, args)?)),
                Err(_) => bail!(
                    "{who} runs on {} without an API: give its config an `api:` section to steer it while it runs, \
                     or stop it first",
                    state_dir.display()
                ),
            }
        }
    }
}

/// The token: `FLOTILLA_API_TOKEN`, else the token file (the token alone, or a tokens-file line
/// `admin <token>`); a file others may read is refused, as ssh refuses such a key.
fn token(args: &DaemonArgs) -> anyhow::Result<Option<String>> {
    if let Some(t) = std::env::var("FLOTILLA_API_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        return Ok(Some(t.trim().to_string()));
    }
    let Some(path) = &args.token_file else { return Ok(None) };
    let meta = std::fs::metadata(path).with_context(|| format!("--token-file: cannot read {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!("--token-file: {} may be read by others: chmod 600 it", path.display());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--token-file: cannot read {}", path.display()))?;
    let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
    match line.and_then(|l| l.split_whitespace().last()) {
        Some(t) => Ok(Some(t.to_string())),
        None => bail!("--token-file: {} holds no token", path.display()),
    }
}

/// An error with its causes (reqwest's own message hides why a TLS handshake failed).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A running daemon's API.
pub struct Daemon {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// What the API said when it did not do what was asked.
#[derive(Debug)]
pub enum CallError {
    /// Not reachable (not running any more, wrong address).
    Unreachable(String),
    /// It answered with a problem (401, 403, 404, 409, ...).
    Refused { status: u16, detail: String },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "the daemon's API does not answer: {e}"),
            CallError::Refused { status: s @ (401 | 403), detail } => write!(
                f,
                "the daemon refused ({s}): {detail}; give a token with FLOTILLA_API_TOKEN or --token-file{}",
                if *s == 403 { " (this needs an admin token)" } else { "" }
            ),
            CallError::Refused { status, detail } => write!(f, "the daemon refused ({status}): {detail}"),
        }
    }
}

impl std::error::Error for CallError {}

impl Daemon {
    fn new(url: &str, token: Option<String>, args: &DaemonArgs) -> anyhow::Result<Daemon> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("the API address {url:?} is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("the API address {url:?} is not http(s)");
        }
        // TLS verification stays on (rustls with the webpki roots), plus the certificate given.
        let mut http =
            reqwest::Client::builder().timeout(Duration::from_secs(15)).connect_timeout(Duration::from_secs(3));
        if let Some(ca) = &args.ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("--ca-file: cannot read {}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--ca-file: {} is not a PEM certificate", ca.display()))?;
            if certs.is_empty() {
                bail!("--ca-file: {} holds no certificate", ca.display());
            }
            for c in certs {
                http = http.add_root_certificate(c);
            }
        }
        let http = http.build().context("cannot build the HTTP client")?;
        Ok(Daemon { base: url.trim_end_matches('/').to_string(), token, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `method path` under `/api/v1`, with a JSON body; the answer parsed as `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, CallError> {
        let mut req = self.http.request(method, format!("{}/api/v1{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.map_err(|e| CallError::Unreachable(chain(&e.without_url())))?;
        let status = res.status().as_u16();
        let bytes = res.bytes().await.map_err(|e| CallError::Unreachable(e.without_url().to_string()))?;
        if !(200..300).contains(&status) {
            let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["detail"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
            return Err(CallError::Refused { status, detail });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| CallError::Refused { status, detail: format!("unreadable answer: {e}") })
    }
}
