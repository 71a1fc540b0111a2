use std::path::Path;
use std::process::ExitCode;

use flotilla_controller::next_names;
use flotilla_model::{Clock, Event, EventKind, GroupId, InstanceSpec, OpKind, OpState, Provider, Store, SystemClock};

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
    let state_dir = crate::state_dir::resolve(state_flag, None);
    let (store, provider) = wiring::store_and_provider(&state_dir, None)?;
    let clock = SystemClock;
    let group = GroupId::new(args.name.clone());
    store.ensure_group(&group).await?;

    let everyone = provider.list(None).await?;
    let names = next_names(&args.name, everyone.iter().map(|i| i.name.as_str()), 1);
    let spec =
        InstanceSpec { base_name: args.name.clone(), clone_base: format!("{}_clone", args.name), vcpus: args.vcpus };
    // Intent first: a crash between here and the end leaves a pending operation the next
    // controller run resumes (the name is already chosen, so nothing is created twice).
    let op =
        store.begin_operation(&group, &OpKind::ScaleOut { names: names.clone(), clone: false }, clock.now()).await?;
    let created = match provider.create(&group, &spec, &names).await {
        Ok(c) => c,
        Err(e) => {
            store.finish_operation(op.id, &OpState::Failed(e.to_string()), clock.now()).await?;
            return Err(e.into());
        }
    };
    for inst in &created {
        store.upsert_instance(inst).await?;
    }
    if store.primary(&group).await?.is_none() {
        store.set_primary(&group, created.first().map(|i| &i.id)).await?;
    }
    let msg = format!("deployed {}", names.join(", "));
    store
        .record_event(&Event { at: clock.now(), group: group.clone(), kind: EventKind::ScaleOut, message: msg })
        .await?;
    store.finish_operation(op.id, &OpState::Done, clock.now()).await?;

    for inst in &created {
        let addr = inst.address.as_deref().unwrap_or("-");
        println!("{} is running at http://{addr} (pid {})", inst.name, inst.tag("pid").unwrap_or("?"));
        println!("  try:   curl http://{addr}/work?ms=100");
        println!(
            "  watch: flotilla watch --server {} --high 80 --low 20 --min-up 4 --min-down 4 --metric max",
            inst.name
        );
        println!("  load:  flotilla load --group {group}");
    }
    Ok(ExitCode::SUCCESS)
}
