//! Balancers behind the `Balancer` seam: the embedded HTTP/1.1 + TCP load balancer, and
//! [`RecordingBalancer`] for tests.
//!
//! The embedded balancer puts one listener in front of each group ([`GroupBalancer`]; many groups
//! via [`EmbeddedBalancer`], which also implements `MetricSource` as `lb`) and never drops a
//! request while the group changes: new backends get traffic only after their health check
//! passes, drains wait for in-flight requests, requests that could not be delivered are retried
//! on another backend, and requests with no eligible backend wait (bounded) instead of failing.
//!
//! # Request lifecycle (HTTP mode)
//!
//! ```text
//!  accept ─▶ read head ─▶ buffer body ─▶ select ─▶ send ─▶ respond + headers ─▶ record stats
//!               │              │           │  ▲      │
//!               ▼              ▼           │  │      ├─ connect error (nothing sent) ─▶ eject ──┐
//!           400 / 431     400 + close      │  │      ├─ reset / EOF before a head, and the      │
//!          (hyper; only  (bad chunking;    │  │      │  request is idempotent + body buffered ──┤
//!           this conn)    nothing sent)    │  │      └─ anything else, or `retries` used ─▶ 502 │
//!                                          │  └───────── retry on another backend ◀────────────┘
//!                                          ▼
//!                            queue (no eligible backend) ──(one becomes healthy)──▶ select
//!                              └─ `queue_timeout` passed / `queue_limit` waiting ─▶ 503, Retry-After: 1
//! ```
//!
//! 1. **accept**: one task per client connection, `TCP_NODELAY`, hyper's h1 server with
//!    keep-alive. `max_buf_size` = `max_header_bytes` (hyper's floor: 8 KiB).
//! 2. **read head**: hyper parses; a bad header line gets 400 and an oversized head 431 from hyper
//!    itself, and only that connection ends.
//! 3. **buffer body**: bodies up to `retry_buffer` are read whole (so they can be sent again and a
//!    broken chunked body gets 400 before anything reaches a backend); larger ones stream after the
//!    buffered prefix and are replayable only until the first send starts reading them.
//!    Hop-by-hop headers go; `X-Forwarded-For`, `X-Forwarded-Proto`, `Via` are added.
//! 4. **select**: least-outstanding / round-robin / weighted over eligible backends (healthy, not
//!    draining, not tried by this request; the same backend twice only if it is the only one).
//!    None eligible: **queue** until one becomes healthy, up to `queue_timeout`.
//! 5. **send**: through the backend's own keep-alive pool. The backend's in-flight count covers
//!    the request until its response body is done; a drain waits for exactly that.
//! 6. **retry edges**: see the picture; at most `retries` extra attempts. A connect error ejects
//!    the backend at once; `passive_5xx` consecutive 5xx/failures eject it too; only the active
//!    check re-admits (`rise` passes).
//! 7. **respond + headers**: hop-by-hop headers go, `x-flotilla-backend: <id>` and `Via` are added,
//!    the body streams through.
//! 8. **record stats**: when the body is done: per-backend counters and per-second ring (count,
//!    errors, latency histogram) for rate, percentiles, error rate and requests-in-window.
//!
//! TCP mode shares select, queue, connect-retry and ejection; in-flight = open connections; a
//! drain past its deadline closes them.
//!
//! # Modules
//!
//! `config` (settings), `group` ([`GroupBalancer`]: backend set, control API, stats),
//! `backend` (state, atomics, pool, ring), `select`, `queue`, `health`, `body` (replayable request
//! bodies, accounting response bodies), `http_proxy`, `tcp_proxy`, `stats`, `embedded`,
//! `standalone`, `recording`.

mod backend;
mod body;
mod config;
mod embedded;
#[doc(hidden)]
pub mod fuzzing;
mod group;
mod health;
mod http_proxy;
mod queue;
mod recording;
mod select;
mod standalone;
mod stats;
mod tcp_proxy;

pub use backend::BackendStatus;
pub use config::{HealthCheck, HealthConfig, LbConfig, Mode, Selection};
pub use embedded::EmbeddedBalancer;
pub use group::GroupBalancer;
pub use recording::{BalancerCall, RecordingBalancer};
pub use standalone::run_standalone;
pub use stats::{BackendStats, GroupStats, LatencyHistogram, TrafficStats, LATENCY_BOUNDS_S, MIN_WATCHED};
