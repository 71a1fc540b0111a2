//! The bundled member workload server: /work, /healthz, /load.
//!
//! This is what a member of the default `local` provider runs (`flotilla workload ...`): the
//! seed's `yes > /dev/null` turned into something measurable and routable. It burns CPU on demand
//! (`GET /work?ms=N` per request, `POST /load?duty=D` in the background) so the autoscaler has real
//! load to react to, and answers with its name so balancer demos show which member served.
//!
//! Routes:
//! - `GET /` → the member name.
//! - `GET /healthz` → `ok`.
//! - `GET /work?ms=N` → burns N ms (≤ 60000) of CPU, answers `<name> ms=N`.
//! - `GET /load` → `{"duty":D}`; `POST /load?duty=D` (0..=1) starts or replaces the background
//!   load on `vcpus` threads; `DELETE /load` stops it.
//!
//! Every response carries the header `x-flotilla-member: <name>`.

mod burn;
mod http;
mod ready;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use burn::{burn_cpu, LOAD_PERIOD};
pub use http::{MAX_WORK_MS, MEMBER_HEADER};
pub use ready::write_ready_file;

/// How a member runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// The member name: answered by `/`, `/work` and in the `x-flotilla-member` header.
    pub name: String,
    /// Where to listen; port 0 picks a free port (reported through `ready_file`).
    pub listen: SocketAddr,
    /// Threads the background load uses: `duty` is relative to these, like a VM's vCPUs.
    pub vcpus: u32,
    /// Where [`run`] writes the bound port once it accepts connections.
    pub ready_file: Option<PathBuf>,
}

/// Serves on `listener` until `shutdown` completes, then finishes in-flight requests and stops the
/// background load. Does not touch `cfg.listen` or `cfg.ready_file` (the caller already bound).
pub async fn serve(
    cfg: WorkloadConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let load = Arc::new(burn::LoadGen::new(cfg.vcpus));
    let state = http::AppState { name: Arc::from(cfg.name.as_str()), load: Arc::clone(&load) };
    let addr = listener.local_addr()?;
    tracing::info!(member = %cfg.name, %addr, vcpus = cfg.vcpus, "workload serving");
    let served = axum::serve(listener, http::router(state)).with_graceful_shutdown(shutdown).await;
    let stopping = load.stop();
    // Load threads exit within one generation check; join them off the runtime threads.
    let _ = tokio::task::spawn_blocking(move || burn::join_all(stopping)).await;
    tracing::info!(member = %cfg.name, "workload stopped");
    served
}

/// Binds `cfg.listen`, writes the bound port to `cfg.ready_file` (atomically), and serves until
/// SIGTERM or SIGINT. The signal handlers are installed before the ready file appears, so a
/// supervisor that signals as soon as it sees the file always gets a graceful stop.
pub async fn run(cfg: WorkloadConfig) -> io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};

    let listener = TcpListener::bind(cfg.listen).await?;
    let port = listener.local_addr()?.port();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    if let Some(path) = &cfg.ready_file {
        write_ready_file(path, port)?;
    }
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    };
    serve(cfg, listener, shutdown).await
}
