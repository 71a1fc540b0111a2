//! `flotilla lb`: one balancer with a static backend set, for benchmarks.

use std::future::Future;
use std::net::SocketAddr;

use crate::config::LbConfig;
use crate::group::GroupBalancer;

/// Serves `cfg.listen` in front of `backends` (ids `b0`, `b1`, ...; health-checked as configured)
/// until `shutdown` resolves, then shuts down gracefully.
pub async fn run_standalone(
    cfg: LbConfig,
    backends: Vec<SocketAddr>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let g = GroupBalancer::bind("standalone".to_string(), cfg).await?;
    for (i, addr) in backends.into_iter().enumerate() {
        g.add_backend(format!("b{i}"), addr, 1);
    }
    tracing::info!(listen = %g.local_addr(), backends = g.backends().len(), "standalone balancer serving");
    shutdown.await;
    g.shutdown().await;
    Ok(())
}
