//! Build: config → store, provider, metric sources, balancer → controller. The only place that
//! names every adapter.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flotilla_controller::{Controller, ControllerParts, Options};
use flotilla_lb::RecordingBalancer;
use flotilla_metrics::LocalProcessSource;
use flotilla_model::{GroupSpec, SystemClock};
use flotilla_provider_local::{LocalConfig, LocalProvider};
use flotilla_store_sqlite::SqliteStore;

use crate::config::{Config, ProviderConfig, StoreConfig};

/// The built parts, kept typed for the verbs that need more than the controller.
pub struct Built {
    pub controller: Arc<Controller>,
    pub store: Arc<SqliteStore>,
    pub provider: Arc<LocalProvider>,
    pub balancer: Arc<RecordingBalancer>,
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

pub fn build(config: &Config, state_dir: &Path, groups: Vec<GroupSpec>) -> anyhow::Result<Built> {
    let (store, provider) = store_and_provider(state_dir, Some(config))?;
    let StoreConfig::Sqlite { sample_window, .. } = &config.store;
    Ok(assemble(store, provider, groups, *sample_window, state_dir))
}

/// Puts the controller together from an opened store and provider.
pub fn assemble(
    store: Arc<SqliteStore>,
    provider: Arc<LocalProvider>,
    groups: Vec<GroupSpec>,
    sample_window: usize,
    state_dir: &Path,
) -> Built {
    let balancer = Arc::new(RecordingBalancer::new());
    let controller = Controller::new(ControllerParts {
        store: store.clone(),
        provider: provider.clone(),
        sources: vec![Arc::new(LocalProcessSource::new())],
        balancer: balancer.clone(),
        clock: Arc::new(SystemClock),
        groups,
        options: Options { sample_window, failpoint: crate::failpoint::from_env(), ..Options::default() },
    });
    Built { controller, store, provider, balancer, state_dir: state_dir.to_path_buf() }
}
