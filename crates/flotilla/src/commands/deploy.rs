use std::path::Path;
use std::process::ExitCode;

use flotilla_controller::fresh_names;
use flotilla_model::{GroupId, GroupSpec, Instance, OpKind};

use crate::cli::DeployArgs;
use crate::{usage, wiring};

pub async fn deploy(state_flag: Option<&Path>, args: DeployArgs) -> anyhow::Result<ExitCode> {
    if args.target.openstack() {
        return super::openstack::deploy(args).await;
    }
    let foreign = super::openstack::openstack_only_flags(&args);
    if !foreign.is_empty() {
        return usage(format!("{}: only with --provider openstack (the provider is local)", foreign.join(", ")));
    }
    if let Some(p) = flotilla_model::name::group_name_problem(&args.name) {
        return usage(format!("--name {p}"));
    }
    if !(1..=64).contains(&args.vcpus) {
        return usage(format!("--vcpus {}: must be between 1 and 64", args.vcpus));
    }
    let config = args.target.load_config()?;
    let state_dir = crate::state_dir::resolve(state_flag, config.as_ref().and_then(|c| c.state_dir.as_deref()));
    let group = GroupId::new(args.name.clone());
    let spec = match &config {
        // The config's group of that name, as validated there (its template, its names).
        Some(c) => match c.group(&group) {
            Some(g) => g.spec.clone(),
            None => {
                let names: Vec<&str> = c.groups.iter().map(|g| g.spec.id.as_str()).collect();
                return usage(format!(
                    "--name {}: the config has no such group (it has {})",
                    args.name,
                    names.join(", ")
                ));
            }
        },
        // The seed's group (handover, 1..2 members), made of members with --vcpus.
        None => {
            let mut spec = GroupSpec::example(&args.name);
            spec.instance.vcpus = args.vcpus;
            spec
        }
    };
    let base = spec.instance.base_name.clone();
    let provider = wiring::verb_provider(&state_dir, config.as_ref()).await?;
    let built = wiring::runner(&state_dir, config.as_ref(), provider, vec![spec]).await?;
    // A deploy that crashed half-way is finished first (its name was already chosen), unless a
    // daemon holds the state directory: its pending operations are its own.
    if built.claim.is_some() {
        built.controller.recover().await?;
    }
    let everyone = built.provider.list(None).await?;
    let names = fresh_names(built.store.as_ref(), &base, everyone.iter().map(|i| i.name.as_str()), 1).await?;
    built.controller.perform(&group, OpKind::ScaleOut { names: names.clone(), clone: false }).await?;
    let created: Vec<Instance> =
        built.provider.list(Some(&group)).await?.into_iter().filter(|i| names.contains(&i.name)).collect();
    let with_config = args.target.config.as_ref().map(|p| format!(" --config {}", p.display())).unwrap_or_default();
    for inst in &created {
        let addr = inst.address.as_deref().unwrap_or("-");
        // A local member (it has a pid) runs the bundled workload: CPU work on request, and the
        // seed's load generator over HTTP.
        let pid = inst.tag("pid");
        match pid {
            Some(pid) => println!("{} is running at http://{addr} (pid {pid})", inst.name),
            None => println!("{} is running at http://{addr}", inst.name),
        }
        if pid.is_some() {
            println!("  try:   curl http://{addr}/work?ms=100");
        }
        println!(
            "  watch: flotilla watch{with_config} --server {} --high 80 --low 20 --min-up 4 --min-down 4 --metric max",
            inst.name
        );
        if pid.is_some() {
            println!("  load:  flotilla load --group {group}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
