//! Active health checks: one task per backend, every `interval`, on a fresh connection (so a dead
//! listener is noticed even while pooled connections linger). `rise` consecutive passes admit a
//! backend (new or ejected), `fall` consecutive failures take it out. Passive ejections
//! (connect errors, consecutive 5xx) are in `backend.rs`; only this task re-admits. With
//! [`HealthCheck::None`] every tick passes: a backend ejected by passive checks is tried again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::time::MissedTickBehavior;

use crate::backend::Backend;
use crate::config::{HealthCheck, HealthConfig};
use crate::group::Shared;

pub(crate) fn spawn(shared: &Arc<Shared>, backend: &Arc<Backend>, rt: &Handle) {
    let weak = Arc::downgrade(backend);
    let hc = shared.cfg.health.clone();
    let mut shutdown = shared.shutdown.subscribe();
    rt.spawn(async move {
        let mut tick = tokio::time::interval(hc.interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = crate::group::until_set(&mut shutdown) => return,
            }
            // why: a weak handle, so a removed backend is freed even if this task is asleep.
            let Some(b) = weak.upgrade() else { return };
            if b.is_removed() {
                return;
            }
            if b.is_draining() {
                continue;
            }
            let epoch = b.eject_epoch();
            let ok = check(&hc, b.addr).await;
            tracing::trace!(backend = %b.id, ok, "health check");
            b.on_check(ok, epoch, hc.rise, hc.fall);
        }
    });
}

/// One check within `hc.timeout`.
pub(crate) async fn check(hc: &HealthConfig, addr: SocketAddr) -> bool {
    let probe = async {
        match &hc.check {
            HealthCheck::Tcp => TcpStream::connect(addr).await.is_ok(),
            HealthCheck::Http { path } => http_get(addr, path).await.unwrap_or(false),
            // Nothing to ask: each tick counts as a pass, so an ejected backend is tried again.
            HealthCheck::None => true,
        }
    };
    tokio::time::timeout(hc.timeout, probe).await.unwrap_or(false)
}

async fn http_get(addr: SocketAddr, path: &str) -> Option<bool> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (mut tx, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await.ok()?;
    let uri = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    let req = Request::get(uri)
        .header(HOST, addr.to_string())
        .header(USER_AGENT, "flotilla-lb-health")
        .header(CONNECTION, "close")
        .body(Empty::new())
        .ok()?;
    let resp = tx.send_request(req);
    tokio::pin!(conn, resp);
    let resp = tokio::select! {
        biased;
        r = resp.as_mut() => r,
        // why: the connection may finish in the same poll that delivered the head; the answer is
        // then already waiting in `resp`.
        _ = conn.as_mut() => resp.await,
    };
    resp.ok().map(|r| r.status().is_success())
}
