use std::process::ExitCode;

use flotilla_lb::{HealthCheck, LbConfig, Mode, Selection};

use crate::cli::{LbArgs, LbModeArg, SelectionArg};

/// The balancer engine alone, with a static backend set: what `bench/lb.sh` measures.
pub async fn lb(args: LbArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = LbConfig::http(args.listen);
    cfg.mode = match args.mode {
        LbModeArg::Http => Mode::Http,
        LbModeArg::Tcp => Mode::Tcp,
    };
    cfg.selection = match args.selection {
        SelectionArg::LeastOutstanding => Selection::LeastOutstanding,
        SelectionArg::RoundRobin => Selection::RoundRobin,
        SelectionArg::Weighted => Selection::Weighted,
    };
    cfg.health.check = match args.mode {
        LbModeArg::Http => HealthCheck::Http { path: args.health_path },
        LbModeArg::Tcp => HealthCheck::Tcp,
    };
    tracing::info!(listen = %args.listen, backends = args.backends.len(), threads = args.threads, "balancer starting");
    flotilla_lb::run_standalone(cfg, args.backends, super::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
