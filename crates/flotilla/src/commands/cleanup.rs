use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use flotilla_model::{GroupId, GroupSpec, Instance, OpKind};

use crate::cli::CleanupArgs;
use crate::{usage, wiring};

/// `PREFIX` matches the member named PREFIX and every `PREFIX_*` (so `VM-test` takes `VM-test_1` and
/// `VM-test_clone_2` but not `VM-testing_1`). Only Flotilla's own members are ever listed.
fn matches(prefix: &str, name: &str) -> bool {
    name == prefix || name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('_'))
}

pub async fn cleanup(state_flag: Option<&Path>, args: CleanupArgs) -> anyhow::Result<ExitCode> {
    if args.prefix.is_empty() {
        return usage("PREFIX must not be empty");
    }
    if args.target.openstack() {
        return super::openstack::cleanup(args).await;
    }
    if args.wipe_snaps {
        return usage("--wipe-snaps: only with --provider openstack (local members have no snapshots)");
    }
    let config = args.target.load_config()?;
    let state_dir = crate::state_dir::resolve(state_flag, config.as_ref().and_then(|c| c.state_dir.as_deref()));
    let provider = wiring::verb_provider(&state_dir, config.as_ref()).await?;
    let doomed: Vec<Instance> =
        provider.list(None).await?.into_iter().filter(|i| matches(&args.prefix, &i.name)).collect();
    if doomed.is_empty() {
        println!("nothing to clean up: no Flotilla member named {0} or {0}_*", args.prefix);
        return Ok(ExitCode::SUCCESS);
    }
    println!("will delete {} member(s):", doomed.len());
    for i in &doomed {
        println!("  {} (group {}, {}, {})", i.name, i.group, i.state.as_str(), i.address.as_deref().unwrap_or("-"));
    }
    if !args.yes && !super::openstack::confirm("delete them?")? {
        println!("nothing deleted");
        return Ok(ExitCode::SUCCESS);
    }
    let mut by_group: BTreeMap<GroupId, Vec<Instance>> = BTreeMap::new();
    for i in doomed {
        by_group.entry(i.group.clone()).or_default().push(i);
    }
    // Each group as the config has it, else as the seed's: only its id and drain timeout matter to
    // a deletion.
    let configured = |g: &GroupId| config.as_ref().and_then(|c| c.group(g)).map(|c| c.spec.clone());
    let specs = by_group.keys().map(|g| configured(g).unwrap_or_else(|| GroupSpec::example(g.as_str()))).collect();
    let built = wiring::runner(&state_dir, config.as_ref(), provider, specs).await?;
    if built.claim.is_some() {
        built.controller.recover().await?;
    }
    for (group, members) in by_group {
        let victims: Vec<_> = members.iter().map(|m| m.id.clone()).collect();
        built.controller.perform(&group, OpKind::Stop { victims }).await?;
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        println!("deleted {}", names.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefix_matching() {
        for (prefix, name, want) in [
            ("VM-test", "VM-test_1", true),
            ("VM-test", "VM-test_clone_3", true),
            ("VM-test", "VM-test", true),
            ("VM-test", "VM-testing_1", false),
            ("VM-test_1", "VM-test_1_clone_1", true),
            ("VM-test_1", "VM-test_10", false),
        ] {
            assert_eq!(super::matches(prefix, name), want, "{prefix} vs {name}");
        }
    }
}
