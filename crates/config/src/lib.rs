//! The configuration file: YAML in, a validated [`Config`] (the model's [`GroupSpec`]s) out.
//!
//! `flotilla run -c FILE` and `flotilla config check FILE` both go through [`load`]. A bad file
//! yields [`ConfigErrors`]: every problem at once, each with its field path and line:column,
//! printed one per line as `FILE:LINE:COL: PATH: MESSAGE`. The caller exits with status 2.
//!
//! # Schema
//!
//! ```yaml
//! state_dir: .flotilla        # optional; where the store file and member records live
//! store:                      # optional
//!   kind: sqlite              # only `sqlite` for now
//!   path: flotilla.db         # relative to state_dir
//!   sample_window: 600        # samples kept per group, 10..=1000000
//! provider:                   # optional
//!   kind: local               # local | libvirt | openstack
//!   start_timeout: 20s        # local only
//!   # libvirt: {hosts: ..., ports: ...}      (kind libvirt; see examples/libvirt)
//!   # openstack: {cloud: microstack, address: floating}   (kind openstack; see examples/openstack)
//! groups:                     # at least one
//!   - name: vm-test           # required; [A-Za-z0-9._-]{1,63}, unique
//!     mode: handover          # scale | handover (default scale)
//!     min: 1                  # >= 1 (default 1)
//!     max: 2                  # min..=1000; default 2 for handover (which needs >= 2), 4 for scale
//!     increment: 1            # 1..=max
//!     interval: 5s            # >= 100ms
//!     stale_after: 15s        # >= interval (default 3 x interval)
//!     cooldown_up: 30s
//!     cooldown_down: 30s
//!     drain_timeout: 30s
//!     victim: oldest          # oldest | newest | least-busy
//!     policy:                 # one of three kinds; each takes only its own fields
//!       kind: threshold       # threshold (default) | target | requests
//!       metric: max           # cpu | mem | max | rps
//!       aggregation: mean     # mean | max
//!       high: 80              # 0 <= low < high <= 100 (rps: requests/s, 0 <= low < high)
//!       low: 20
//!       min_up: 4             # consecutive samples, 1..=10000
//!       min_down: 4
//!     # policy: {kind: target, metric: rps, target: 50, scale_in_samples: 3}
//!     #   metric: cpu | mem | rps (required); target > 0 (cpu/mem: <= 100), required;
//!     #   scale_in_samples 1..=10000 (default 3)
//!     # policy: {kind: requests, requests: 10, window: 60s}
//!     #   requests >= 1 (required); window 1s..=5m (default 60s)
//!     template:
//!       base_name: vm-test    # default: the group name; members are <base_name>_N
//!       clone_base: vm-test_clone  # default: <base_name>_clone; clones are <clone_base>_N
//!       vcpus: 1              # 1..=64
//! ```
//!
//! Unknown fields are errors. Durations are humantime strings (`5s`, `250ms`, `1m`, `1h 30m`), at
//! most 30 days. A balancer's `queue_limit` is 1..=1000000, its health `rise`/`fall` 1..=100,
//! `retries` 0..=10, `queue_timeout` at most 10m, `response_timeout` 1s..=1h.
//! YAML merge keys (`<<: *defaults`) are applied, so groups can share settings through an anchor.
//!
//! # How every problem is found at once
//!
//! 1. saphyr parses the text into a span-carrying tree ([`locate`]); a syntax error is one
//!    error and the end. (libyaml, through serde_yaml, is asked for the position too, since it
//!    pins some mistakes, like a tab in the indentation, more precisely.)
//! 2. serde_yaml reads the same text as a [`serde_yaml::Value`]; each top-level section and each
//!    group is then deserialized on its own with serde_path_to_error. When one fails, the
//!    offending key is dropped and that part is deserialized again, so several unknown fields or
//!    wrong types in one group are all reported, not only the first.
//! 3. The parts that deserialized cleanly are checked semantically ([`validate`]), so a typo in
//!    one group does not hide a `low >= high` in another.
//!
//! Each error's path is then mapped to a line:column in the saphyr tree: the key for unknown
//! fields, the value for a scalar with a bad value, the parent mapping for a missing field.

mod locate;
pub mod raw;
pub mod redact;
mod seed004;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_model::{GroupId, GroupSpec};
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use locate::{parse_path, render, LoadProblem, Locator, Pos, Seg, Target};
use raw::{RawGroup, RawMetrics, RawProvider, RawSections, RawStore};
use validate::{validate_parts, Parts};

/// A validated configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the store file and member records live; `None` leaves the choice to the caller.
    pub state_dir: Option<PathBuf>,
    pub store: StoreConfig,
    pub provider: ProviderConfig,
    /// At least one; names unique. Everything about a group, validated in one pass.
    pub groups: Vec<GroupConfig>,
    pub metrics: MetricsConfig,
    /// The REST API, when the file has an `api` section.
    pub api: Option<ApiConfig>,
    /// Parts of the file that were read but do not apply (a seed-004 file's MySQL store, say):
    /// each names its place; the verbs print them before they start.
    pub warnings: Vec<ConfigError>,
}

/// The `api` section, validated: the tokens are read and hashed (never kept in clear).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: std::net::SocketAddr,
    pub tokens: flotilla_listener::auth::Tokens,
    pub anonymous_read: bool,
    /// HTTPS with this certificate (loaded and checked at validation).
    pub tls: Option<flotilla_listener::tls::Tls>,
}

impl PartialEq for ApiConfig {
    /// Tokens are compared by count only: their hashes are not exposed.
    fn eq(&self, other: &Self) -> bool {
        self.listen == other.listen
            && self.anonymous_read == other.anonymous_read
            && self.tls.as_ref().map(|t| (&t.cert, &t.key)) == other.tls.as_ref().map(|t| (&t.cert, &t.key))
    }
}

/// One group, as validated: what the decision core and the controller need (`spec`, with its policy,
/// replacement and instance), and what the binary wires to it (its balancer, its provider template).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    pub spec: GroupSpec,
    /// The `balancer:` section, when the group has one.
    pub balancer: Option<BalancerSettings>,
    /// The provider-specific template (libvirt: image, domain XML, cloud-init; OpenStack: image,
    /// flavor, network); `None` for the local provider.
    pub template: Option<ProviderTemplate>,
}

/// A group's provider-specific template, validated against the provider's settings.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderTemplate {
    Libvirt(flotilla_provider_libvirt::LibvirtTemplate),
    OpenStack(flotilla_provider_openstack::OpenStackTemplate),
}

impl ProviderTemplate {
    pub fn libvirt(&self) -> Option<&flotilla_provider_libvirt::LibvirtTemplate> {
        match self {
            ProviderTemplate::Libvirt(t) => Some(t),
            ProviderTemplate::OpenStack(_) => None,
        }
    }

    pub fn openstack(&self) -> Option<&flotilla_provider_openstack::OpenStackTemplate> {
        match self {
            ProviderTemplate::OpenStack(t) => Some(t),
            ProviderTemplate::Libvirt(_) => None,
        }
    }
}

/// Where member metrics come from.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// At least one; no duplicates.
    pub sources: Vec<MetricSourceKind>,
    /// Present when `sources` has `ssh`.
    pub ssh: Option<flotilla_metrics_ssh::SshSettings>,
    /// Present when `sources` has `push`; the token already read from its variable or file.
    pub push: Option<flotilla_metrics_push::PushSettings>,
    /// Present when `sources` has `prometheus`.
    pub prometheus: Option<flotilla_metrics_prometheus::PrometheusSettings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetricSourceKind {
    Local,
    Libvirt,
    Ssh,
    Diagnostics,
    Push,
    Prometheus,
}

/// A group's validated `balancer:` section. The binary turns it into the engine's own config.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerSettings {
    pub listen: SocketAddr,
    pub mode: flotilla_lb::Mode,
    pub selection: flotilla_lb::Selection,
    /// HTTP health-check path (ignored in tcp mode).
    pub health_path: String,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub queue_timeout: Duration,
    /// How long a member may take to start answering a request (then 504).
    pub response_timeout: Duration,
    pub queue_limit: usize,
    pub retries: u32,
    /// Keep the client's forwarding headers (a trusted proxy in front).
    pub trust_forwarded: bool,
}

impl Config {
    /// The groups' specs, in file order (what the controller runs).
    pub fn specs(&self) -> Vec<GroupSpec> {
        self.groups.iter().map(|g| g.spec.clone()).collect()
    }

    /// The group named `id`.
    pub fn group(&self, id: &GroupId) -> Option<&GroupConfig> {
        self.groups.iter().find(|g| &g.spec.id == id)
    }

    /// The groups' templates of one provider kind, by group: what that provider is built with.
    pub fn templates_of<T: Clone>(&self, pick: impl Fn(&ProviderTemplate) -> Option<&T>) -> BTreeMap<GroupId, T> {
        self.groups.iter().filter_map(|g| Some((g.spec.id.clone(), pick(g.template.as_ref()?)?.clone()))).collect()
    }

    /// The store's file: its `path` as written when absolute or when there is no `state_dir`,
    /// else `state_dir/path`.
    pub fn store_path(&self) -> PathBuf {
        let StoreConfig::Sqlite { path, .. } = &self.store;
        match &self.state_dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.clone(),
        }
    }
}

/// Where samples and decisions are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    Sqlite {
        /// As written in the file (default `flotilla.db`); a relative path is relative to
        /// `state_dir`, which this does not apply: see [`Config::store_path`].
        path: PathBuf,
        /// Samples kept per group (default 600, at least 10).
        sample_window: usize,
    },
}

/// What starts and stops members.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderConfig {
    Local {
        /// How long a new member may take to come up (default 20s).
        start_timeout: Duration,
    },
    Libvirt(flotilla_provider_libvirt::LibvirtSettings),
    OpenStack(flotilla_provider_openstack::OpenStackSettings),
}

impl ProviderConfig {
    /// The `provider.kind` this section was written with.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderConfig::Local { .. } => "local",
            ProviderConfig::Libvirt(_) => "libvirt",
            ProviderConfig::OpenStack(_) => "openstack",
        }
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as the caller named it.
    pub file: String,
    /// The field, like `groups[0].policy.low`; `""` for the document as a whole.
    pub path: String,
    /// 1-based; `None` when the problem has no place in the text (an unreadable or empty file).
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub col: Option<usize>,
    /// Lowercase, no trailing period.
    pub message: String,
}

impl ConfigError {
    /// An error at `path` with no file or position yet.
    pub(crate) fn at(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { file: String::new(), path: path.into(), line: None, col: None, message: tidy(message.into()) }
    }
}

impl fmt::Display for ConfigError {
    /// `FILE:LINE:COL: PATH: MESSAGE`, leaving out the parts that are unknown or empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut place = self.file.clone();
        for n in [self.line, self.col].into_iter().map_while(|n| n) {
            place.push_str(&format!(":{n}"));
        }
        let place = place.trim_start_matches(':');
        if !place.is_empty() {
            write!(f, "{place}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a file, in file order. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates the file at `path`. A file that cannot be read is one error naming it.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(src) => parse(&src, &file),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file,
            path: String::new(),
            line: None,
            col: None,
            message: format!("cannot read the file: {}", tidy(e.to_string())),
        }])),
    }
}

/// Validates `src`; `file` is only used to label errors. A seed-004 shaped file (a top-level
/// `version`) is translated first ([`seed004`]).
pub fn parse(src: &str, file: &str) -> Result<Config, ConfigErrors> {
    if let Ok(doc) = serde_yaml::from_str::<Value>(src) {
        if seed004::is_seed004(&doc) {
            return parse_seed004(src, &doc, file);
        }
    }
    let mut config = Parser { problems: Vec::new() }.parse(src).map_err(|problems| finish(problems, src, file))?;
    for w in &mut config.warnings {
        w.file = file.to_string();
    }
    Ok(config)
}

/// A seed-004 file: translated, then checked like any file; problems point into the seed file.
fn parse_seed004(src: &str, doc: &Value, file: &str) -> Result<Config, ConfigErrors> {
    let translated = seed004::translate(doc).map_err(|problems| finish(problems, src, file))?;
    let ours = serde_yaml::to_string(&translated.value).map_err(|e| {
        finish(vec![Problem::new(Vec::new(), Target::Value, format!("cannot translate: {e}"))], src, file)
    })?;
    let warnings = finish(translated.warnings, src, file).0;
    match (Parser { problems: Vec::new() }).parse(&ours) {
        Ok(mut config) => {
            for w in &mut config.warnings {
                w.file = file.to_string();
            }
            config.warnings.splice(0..0, warnings);
            Ok(config)
        }
        Err(problems) => {
            let mapped = problems
                .into_iter()
                .map(|p| {
                    let ours_path = render(&p.path);
                    let theirs = seed004::origin_of(&translated.origins, &ours_path).unwrap_or_default();
                    let message = format!("{} (Flotilla's `{ours_path}`)", p.message);
                    Problem::new(theirs, Target::Value, message)
                })
                .collect();
            Err(finish(mapped, src, file))
        }
    }
}

/// A problem before it has a file and a position.
struct Problem {
    path: Vec<Seg>,
    target: Target,
    message: String,
    /// Known already (syntax errors); else looked up from `path`.
    pos: Option<Pos>,
}

impl Problem {
    fn new(path: Vec<Seg>, target: Target, message: impl Into<String>) -> Problem {
        Problem { path, target, message: message.into(), pos: None }
    }
}

/// Turns problems into sorted, located [`ConfigError`]s.
fn finish(problems: Vec<Problem>, src: &str, file: &str) -> ConfigErrors {
    // A second saphyr pass is cheap and keeps `Parser` free of the tree's lifetime.
    let locator = Locator::load(src).unwrap_or_else(|_| Locator::empty());
    let mut errors: Vec<ConfigError> = problems
        .into_iter()
        .map(|p| {
            let pos = p.pos.or_else(|| locator.locate(&p.path, p.target));
            ConfigError {
                file: file.to_string(),
                path: render(&p.path),
                line: pos.map(|p| p.line),
                col: pos.map(|p| p.col),
                message: tidy(p.message),
            }
        })
        .collect();
    errors.sort_by_key(|e| (e.line.unwrap_or(0), e.col.unwrap_or(0)));
    ConfigErrors(errors)
}

struct Parser {
    problems: Vec<Problem>,
}

/// Bounds the drop-and-retry loop of one part (each retry drops one key).
const MAX_RETRIES: usize = 256;

impl Parser {
    fn parse(mut self, src: &str) -> Result<Config, Vec<Problem>> {
        // 1. Syntax.
        match Locator::load(src) {
            Ok(_) => {}
            Err(LoadProblem::ManyDocuments { count, second }) => {
                let message = format!("expected one YAML document, found {count}");
                return Err(vec![Problem { pos: second, ..Problem::new(Vec::new(), Target::Value, message) }]);
            }
            Err(LoadProblem::Syntax { message, pos }) => match serde_yaml::from_str::<Value>(src) {
                Err(e) if e.location().is_some() => return Err(vec![from_serde_yaml(&e)]),
                // libyaml reads what saphyr cannot: carry on, without positions.
                Ok(_) => {}
                Err(_) => {
                    return Err(vec![Problem { pos: Some(pos), ..Problem::new(Vec::new(), Target::Value, message) }])
                }
            },
        }

        // 2. Structure, part by part.
        let mut value: Value = serde_yaml::from_str(src).map_err(|e| vec![from_serde_yaml(&e)])?;
        if let Err(e) = value.apply_merge() {
            return Err(vec![Problem::new(Vec::new(), Target::Value, format!("cannot apply a merge key (`<<`): {e}"))]);
        }
        if value.is_null() {
            return Err(vec![Problem::new(
                Vec::new(),
                Target::Value,
                "the file is empty: it needs at least a `groups` list",
            )]);
        }
        let top_start = self.problems.len();
        let Some(sections) = self.part::<RawSections>(value, &[]).0 else {
            return Err(self.problems);
        };
        let broken = |problems: &[Problem], key: &str| {
            problems[top_start..].iter().any(|p| matches!(p.path.first(), Some(Seg::Key(k)) if k == key))
        };
        let parts = Parts {
            state_dir: (!broken(&self.problems, "state_dir")).then_some(sections.state_dir),
            store: match sections.store {
                _ if broken(&self.problems, "store") => None,
                None => Some(RawStore::default()),
                Some(v) => self.clean_part::<RawStore>(v, &[key("store")]),
            },
            provider: match sections.provider {
                _ if broken(&self.problems, "provider") => None,
                None => Some(RawProvider::default()),
                Some(v) => self.clean_part::<RawProvider>(v, &[key("provider")]),
            },
            metrics: match sections.metrics {
                _ if broken(&self.problems, "metrics") => None,
                None => Some(RawMetrics::default()),
                Some(v) => self.clean_part::<RawMetrics>(v, &[key("metrics")]),
            },
            api: match sections.api {
                _ if broken(&self.problems, "api") => None,
                None => Some(None),
                Some(v) => self.clean_part::<raw::RawApi>(v, &[key("api")]).map(Some),
            },
            groups: match sections.groups {
                _ if broken(&self.problems, "groups") => None,
                None => Some(Vec::new()),
                Some(items) => Some(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| self.clean_part::<RawGroup>(v, &[key("groups"), Seg::Index(i)]))
                        .collect(),
                ),
            },
        };

        // 3. Meaning, for the parts that deserialized.
        match validate_parts(parts) {
            Ok(config) if self.problems.is_empty() => Ok(config),
            Ok(_) => Err(self.problems),
            Err(errors) => {
                self.problems
                    .extend(errors.into_iter().map(|e| Problem::new(parse_path(&e.path), Target::Value, e.message)));
                Err(self.problems)
            }
        }
    }

    /// [`Self::part`], keeping the result only when nothing was wrong with it.
    fn clean_part<T: DeserializeOwned>(&mut self, value: Value, base: &[Seg]) -> Option<T> {
        match self.part(value, base) {
            (Some(t), true) => Some(t),
            _ => None,
        }
    }

    /// Deserializes `value` (found at `base`) as a `T`, recording each problem and dropping the
    /// offending key before trying again. Returns the last result and whether it is clean.
    fn part<T: DeserializeOwned>(&mut self, mut value: Value, base: &[Seg]) -> (Option<T>, bool) {
        let mut clean = true;
        // Keys dropped for a bad value: that they are then missing is no news.
        let mut dropped: Vec<Vec<Seg>> = Vec::new();
        for _ in 0..MAX_RETRIES {
            let e = match serde_path_to_error::deserialize::<_, T>(&value) {
                Ok(t) => return (Some(t), clean),
                Err(e) => e,
            };
            clean = false;
            let message = e.inner().to_string();
            let mut rel = Vec::new();
            let mut exact = true;
            for seg in e.path().iter() {
                match seg {
                    serde_path_to_error::Segment::Seq { index } => rel.push(Seg::Index(*index)),
                    serde_path_to_error::Segment::Map { key } => rel.push(Seg::Key(key.clone())),
                    _ => {
                        exact = false;
                        break;
                    }
                }
            }
            // A mapping that knows its fields only once it has read them all (a policy's `kind`
            // may come last) reports an unknown field at the mapping: point at the field itself.
            if let Some(field) = quoted_field(&message, "unknown field") {
                if exact && rel.last() != Some(&Seg::Key(field.to_string())) {
                    rel.push(Seg::Key(field.to_string()));
                }
            }
            if let Some(field) = quoted_field(&message, "missing field") {
                let at: Vec<Seg> = rel.iter().cloned().chain([Seg::Key(field.to_string())]).collect();
                if !dropped.contains(&at) {
                    let path = base.iter().cloned().chain(rel).collect();
                    self.problems.push(Problem::new(path, Target::Value, message));
                }
                return (None, false);
            }
            let target = if message.starts_with("unknown field") { Target::Key } else { Target::Value };
            let path = base.iter().cloned().chain(rel.iter().cloned()).collect();
            self.problems.push(Problem::new(path, target, message));
            if !exact || !remove(&mut value, &rel) {
                return (None, false);
            }
            dropped.push(rel);
        }
        (None, false)
    }
}

/// The field a "`prefix` `x`, ..." message (serde's "unknown field", "missing field") names.
fn quoted_field<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    message.strip_prefix(prefix)?.strip_prefix(" `")?.split_once('`').map(|(field, _)| field)
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

/// Drops the mapping entry `path` names, so the next attempt gets past it.
fn remove(value: &mut Value, path: &[Seg]) -> bool {
    let Some((Seg::Key(last), parents)) = path.split_last() else {
        return false;
    };
    let mut node = value;
    for seg in parents {
        let next = match (seg, node) {
            (Seg::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str()),
            (Seg::Index(i), Value::Sequence(s)) => s.get_mut(*i),
            _ => None,
        };
        let Some(next) = next else { return false };
        node = next;
    }
    match node {
        Value::Mapping(m) => m.shift_remove(last.as_str()).is_some(),
        _ => false,
    }
}

/// A serde_yaml read error: a syntax error, a duplicate key, a bad tag. Its message repeats the
/// position and may start with the path; both are taken out into their own fields.
fn from_serde_yaml(e: &serde_yaml::Error) -> Problem {
    let mut message = e.to_string();
    let pos = e.location().map(|l| {
        for needle in [format!(" at line {} column {}", l.line(), l.column()), format!(" at position {}", l.index())] {
            if let Some(i) = message.find(&needle) {
                message.replace_range(i..i + needle.len(), "");
                break;
            }
        }
        Pos { line: l.line(), col: l.column() }
    });
    let mut path = Vec::new();
    if let Some((head, rest)) = message.split_once(": ") {
        let is_path = !head.is_empty()
            && head.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']'));
        if is_path {
            path = parse_path(head);
            message = rest.to_string();
        }
    }
    // serde_yaml places a duplicate key at the start of its mapping; point at the key instead
    // (saphyr keeps the first of the duplicates).
    if let Some(dup) = message.strip_prefix("duplicate entry with key ") {
        let dup = dup.trim_matches('"').to_string();
        let message = format!("key `{dup}` appears more than once");
        path.push(Seg::Key(dup));
        return Problem::new(path, Target::Key, message);
    }
    Problem { pos, ..Problem::new(path, Target::Key, message) }
}

/// Errors read as `lowercase message, no trailing period`; serde's "unit value" is YAML's null.
fn tidy(message: String) -> String {
    let message = message.trim().trim_end_matches('.').replace("unit value", "null");
    let mut chars = message.chars();
    match (chars.next(), chars.next()) {
        (Some(first), second) if first.is_uppercase() && !second.is_some_and(char::is_uppercase) => {
            first.to_lowercase().chain(message.chars().skip(1)).collect()
        }
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_leaves_out_what_is_unknown() {
        let mut e = ConfigError {
            file: "f.yaml".into(),
            path: "groups[0].min".into(),
            line: Some(3),
            col: Some(5),
            message: "must be at least 1".into(),
        };
        assert_eq!(e.to_string(), "f.yaml:3:5: groups[0].min: must be at least 1");
        e.col = None;
        assert_eq!(e.to_string(), "f.yaml:3: groups[0].min: must be at least 1");
        e.line = None;
        e.path.clear();
        assert_eq!(e.to_string(), "f.yaml: must be at least 1");
        e.file.clear();
        assert_eq!(e.to_string(), "must be at least 1");
        e.line = Some(2);
        assert_eq!(e.to_string(), "2: must be at least 1");
    }

    #[test]
    fn tidy_lowercases_and_drops_the_period() {
        assert_eq!(tidy("No such file or directory (os error 2)".into()), "no such file or directory (os error 2)");
        assert_eq!(tidy("YAML is fine.".into()), "YAML is fine");
        assert_eq!(tidy("invalid type: unit value, expected u32".into()), "invalid type: null, expected u32");
    }

    #[test]
    fn retry_drops_each_bad_key_in_turn() {
        let mut parser = Parser { problems: Vec::new() };
        let value: Value =
            serde_yaml::from_str("name: a\ncolour: red\nmin: lots\npolicy: {hgih: 1, low: x}\n").unwrap();
        let (group, clean) = parser.part::<RawGroup>(value, &[key("groups"), Seg::Index(2)]);
        assert!(group.is_some() && !clean);
        let paths: Vec<String> = parser.problems.iter().map(|p| render(&p.path)).collect();
        // A policy's unknown fields are known only once all of it was read: after its bad values.
        assert_eq!(paths, ["groups[2].colour", "groups[2].min", "groups[2].policy.low", "groups[2].policy.hgih"]);
    }

    #[test]
    fn store_path_is_relative_to_state_dir() {
        let mut config = parse("groups: [{name: a}]\n", "t").unwrap();
        assert_eq!(config.store_path(), PathBuf::from("flotilla.db"));
        config.state_dir = Some(PathBuf::from("/var/lib/flotilla"));
        assert_eq!(config.store_path(), PathBuf::from("/var/lib/flotilla/flotilla.db"));
        config.store = StoreConfig::Sqlite { path: PathBuf::from("/tmp/x.db"), sample_window: 600 };
        assert_eq!(config.store_path(), PathBuf::from("/tmp/x.db"));
    }
}
