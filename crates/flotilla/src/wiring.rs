//! Build: config → store, provider, metric sources, balancer → controller. The only place that
//! names every adapter.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flotilla_controller::{Controller, ControllerParts, Options};
use flotilla_lb::{EmbeddedBalancer, HealthCheck, HealthConfig, LbConfig, Mode, RecordingBalancer};
use flotilla_metrics::LocalProcessSource;
use flotilla_metrics_ssh::SshSampler;
use flotilla_model::{GroupId, GroupSpec, MetricSource, PolicySpec, Provider, SystemClock};
use flotilla_provider_local::{LocalConfig, LocalProvider};
use flotilla_provider_openstack::OpenStackProvider;
use flotilla_store_sqlite::SqliteStore;

use crate::balancer_router::BalancerRouter;
use crate::config::{
    BalancerSettings, Config, GroupConfig, MetricSourceKind, MetricsConfig, ProviderConfig, ProviderTemplate,
    StoreConfig,
};

/// The provider a configuration names, with the metric sources that read its members.
#[derive(Clone)]
pub struct ProviderParts {
    pub provider: Arc<dyn Provider>,
    pub sources: Vec<Arc<dyn MetricSource>>,
}

impl ProviderParts {
    /// The local provider and its /proc source: the embedded default.
    pub fn local(state_dir: &Path, start_timeout: Duration) -> anyhow::Result<ProviderParts> {
        Ok(ProviderParts {
            provider: local_provider(state_dir, start_timeout)?,
            sources: vec![Arc::new(LocalProcessSource::new())],
        })
    }
}

/// The built parts, kept typed for the verbs that need more than the controller.
pub struct Built {
    pub controller: Arc<Controller>,
    pub store: Arc<SqliteStore>,
    pub provider: Arc<dyn Provider>,
    /// The embedded balancer serving every group that has a `balancer:` section.
    pub lb: Arc<EmbeddedBalancer>,
    /// Where each such group's traffic arrives.
    pub listeners: BTreeMap<GroupId, SocketAddr>,
    pub state_dir: PathBuf,
    /// Provider call latency and errors, for `/metrics`.
    pub calls: crate::metered::ProviderCalls,
    /// The state directory's lock, when this process holds it (a verb beside a running daemon
    /// does not, and leaves the daemon's pending operations to it).
    pub claim: Option<crate::state_dir::Claim>,
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

/// The store and the local provider alone, for verbs that do not run the loop (deploy, cleanup,
/// status, load) on the embedded default.
pub fn store_and_provider(
    state_dir: &Path,
    config: Option<&Config>,
) -> anyhow::Result<(Arc<SqliteStore>, Arc<LocalProvider>)> {
    let default_store = StoreConfig::Sqlite { path: PathBuf::from("flotilla.db"), sample_window: 600 };
    let store_cfg = config.map(|c| &c.store).unwrap_or(&default_store);
    let start_timeout = match config.map(|c| &c.provider) {
        Some(ProviderConfig::Local { start_timeout }) => *start_timeout,
        _ => Duration::from_secs(20),
    };
    crate::state_dir::create(state_dir)?;
    Ok((open_store(state_dir, store_cfg)?, local_provider(state_dir, start_timeout)?))
}

/// The provider a verb that only changes members works on: the config's (without its metric
/// sources: no push listener, no SSH session), else the local default.
pub async fn verb_provider(state_dir: &Path, config: Option<&Config>) -> anyhow::Result<Arc<dyn Provider>> {
    match config {
        Some(c) => Ok(provider_alone(c, state_dir).await?.0),
        None => Ok(store_and_provider(state_dir, None)?.1),
    }
}

/// The operations runner alone, for verbs that change members without the loop (`deploy`,
/// `cleanup`, `demo`'s reset): the controller over the store and `provider` (from
/// [`verb_provider`]), with `groups`, no metric source and no listener. Its
/// [`Controller::perform`] is the same runner the loop uses.
pub async fn runner(
    state_dir: &Path,
    config: Option<&Config>,
    provider: Arc<dyn Provider>,
    groups: Vec<GroupSpec>,
) -> anyhow::Result<Built> {
    let claim = match crate::state_dir::claim(state_dir)? {
        crate::state_dir::Claimed::Ours(c) => Some(c),
        crate::state_dir::Claimed::Held(pid) => {
            tracing::info!(
                pid,
                "a flotilla daemon runs with this state directory; its pending operations are left to it"
            );
            None
        }
    };
    let (store, _) = store_and_provider(state_dir, config)?;
    let parts = ProviderParts { provider, sources: Vec::new() };
    let groups = groups.into_iter().map(|spec| GroupConfig { spec, balancer: None, template: None }).collect();
    let mut built = assemble(store, parts, groups, 600, state_dir).await?;
    built.claim = claim;
    Ok(built)
}

/// The provider `config` names and its metric sources (`metrics.sources`). An OpenStack provider
/// connects here (Keystone, catalog, microversion), so bad credentials stop the start, not the
/// first create.
pub async fn provider_parts(config: &Config, state_dir: &Path) -> anyhow::Result<ProviderParts> {
    let (provider, libvirt_stats, openstack) = provider_alone(config, state_dir).await?;
    let sources = metric_sources(&config.metrics, libvirt_stats, openstack.as_deref(), state_dir).await?;
    Ok(ProviderParts { provider, sources })
}

/// The provider `config` names, with what its own metric sources are made from (the libvirt
/// domain-stats source, the OpenStack provider for diagnostics).
#[allow(clippy::type_complexity)]
async fn provider_alone(
    config: &Config,
    state_dir: &Path,
) -> anyhow::Result<(Arc<dyn Provider>, Option<Arc<dyn MetricSource>>, Option<Arc<OpenStackProvider>>)> {
    let mut libvirt_stats: Option<Arc<dyn MetricSource>> = None;
    let mut openstack: Option<Arc<OpenStackProvider>> = None;
    let provider: Arc<dyn Provider> = match &config.provider {
        ProviderConfig::Local { start_timeout } => local_provider(state_dir, *start_timeout)?,
        ProviderConfig::OpenStack(settings) => {
            let templates = config.templates_of(ProviderTemplate::openstack);
            let p = Arc::new(OpenStackProvider::new(settings.clone(), templates));
            p.cloud().await?;
            openstack = Some(p.clone());
            p
        }
        ProviderConfig::Libvirt(_) => {
            let (p, stats) = crate::libvirt::provider(config, state_dir)?.context("the provider kind is libvirt")?;
            libvirt_stats = Some(stats);
            p
        }
    };
    Ok((crate::faults::wrap(provider)?, libvirt_stats, openstack))
}

async fn metric_sources(
    metrics: &MetricsConfig,
    libvirt_stats: Option<Arc<dyn MetricSource>>,
    openstack: Option<&OpenStackProvider>,
    state_dir: &Path,
) -> anyhow::Result<Vec<Arc<dyn MetricSource>>> {
    let mut out: Vec<Arc<dyn MetricSource>> = Vec::new();
    for kind in &metrics.sources {
        match kind {
            MetricSourceKind::Local => out.push(Arc::new(LocalProcessSource::new())),
            MetricSourceKind::Libvirt => {
                out.push(libvirt_stats.clone().context("the libvirt metric source needs the libvirt provider")?);
            }
            MetricSourceKind::Push => {
                let settings = metrics.push.clone().context("the push metric source needs `metrics.push`")?;
                out.push(push_source(settings).await?);
            }
            MetricSourceKind::Diagnostics => {
                let p = openstack.context("the diagnostics metric source needs the openstack provider")?;
                out.push(Arc::new(p.diagnostics_source()));
            }
            MetricSourceKind::Prometheus => {
                let settings =
                    metrics.prometheus.clone().context("the prometheus source needs `metrics.prometheus`")?;
                let source = flotilla_metrics_prometheus::PrometheusSource::new(settings)
                    .map_err(|e| anyhow::anyhow!("metrics.prometheus: {e}"))?;
                out.push(Arc::new(source));
            }
            MetricSourceKind::Ssh => {
                let settings = metrics.ssh.clone().context("the ssh metric source needs `metrics.ssh`")?;
                let pins = state_dir.join("ssh").join("host-keys");
                let sampler = SshSampler::new(settings, &pins).map_err(|e| anyhow::anyhow!("ssh sampler: {e}"))?;
                out.push(Arc::new(sampler));
            }
        }
    }
    Ok(out)
}

/// The push endpoint, listening before the controller starts (a port in use fails the start).
pub async fn push_source(settings: flotilla_metrics_push::PushSettings) -> anyhow::Result<Arc<dyn MetricSource>> {
    let listen = settings.listen;
    let (source, addr) = flotilla_metrics_push::PushSource::start_with_clock(settings, Arc::new(SystemClock)).await?;
    tracing::info!(listen = %addr, configured = %listen, "metrics push endpoint listening");
    Ok(source)
}

/// Everything `config` names, for its groups.
pub async fn build(config: &Config, state_dir: &Path) -> anyhow::Result<Built> {
    let claim = crate::state_dir::claim_for_controller(state_dir).await?;
    let store = open_store(state_dir, &config.store)?;
    let parts = provider_parts(config, state_dir).await?;
    let StoreConfig::Sqlite { sample_window, .. } = &config.store;
    let mut built = assemble(store, parts, config.groups.clone(), *sample_window, state_dir).await?;
    built.claim = Some(claim);
    Ok(built)
}

/// The engine's config for a group's `balancer:` section. The request-count window follows the
/// group's policy, since the balancer is what counts.
pub fn lb_config(settings: &BalancerSettings, spec: &GroupSpec) -> LbConfig {
    let tcp = settings.mode == Mode::Tcp;
    let mut cfg = if tcp { LbConfig::tcp(settings.listen) } else { LbConfig::http(settings.listen) };
    cfg.selection = settings.selection;
    cfg.health = HealthConfig {
        check: if tcp { HealthCheck::Tcp } else { HealthCheck::Http { path: settings.health_path.clone() } },
        interval: settings.health_interval,
        timeout: settings.health_timeout,
        rise: settings.rise,
        fall: settings.fall,
    };
    cfg.queue_timeout = settings.queue_timeout;
    cfg.response_timeout = settings.response_timeout;
    cfg.queue_limit = settings.queue_limit;
    cfg.retries = settings.retries;
    cfg.trust_forwarded = settings.trust_forwarded;
    if let PolicySpec::RequestCount(rc) = &spec.policy {
        cfg.count_window = rc.window;
    }
    cfg
}

/// Puts the controller together from an opened store and provider, binding each group's balancer
/// listener first (a port in use fails here, before anything is started).
pub async fn assemble(
    store: Arc<SqliteStore>,
    parts: ProviderParts,
    groups: Vec<GroupConfig>,
    sample_window: usize,
    state_dir: &Path,
) -> anyhow::Result<Built> {
    let lb = Arc::new(EmbeddedBalancer::new());
    let mut listeners = BTreeMap::new();
    for GroupConfig { spec, balancer, .. } in &groups {
        if let Some(settings) = balancer {
            let addr = lb
                .register(spec.id.clone(), lb_config(settings, spec))
                .await
                .with_context(|| format!("group {}: cannot listen on {}", spec.id, settings.listen))?;
            tracing::info!(group = %spec.id, listen = %addr, "balancer listening");
            listeners.insert(spec.id.clone(), addr);
        }
    }
    let router = Arc::new(BalancerRouter { embedded: lb.clone(), unrouted: RecordingBalancer::new() });
    let ProviderParts { provider, mut sources } = parts;
    let calls = crate::metered::ProviderCalls::default();
    let provider = crate::metered::wrap(provider, calls.clone());
    sources.push(lb.clone());
    let controller = Controller::new(ControllerParts {
        store: store.clone(),
        provider: provider.clone(),
        sources,
        balancer: router,
        clock: Arc::new(SystemClock),
        groups: groups.into_iter().map(|g| g.spec).collect(),
        options: Options { sample_window, failpoint: crate::failpoint::from_env()?, ..Options::default() },
    });
    Ok(Built { controller, store, provider, lb, listeners, calls, state_dir: state_dir.to_path_buf(), claim: None })
}
