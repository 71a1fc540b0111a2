//! Balancer configuration: one [`LbConfig`] per group (one listener, one backend set).

use std::net::SocketAddr;
use std::time::Duration;

/// What the listener speaks: one enum for the config (`mode: tcp`), the CLI (`--mode tcp`) and the
/// engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// HTTP/1.1 reverse proxy (keep-alive both sides, retries, per-request metrics).
    #[default]
    Http,
    /// Plain TCP (L4): one backend connection per client connection; in-flight = open connections.
    Tcp,
}

/// How the next backend is chosen among the eligible ones (healthy, not draining). One enum for the
/// config (`selection: round-robin`), the CLI and the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// Fewest requests in flight (weight-scaled); ties rotate.
    #[default]
    LeastOutstanding,
    /// Strict rotation, ignoring weights.
    RoundRobin,
    /// Rotation in proportion to weights.
    Weighted,
}

/// Reads a name as the config does (serde's variant names), so the CLI and the file accept the
/// same words and say the same thing about a wrong one.
fn by_name<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    use serde::de::IntoDeserializer;
    T::deserialize(s.into_deserializer()).map_err(|e: serde::de::value::Error| e.to_string())
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        by_name(s)
    }
}

impl std::str::FromStr for Selection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        by_name(s)
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn names_parse_as_in_the_config() {
        assert_eq!("tcp".parse::<Mode>(), Ok(Mode::Tcp));
        assert_eq!("round-robin".parse::<Selection>(), Ok(Selection::RoundRobin));
        assert_eq!("least-outstanding".parse::<Selection>(), Ok(Selection::LeastOutstanding));
        let e = "udp".parse::<Mode>().unwrap_err();
        assert_eq!(e, "unknown variant `udp`, expected `http` or `tcp`");
        let e = "fastest".parse::<Selection>().unwrap_err();
        assert!(e.contains("`least-outstanding`, `round-robin`, `weighted`"), "{e}");
    }
}

/// The active health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// `GET path` on a fresh connection; any 2xx passes.
    Http { path: String },
    /// A TCP connect that succeeds within the timeout passes.
    Tcp,
    /// No active check (HAProxy's servers without `check`): a backend serves as soon as it is
    /// added; passive ejection (connect errors, consecutive 5xx) takes it out, and it is tried
    /// again after `rise` × `interval`.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub check: HealthCheck,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes before a (new or ejected) backend gets traffic.
    pub rise: u32,
    /// Consecutive failures before a serving backend is taken out.
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            check: HealthCheck::Http { path: "/healthz".into() },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 1,
            fall: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbConfig {
    pub listen: SocketAddr,
    pub mode: Mode,
    pub selection: Selection,
    pub health: HealthConfig,
    /// How long a request (or TCP connection) waits for an eligible backend before 503.
    pub queue_timeout: Duration,
    /// Requests allowed to wait at once; beyond it, 503 at once.
    pub queue_limit: usize,
    /// Extra attempts on other backends after a failed one.
    pub retries: u32,
    /// Request bodies up to this size are buffered (and so can be retried); larger ones stream.
    pub retry_buffer: usize,
    /// Consecutive 5xx responses (or proxy failures) that eject a backend; 0 disables.
    pub passive_5xx: u32,
    pub connect_timeout: Duration,
    /// How long a sent request may wait for the backend's response head; then the client gets
    /// 504 and the backend a passive failure (nginx's `proxy_read_timeout`, HAProxy's
    /// `timeout server`). A response that has begun streams on.
    pub response_timeout: Duration,
    /// How long a client may take to send the part of a request body the balancer reads before
    /// forwarding (up to `retry_buffer`); then 408 and the connection is closed.
    pub body_timeout: Duration,
    /// Client connections open at once; more are closed at accept, with a log line (at most one
    /// per 10 s, with the count refused meanwhile).
    pub max_connections: usize,
    /// Idle keep-alive connections to backends are closed after this long.
    pub idle_timeout: Duration,
    /// Largest request head accepted (431 beyond). hyper's floor is 8 KiB.
    pub max_header_bytes: usize,
    /// Window of `rps`, latency percentiles and error rate (at most 300 s).
    pub rate_window: Duration,
    /// Window of `Metric::Requests` (at most 300 s).
    pub count_window: Duration,
    /// Whether the client is a proxy whose `X-Forwarded-For`, `Forwarded` and `X-Real-IP` are to
    /// be believed (kept, and ours appended). Off: they are dropped and `X-Forwarded-For` is the
    /// client's address alone, so a client cannot pose as another address to the backends.
    pub trust_forwarded: bool,
}

impl LbConfig {
    /// HTTP mode with the defaults: least-outstanding, `GET /healthz` every second (timeout 1 s,
    /// rise 1, fall 2), 30 s / 1024-deep queue, 3 retries, 64 KiB retry buffer, 5 consecutive 5xx
    /// eject, 16 KiB heads, 10 s rate window, 60 s count window.
    pub fn http(listen: SocketAddr) -> Self {
        LbConfig {
            listen,
            mode: Mode::Http,
            selection: Selection::LeastOutstanding,
            health: HealthConfig::default(),
            queue_timeout: Duration::from_secs(30),
            queue_limit: 1024,
            retries: 3,
            retry_buffer: 64 * 1024,
            passive_5xx: 5,
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
            rate_window: Duration::from_secs(10),
            count_window: Duration::from_secs(60),
            trust_forwarded: false,
        }
    }

    /// TCP mode with the same defaults and a TCP-connect health check.
    pub fn tcp(listen: SocketAddr) -> Self {
        let mut cfg = Self::http(listen);
        cfg.mode = Mode::Tcp;
        cfg.health.check = HealthCheck::Tcp;
        cfg
    }
}
