//! A group's `balancer` section as written.

use std::time::Duration;

use serde::Deserialize;

/// A group's `balancer`: one listener, health checks, draining, retries, a wait queue.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a balancer mapping (`listen`, `mode`, `selection`, `health`, ...)")]
pub struct RawBalancer {
    /// Where the group's traffic arrives, e.g. `127.0.0.1:8000`.
    pub listen: String,
    /// `http` (reverse proxy, the default) or `tcp` (L4: bytes are forwarded as they are).
    #[serde(default)]
    pub mode: flotilla_lb::Mode,
    /// `least-outstanding` (default), `round-robin` or `weighted`.
    #[serde(default)]
    pub selection: flotilla_lb::Selection,
    /// Active health checks; a member gets traffic only after passing them.
    #[serde(default)]
    pub health: RawHealth,
    /// How long a request may wait for a healthy member before it gets 503.
    #[serde(default = "default_queue_timeout", with = "flotilla_duration")]
    pub queue_timeout: Duration,
    /// How long a member that took a request may take to start answering it; then the client gets
    /// 504 (1s to 1h, default 60s).
    #[serde(default = "default_response_timeout", with = "flotilla_duration")]
    pub response_timeout: Duration,
    /// How many requests may wait at once; more get 503 at once.
    #[serde(default = "default_queue_limit")]
    pub queue_limit: usize,
    /// Extra attempts on other members for a request that could not be sent (or an idempotent one
    /// whose member failed before answering), 0 to 10.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Believe the client's `X-Forwarded-For`, `Forwarded` and `X-Real-IP` (set it when a proxy
    /// you run is the only client). Default false: they are dropped and replaced by the address
    /// the connection came from.
    #[serde(default)]
    pub trust_forwarded: bool,
}

/// A balancer's `health`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a health mapping (`path`, `interval`, `timeout`, `rise`, `fall`, `replace`, `grace`, `replace_after`)"
)]
pub struct RawHealth {
    /// HTTP path that must answer 2xx (http mode); tcp mode checks that a connection opens.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Time between checks.
    #[serde(default = "default_health_interval", with = "flotilla_duration")]
    pub interval: Duration,
    /// How long one check may take.
    #[serde(default = "default_health_timeout", with = "flotilla_duration")]
    pub timeout: Duration,
    /// Consecutive passes before a member gets traffic.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures before it stops getting traffic.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Replace a member that keeps failing (default true): new before old, at most the
    /// rollout's `max_unavailable` (else 1) at a time.
    #[serde(default = "default_replace")]
    pub replace: bool,
    /// A member is never judged before it is this old (AWS's health-check grace period).
    #[serde(default = "default_grace", with = "flotilla_duration")]
    pub grace: Duration,
    /// How long a member must fail its check, once past its grace, before it is replaced.
    #[serde(default = "default_replace_after", with = "flotilla_duration")]
    pub replace_after: Duration,
}

impl Default for RawHealth {
    fn default() -> Self {
        RawHealth {
            path: default_health_path(),
            interval: default_health_interval(),
            timeout: default_health_timeout(),
            rise: default_rise(),
            fall: default_fall(),
            replace: default_replace(),
            grace: default_grace(),
            replace_after: default_replace_after(),
        }
    }
}

pub fn default_queue_timeout() -> Duration {
    Duration::from_secs(30)
}

pub fn default_queue_limit() -> usize {
    1024
}

pub fn default_retries() -> u32 {
    3
}

pub fn default_health_path() -> String {
    "/healthz".to_string()
}

pub fn default_health_interval() -> Duration {
    Duration::from_secs(1)
}

pub fn default_health_timeout() -> Duration {
    Duration::from_secs(1)
}

pub fn default_rise() -> u32 {
    1
}

pub fn default_fall() -> u32 {
    2
}

pub fn default_replace() -> bool {
    true
}

pub fn default_grace() -> Duration {
    Duration::from_secs(300)
}

pub fn default_replace_after() -> Duration {
    Duration::from_secs(60)
}

pub fn default_response_timeout() -> Duration {
    Duration::from_secs(60)
}
