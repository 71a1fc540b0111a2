//! Semantic checks on the deserialized file, and the mapping to the model's types.
//!
//! Every check runs and every failure is collected; nothing is clamped or silently corrected.
//! Errors carry a field path but no file or position: [`super::parse`] adds those.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use flotilla_model::name::{group_name_problem, member_name_problem};
use flotilla_model::{
    AdjustmentType, Aggregation, AlarmDef, AlarmKind, AlarmPolicySpec, GroupId, GroupSpec, HealthReplace, InstanceSpec,
    MetricChoice, Mode, PolicySpec, RequestCountSpec, Rollout, ScalingRule, TargetMetric, TargetSpec, ThresholdSpec,
    Victim,
};

use super::raw::{
    default_max, default_stale_after, RawAdjustmentType, RawAggregation, RawAlarm, RawAlarmKind, RawConfig, RawGroup,
    RawMetric, RawMetrics, RawMode, RawPolicy, RawProvider, RawProviderKind, RawReplacementStrategy, RawScalingRule,
    RawSource, RawStore, RawStoreKind, RawTemplate, RawVictim,
};
use super::{
    BalancerSettings, Config, ConfigError, GroupConfig, MetricSourceKind, MetricsConfig, ProviderConfig,
    ProviderTemplate, StoreConfig,
};

/// The smallest sampling interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The smallest `store.sample_window`.
pub const MIN_SAMPLE_WINDOW: usize = 10;
/// The shortest request-count window.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);
/// The longest request-count window.
pub const MAX_WINDOW: Duration = Duration::from_secs(300);
/// The most vCPUs a template may ask for.
pub const MAX_VCPUS: u32 = 64;
/// The most samples kept per group.
pub const MAX_SAMPLE_WINDOW: usize = 1_000_000;
/// The most members a group may have.
pub const MAX_MEMBERS: u32 = 1000;
/// The longest streak a policy may ask for (`min_up`, `min_down`, `scale_in_samples`).
pub const MAX_STREAK: u32 = 10_000;
/// The most requests a balancer lets wait at once.
pub const MAX_QUEUE: usize = 1_000_000;
/// The most consecutive health checks `rise` and `fall` may ask for.
pub const MAX_CHECKS: u32 = 100;

/// The most alarms a group declares, and the most rules an alarm policy has.
pub const MAX_ALARMS: usize = 16;

/// A value above its bound: `must be at most MAX (got V)`.
fn at_most<T: PartialOrd + std::fmt::Display>(errors: &mut Vec<ConfigError>, path: String, v: T, max: T) {
    if v > max {
        err(errors, path, format!("must be at most {max} (got {v})"));
    }
}

/// A value outside `min..=max`.
fn between<T: PartialOrd + std::fmt::Display>(errors: &mut Vec<ConfigError>, path: String, v: T, min: T, max: T) {
    if v < min || v > max {
        err(errors, path, format!("must be between {min} and {max} (got {v})"));
    }
}

/// Checks a whole deserialized file and builds the [`Config`], or returns every problem found.
pub fn validate(raw: RawConfig) -> Result<Config, Vec<ConfigError>> {
    validate_parts(Parts {
        state_dir: Some(raw.state_dir),
        store: Some(raw.store),
        provider: Some(raw.provider),
        metrics: Some(raw.metrics),
        api: Some(raw.api),
        groups: Some(raw.groups.into_iter().map(Some).collect()),
    })
}

/// The sections of a file, each `None` when it failed to deserialize (its problems are already
/// reported). The sections that did deserialize are still checked, so one bad section does not
/// hide the others' problems; a broken section only means no [`Config`] comes out.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    pub state_dir: Option<Option<PathBuf>>,
    pub store: Option<RawStore>,
    pub provider: Option<RawProvider>,
    pub metrics: Option<RawMetrics>,
    /// `Some(None)` when the file has no `api` section; `None` when it is broken.
    pub api: Option<Option<super::raw::RawApi>>,
    /// `Some(vec![])` when the file has no groups; `None` items are broken groups.
    pub groups: Option<Vec<Option<RawGroup>>>,
}

/// [`validate`] over sections that may be missing; see [`Parts`].
pub(crate) fn validate_parts(parts: Parts) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let state_dir = parts.state_dir.map(|dir| check_state_dir(dir, &mut errors));
    let store = parts.store.map(|s| check_store(s, &mut errors));
    let provider = parts.provider.map(|p| check_provider(p, &mut errors));
    let metrics = match (&parts.metrics, &provider) {
        (Some(m), Some(p)) => Some(check_metrics(m, p, &mut errors, &mut warnings)),
        _ => None,
    };
    // Pushed samples may carry request counts (an outside balancer or monitor): then a
    // request-based policy does not need our balancer.
    let pushed = parts.metrics.as_ref().and_then(|m| m.sources.as_ref()).is_some_and(|s| s.contains(&RawSource::Push));
    let balancers = parts.groups.as_ref().map(|groups| check_balancers(groups, pushed, &mut errors));
    let templates = match (&parts.groups, &provider) {
        (Some(groups), Some(p)) => Some(check_templates(groups, p, &mut errors)),
        _ => None,
    };
    let groups = parts.groups.map(|groups| check_groups(groups, &mut errors));
    let api = parts.api.map(|a| a.and_then(|a| check_api(&a, &mut errors, &mut warnings)));

    match (state_dir, store, provider, groups, balancers, templates, metrics, api) {
        (
            Some(state_dir),
            Some(store),
            Some(provider),
            Some(Some(mut groups)),
            Some(mut balancers),
            Some(mut templates),
            Some(metrics),
            Some(api),
        ) if errors.is_empty() => {
            // A provider template is part of what members are made from: fold it into the version.
            for g in &mut groups {
                match templates.get(&g.id) {
                    Some(ProviderTemplate::Libvirt(t)) => {
                        g.template_version = short_hash(&format!("{}/{}", g.template_version, t.fingerprint()));
                    }
                    Some(ProviderTemplate::OpenStack(t)) => {
                        // The image is named, not pinned: a golden image rebuilt under the same
                        // name is picked up by new members, not rolled out to old ones.
                        let text = serde_json::to_string(t).unwrap_or_default();
                        g.template_version = short_hash(&format!("{}/{text}", g.template_version));
                    }
                    None => {}
                }
            }
            let groups = groups
                .into_iter()
                .map(|spec| GroupConfig {
                    balancer: balancers.remove(&spec.id),
                    template: templates.remove(&spec.id),
                    spec,
                })
                .collect();
            Ok(Config { state_dir, store, provider, groups, metrics, api, warnings })
        }
        _ => Err(errors),
    }
}

/// Each group's provider template, checked against the provider: required by `libvirt` and
/// `openstack` (each its own section), refused elsewhere, each problem under
/// `groups[i].template.<kind>.…`.
fn check_templates(
    groups: &[Option<RawGroup>],
    provider: &ProviderConfig,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<GroupId, ProviderTemplate> {
    let mut out = BTreeMap::new();
    let mut total_max = 0u32;
    for (i, g) in groups.iter().enumerate() {
        let Some(g) = g else { continue };
        let max = g.max.unwrap_or_else(|| default_max(g.mode));
        let surge = match g.replacement.strategy {
            RawReplacementStrategy::Rolling => g.replacement.max_unavailable,
            RawReplacementStrategy::None => 0,
        };
        total_max = total_max.saturating_add(max).saturating_add(surge);
        let id = GroupId::new(g.name.clone());
        let os_base = format!("groups[{i}].template.openstack");
        match (provider, &g.template.openstack) {
            (ProviderConfig::OpenStack(_), Some(t)) => {
                for (path, message) in t.validate() {
                    err(errors, format!("{os_base}.{path}"), message);
                }
                out.insert(id.clone(), ProviderTemplate::OpenStack(t.clone()));
            }
            (ProviderConfig::OpenStack(_), None) => err(
                errors,
                format!("groups[{i}].template"),
                "provider.kind is openstack: the template needs an `openstack` section (image, flavor, network)",
            ),
            (_, Some(_)) => err(errors, os_base, "applies only with provider.kind openstack"),
            (_, None) => {}
        }
        let base = format!("groups[{i}].template.libvirt");
        match (provider, &g.template.libvirt) {
            (ProviderConfig::Libvirt(settings), Some(t)) => {
                for (path, message) in t.validate(max, settings) {
                    let path = if path == "max" { format!("groups[{i}].max") } else { format!("{base}.{path}") };
                    err(errors, path, message);
                }
                out.insert(id, ProviderTemplate::Libvirt(t.clone()));
            }
            (ProviderConfig::Libvirt(_), None) => err(
                errors,
                format!("groups[{i}].template"),
                "provider.kind is libvirt: the template needs a `libvirt` section (at least `image`)",
            ),
            (ProviderConfig::Local { .. }, Some(_)) => {
                err(errors, base, "applies only with provider.kind libvirt (the provider is local)")
            }
            (ProviderConfig::OpenStack(_), Some(_)) => {
                err(errors, base, "applies only with provider.kind libvirt (the provider is openstack)")
            }
            (ProviderConfig::Local { .. } | ProviderConfig::OpenStack(_), None) => {}
        }
    }
    if let ProviderConfig::Libvirt(settings) = provider {
        for (path, message) in settings.validate_pool_for(total_max) {
            err(errors, format!("provider.libvirt.{path}"), message);
        }
    }
    out
}

/// The metric sources: the provider's own by default; each one listed must fit the provider.
fn check_metrics(
    raw: &RawMetrics,
    provider: &ProviderConfig,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> MetricsConfig {
    let own = match provider {
        ProviderConfig::Local { .. } => RawSource::Local,
        ProviderConfig::Libvirt(_) => RawSource::Libvirt,
        ProviderConfig::OpenStack(_) => RawSource::Diagnostics,
    };
    let listed = raw.sources.clone().unwrap_or_else(|| vec![own]);
    if listed.is_empty() {
        err(errors, "metrics.sources", "must list at least one source");
    }
    let mut sources = Vec::new();
    for (i, src) in listed.iter().enumerate() {
        let path = format!("metrics.sources[{i}]");
        if listed[..i].contains(src) {
            err(errors, path.clone(), "listed twice");
        }
        let kind = match src {
            RawSource::Local => MetricSourceKind::Local,
            RawSource::Libvirt => MetricSourceKind::Libvirt,
            RawSource::Ssh => MetricSourceKind::Ssh,
            RawSource::Diagnostics => MetricSourceKind::Diagnostics,
            RawSource::Push => MetricSourceKind::Push,
            RawSource::Prometheus => MetricSourceKind::Prometheus,
        };
        match (src, provider) {
            (RawSource::Local, ProviderConfig::Libvirt(_)) => {
                err(errors, path, "`local` reads local member processes; the provider is libvirt")
            }
            (RawSource::Local, ProviderConfig::OpenStack(_)) => {
                err(errors, path, "`local` reads local member processes; the provider is openstack")
            }
            (RawSource::Libvirt, ProviderConfig::Local { .. } | ProviderConfig::OpenStack(_)) => {
                err(errors, path, "`libvirt` reads domain stats; the provider is not libvirt")
            }
            (RawSource::Diagnostics, ProviderConfig::Local { .. } | ProviderConfig::Libvirt(_)) => {
                err(errors, path, "`diagnostics` reads Nova server diagnostics; the provider is not openstack")
            }
            _ => {}
        }
        sources.push(kind);
    }
    sources.dedup();
    let wants_ssh = listed.contains(&RawSource::Ssh);
    match (&raw.ssh, wants_ssh) {
        (None, true) => err(errors, "metrics.ssh", "the `ssh` source needs this section (at least `identity_file`)"),
        (Some(ssh), _) => {
            for (path, message) in ssh.validate() {
                err(errors, format!("metrics.ssh.{path}"), message);
            }
        }
        (None, false) => {}
    }
    let push = match (&raw.push, listed.contains(&RawSource::Push)) {
        (None, true) => {
            err(errors, "metrics.push", "the `push` source needs this section (at least `listen`)");
            None
        }
        (Some(p), _) => check_push(p, errors, warnings),
        (None, false) => None,
    };
    match (&raw.prometheus, listed.contains(&RawSource::Prometheus)) {
        (None, true) => {
            err(errors, "metrics.prometheus", "the `prometheus` source needs this section (`url`, `queries`)")
        }
        (Some(p), _) => {
            for (path, message) in p.validate() {
                err(errors, format!("metrics.prometheus.{path}"), message);
            }
        }
        (None, false) => {}
    }
    MetricsConfig { sources, ssh: raw.ssh.clone(), push, prometheus: raw.prometheus.clone() }
}

/// `metrics.push`, with its token read from the variable or file it names (never from the file
/// itself, and never printed).
fn check_push(
    raw: &super::raw::RawPush,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Option<flotilla_metrics_push::PushSettings> {
    let (field, token) = match (&raw.token_env, &raw.token_file) {
        (Some(_), Some(_)) => {
            err(errors, "metrics.push.token_file", "give token_env or token_file, not both");
            return None;
        }
        (_, Some(file)) => match std::fs::read_to_string(file) {
            Ok(t) => {
                if let Some(w) = readable_by_others(file) {
                    warnings.push(ConfigError::at("metrics.push.token_file", w));
                }
                ("token_file", t.trim().to_string())
            }
            Err(e) => {
                err(errors, "metrics.push.token_file", format!("cannot read {}: {e}", file.display()));
                return None;
            }
        },
        (env, None) => {
            let var = env.clone().unwrap_or_else(|| "FLOTILLA_PUSH_TOKEN".to_string());
            match std::env::var(&var) {
                Ok(t) => ("token_env", t.trim().to_string()),
                Err(_) => {
                    err(errors, "metrics.push.token_env", format!("${var} is not set (it holds the shared token)"));
                    return None;
                }
            }
        }
    };
    let mut settings = flotilla_metrics_push::PushSettings::new(raw.listen, token);
    settings.max_age = raw.max_age;
    let problems = settings.validate();
    for (path, message) in &problems {
        let path = if path == "token" { field } else { path.as_str() };
        err(errors, format!("metrics.push.{path}"), message.clone());
    }
    problems.is_empty().then_some(settings)
}

/// `api`: the listener, and the tokens read from the file or variable it names (hashed at once).
fn check_api(
    raw: &super::raw::RawApi,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Option<crate::ApiConfig> {
    use flotilla_listener::auth::Tokens;
    let listen = match raw.listen.parse::<std::net::SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            err(errors, "api.listen", format!("`{}` is not an IP:port address like 127.0.0.1:8070", raw.listen));
            None
        }
    };
    if raw.anonymous_read && listen.is_some_and(|a| !a.ip().is_loopback()) {
        err(errors, "api.anonymous_read", "only on a loopback listener (`listen: 127.0.0.1:…`)");
    }
    let (field, text) = match (&raw.tokens_file, &raw.tokens_env) {
        (Some(_), Some(_)) => {
            err(errors, "api.tokens_file", "give tokens_file or tokens_env, not both");
            return None;
        }
        (Some(file), None) => match std::fs::read_to_string(file) {
            Ok(t) => {
                if let Some(w) = readable_by_others(file) {
                    warnings.push(ConfigError::at("api.tokens_file", w));
                }
                ("api.tokens_file", Some(t))
            }
            Err(e) => {
                err(errors, "api.tokens_file", format!("cannot read {}: {e}", file.display()));
                return None;
            }
        },
        (None, env) => {
            let var = env.clone().unwrap_or_else(|| "FLOTILLA_API_TOKENS".to_string());
            ("api.tokens_env", std::env::var(&var).ok())
        }
    };
    let tokens = match text {
        Some(t) => match Tokens::parse(&t) {
            Ok(tokens) => tokens,
            Err(why) => {
                err(errors, field, why);
                return None;
            }
        },
        None if raw.anonymous_read => Tokens::default(),
        None => {
            err(
                errors,
                field,
                "no tokens: name a file (tokens_file) or set $FLOTILLA_API_TOKENS (`admin <token>` lines)",
            );
            return None;
        }
    };
    let tls = match &raw.tls {
        None => None,
        Some(t) => {
            if let Some(w) = readable_by_others(&t.key) {
                warnings.push(ConfigError::at("api.tls.key", w));
            }
            match flotilla_listener::tls::Tls::load(&t.cert, &t.key) {
                Ok(tls) => Some(tls),
                Err(flotilla_listener::tls::TlsError::Cert(why)) => {
                    err(errors, "api.tls.cert", why);
                    return None;
                }
                Err(flotilla_listener::tls::TlsError::Key(why)) => {
                    err(errors, "api.tls.key", why);
                    return None;
                }
            }
        }
    };
    Some(crate::ApiConfig { listen: listen?, tokens, anonymous_read: raw.anonymous_read, tls })
}

/// A secret's file that users other than its owner may read: what to say about it. (A warning,
/// not an error: the operator may share it with a group on purpose; ssh refuses such keys.)
fn readable_by_others(file: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} holds a secret and other users may read it (mode {mode:04o}); `chmod 600 {}`",
            file.display(),
            file.display()
        )
    })
}

/// The first 12 hex digits of a SHA-256: short, stable across builds.
fn short_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn err(errors: &mut Vec<ConfigError>, path: impl Into<String>, message: impl Into<String>) {
    errors.push(ConfigError::at(path, message));
}

fn check_state_dir(dir: Option<PathBuf>, errors: &mut Vec<ConfigError>) -> Option<PathBuf> {
    if dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
        err(errors, "state_dir", "must not be empty (leave it out for the default)");
    }
    dir
}

fn check_store(raw: RawStore, errors: &mut Vec<ConfigError>) -> StoreConfig {
    if raw.kind == RawStoreKind::Postgres {
        err(errors, "store.kind", "postgres store is not available yet");
    }
    if raw.path.as_os_str().is_empty() {
        err(errors, "store.path", "must not be empty");
    }
    if raw.sample_window < MIN_SAMPLE_WINDOW {
        err(errors, "store.sample_window", format!("must be at least {MIN_SAMPLE_WINDOW} (got {})", raw.sample_window));
    }
    at_most(errors, "store.sample_window".into(), raw.sample_window, MAX_SAMPLE_WINDOW);
    StoreConfig::Sqlite { path: raw.path, sample_window: raw.sample_window }
}

fn check_provider(raw: RawProvider, errors: &mut Vec<ConfigError>) -> ProviderConfig {
    match raw.kind {
        RawProviderKind::Local => {
            if raw.start_timeout.is_zero() {
                err(errors, "provider.start_timeout", "must be greater than 0s");
            }
            if raw.libvirt.is_some() {
                err(errors, "provider.libvirt", "applies only with kind: libvirt (the kind is local)");
            }
            if raw.openstack.is_some() {
                err(errors, "provider.openstack", "applies only with kind: openstack (the kind is local)");
            }
            ProviderConfig::Local { start_timeout: raw.start_timeout }
        }
        RawProviderKind::Openstack => {
            if raw.libvirt.is_some() {
                err(errors, "provider.libvirt", "applies only with kind: libvirt (the kind is openstack)");
            }
            let settings = raw.openstack.unwrap_or_default();
            for (path, message) in settings.validate() {
                err(errors, format!("provider.openstack.{path}"), message);
            }
            ProviderConfig::OpenStack(settings)
        }
        RawProviderKind::Libvirt if raw.openstack.is_some() => {
            err(errors, "provider.openstack", "applies only with kind: openstack (the kind is libvirt)");
            ProviderConfig::Local { start_timeout: raw.start_timeout }
        }
        RawProviderKind::Libvirt => match raw.libvirt {
            Some(settings) => {
                for (path, message) in settings.validate() {
                    err(errors, format!("provider.libvirt.{path}"), message);
                }
                ProviderConfig::Libvirt(settings)
            }
            None => {
                err(
                    errors,
                    "provider.kind",
                    "libvirt needs a `provider.libvirt` section (at least `hosts` and `ports`)",
                );
                ProviderConfig::Local { start_timeout: raw.start_timeout }
            }
        },
    }
}

/// Checks every group that deserialized, then the rules across groups. `None` when any group is
/// broken or invalid.
fn check_groups(groups: Vec<Option<RawGroup>>, errors: &mut Vec<ConfigError>) -> Option<Vec<GroupSpec>> {
    if groups.is_empty() {
        err(errors, "groups", "at least one group is required");
        return None;
    }
    let before = errors.len();
    let mut specs = Vec::with_capacity(groups.len());
    let mut complete = true;
    for (i, group) in groups.iter().enumerate() {
        match group {
            Some(g) => specs.push((i, check_group(i, g, errors))),
            None => complete = false,
        }
    }
    check_across_groups(&specs, &groups, errors);
    (complete && errors.len() == before).then(|| specs.into_iter().map(|(_, spec)| spec).collect())
}

/// The one name rule (`flotilla_model::name`): groups are shorter than members.
fn check_name(errors: &mut Vec<ConfigError>, path: String, what: &str, name: &str) {
    let problem = if what == "group name" { group_name_problem(name) } else { member_name_problem(name) };
    if let Some(p) = problem {
        err(errors, path, format!("invalid {what} {p}"));
    }
}

fn dur(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

/// One group written by a verb rather than a file (`watch`'s flags): the same deserialization and
/// the same rules as a group in a file, so both accept and refuse the same values with the same
/// messages. Paths are relative to the group (`policy.low`).
pub fn validate_group(raw: serde_yaml::Value) -> Result<GroupSpec, Vec<ConfigError>> {
    let raw: RawGroup = serde_path_to_error::deserialize(raw)
        .map_err(|e| vec![ConfigError::at(e.path().to_string(), e.inner().to_string())])?;
    let mut errors = Vec::new();
    let spec = check_group(0, &raw, &mut errors);
    if errors.is_empty() {
        return Ok(spec);
    }
    for e in &mut errors {
        e.path = e.path.strip_prefix("groups[0].").unwrap_or(&e.path).to_string();
    }
    Err(errors)
}

/// The per-group rules. Returns the spec even when invalid; the caller discards it then.
fn check_group(i: usize, g: &RawGroup, errors: &mut Vec<ConfigError>) -> GroupSpec {
    let p = |field: &str| format!("groups[{i}].{field}");

    check_name(errors, p("name"), "group name", &g.name);

    let max = g.max.unwrap_or_else(|| default_max(g.mode));
    if g.min < 1 {
        err(errors, p("min"), "must be at least 1");
    }
    if max < 1 {
        err(errors, p("max"), "must be at least 1");
    } else if max > MAX_MEMBERS {
        at_most(errors, p("max"), max, MAX_MEMBERS);
    } else if g.min > max {
        let default_note = match (g.max, g.mode) {
            (Some(_), _) => String::new(),
            (None, RawMode::Scale) => ", the default for scale mode".to_string(),
            (None, RawMode::Handover) => ", the default for handover mode".to_string(),
        };
        err(errors, p("min"), format!("min ({}) must not be greater than max ({max}{default_note})", g.min));
    }
    if g.mode == RawMode::Handover && max < 2 {
        err(errors, p("max"), format!("handover mode needs max >= 2, room for the primary and its clone (got {max})"));
    }
    if g.increment < 1 {
        err(errors, p("increment"), "must be at least 1");
    } else if max >= 1 && g.increment > max {
        err(errors, p("increment"), format!("increment ({}) must not be greater than max ({max})", g.increment));
    }

    if g.interval < MIN_INTERVAL {
        err(errors, p("interval"), format!("must be at least {} (got {})", dur(MIN_INTERVAL), dur(g.interval)));
    }
    let stale_after = g.stale_after.unwrap_or_else(|| default_stale_after(g.interval));
    if stale_after < g.interval {
        err(
            errors,
            p("stale_after"),
            format!("stale_after ({}) must be at least interval ({})", dur(stale_after), dur(g.interval)),
        );
    }

    if let Some(c) = &g.checkin {
        let hour = Duration::from_secs(3600);
        if c.every < Duration::from_secs(1) || c.every > hour {
            err(errors, p("checkin.every"), format!("must be 1s to 1h (got {})", dur(c.every)));
        }
        if c.grace > hour {
            err(errors, p("checkin.grace"), format!("must be at most 1h (got {})", dur(c.grace)));
        }
    }

    let alarms = check_alarms(i, &g.alarms, errors);
    let (policy, aggregation) = check_policy(i, &g.policy, &alarms, errors);

    let base_name = g.template.base_name.clone().unwrap_or_else(|| g.name.clone());
    let clone_base = g.template.clone_base.clone().unwrap_or_else(|| format!("{base_name}_clone"));
    if g.template.base_name.is_some() {
        check_name(errors, p("template.base_name"), "base name", &base_name);
    }
    if g.template.clone_base.is_some() {
        check_name(errors, p("template.clone_base"), "clone base name", &clone_base);
    }
    if !(1..=MAX_VCPUS).contains(&g.template.vcpus) {
        err(errors, p("template.vcpus"), format!("must be between 1 and {MAX_VCPUS} (got {})", g.template.vcpus));
    }

    let rollout = match g.replacement.strategy {
        RawReplacementStrategy::None => None,
        RawReplacementStrategy::Rolling => {
            let n = g.replacement.max_unavailable;
            if n < 1 {
                err(errors, p("replacement.max_unavailable"), "must be at least 1");
            } else if max >= 1 && n > max {
                err(errors, p("replacement.max_unavailable"), format!("must not be greater than max ({max}, got {n})"));
            }
            Some(Rollout { max_unavailable: n.max(1) })
        }
    };

    GroupSpec {
        id: GroupId::new(g.name.clone()),
        mode: match g.mode {
            RawMode::Scale => Mode::Scale,
            RawMode::Handover => Mode::Handover,
        },
        min: g.min,
        max,
        increment: g.increment,
        cooldown_up: g.cooldown_up,
        cooldown_down: g.cooldown_down,
        interval: g.interval,
        stale_after,
        policy,
        aggregation,
        victim: match g.victim {
            RawVictim::Oldest => Victim::Oldest,
            RawVictim::Newest => Victim::Newest,
            RawVictim::LeastBusy => Victim::LeastBusy,
        },
        drain_timeout: g.drain_timeout,
        instance: InstanceSpec { base_name, clone_base, vcpus: g.template.vcpus },
        template_version: template_version(&g.template),
        rollout,
        // The balancer's health replacement if it has one, else check-ins alone drive it: a
        // silent member is failing from the end of its `every`, and replaced then.
        health_replace: g
            .balancer
            .as_ref()
            .filter(|b| b.health.replace)
            .map(|b| HealthReplace { grace: b.health.grace, after: b.health.replace_after })
            .or(g.checkin.as_ref().map(|c| HealthReplace { grace: c.grace, after: Duration::ZERO })),
        checkin: g.checkin.as_ref().map(|c| flotilla_model::Checkin { every: c.every, grace: c.grace }),
        alarms,
    }
}

/// A group's `alarms`: named by the one name rule (the name is part of a URL), unique, at most
/// [`MAX_ALARMS`].
fn check_alarms(i: usize, raw: &[RawAlarm], errors: &mut Vec<ConfigError>) -> Vec<AlarmDef> {
    if raw.len() > MAX_ALARMS {
        err(errors, format!("groups[{i}].alarms"), format!("at most {MAX_ALARMS} alarms (got {})", raw.len()));
    }
    let mut seen = std::collections::HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(j, a)| {
            let path = format!("groups[{i}].alarms[{j}].name");
            check_name(errors, path.clone(), "alarm name", &a.name);
            if !seen.insert(a.name.as_str()) {
                err(errors, path, format!("alarm `{}` is declared twice", a.name));
            }
            let kind = match a.kind {
                RawAlarmKind::External => AlarmKind::External,
            };
            AlarmDef { name: a.name.clone(), kind }
        })
        .collect()
}

/// An `alarm` policy's rules: each names one of the group's alarms, with an adjustment that
/// means something for its type.
fn check_rules(i: usize, raw: &[RawScalingRule], alarms: &[AlarmDef], errors: &mut Vec<ConfigError>) -> PolicySpec {
    let p = |j: usize, field: &str| format!("groups[{i}].policy.rules[{j}].{field}");
    if raw.is_empty() || raw.len() > MAX_ALARMS {
        err(errors, format!("groups[{i}].policy.rules"), format!("1 to {MAX_ALARMS} rules (got {})", raw.len()));
    }
    let day = Duration::from_secs(86_400);
    let cap = MAX_MEMBERS as i32;
    let rules = raw
        .iter()
        .enumerate()
        .map(|(j, r)| {
            if !alarms.iter().any(|a| a.name == r.alarm) {
                let mut known: Vec<String> = alarms.iter().map(|a| format!("`{}`", a.name)).collect();
                known.dedup();
                let known = if known.is_empty() { "the group declares none".into() } else { known.join(", ") };
                err(errors, p(j, "alarm"), format!("no alarm `{}` in the group's `alarms` ({known})", r.alarm));
            }
            let a = r.adjustment;
            let adjustment_type = match r.adjustment_type {
                RawAdjustmentType::ChangeInCapacity => {
                    if a == 0 || a.abs() > cap {
                        err(
                            errors,
                            p(j, "adjustment"),
                            format!("a change of -{cap} to {cap} members, not 0 (got {a})"),
                        );
                    }
                    AdjustmentType::ChangeInCapacity
                }
                RawAdjustmentType::ExactCapacity => {
                    between(errors, p(j, "adjustment"), a, 0, cap);
                    AdjustmentType::ExactCapacity
                }
                RawAdjustmentType::PercentChangeInCapacity => {
                    if a == 0 || !(-100..=1000).contains(&a) {
                        err(errors, p(j, "adjustment"), format!("a change of -100 to 1000 percent, not 0 (got {a})"));
                    }
                    AdjustmentType::PercentChangeInCapacity
                }
            };
            if let Some(step) = r.min_adjustment_step {
                if adjustment_type != AdjustmentType::PercentChangeInCapacity {
                    err(errors, p(j, "min_adjustment_step"), "only for `percent_change_in_capacity`");
                }
                at_most(errors, p(j, "min_adjustment_step"), step, MAX_MEMBERS);
            }
            if r.cooldown > day {
                err(errors, p(j, "cooldown"), format!("must be at most 1d (got {})", dur(r.cooldown)));
            }
            ScalingRule {
                alarm: r.alarm.clone(),
                adjustment_type,
                adjustment: a,
                min_adjustment_step: r.min_adjustment_step.unwrap_or(0),
                cooldown: r.cooldown,
                repeat: r.repeat,
            }
        })
        .collect();
    PolicySpec::Alarm(AlarmPolicySpec { rules })
}

/// A fingerprint of what members are made from: every template field but the names (renaming
/// the families does not remake members). Stable across builds: SHA-256 of a fixed JSON shape.
pub fn template_version(t: &RawTemplate) -> String {
    short_hash(&serde_json::json!({ "vcpus": t.vcpus }).to_string())
}

/// The policy rules of group `i`; the spec even when invalid. A threshold's `aggregation` goes to
/// the group; the other kinds leave the default (unused).
fn check_policy(
    i: usize,
    raw: &RawPolicy,
    alarms: &[AlarmDef],
    errors: &mut Vec<ConfigError>,
) -> (PolicySpec, Aggregation) {
    let p = |field: &str| format!("groups[{i}].policy.{field}");
    match raw {
        RawPolicy::Alarm(rules) => (check_rules(i, rules, alarms, errors), Aggregation::Mean),
        RawPolicy::Threshold(t) => {
            let metric = metric_choice(t.metric);
            let mut in_range = true;
            for (field, value) in [("high", t.high), ("low", t.low)] {
                let path = p(field);
                if metric == MetricChoice::Rps {
                    // NaN fails this too.
                    if !(value >= 0.0 && value.is_finite()) {
                        err(errors, path, format!("must be at least 0 requests per second (got {value})"));
                        in_range = false;
                    }
                } else if !(0.0..=100.0).contains(&value) {
                    err(errors, path, format!("must be between 0 and 100 percent (got {value})"));
                    in_range = false;
                }
            }
            if in_range && t.low >= t.high {
                err(errors, p("low"), format!("low ({}) must be less than high ({})", t.low, t.high));
            }
            if t.min_up < 1 {
                err(errors, p("min_up"), "must be at least 1 sample");
            }
            if t.min_down < 1 {
                err(errors, p("min_down"), "must be at least 1 sample");
            }
            at_most(errors, p("min_up"), t.min_up, MAX_STREAK);
            at_most(errors, p("min_down"), t.min_down, MAX_STREAK);
            let spec = ThresholdSpec { metric, high: t.high, low: t.low, min_up: t.min_up, min_down: t.min_down };
            let aggregation = match t.aggregation {
                RawAggregation::Mean => Aggregation::Mean,
                RawAggregation::Max => Aggregation::Max,
            };
            (PolicySpec::Threshold(spec), aggregation)
        }
        RawPolicy::Target(t) => {
            let metric = match t.metric {
                RawMetric::Cpu => Some(TargetMetric::Cpu),
                RawMetric::Mem => Some(TargetMetric::Mem),
                RawMetric::Rps => Some(TargetMetric::Rps),
                RawMetric::Max => {
                    err(errors, p("metric"), "a target needs one metric: `cpu`, `mem` or `rps` (not `max`)");
                    None
                }
            };
            let target = t.target;
            match metric {
                Some(TargetMetric::Rps) if !(target > 0.0 && target.is_finite()) => {
                    err(errors, p("target"), format!("must be greater than 0 requests per second (got {target})"));
                }
                Some(TargetMetric::Cpu | TargetMetric::Mem) if !(target > 0.0 && target <= 100.0) => {
                    err(errors, p("target"), format!("must be greater than 0 and at most 100 percent (got {target})"));
                }
                // Without a valid metric the target's unit is unknown: only the metric is reported.
                _ => {}
            }
            if t.scale_in_samples < 1 {
                err(errors, p("scale_in_samples"), "must be at least 1 sample");
            }
            at_most(errors, p("scale_in_samples"), t.scale_in_samples, MAX_STREAK);
            let spec = TargetSpec {
                metric: metric.unwrap_or(TargetMetric::Cpu),
                target,
                scale_in_samples: t.scale_in_samples,
            };
            (PolicySpec::TargetTracking(spec), Aggregation::Mean)
        }
        RawPolicy::Requests(r) => {
            if r.requests < 1 {
                err(errors, p("requests"), "must be at least 1 request");
            }
            if !(MIN_WINDOW..=MAX_WINDOW).contains(&r.window) {
                err(
                    errors,
                    p("window"),
                    format!("must be between {} and {} (got {})", dur(MIN_WINDOW), dur(MAX_WINDOW), dur(r.window)),
                );
            }
            (PolicySpec::RequestCount(RequestCountSpec { requests: r.requests, window: r.window }), Aggregation::Mean)
        }
    }
}

fn metric_choice(m: RawMetric) -> MetricChoice {
    match m {
        RawMetric::Cpu => MetricChoice::Cpu,
        RawMetric::Mem => MetricChoice::Mem,
        RawMetric::Max => MetricChoice::Max,
        RawMetric::Rps => MetricChoice::Rps,
    }
}

/// Unique group names, and member-name prefixes (`base_name`, `clone_base`) that no two uses share.
fn check_across_groups(specs: &[(usize, GroupSpec)], raw: &[Option<RawGroup>], errors: &mut Vec<ConfigError>) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut duplicated = Vec::new();
    for (i, spec) in specs {
        if let Some(first) = names.get(spec.id.as_str()) {
            err(
                errors,
                format!("groups[{i}].name"),
                format!("duplicate group name `{}` (first used by groups[{first}])", spec.id),
            );
            duplicated.push(*i);
        } else {
            names.insert(spec.id.as_str(), *i);
        }
    }

    let mut prefixes: HashMap<&str, String> = HashMap::new();
    for (i, spec) in specs {
        // A defaulted base name repeats a duplicate group name: that is one problem, not two.
        let defaulted = raw[*i].as_ref().is_none_or(|g| g.template.base_name.is_none());
        if defaulted && duplicated.contains(i) {
            continue;
        }
        let clone_defaulted = raw[*i].as_ref().is_none_or(|g| g.template.clone_base.is_none());
        let mut base_collided = false;
        for (field, prefix) in [("base_name", &spec.instance.base_name), ("clone_base", &spec.instance.clone_base)] {
            if field == "clone_base" && base_collided && clone_defaulted {
                // `<base_name>_clone` collides because `base_name` does: reported once already.
                continue;
            }
            let path = format!("groups[{i}].template.{field}");
            if let Some(other) = prefixes.get(prefix.as_str()) {
                err(errors, path, format!("`{prefix}` is already used by {other}; member names would collide"));
                base_collided = true;
            } else {
                prefixes.insert(prefix, path);
            }
        }
    }
}

/// Every group's `balancer:` section, and the rules that tie a policy to one: the balancer is what
/// counts requests, so request-based policies need it (unless samples are pushed: `pushed`).
fn check_balancers(
    groups: &[Option<RawGroup>],
    pushed: bool,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<GroupId, BalancerSettings> {
    let mut out = BTreeMap::new();
    let mut seen: HashMap<std::net::SocketAddr, usize> = HashMap::new();
    for (i, g) in groups.iter().enumerate() {
        let Some(g) = g else { continue };
        let p = |field: &str| format!("groups[{i}].{field}");
        let needs_balancer = (policy_needs_requests(&g.policy) && !pushed).then(|| policy_requirement(&g.policy));
        let Some(b) = &g.balancer else {
            if let Some((field, why)) = needs_balancer {
                err(
                    errors,
                    p(field),
                    format!(
                        "{why} needs a `balancer:` section (the balancer is what counts requests) or the `push` metric source"
                    ),
                );
            }
            continue;
        };
        let listen = match b.listen.parse::<std::net::SocketAddr>() {
            Ok(addr) => {
                if let Some(other) = seen.insert(addr, i) {
                    err(errors, p("balancer.listen"), format!("{addr} is already the listener of groups[{other}]"));
                }
                Some(addr)
            }
            Err(_) => {
                err(
                    errors,
                    p("balancer.listen"),
                    format!("`{}` is not an IP:port address like 127.0.0.1:8000", b.listen),
                );
                None
            }
        };
        let h = &b.health;
        if b.mode == flotilla_lb::Mode::Http && !h.path.starts_with('/') {
            err(errors, p("balancer.health.path"), format!("`{}` must start with `/`", h.path));
        }
        if h.interval < Duration::from_millis(50) {
            err(errors, p("balancer.health.interval"), format!("must be at least 50ms, got {}", dur(h.interval)));
        }
        if h.timeout.is_zero() {
            err(errors, p("balancer.health.timeout"), "must be greater than 0s");
        }
        between(errors, p("balancer.health.rise"), h.rise, 1, MAX_CHECKS);
        between(errors, p("balancer.health.fall"), h.fall, 1, MAX_CHECKS);
        between(errors, p("balancer.queue_limit"), b.queue_limit, 1, MAX_QUEUE);
        if b.retries > 10 {
            err(errors, p("balancer.retries"), format!("must be at most 10, got {}", b.retries));
        }
        if b.queue_timeout > Duration::from_secs(600) {
            err(errors, p("balancer.queue_timeout"), format!("must be at most 10m, got {}", dur(b.queue_timeout)));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&b.response_timeout) {
            err(errors, p("balancer.response_timeout"), format!("must be 1s to 1h, got {}", dur(b.response_timeout)));
        }
        if let Some(listen) = listen {
            out.insert(
                GroupId::new(g.name.clone()),
                BalancerSettings {
                    listen,
                    mode: b.mode,
                    selection: b.selection,
                    health_path: h.path.clone(),
                    health_interval: h.interval,
                    health_timeout: h.timeout,
                    rise: h.rise,
                    fall: h.fall,
                    queue_timeout: b.queue_timeout,
                    response_timeout: b.response_timeout,
                    queue_limit: b.queue_limit,
                    retries: b.retries,
                    trust_forwarded: b.trust_forwarded,
                },
            );
        }
    }
    out
}

fn policy_needs_requests(policy: &RawPolicy) -> bool {
    match policy {
        RawPolicy::Threshold(t) => t.metric == RawMetric::Rps,
        RawPolicy::Target(t) => t.metric == RawMetric::Rps,
        RawPolicy::Requests(_) => true,
        RawPolicy::Alarm(_) => false,
    }
}

/// The field to blame and the words for a policy that needs a balancer.
fn policy_requirement(policy: &RawPolicy) -> (&'static str, &'static str) {
    match policy {
        RawPolicy::Requests(_) => ("policy.kind", "policy kind `requests`"),
        _ => ("policy.metric", "metric `rps`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(yaml: &str) -> RawConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn problems(yaml: &str) -> Vec<String> {
        match validate(raw(yaml)) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect(),
        }
    }

    /// `metrics.push` is the one schema of the push endpoint's settings: it names where the token
    /// is (`token_env`, `token_file`) and never holds it.
    #[test]
    fn the_push_section_names_where_the_token_is_and_never_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("token");
        std::fs::write(&tok, "0123456789abcdef-token\n").unwrap();
        let file = |push: &str| format!("metrics:\n  sources: [local, push]\n  push: {push}\ngroups: [{{name: a}}]\n");
        let push = |push: &str| crate::parse(&file(push), "p.yaml").map(|c| c.metrics.push);
        let ok = push(&format!("{{listen: 127.0.0.1:9464, token_file: {}, max_age: 1m 30s}}", tok.display()));
        let ok = ok.unwrap().unwrap();
        assert_eq!(
            (ok.listen.port(), ok.max_age, ok.token.as_str()),
            (9464, Duration::from_secs(90), "0123456789abcdef-token")
        );
        let err = |p: &str| push(p).unwrap_err().to_string();
        let e = err("{listen: 127.0.0.1:9464, token: 0123456789abcdef-token}");
        assert!(e.contains("metrics.push.token: unknown field `token`"), "{e}");
        assert!(!e.contains("0123456789abcdef"), "the token is never echoed: {e}");
        let e = err(&format!("{{listen: 127.0.0.1:9464, token_file: {}, max_age: 30}}", tok.display()));
        assert!(e.contains("metrics.push.max_age: invalid duration `30`: a unit is needed"), "{e}");
        let e = err(&format!("{{token_file: {}}}", tok.display()));
        assert!(e.contains("listen"), "{e}");
    }

    #[test]
    fn a_token_file_others_may_read_is_warned_about_by_field() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("token");
        std::fs::write(&tok, "0123456789abcdef-token\n").unwrap();
        let yaml = format!(
            "metrics:\n  sources: [local, push]\n  push: {{listen: 127.0.0.1:9464, token_file: {}}}\ngroups: [{{name: a}}]\n",
            tok.display()
        );
        let warnings =
            || crate::parse(&yaml, "p.yaml").unwrap().warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o644)).unwrap();
        let w = warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("p.yaml: metrics.push.token_file: "), "{w:?}");
        assert!(w[0].contains("other users may read it (mode 0644)") && w[0].contains("chmod 600"), "{w:?}");
        assert!(!w[0].contains("0123456789abcdef"), "the token itself is never shown");
        std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(warnings().is_empty());
    }

    #[test]
    fn minimal_file_gets_every_default() {
        let config = validate(raw("groups:\n  - name: web\n")).unwrap();
        assert_eq!(config.state_dir, None);
        assert_eq!(config.store, StoreConfig::Sqlite { path: PathBuf::from("flotilla.db"), sample_window: 600 });
        assert_eq!(config.provider, ProviderConfig::Local { start_timeout: Duration::from_secs(20) });
        let g = &config.groups[0].spec;
        assert_eq!((g.mode, g.min, g.max, g.increment), (Mode::Scale, 1, 4, 1));
        assert_eq!(g.interval, Duration::from_secs(5));
        assert_eq!(g.stale_after, Duration::from_secs(15));
        assert_eq!(
            (g.cooldown_up, g.cooldown_down, g.drain_timeout),
            (Duration::from_secs(30), Duration::from_secs(30), Duration::from_secs(30))
        );
        assert_eq!(
            g.policy,
            PolicySpec::Threshold(ThresholdSpec {
                metric: MetricChoice::Max,
                high: 80.0,
                low: 20.0,
                min_up: 4,
                min_down: 4
            })
        );
        assert_eq!(g.aggregation, Aggregation::Mean);
        assert_eq!(g.victim, Victim::Oldest);
        assert_eq!(g.instance.base_name, "web");
        assert_eq!(g.instance.clone_base, "web_clone");
        assert_eq!(g.instance.vcpus, 1);
    }

    #[test]
    fn handover_defaults_to_two_members() {
        let config = validate(raw("groups:\n  - name: h\n    mode: handover\n")).unwrap();
        assert_eq!(config.groups[0].spec.max, 2);
    }

    #[test]
    fn every_rule_reports() {
        let cases: &[(&str, &str)] = &[
            ("groups: []\n", "groups: at least one group is required"),
            ("store: {kind: postgres}\ngroups: [{name: a}]\n", "store.kind: postgres store is not available yet"),
            ("store: {sample_window: 9}\ngroups: [{name: a}]\n", "store.sample_window: must be at least 10 (got 9)"),
            ("provider: {start_timeout: 0s}\ngroups: [{name: a}]\n", "provider.start_timeout: must be greater than 0s"),
            ("state_dir: ''\ngroups: [{name: a}]\n", "state_dir: must not be empty (leave it out for the default)"),
            ("groups: [{name: 'a b'}]\n", "groups[0].name: invalid group name `a b`: use 1 to 45 of A-Z a-z 0-9 _ - . starting with a letter or digit"),
            ("groups: [{name: ''}]\n", "groups[0].name: invalid group name ``: use 1 to 45 of A-Z a-z 0-9 _ - . starting with a letter or digit"),
            // a name every provider refuses (a flag on a command line) is refused here too
            ("groups: [{name: '-web'}]\n", "groups[0].name: invalid group name `-web`: use 1 to 45 of A-Z a-z 0-9 _ - . starting with a letter or digit"),
            ("groups: [{name: a, min: 0}]\n", "groups[0].min: must be at least 1"),
            ("groups: [{name: a, min: 3, max: 2}]\n", "groups[0].min: min (3) must not be greater than max (2)"),
            ("groups: [{name: a, min: 5}]\n", "groups[0].min: min (5) must not be greater than max (4, the default for scale mode)"),
            ("groups: [{name: a, max: 0}]\n", "groups[0].max: must be at least 1"),
            ("groups: [{name: a, mode: handover, max: 1}]\n", "groups[0].max: handover mode needs max >= 2, room for the primary and its clone (got 1)"),
            ("groups: [{name: a, increment: 0}]\n", "groups[0].increment: must be at least 1"),
            ("groups: [{name: a, increment: 5}]\n", "groups[0].increment: increment (5) must not be greater than max (4)"),
            ("groups: [{name: a, interval: 50ms}]\n", "groups[0].interval: must be at least 100ms (got 50ms)"),
            ("groups: [{name: a, interval: 5s, stale_after: 2s}]\n", "groups[0].stale_after: stale_after (2s) must be at least interval (5s)"),
            ("groups: [{name: a, policy: {high: 101}}]\n", "groups[0].policy.high: must be between 0 and 100 percent (got 101)"),
            ("groups: [{name: a, policy: {low: -1}}]\n", "groups[0].policy.low: must be between 0 and 100 percent (got -1)"),
            ("groups: [{name: a, policy: {low: .nan}}]\n", "groups[0].policy.low: must be between 0 and 100 percent (got NaN)"),
            ("groups: [{name: a, policy: {high: 50, low: 50}}]\n", "groups[0].policy.low: low (50) must be less than high (50)"),
            ("groups: [{name: a, policy: {min_up: 0}}]\n", "groups[0].policy.min_up: must be at least 1 sample"),
            ("groups: [{name: a, policy: {min_down: 0}}]\n", "groups[0].policy.min_down: must be at least 1 sample"),
            ("groups: [{name: a, template: {vcpus: 65}}]\n", "groups[0].template.vcpus: must be between 1 and 64 (got 65)"),
            ("groups: [{name: a, template: {base_name: x/y}}]\n", "groups[0].template.base_name: invalid base name `x/y`: use 1 to 63 of A-Z a-z 0-9 _ - . starting with a letter or digit"),
            ("groups: [{name: a, template: {base_name: b, clone_base: b}}]\n", "groups[0].template.clone_base: `b` is already used by groups[0].template.base_name; member names would collide"),
            ("groups: [{name: a}, {name: a}]\n", "groups[1].name: duplicate group name `a` (first used by groups[0])"),
            ("groups: [{name: a}, {name: b, template: {base_name: a}}]\n", "groups[1].template.base_name: `a` is already used by groups[0].template.base_name; member names would collide"),
        ];
        for (yaml, want) in cases {
            assert_eq!(problems(yaml), vec![want.to_string()], "for {yaml}");
        }
    }

    #[test]
    fn broken_sections_still_let_the_others_be_checked() {
        let parts = Parts {
            state_dir: Some(None),
            store: None,
            provider: Some(RawProvider::default()),
            metrics: Some(RawMetrics::default()),
            api: Some(None),
            groups: Some(vec![None, raw("groups: [{name: a, min: 0}]").groups.into_iter().next()]),
        };
        let errors = validate_parts(parts).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "groups[1].min");
    }
}
