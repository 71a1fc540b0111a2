use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use flotilla_model::Provider;
use flotilla_provider_libvirt::LibvirtProvider;

use crate::cli::{OutputFormat, StatusArgs};
use crate::config::Config;
use crate::status::HostReport;
use crate::{status, wiring};

pub async fn status(state_flag: Option<&Path>, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.as_deref().map(crate::config::load).transpose()?;
    let state_dir = crate::state_dir::resolve(state_flag, config.as_ref().and_then(|c| c.state_dir.as_deref()));
    let (store, _) = wiring::store_and_provider(&state_dir, config.as_ref())?;
    let mut report = status::collect(store.as_ref(), args.events).await?;
    if let Some(config) = &config {
        report.hosts = provider_hosts(config, &state_dir).await?;
    }
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => print!("{}", status::render_text(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The config's provider hosts, asked just now; `None` for a provider without hosts.
async fn provider_hosts(config: &Config, state_dir: &Path) -> anyhow::Result<Option<Vec<HostReport>>> {
    let Some(provider) = wiring::libvirt_provider(config, state_dir)? else { return Ok(None) };
    Ok(Some(libvirt_hosts(&provider).await))
}

/// Lists every host once (connecting where needed) and reports each with Flotilla's members on it.
/// The listing is the provider's own `list`, so a member is counted once, on the entry that can act
/// on it, and a host that is down still counts what it held (its members are listed as failed
/// with "host down"), as [`LibvirtProvider::check_hosts`] would report after the same survey.
async fn libvirt_hosts(p: &LibvirtProvider) -> Vec<HostReport> {
    let listed = p.list(None).await;
    let hosts = p.hosts_status();
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    match &listed {
        Ok(members) => {
            for m in members {
                if let Some(h) = m.tag("host") {
                    names.entry(h.to_string()).or_default().push(m.id.to_string());
                }
            }
        }
        // Every host is down: what each held, from the member records the provider keeps.
        Err(_) => {
            for m in p.recorded_members() {
                names.entry(m.host).or_default().push(m.instance);
            }
        }
    }
    hosts
        .into_iter()
        .map(|h| {
            let mut member_names = names.remove(&h.name).unwrap_or_default();
            member_names.sort();
            member_names.dedup();
            HostReport {
                members: member_names.len(),
                member_names,
                up: h.up,
                last_error: h.last_error.or_else(|| (!h.up).then(|| "not contacted".to_string())),
                name: h.name,
                uri: h.uri,
                driver: h.driver,
            }
        })
        .collect()
}
