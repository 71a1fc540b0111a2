use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use flotilla_model::{GroupId, GroupSpec, MetricSource, Store};
use flotilla_provider_openstack::{AddressMode, OpenStackProvider, OpenStackSettings};

use crate::cli::{AddressArg, MetricArg, SourceArg, WatchArgs};
use crate::{usage, wiring};

/// The seed's `autoscale_watch.py` as a one-group controller in handover mode.
pub async fn watch(state_flag: Option<&Path>, args: WatchArgs) -> anyhow::Result<ExitCode> {
    // The flags are a group like one in a config file, validated by the same rules, before
    // anything starts; the server's group name and template are filled in once it is found.
    group_of_flags(&args, "watched", None, None, 1)?;

    let config = args.target.load_config()?;
    let state_dir = crate::state_dir::resolve(state_flag, config.as_ref().and_then(|c| c.state_dir.as_deref()));
    let claim = crate::state_dir::claim_for_controller(&state_dir).await?;
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
        Some(name) => name.to_string(),
    };
    let group = server.group.clone();
    let base = configured.map_or_else(|| group.to_string(), |g| g.instance.base_name.clone());
    let vcpus =
        configured.map(|g| g.instance.vcpus).or_else(|| server.tag("vcpus").and_then(|v| v.parse().ok())).unwrap_or(1);
    let mut spec = group_of_flags(&args, group.as_str(), Some(&base), Some(&clone_base), vcpus)?;
    // `watch` adopts one existing server; there is no template to roll out.
    spec.template_version = String::new();
    spec.rollout = None;
    store.ensure_group(&group).await?;
    store.set_primary(&group, Some(&server.id)).await?;
    println!(
        "[watch] monitoring {} (group {group}) every {:.1}s: high {} low {} min-up {} min-down {} metric {:?}",
        args.server, args.interval, args.high, args.low, args.min_up, args.min_down, args.metric
    );
    // A configured group keeps its balancer: clients use one address through the handover.
    let balancer = config.as_ref().and_then(|c| c.group(&group)).and_then(|g| g.balancer.clone());
    let group = crate::config::GroupConfig { spec, balancer, template: None };
    let mut built = wiring::assemble(store, parts, vec![group], 600, &state_dir).await?;
    built.claim = Some(claim);
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

/// The seed's watcher as a group: handover between the server and one clone, no cooldowns, the
/// thresholds of the flags. Validated as a group in a file would be; each problem names its flag.
fn group_of_flags(
    args: &WatchArgs,
    name: &str,
    base: Option<&str>,
    clone_base: Option<&str>,
    vcpus: u32,
) -> anyhow::Result<GroupSpec> {
    use serde_yaml::{Mapping, Value};
    if !args.interval.is_finite() {
        return usage(format!("--interval {}: must be a number of seconds", args.interval));
    }
    let map = |pairs: Vec<(&str, Value)>| Value::Mapping(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect());
    let metric = match args.metric {
        MetricArg::Cpu => "cpu",
        MetricArg::Mem => "mem",
        MetricArg::Max => "max",
    };
    let mut template = Mapping::new();
    template.insert("vcpus".into(), vcpus.into());
    if let Some(b) = base {
        template.insert("base_name".into(), b.into());
    }
    if let Some(c) = clone_base {
        template.insert("clone_base".into(), c.into());
    }
    let raw = map(vec![
        ("name", name.into()),
        ("mode", "handover".into()),
        ("min", 1.into()),
        ("max", 2.into()),
        ("interval", format!("{}ms", (args.interval * 1000.0).round()).into()),
        ("cooldown_up", "0s".into()),
        ("cooldown_down", "0s".into()),
        (
            "policy",
            map(vec![
                ("metric", metric.into()),
                ("high", args.high.into()),
                ("low", args.low.into()),
                ("min_up", args.min_up.into()),
                ("min_down", args.min_down.into()),
            ]),
        ),
        ("template", Value::Mapping(template)),
    ]);
    crate::config::validate::validate_group(raw).or_else(|errors| {
        let flag = |path: &str| match path {
            "policy.high" | "policy.low" => format!("--low {} / --high {}", args.low, args.high),
            "policy.min_up" => format!("--min-up {}", args.min_up),
            "policy.min_down" => format!("--min-down {}", args.min_down),
            "interval" | "stale_after" => format!("--interval {}", args.interval),
            "template.clone_base" => format!("--clone {}", clone_base.unwrap_or_default()),
            other => format!("{other} (from --server {})", args.server),
        };
        let lines: Vec<String> = errors.iter().map(|e| format!("{}: {}", flag(&e.path), e.message)).collect();
        usage(lines.join("\n"))
    })
}
