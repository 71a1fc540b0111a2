use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use flotilla_model::{
    Aggregation, GroupSpec, InstanceSpec, MetricChoice, Mode, PolicySpec, Provider, Store, ThresholdSpec, Victim,
};

use crate::cli::{MetricArg, WatchArgs};
use crate::{usage, wiring};

/// The seed's `autoscale_watch.py` as a one-group controller in handover mode.
pub async fn watch(state_flag: Option<&Path>, args: WatchArgs) -> anyhow::Result<ExitCode> {
    let mut problems = Vec::new();
    if !(0.0..=100.0).contains(&args.low) || !(0.0..=100.0).contains(&args.high) || args.low >= args.high {
        problems.push(format!("--low {} / --high {}: need 0 <= low < high <= 100", args.low, args.high));
    }
    if args.min_up == 0 {
        problems.push("--min-up: must be at least 1".to_string());
    }
    if args.min_down == 0 {
        problems.push("--min-down: must be at least 1".to_string());
    }
    if !(args.interval >= 0.1 && args.interval.is_finite()) {
        problems.push(format!("--interval {}: must be at least 0.1 seconds", args.interval));
    }
    if !problems.is_empty() {
        return usage(problems.join("\n"));
    }

    let state_dir = crate::state_dir::resolve(state_flag, None);
    let (store, provider) = wiring::store_and_provider(&state_dir, None)?;
    let everyone = provider.list(None).await?;
    let Some(server) = everyone.iter().find(|i| i.name == args.server) else {
        return usage(format!(
            "--server {}: no such member in {} (create one with `flotilla deploy --name NAME`)",
            args.server,
            state_dir.display()
        ));
    };
    let clone_base = match args.clone.as_deref() {
        None | Some("legacy") => format!("{}_clone", args.server),
        Some(name) if super::deploy::valid_name(name) => name.to_string(),
        Some(name) => return usage(format!("--clone {name:?}: use letters, digits, '-', '_' or '.'")),
    };
    let interval = Duration::from_secs_f64(args.interval);
    let group = server.group.clone();
    let spec = GroupSpec {
        id: group.clone(),
        mode: Mode::Handover,
        min: 1,
        max: 2,
        increment: 1,
        cooldown_up: Duration::ZERO,
        cooldown_down: Duration::ZERO,
        interval,
        stale_after: interval * 3,
        policy: PolicySpec::Threshold(ThresholdSpec {
            metric: match args.metric {
                MetricArg::Cpu => MetricChoice::Cpu,
                MetricArg::Mem => MetricChoice::Mem,
                MetricArg::Max => MetricChoice::Max,
            },
            high: args.high,
            low: args.low,
            min_up: args.min_up,
            min_down: args.min_down,
        }),
        aggregation: Aggregation::Mean,
        victim: Victim::Oldest,
        drain_timeout: Duration::from_secs(30),
        instance: InstanceSpec {
            base_name: group.to_string(),
            clone_base,
            vcpus: server.tag("vcpus").and_then(|v| v.parse().ok()).unwrap_or(1),
            settings: BTreeMap::new(),
        },
        // `watch` adopts one existing server; there is no template to roll out.
        template_version: String::new(),
        rollout: None,
    };
    store.ensure_group(&group).await?;
    store.set_primary(&group, Some(&server.id)).await?;
    println!(
        "[watch] monitoring {} (group {group}) every {:.1}s: high {} low {} min-up {} min-down {} metric {:?}",
        args.server, args.interval, args.high, args.low, args.min_up, args.min_down, args.metric
    );
    let parts = wiring::ProviderParts {
        provider,
        sources: vec![std::sync::Arc::new(flotilla_metrics::LocalProcessSource::new())],
    };
    let built = wiring::assemble(store, parts, vec![spec], &Default::default(), 600, &state_dir).await?;
    super::run::serve(built, false).await
}
