use std::path::Path;
use std::process::ExitCode;

use flotilla_model::{GroupId, Store};

use crate::cli::LoadArgs;
use crate::{load, usage, wiring};

pub async fn load(state_flag: Option<&Path>, args: LoadArgs) -> anyhow::Result<ExitCode> {
    if let Some(target) = args.through {
        return through(target, &args).await;
    }
    if !(0.0..=1.0).contains(&args.split_duty) {
        return usage(format!("--split-duty must be between 0 and 1, got {}", args.split_duty));
    }
    let config = match &args.config {
        Some(path) => Some(crate::config::load(path)?),
        None => None,
    };
    let state_dir = crate::state_dir::resolve(state_flag, config.as_ref().and_then(|c| c.state_dir.as_deref()));
    let (store, _) = wiring::store_and_provider(&state_dir, config.as_ref())?;
    // Guests are loaded over SSH with the config's `metrics.ssh` settings; local members over HTTP.
    let loader = match config.as_ref().map(|c| (&c.provider, &c.metrics.ssh)) {
        None | Some((crate::config::ProviderConfig::Local { .. }, _)) => load::Loader::Http,
        Some((_, Some(ssh))) => {
            let pins = state_dir.join("ssh").join("host-keys");
            load::Loader::Ssh(flotilla_metrics_ssh::SshSampler::new(ssh.clone(), &pins)?)
        }
        Some((p, None)) => {
            return usage(format!(
                "load on {} members runs `yes` in the guests over SSH: the config needs a `metrics.ssh` section",
                p.kind()
            ))
        }
    };
    let group = match args.group {
        Some(g) => GroupId::new(g),
        None => {
            let groups = store.groups().await?;
            match groups.as_slice() {
                [only] => only.clone(),
                [] => {
                    return usage(format!(
                        "no groups in {}; start one with `flotilla deploy` or `flotilla run`",
                        state_dir.display()
                    ))
                }
                _ => {
                    let names: Vec<&str> = groups.iter().map(|g| g.as_str()).collect();
                    return usage(format!("several groups ({}); choose one with --group", names.join(", ")));
                }
            }
        }
    };
    let say = |s: String| println!("[load] {s}");
    if args.stop {
        let stopped = load::stop_all(&loader, store.as_ref(), &group).await?;
        say(format!("stopped load on {}", if stopped.is_empty() { "no member".into() } else { stopped.join(", ") }));
        return Ok(ExitCode::SUCCESS);
    }
    load::split_after_scale(&loader, store.as_ref(), &group, args.wait, args.split_duty, &say).await?;
    say("load keeps running on the members; `flotilla load --stop` ends it".into());
    Ok(ExitCode::SUCCESS)
}

/// HTTP load through a balancer, counted by status and by the member that served each request.
async fn through(target: std::net::SocketAddr, args: &LoadArgs) -> anyhow::Result<ExitCode> {
    use flotilla_loadgen::{Load, LoadSpec};
    if args.concurrency == 0 {
        return usage("--concurrency must be at least 1");
    }
    if let Some(rate) = args.rate {
        if !(rate > 0.0 && rate.is_finite()) {
            return usage(format!("--rate {rate}: must be a positive number of requests per second"));
        }
    }
    if !args.path.starts_with('/') {
        return usage(format!("--path {:?}: must start with '/'", args.path));
    }
    let spec = LoadSpec {
        target,
        path: args.path.clone(),
        concurrency: args.concurrency,
        rate: args.rate,
        timeout: std::time::Duration::from_secs(60),
    };
    let shape = match args.rate {
        Some(r) => format!("{r}/s over {} connection(s)", args.concurrency),
        None => format!("{} in flight", args.concurrency),
    };
    println!("[load] GET http://{target}{} ({shape}); Ctrl-C stops", args.path);
    let load = Load::start(spec);
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(5));
    ticker.tick().await;
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    loop {
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ticker.tick() => println!("[load] {}", load.snapshot().summary()),
            _ = until_deadline => break,
            _ = super::shutdown_signal() => break,
        }
    }
    let report = load.stop().await;
    println!("[load] {}", report.summary());
    if let (Some(p50), Some(p99)) = (report.latency_ms(50.0), report.latency_ms(99.0)) {
        println!("[load] latency p50 {p50:.1} ms, p99 {p99:.1} ms");
    }
    Ok(if report.failures == 0 && report.server_errors() == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
