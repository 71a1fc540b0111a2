//! Semantic checks on the deserialized file, and the mapping to the model's types.
//!
//! Every check runs and every failure is collected; nothing is clamped or silently corrected.
//! Errors carry a field path but no file or position: [`super::parse`] adds those.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use flotilla_model::{Aggregation, GroupId, GroupSpec, InstanceSpec, MetricChoice, Mode, ThresholdSpec, Victim};

use super::raw::{
    default_max, default_stale_after, RawAggregation, RawConfig, RawGroup, RawMetric, RawMode, RawProvider,
    RawProviderKind, RawStore, RawStoreKind, RawVictim,
};
use super::{Config, ConfigError, ProviderConfig, StoreConfig};

/// The smallest sampling interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The smallest `store.sample_window`.
pub const MIN_SAMPLE_WINDOW: usize = 10;
/// The most vCPUs a template may ask for.
pub const MAX_VCPUS: u32 = 64;
/// The longest group name (and template base name).
pub const MAX_NAME_LEN: usize = 63;

/// Checks a whole deserialized file and builds the [`Config`], or returns every problem found.
pub fn validate(raw: RawConfig) -> Result<Config, Vec<ConfigError>> {
    validate_parts(Parts {
        state_dir: Some(raw.state_dir),
        store: Some(raw.store),
        provider: Some(raw.provider),
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
    /// `Some(vec![])` when the file has no groups; `None` items are broken groups.
    pub groups: Option<Vec<Option<RawGroup>>>,
}

/// [`validate`] over sections that may be missing; see [`Parts`].
pub(crate) fn validate_parts(parts: Parts) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let state_dir = parts.state_dir.map(|dir| check_state_dir(dir, &mut errors));
    let store = parts.store.map(|s| check_store(s, &mut errors));
    let provider = parts.provider.map(|p| check_provider(p, &mut errors));
    let groups = parts.groups.map(|groups| check_groups(groups, &mut errors));

    match (state_dir, store, provider, groups) {
        (Some(state_dir), Some(store), Some(provider), Some(Some(groups))) if errors.is_empty() => {
            Ok(Config { state_dir, store, provider, groups })
        }
        _ => Err(errors),
    }
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
    StoreConfig::Sqlite { path: raw.path, sample_window: raw.sample_window }
}

fn check_provider(raw: RawProvider, errors: &mut Vec<ConfigError>) -> ProviderConfig {
    match raw.kind {
        RawProviderKind::Local => {
            if raw.start_timeout.is_zero() {
                err(errors, "provider.start_timeout", "must be greater than 0s");
            }
            ProviderConfig::Local { start_timeout: raw.start_timeout }
        }
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

fn check_name(errors: &mut Vec<ConfigError>, path: String, what: &str, name: &str) {
    let ok_len = (1..=MAX_NAME_LEN).contains(&name.len());
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok_len || !ok_chars {
        err(
            errors,
            path,
            format!("invalid {what} `{name}`: use 1 to {MAX_NAME_LEN} characters from A-Z, a-z, 0-9, `.`, `_` and `-`"),
        );
    }
}

fn dur(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
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

    let pol = &g.policy;
    let mut in_range = true;
    for (field, value) in [("high", pol.high), ("low", pol.low)] {
        if !(0.0..=100.0).contains(&value) {
            err(errors, p(&format!("policy.{field}")), format!("must be between 0 and 100 percent (got {value})"));
            in_range = false;
        }
    }
    if in_range && pol.low >= pol.high {
        err(errors, p("policy.low"), format!("low ({}) must be less than high ({})", pol.low, pol.high));
    }
    if pol.min_up < 1 {
        err(errors, p("policy.min_up"), "must be at least 1 sample");
    }
    if pol.min_down < 1 {
        err(errors, p("policy.min_down"), "must be at least 1 sample");
    }

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
        threshold: ThresholdSpec {
            metric: match pol.metric {
                RawMetric::Cpu => MetricChoice::Cpu,
                RawMetric::Mem => MetricChoice::Mem,
                RawMetric::Max => MetricChoice::Max,
            },
            high: pol.high,
            low: pol.low,
            min_up: pol.min_up,
            min_down: pol.min_down,
        },
        aggregation: match pol.aggregation {
            RawAggregation::Mean => Aggregation::Mean,
            RawAggregation::Max => Aggregation::Max,
        },
        victim: match g.victim {
            RawVictim::Oldest => Victim::Oldest,
            RawVictim::Newest => Victim::Newest,
            RawVictim::LeastBusy => Victim::LeastBusy,
        },
        drain_timeout: g.drain_timeout,
        instance: InstanceSpec { base_name, clone_base, vcpus: g.template.vcpus, settings: BTreeMap::new() },
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

    #[test]
    fn minimal_file_gets_every_default() {
        let config = validate(raw("groups:\n  - name: web\n")).unwrap();
        assert_eq!(config.state_dir, None);
        assert_eq!(config.store, StoreConfig::Sqlite { path: PathBuf::from("flotilla.db"), sample_window: 600 });
        assert_eq!(config.provider, ProviderConfig::Local { start_timeout: Duration::from_secs(20) });
        let g = &config.groups[0];
        assert_eq!((g.mode, g.min, g.max, g.increment), (Mode::Scale, 1, 4, 1));
        assert_eq!(g.interval, Duration::from_secs(5));
        assert_eq!(g.stale_after, Duration::from_secs(15));
        assert_eq!(
            (g.cooldown_up, g.cooldown_down, g.drain_timeout),
            (Duration::from_secs(30), Duration::from_secs(30), Duration::from_secs(30))
        );
        assert_eq!(
            g.threshold,
            ThresholdSpec { metric: MetricChoice::Max, high: 80.0, low: 20.0, min_up: 4, min_down: 4 }
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
        assert_eq!(config.groups[0].max, 2);
    }

    #[test]
    fn every_rule_reports() {
        let cases: &[(&str, &str)] = &[
            ("groups: []\n", "groups: at least one group is required"),
            ("store: {kind: postgres}\ngroups: [{name: a}]\n", "store.kind: postgres store is not available yet"),
            ("store: {sample_window: 9}\ngroups: [{name: a}]\n", "store.sample_window: must be at least 10 (got 9)"),
            ("provider: {start_timeout: 0s}\ngroups: [{name: a}]\n", "provider.start_timeout: must be greater than 0s"),
            ("state_dir: ''\ngroups: [{name: a}]\n", "state_dir: must not be empty (leave it out for the default)"),
            ("groups: [{name: 'a b'}]\n", "groups[0].name: invalid group name `a b`: use 1 to 63 characters from A-Z, a-z, 0-9, `.`, `_` and `-`"),
            ("groups: [{name: ''}]\n", "groups[0].name: invalid group name ``: use 1 to 63 characters from A-Z, a-z, 0-9, `.`, `_` and `-`"),
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
            ("groups: [{name: a, template: {base_name: x/y}}]\n", "groups[0].template.base_name: invalid base name `x/y`: use 1 to 63 characters from A-Z, a-z, 0-9, `.`, `_` and `-`"),
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
            groups: Some(vec![None, raw("groups: [{name: a, min: 0}]").groups.into_iter().next()]),
        };
        let errors = validate_parts(parts).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "groups[1].min");
    }
}
