//! The libvirt provider in the binary, behind the `libvirt` cargo feature (it links libvirt, which a
//! bare machine lacks). Without the feature a libvirt config still validates (`config check`), and
//! every verb that would touch a host says how to get a build that can. The only file of the binary
//! that names the feature.

use std::path::Path;
use std::sync::Arc;

use flotilla_model::{MetricSource, Provider};

use crate::config::Config;
use crate::status::HostReport;

/// Why a libvirt verb cannot run in a build without the feature.
pub const NOT_BUILT: &str = "this flotilla was built without libvirt support: rebuild it with \
     `cargo build --release --features libvirt` (needs pkg-config and libvirt-dev)";

/// A libvirt provider and its domain-stats source. `provider(config, state_dir)` builds them for a
/// config of the libvirt kind (`None` for another kind) with no I/O: hosts are contacted at first use.
pub type Parts = (Arc<dyn Provider>, Arc<dyn MetricSource>);

/// Fails with [`NOT_BUILT`] (as bad input, exit status 2) in a build without the feature.
pub fn require() -> anyhow::Result<()> {
    if cfg!(feature = "libvirt") {
        Ok(())
    } else {
        crate::usage(NOT_BUILT)
    }
}

#[cfg(feature = "libvirt")]
pub use enabled::{hosts, provider};

#[cfg(not(feature = "libvirt"))]
pub use disabled::{hosts, provider};

#[cfg(feature = "libvirt")]
mod enabled {
    use std::collections::BTreeMap;

    use flotilla_provider_libvirt::{DomainStatsSource, LibvirtProvider};

    use super::*;
    use crate::config::{ProviderConfig, ProviderTemplate};

    fn build(config: &Config, state_dir: &Path) -> anyhow::Result<Option<LibvirtProvider>> {
        let ProviderConfig::Libvirt(settings) = &config.provider else { return Ok(None) };
        let templates = config.templates_of(ProviderTemplate::libvirt);
        let p = LibvirtProvider::new(settings.clone(), state_dir, templates)
            .map_err(|e| anyhow::anyhow!("libvirt provider: {e}"))?;
        Ok(Some(p))
    }

    pub fn provider(config: &Config, state_dir: &Path) -> anyhow::Result<Option<Parts>> {
        let Some(p) = build(config, state_dir)? else { return Ok(None) };
        let stats: Arc<dyn MetricSource> = Arc::new(DomainStatsSource::new(&p));
        Ok(Some((Arc::new(p), stats)))
    }

    /// The config's libvirt hosts, asked just now; `None` for a provider without hosts. Lists every
    /// host once (connecting where needed) and reports each with Flotilla's members on it. The
    /// listing is the provider's own `list`, so a member is counted once, on the entry that can act
    /// on it, and a host that is down still counts what it held (its members are listed as failed
    /// with "host down"), as [`LibvirtProvider::check_hosts`] would report after the same survey.
    pub async fn hosts(config: &Config, state_dir: &Path) -> anyhow::Result<Option<Vec<HostReport>>> {
        let Some(p) = build(config, state_dir)? else { return Ok(None) };
        let listed = p.list(None).await;
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
        let reports = p
            .hosts_status()
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
            .collect();
        Ok(Some(reports))
    }
}

#[cfg(not(feature = "libvirt"))]
mod disabled {
    use super::*;
    use crate::config::ProviderConfig;

    pub fn provider(config: &Config, _state_dir: &Path) -> anyhow::Result<Option<Parts>> {
        match config.provider {
            ProviderConfig::Libvirt(_) => require().map(|_| None),
            _ => Ok(None),
        }
    }

    pub async fn hosts(config: &Config, state_dir: &Path) -> anyhow::Result<Option<Vec<HostReport>>> {
        provider(config, state_dir).map(|_| None)
    }
}
