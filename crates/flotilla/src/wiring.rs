//! Build: config → store, provider, metric sources, balancer → controller. The only place that
//! names every adapter.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flotilla_controller::{Controller, ControllerParts, Options};
use flotilla_lb::{EmbeddedBalancer, HealthCheck, HealthConfig, LbConfig, RecordingBalancer, Selection};
use flotilla_metrics::LocalProcessSource;
use flotilla_model::{GroupId, GroupSpec, PolicySpec, SystemClock};
use flotilla_provider_local::{LocalConfig, LocalProvider};
use flotilla_store_sqlite::SqliteStore;

use crate::balancer_router::BalancerRouter;
use crate::config::{BalancerSelection, BalancerSettings, Config, ProviderConfig, StoreConfig};

/// The built parts, kept typed for the verbs that need more than the controller.
pub struct Built {
    pub controller: Arc<Controller>,
    pub store: Arc<SqliteStore>,
    pub provider: Arc<LocalProvider>,
    /// The embedded balancer serving every group that has a `balancer:` section.
    pub lb: Arc<EmbeddedBalancer>,
    /// Where each such group's traffic arrives.
    pub listeners: BTreeMap<GroupId, SocketAddr>,
    pub state_dir: PathBuf,
}

/// The program local members run: this binary (or `FLOTILLA_EXE`, for tests that drive the library).
pub fn member_exe() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("FLOTILLA_EXE").filter(|s| !s.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    std::env::current_exe().context("cannot find the flotilla executable to run members")
}

pub fn open_store(state_dir: &Path, cfg: &StoreConfig) -> anyhow::Result<Arc<SqliteStore>> {
    let StoreConfig::Sqlite { path, .. } = cfg;
    let path = if path.is_absolute() { path.clone() } else { state_dir.join(path) };
    let store = SqliteStore::open(&path).with_context(|| format!("cannot open the store at {}", path.display()))?;
    Ok(Arc::new(store))
}

pub fn local_provider(state_dir: &Path, start_timeout: Duration) -> anyhow::Result<Arc<LocalProvider>> {
    Ok(Arc::new(LocalProvider::new(LocalConfig {
        state_dir: state_dir.to_path_buf(),
        exe: member_exe()?,
        start_timeout,
    })))
}

/// The store and provider alone, for verbs that do not run the loop (deploy, cleanup, status, load).
pub fn store_and_provider(
    state_dir: &Path,
    config: Option<&Config>,
) -> anyhow::Result<(Arc<SqliteStore>, Arc<LocalProvider>)> {
    let default_store = StoreConfig::Sqlite { path: PathBuf::from("flotilla.db"), sample_window: 600 };
    let store_cfg = config.map(|c| &c.store).unwrap_or(&default_store);
    let start_timeout = match config.map(|c| &c.provider) {
        Some(ProviderConfig::Local { start_timeout }) => *start_timeout,
        None => Duration::from_secs(20),
    };
    std::fs::create_dir_all(state_dir).with_context(|| format!("cannot create state dir {}", state_dir.display()))?;
    Ok((open_store(state_dir, store_cfg)?, local_provider(state_dir, start_timeout)?))
}

pub async fn build(config: &Config, state_dir: &Path, groups: Vec<GroupSpec>) -> anyhow::Result<Built> {
    let (store, provider) = store_and_provider(state_dir, Some(config))?;
    let StoreConfig::Sqlite { sample_window, .. } = &config.store;
    assemble(store, provider, groups, &config.balancers, *sample_window, state_dir).await
}

/// The engine's config for a group's `balancer:` section. The request-count window follows the
/// group's policy, since the balancer is what counts.
pub fn lb_config(settings: &BalancerSettings, spec: &GroupSpec) -> LbConfig {
    let mut cfg = if settings.tcp { LbConfig::tcp(settings.listen) } else { LbConfig::http(settings.listen) };
    cfg.selection = match settings.selection {
        BalancerSelection::LeastOutstanding => Selection::LeastOutstanding,
        BalancerSelection::RoundRobin => Selection::RoundRobin,
        BalancerSelection::Weighted => Selection::Weighted,
    };
    cfg.health = HealthConfig {
        check: if settings.tcp { HealthCheck::Tcp } else { HealthCheck::Http { path: settings.health_path.clone() } },
        interval: settings.health_interval,
        timeout: settings.health_timeout,
        rise: settings.rise,
        fall: settings.fall,
    };
    cfg.queue_timeout = settings.queue_timeout;
    cfg.queue_limit = settings.queue_limit;
    cfg.retries = settings.retries;
    if let PolicySpec::RequestCount(rc) = &spec.policy {
        cfg.count_window = rc.window;
    }
    cfg
}

/// Puts the controller together from an opened store and provider, binding each group's balancer
/// listener first (a port in use fails here, before anything is started).
pub async fn assemble(
    store: Arc<SqliteStore>,
    provider: Arc<LocalProvider>,
    groups: Vec<GroupSpec>,
    balancers: &BTreeMap<GroupId, BalancerSettings>,
    sample_window: usize,
    state_dir: &Path,
) -> anyhow::Result<Built> {
    let lb = Arc::new(EmbeddedBalancer::new());
    let mut listeners = BTreeMap::new();
    for spec in &groups {
        if let Some(settings) = balancers.get(&spec.id) {
            let addr = lb
                .register(spec.id.clone(), lb_config(settings, spec))
                .await
                .with_context(|| format!("group {}: cannot listen on {}", spec.id, settings.listen))?;
            tracing::info!(group = %spec.id, listen = %addr, "balancer listening");
            listeners.insert(spec.id.clone(), addr);
        }
    }
    let router = Arc::new(BalancerRouter { embedded: lb.clone(), unrouted: RecordingBalancer::new() });
    let controller = Controller::new(ControllerParts {
        store: store.clone(),
        provider: provider.clone(),
        sources: vec![Arc::new(LocalProcessSource::new()), lb.clone()],
        balancer: router,
        clock: Arc::new(SystemClock),
        groups,
        options: Options { sample_window, failpoint: crate::failpoint::from_env(), ..Options::default() },
    });
    Ok(Built { controller, store, provider, lb, listeners, state_dir: state_dir.to_path_buf() })
}
