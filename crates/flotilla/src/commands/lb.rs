use std::process::ExitCode;

use flotilla_lb::{HealthCheck, LbConfig, Mode};

use crate::cli::LbArgs;

/// The balancer engine alone, with a static backend set: what `bench/lb.sh` measures.
pub async fn lb(args: LbArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = LbConfig::http(args.listen);
    cfg.mode = args.mode;
    cfg.selection = args.selection;
    // No check unless asked: `--health-path` alone means an HTTP check.
    let kind = args.health.as_deref().unwrap_or(if args.health_path.is_some() { "http" } else { "none" });
    let usage = |m: String| Err(anyhow::Error::from(crate::UsageError(m)));
    cfg.health.check = match (kind, args.health_path) {
        ("http", _) if args.mode == Mode::Tcp => return usage("--health http: HTTP checks need --mode http".into()),
        ("http", path) => HealthCheck::Http { path: path.unwrap_or_else(|| "/healthz".into()) },
        ("tcp", None) => HealthCheck::Tcp,
        ("none", None) => HealthCheck::None,
        (other, _) => return usage(format!("--health-path goes with --health http, not `{other}`")),
    };
    tracing::info!(listen = %args.listen, backends = args.backends.len(), threads = args.threads, "balancer starting");
    flotilla_lb::run_standalone(cfg, args.backends, super::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
