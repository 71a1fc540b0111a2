//! [`PrometheusSettings`]: which server, which queries, and their checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_model::{Instance, Metric};
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// The default for [`PrometheusSettings::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest and longest [`PrometheusSettings::timeout`].
pub const TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(60));
/// The most queries one source runs per sample.
pub const MAX_QUERIES: usize = 16;
/// The longest query text, in characters (before `{group}` is replaced).
pub const MAX_QUERY_LEN: usize = 4096;
/// What a query may contain to be run once per group with that group's name.
pub const GROUP_PLACEHOLDER: &str = "{group}";
/// The longest token a token file may hold.
const MAX_TOKEN_LEN: usize = 4096;

/// Where member metrics come from: a Prometheus server and the PromQL instant queries that give one
/// value per member. Deserialized from the config's `prometheus` section (durations as `5s`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSettings {
    /// The server's base URL, `http://` or `https://` (a path prefix such as `/prometheus` is kept;
    /// no credentials, query or fragment: the token comes from `token_file`).
    pub url: String,
    /// Extra CA certificates (PEM) trusted for an `https` URL, besides the built-in webpki roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Bound on one query (request, evaluation and the whole answer), 100ms..=60s. Default `5s`.
    #[serde(default = "default_timeout", with = "flotilla_duration")]
    pub timeout: Duration,
    /// A file holding a bearer token (read once at build, trimmed, never logged). It must not be
    /// readable by every user.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// 1 to 16 queries, each giving one metric; at most one query per metric.
    pub queries: Vec<QuerySettings>,
}

/// One PromQL instant query and how its result names members.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySettings {
    /// The Flotilla metric the values are (`cpu`, `mem`, `rps`, `requests`, `inflight`, `p50_ms`,
    /// `p95_ms`, `p99_ms`, `error_pct`).
    #[serde(deserialize_with = "deserialize_metric")]
    pub metric: Metric,
    /// PromQL giving an instant vector with one element per member; `{group}` is replaced by the
    /// group's name. At most 4096 characters.
    pub query: String,
    /// The result label whose value names the member (`server_id`, `instance`, ...).
    pub member_label: String,
    /// Which member field that value is compared with. Default `name`.
    #[serde(default)]
    pub member_by: MemberBy,
}

/// Which member field a result label's value is compared with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MemberBy {
    /// [`Instance::name`].
    #[default]
    Name,
    /// [`Instance::id`].
    Id,
    /// [`Instance::address`]: the whole `host:port`, or else the host alone when only one member
    /// has that host (an exporter's `instance` label carries the exporter's port, not the service's).
    Address,
    /// A provider tag (`tag:server_id`: the Nova UUID of an OpenStack member).
    Tag(String),
}

impl MemberBy {
    /// Parses `name`, `id`, `address` or `tag:<key>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "name" => Ok(MemberBy::Name),
            "id" => Ok(MemberBy::Id),
            "address" => Ok(MemberBy::Address),
            _ => match s.strip_prefix("tag:") {
                Some(key) if !key.is_empty() && key.chars().all(|c| c.is_ascii_graphic()) => {
                    Ok(MemberBy::Tag(key.to_string()))
                }
                Some(_) => Err(format!("`{}`: the tag key must be printable ASCII, e.g. `tag:server_id`", shown(s))),
                None => Err(format!("`{}`: expected `name`, `id`, `address` or `tag:<key>`", shown(s))),
            },
        }
    }

    /// The member's value for this field, if it has one.
    pub fn key_of<'a>(&self, member: &'a Instance) -> Option<&'a str> {
        match self {
            MemberBy::Name => Some(member.name.as_str()),
            MemberBy::Id => Some(member.id.as_str()),
            MemberBy::Address => member.address.as_deref(),
            MemberBy::Tag(k) => member.tag(k),
        }
    }
}

impl std::fmt::Display for MemberBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemberBy::Name => f.write_str("name"),
            MemberBy::Id => f.write_str("id"),
            MemberBy::Address => f.write_str("address"),
            MemberBy::Tag(k) => write!(f, "tag:{k}"),
        }
    }
}

impl<'de> Deserialize<'de> for MemberBy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MemberBy::parse(&s).map_err(de::Error::custom)
    }
}

fn deserialize_metric<'de, D: Deserializer<'de>>(d: D) -> Result<Metric, D::Error> {
    let s = String::deserialize(d)?;
    Metric::parse(&s).ok_or_else(|| {
        let names: Vec<&str> = Metric::ALL.iter().map(|m| m.as_str()).collect();
        de::Error::custom(format!("unknown metric `{}`: one of {}", shown(&s), names.join(", ")))
    })
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// At most 80 characters of what someone wrote, escaped: error messages stay one short line.
pub(crate) fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect::<String>().escape_default().to_string();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

impl PrometheusSettings {
    /// Settings with every default, the given URL and queries.
    pub fn new(url: impl Into<String>, queries: Vec<QuerySettings>) -> Self {
        PrometheusSettings { url: url.into(), ca_file: None, timeout: DEFAULT_TIMEOUT, token_file: None, queries }
    }

    /// Every problem, as (field, message), fields relative to the `prometheus` mapping
    /// (`queries[1].query`). Empty when the settings can be used. Reads the token and CA files but
    /// never prints the token.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut err = |field: String, msg: String| errors.push((field, msg));
        if let Err(m) = parse_url(&self.url) {
            err("url".into(), m);
        }
        if let Some(ca) = &self.ca_file {
            if let Err(m) = load_ca(ca) {
                err("ca_file".into(), m);
            }
        }
        let (lo, hi) = TIMEOUT_RANGE;
        if self.timeout < lo || self.timeout > hi {
            err("timeout".into(), "must be between 100ms and 60s".into());
        }
        if let Some(file) = &self.token_file {
            if let Err(m) = load_token(file) {
                err("token_file".into(), m);
            }
        }
        if self.queries.is_empty() || self.queries.len() > MAX_QUERIES {
            err("queries".into(), format!("has {} entries; give 1 to {MAX_QUERIES}", self.queries.len()));
        }
        for (i, q) in self.queries.iter().enumerate() {
            let field = |f: &str| format!("queries[{i}].{f}");
            if let Some(j) = self.queries[..i].iter().position(|p| p.metric == q.metric) {
                err(field("metric"), format!("`{}` is already read by queries[{j}]", q.metric.as_str()));
            }
            let len = q.query.chars().count();
            if q.query.trim().is_empty() {
                err(field("query"), "must not be empty".into());
            } else if len > MAX_QUERY_LEN {
                err(field("query"), format!("is {len} characters long; at most {MAX_QUERY_LEN}"));
            } else if q.query.chars().any(|c| c.is_control() && !c.is_whitespace()) {
                err(field("query"), "contains control characters".into());
            }
            if !is_label_name(&q.member_label) {
                err(
                    field("member_label"),
                    format!("`{}` is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)", shown(&q.member_label)),
                );
            }
        }
        errors
    }
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_label_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The URL, checked: http or https, a host, nothing secret or surprising in it.
pub(crate) fn parse_url(url: &str) -> Result<reqwest::Url, String> {
    if !url.contains("://") {
        return Err(format!("`{}`: give the scheme, e.g. `http://{}`", shown(url), shown(url.trim())));
    }
    let u = reqwest::Url::parse(url.trim()).map_err(|e| format!("`{}` is not a URL: {e}", shown(url)))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("`{}`: use http:// or https://", shown(url)));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{}` names no host", shown(url)));
    }
    if !u.username().is_empty() || u.password().is_some() {
        // Said without echoing the URL: it holds a password.
        return Err("must not hold credentials (user:password@); put a bearer token in `token_file`".into());
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!("`{}`: no `?query` or `#fragment`; give the server's base URL", shown(url)));
    }
    Ok(u)
}

/// Loads the PEM bundle, or says in one line what is wrong with the file.
pub(crate) fn load_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let shown_path = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("`{shown_path}` cannot be read: {e}"))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("`{shown_path}` is not a PEM certificate bundle: {e}"))?;
    if certs.is_empty() {
        return Err(format!("`{shown_path}` holds no certificate"));
    }
    Ok(certs)
}

/// Reads the token: trimmed, not empty, fit for an HTTP header, from a file not every user may read.
/// Messages name the path, never the contents.
pub(crate) fn load_token(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown_path = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("`{shown_path}` does not exist"),
        _ => format!("`{shown_path}` cannot be read: {e}"),
    })?;
    if !meta.is_file() {
        return Err(format!("`{shown_path}` is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o004 != 0 {
        return Err(format!(
            "`{shown_path}` holds a secret and every user may read it (mode {mode:04o}); `chmod 600 {shown_path}`"
        ));
    }
    if meta.len() > MAX_TOKEN_LEN as u64 + 64 {
        return Err(format!("`{shown_path}` is too large for a token ({} bytes)", meta.len()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("`{shown_path}` cannot be read: {e}"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("`{shown_path}` is empty"));
    }
    if token.len() > MAX_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("`{shown_path}`: the token must be one line of printable ASCII without spaces"));
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn from_json(text: &str) -> Result<PrometheusSettings, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn defaults_and_a_full_section() {
        let s = from_json(
            r#"{"url": "http://127.0.0.1:9090",
                "queries": [{"metric": "cpu", "query": "up", "member_label": "instance"}]}"#,
        )
        .unwrap();
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert_eq!((s.token_file.as_ref(), s.ca_file.as_ref()), (None, None));
        assert_eq!(s.queries[0].member_by, MemberBy::Name);
        assert!(s.validate().is_empty(), "{:?}", s.validate());

        let s = from_json(
            r#"{"url": "https://prom.example:9090/prometheus", "timeout": "750ms",
                "queries": [{"metric": "p95_ms", "query": "x{g=\"{group}\"}", "member_label": "server_id",
                             "member_by": "tag:server_id"}]}"#,
        )
        .unwrap();
        assert_eq!(s.timeout, Duration::from_millis(750));
        assert_eq!(s.queries[0].metric, Metric::LatencyP95);
        assert_eq!(s.queries[0].member_by, MemberBy::Tag("server_id".into()));
        assert!(s.validate().is_empty(), "{:?}", s.validate());
    }

    #[test]
    fn serde_refuses_unknown_fields_metrics_and_member_fields() {
        let e = from_json(r#"{"url": "http://h", "queries": [], "password": "x"}"#).unwrap_err();
        assert!(e.to_string().contains("password"), "{e}");
        let q = |extra: &str| format!(r#"{{"url": "http://h", "queries": [{{"query": "up", {extra}}}]}}"#);
        let e = from_json(&q(r#""metric": "load", "member_label": "i""#)).unwrap_err();
        assert!(e.to_string().contains("unknown metric `load`: one of cpu, mem"), "{e}");
        let e = from_json(&q(r#""metric": "cpu", "member_label": "i", "member_by": "uuid""#)).unwrap_err();
        assert!(e.to_string().contains("expected `name`, `id`, `address` or `tag:<key>`"), "{e}");
        let e = from_json(&q(r#""metric": "cpu", "member_label": "i", "member_by": "tag:""#)).unwrap_err();
        assert!(e.to_string().contains("tag key"), "{e}");
        let e = from_json(&q(r#""metric": "cpu", "member_label": "i", "step": "1m""#)).unwrap_err();
        assert!(e.to_string().contains("step"), "{e}");
        let e = from_json(r#"{"url": "http://h", "timeout": 5, "queries": []}"#).unwrap_err();
        assert!(e.to_string().contains("a unit is needed"), "{e}");
    }

    fn query(metric: Metric, text: &str, label: &str) -> QuerySettings {
        QuerySettings { metric, query: text.into(), member_label: label.into(), member_by: MemberBy::Name }
    }

    #[test]
    fn validate_names_each_bad_field() {
        let mut s = PrometheusSettings::new(
            "ftp://h",
            vec![
                query(Metric::Cpu, "up", "instance"),
                query(Metric::Cpu, "  ", "1bad"),
                query(Metric::Mem, &"x".repeat(MAX_QUERY_LEN + 1), "server_id"),
            ],
        );
        s.timeout = Duration::from_millis(50);
        s.token_file = Some("/nonexistent/flotilla-token".into());
        s.ca_file = Some("/nonexistent/flotilla-ca.pem".into());
        let fields: Vec<String> = s.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "url",
                "ca_file",
                "timeout",
                "token_file",
                "queries[1].metric",
                "queries[1].query",
                "queries[1].member_label",
                "queries[2].query"
            ]
        );
        s.queries.clear();
        assert!(s.validate().iter().any(|(f, m)| f == "queries" && m.contains("1 to 16")));
        s.queries = (0..17).map(|_| query(Metric::Cpu, "up", "i")).collect();
        assert!(s.validate().iter().any(|(f, m)| f == "queries" && m.contains("has 17")));
        s.timeout = Duration::from_secs(61);
        assert!(s.validate().iter().any(|(f, _)| f == "timeout"));
    }

    #[test]
    fn urls_are_http_with_a_host_and_no_secrets() {
        for ok in ["http://127.0.0.1:9090", "https://prom.example/prefix/", "http://[::1]:9090"] {
            assert!(parse_url(ok).is_ok(), "{ok}");
        }
        let e = parse_url("http://admin:hunter2@h:9090").unwrap_err();
        assert!(e.contains("credentials") && !e.contains("hunter2"), "{e}");
        for (bad, says) in [
            ("127.0.0.1:9090", "give the scheme, e.g. `http://127.0.0.1:9090`"),
            ("file:///etc/passwd", "http"),
            ("http://h/?x=1", "no `?query`"),
            ("http://", "is not a URL"),
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_token_file_is_trimmed_and_refused_when_everyone_may_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, "  s3cret-token  ").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_token(&path).unwrap(), "s3cret-token");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_token(&path).unwrap_err();
        assert!(e.contains("every user may read it") && !e.contains("s3cret"), "{e}");

        std::fs::write(&path, "two words\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_token(&path).unwrap_err();
        assert!(e.contains("printable ASCII") && !e.contains("two words"), "{e}");
        std::fs::write(&path, "\n").unwrap();
        assert!(load_token(&path).unwrap_err().contains("is empty"));
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not pem").unwrap();
        assert!(load_ca(&path).unwrap_err().contains("holds no certificate"));
    }
}
