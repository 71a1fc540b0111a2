use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use flotilla_model::{
    Aggregation, GroupId, GroupSpec, InstanceSpec, MetricChoice, MetricSource, Mode, PolicySpec, Store, ThresholdSpec,
    Victim,
};
use flotilla_provider_openstack::{AddressMode, OpenStackProvider, OpenStackSettings};

use crate::cli::{AddressArg, MetricArg, SourceArg, WatchArgs};
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

    let config = args.target.load_config()?;
    let state_dir = crate::state_dir::resolve(state_flag, config.as_ref().and_then(|c| c.state_dir.as_deref()));
    let (store, local) = wiring::store_and_provider(&state_dir, config.as_ref())?;
    let parts = if let Some(c) = &config {
        if !args.sources.is_empty() {
            return usage("--source: with --config, the samples come from the config's metrics.sources");
        }
        wiring::provider_parts(c, &state_dir).await?
    } else if args.target.openstack() {
        openstack_parts(&args, &state_dir).await?
    } else {
        wiring::ProviderParts { provider: local, sources: sources(&args, &state_dir, None).await? }
    };
    let everyone = parts.provider.list(None).await?;
    let Some(server) = everyone.iter().find(|i| i.name == args.server) else {
        return usage(format!(
            "--server {}: no such member in {} (create one with `flotilla deploy --name NAME`)",
            args.server,
            state_dir.display()
        ));
    };
    // The seed's deployer names clones `<base>_clone_N`, where the base is the deploy name (the
    // group): VM-test_1 grows VM-test_clone_1.
    // With a config, the group's own names and template.
    let configured = config.as_ref().and_then(|c| c.group(&server.group)).map(|g| &g.spec);
    let clone_base = match args.clone.as_deref() {
        None | Some("legacy") => match configured {
            Some(g) => g.instance.clone_base.clone(),
            None => format!("{}_clone", server.group),
        },
        Some(name) => match flotilla_model::name::member_name_problem(name) {
            None => name.to_string(),
            Some(p) => return usage(format!("--clone {p}")),
        },
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
            base_name: configured.map_or_else(|| group.to_string(), |g| g.instance.base_name.clone()),
            clone_base,
            vcpus: configured
                .map(|g| g.instance.vcpus)
                .or_else(|| server.tag("vcpus").and_then(|v| v.parse().ok()))
                .unwrap_or(1),
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
    // A configured group keeps its balancer: clients use one address through the handover.
    let balancer = config.as_ref().and_then(|c| c.group(&group)).and_then(|g| g.balancer.clone());
    let group = crate::config::GroupConfig { spec, balancer, template: None };
    let built = wiring::assemble(store, parts, vec![group], 600, &state_dir).await?;
    super::run::serve(built, false).await
}

/// On Nova: the server's group grows with servers made like it (its image, flavor, network,
/// security groups and keypair), each with a floating IP unless `--address fixed`.
async fn openstack_parts(args: &WatchArgs, state_dir: &Path) -> anyhow::Result<wiring::ProviderParts> {
    let cloud = super::openstack::connect(args.target.os_cloud.as_deref()).await?;
    let server = cloud.find_server(&args.server).await?;
    let Some(group) = server.group().filter(|_| server.is_ours()).map(str::to_string) else {
        return usage(format!(
            "--server {}: not a Flotilla server on cloud {} (create one with `flotilla deploy --provider openstack`)",
            args.server,
            cloud.config().name
        ));
    };
    let template = cloud.template_of_server(&args.server).await?;
    let settings = OpenStackSettings {
        cloud: args.target.os_cloud.clone(),
        address: match args.address {
            AddressArg::Fixed => AddressMode::Fixed,
            AddressArg::Floating => AddressMode::Floating,
        },
        ..OpenStackSettings::default()
    };
    let templates = BTreeMap::from([(GroupId::new(group), template)]);
    let provider = Arc::new(OpenStackProvider::with_cloud(cloud, settings, templates));
    let sources = sources(args, state_dir, Some(&provider)).await?;
    Ok(wiring::ProviderParts { provider, sources })
}

/// The `--source` list, defaulting to the provider's own view (`/proc` locally, Nova diagnostics
/// on OpenStack); each one checked against the provider.
async fn sources(
    args: &WatchArgs,
    state_dir: &Path,
    openstack: Option<&OpenStackProvider>,
) -> anyhow::Result<Vec<Arc<dyn MetricSource>>> {
    let mut wanted = args.sources.clone();
    if wanted.is_empty() {
        wanted.push(if openstack.is_some() { SourceArg::Diagnostics } else { SourceArg::Local });
    }
    wanted.dedup();
    let mut out: Vec<Arc<dyn MetricSource>> = Vec::new();
    let mut push = Vec::new();
    for s in wanted {
        match (s, openstack) {
            (SourceArg::Local, None) => out.push(Arc::new(flotilla_metrics::LocalProcessSource::new())),
            (SourceArg::Local, Some(_)) => {
                return usage("--source local: reads local processes; the provider is openstack")
            }
            (SourceArg::Diagnostics, Some(p)) => out.push(Arc::new(p.diagnostics_source())),
            (SourceArg::Diagnostics, None) => {
                return usage("--source diagnostics: reads Nova diagnostics; use --provider openstack")
            }
            (SourceArg::Ssh, _) => {
                let Some(key) = &args.ssh_key else { return usage("--source ssh needs --ssh-key PATH") };
                let mut settings = flotilla_metrics_ssh::SshSettings::new(key);
                settings.user = args.ssh_user.clone();
                settings.allow_ssh_rsa = args.ssh_allow_rsa;
                let problems = settings.validate();
                if !problems.is_empty() {
                    let lines: Vec<String> = problems.into_iter().map(|(f, m)| format!("--ssh ({f}): {m}")).collect();
                    return usage(lines.join("\n"));
                }
                let pins = state_dir.join("ssh").join("host-keys");
                out.push(Arc::new(flotilla_metrics_ssh::SshSampler::new(settings, &pins)?));
            }
            (SourceArg::Push, _) => {
                let Some(listen) = args.push_listen else { return usage("--source push needs --push-listen ADDR") };
                let Ok(token) = std::env::var("FLOTILLA_PUSH_TOKEN") else {
                    return usage("--source push: set $FLOTILLA_PUSH_TOKEN to the shared token");
                };
                let settings = flotilla_metrics_push::PushSettings::new(listen, token.trim());
                let problems = settings.validate();
                if !problems.is_empty() {
                    let lines: Vec<String> = problems
                        .into_iter()
                        .map(|(f, m)| {
                            format!(
                                "--source push ({}): {m}",
                                if f == "listen" { "--push-listen" } else { "$FLOTILLA_PUSH_TOKEN" }
                            )
                        })
                        .collect();
                    return usage(lines.join("\n"));
                }
                push.push(settings);
            }
        }
    }
    for settings in push {
        out.push(wiring::push_source(settings).await?);
    }
    Ok(out)
}
