use std::process::ExitCode;

use flotilla_lb::{HealthCheck, LbConfig, Mode};

use crate::cli::LbArgs;

/// The balancer engine alone, with a static backend set: what `bench/lb.sh` measures.
pub async fn lb(args: LbArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = LbConfig::http(args.listen);
    cfg.mode = args.mode;
    cfg.selection = args.selection;
    cfg.health.check = match args.mode {
        Mode::Http => HealthCheck::Http { path: args.health_path },
        Mode::Tcp => HealthCheck::Tcp,
    };
    tracing::info!(listen = %args.listen, backends = args.backends.len(), threads = args.threads, "balancer starting");
    flotilla_lb::run_standalone(cfg, args.backends, super::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
