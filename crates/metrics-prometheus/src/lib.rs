//! Member metrics from a Prometheus server ([`PrometheusSource`], [`MetricSource`] name
//! `prometheus`).
//!
//! Each configured query is a PromQL instant query (`POST <url>/api/v1/query` with `query`, `time`
//! = the controller's `now`, and `timeout`), run for every sample, all queries at once, each within
//! [`PrometheusSettings::timeout`]. `{group}` in its text becomes the group's name. The result must
//! be an instant vector; an element's `member_label` value is compared with the members' field
//! named by `member_by` (`name`, `id`, `address`, `tag:<key>`), and its value becomes that member's
//! `metric`.
//!
//! **Missing, never zero:** an empty result, an element naming no member, a member named by no
//! element (or by several), a NaN/±Inf value, and a value outside the metric's bounds
//! ([`sane`]) all leave the metric out of the member's sample. A member without any value
//! gets no sample.
//!
//! **Failures** are per query: a scalar, a range vector, a vector without the member label, a
//! refused query (`bad_data`) or token (401/403) is `Invalid`; a timeout, a refused connection or a
//! 5xx is `Transient`. `sample` fails only when every query failed; otherwise it returns what the
//! others gave and logs the failures (warn, at most once a minute per group and query). Messages
//! name the URL and the query, never the token.

mod members;
mod query;
mod settings;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_model::{ErrorKind, GroupId, Instance, MetricSource, Sample, SeamError, Timestamp};

pub use members::{map_series, sane, Mapped, NEGATIVE_NOISE, PERCENT_OVERSHOOT};
pub use query::{interpret, Series, MAX_BODY, MAX_SERIES};
pub use settings::{
    MemberBy, PrometheusSettings, QuerySettings, DEFAULT_TIMEOUT, GROUP_PLACEHOLDER, MAX_QUERIES, MAX_QUERY_LEN,
    TIMEOUT_RANGE,
};

use query::Endpoint;

/// How often the same warning (one group, one query, one problem) is logged at most.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// The longest piece of a query shown in an error message.
const QUERY_SHOWN: usize = 120;

/// What one [`PrometheusSource::sample_report`] call saw.
#[derive(Debug, Default)]
pub struct SampleReport {
    /// One per member that got at least one value, in member order.
    pub samples: Vec<Sample>,
    /// The queries that failed: (index into the settings' `queries`, why).
    pub failures: Vec<(usize, SeamError)>,
}

/// Member metrics from PromQL instant queries; see the crate docs.
pub struct PrometheusSource {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    /// The base URL as configured (it holds no credentials: settings refuse them).
    url: String,
    queries: Vec<QuerySettings>,
    warned: Throttle,
}

impl std::fmt::Debug for PrometheusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusSource")
            .field("url", &self.inner.url)
            .field("queries", &self.inner.queries.len())
            .finish_non_exhaustive()
    }
}

impl PrometheusSource {
    /// Checks the settings (as [`PrometheusSettings::validate`]), reads the token and CA files and
    /// builds the HTTP client. Contacts nobody. Fails with [`ErrorKind::Invalid`] naming each bad
    /// field.
    pub fn new(settings: PrometheusSettings) -> Result<Self, SeamError> {
        let problems = settings.validate();
        if !problems.is_empty() {
            let text: Vec<String> = problems.iter().map(|(f, m)| format!("{f}: {m}")).collect();
            return Err(SeamError::invalid(format!("prometheus settings: {}", text.join("; "))));
        }
        let invalid = |field: &str, m: String| SeamError::invalid(format!("prometheus settings: {field}: {m}"));
        let base = settings::parse_url(&settings.url).map_err(|m| invalid("url", m))?;
        let certs = match &settings.ca_file {
            Some(ca) => settings::load_ca(ca).map_err(|m| invalid("ca_file", m))?,
            None => Vec::new(),
        };
        let token = match &settings.token_file {
            Some(file) => Some(settings::load_token(file).map_err(|m| invalid("token_file", m))?),
            None => None,
        };
        if token.is_some() && base.scheme() == "http" && !is_loopback(&base) {
            tracing::warn!(
                url = %settings.url,
                "prometheus is reached over plain http: the bearer token crosses the network unencrypted"
            );
        }
        let endpoint = Endpoint::new(&base, certs, token, settings.timeout)?;
        let url = settings.url.trim().to_string();
        Ok(PrometheusSource {
            inner: Arc::new(Inner { endpoint, url, queries: settings.queries, warned: Throttle::default() }),
        })
    }

    /// Runs every query for `group` and maps the results to `members`; every failure is kept in the
    /// report (nothing logged). [`MetricSource::sample`] is this plus the failure rule and logs.
    pub async fn sample_report(&self, group: &GroupId, members: &[Instance], now: Timestamp) -> SampleReport {
        let mut report = SampleReport::default();
        if members.is_empty() {
            return report;
        }
        let n = self.inner.queries.len();
        let texts: Vec<String> =
            self.inner.queries.iter().map(|q| q.query.replace(GROUP_PLACEHOLDER, group.as_str())).collect();
        let mut running = tokio::task::JoinSet::new();
        let mut index_of = HashMap::new();
        for (i, text) in texts.iter().enumerate() {
            let (inner, text) = (self.inner.clone(), text.clone());
            let task = running.spawn(async move { inner.endpoint.instant(&text, now).await });
            index_of.insert(task.id(), i);
        }
        let mut answers: Vec<Option<Result<Vec<Series>, SeamError>>> = (0..n).map(|_| None).collect();
        while let Some(joined) = running.join_next_with_id().await {
            let (id, answer) = match joined {
                Ok((id, answer)) => (id, answer),
                Err(e) => (e.id(), Err(SeamError::bug(format!("the query task failed: {e}")))),
            };
            answers[index_of[&id]] = Some(answer);
        }

        let mut samples: Vec<Option<Sample>> = vec![None; members.len()];
        for (i, answer) in answers.into_iter().enumerate() {
            let Some(answer) = answer else { continue };
            let (q, text) = (&self.inner.queries[i], &texts[i]);
            let context =
                || format!("prometheus {}: queries[{i}] ({}) `{}`", self.inner.url, q.metric.as_str(), clip(text));
            let mapped = answer.and_then(|series| {
                map_series(&series, &q.member_label, &q.member_by, members, q.metric).map_err(SeamError::invalid)
            });
            let mapped = match mapped {
                Ok(m) => m,
                Err(e) => {
                    report.failures.push((i, e.context(context())));
                    continue;
                }
            };
            self.note_dropped(group, i, &mapped, members, &context);
            for (m, v) in mapped.values {
                samples[m].get_or_insert_with(|| Sample::new(members[m].id.clone(), now)).set(q.metric, v);
            }
        }
        report.samples = samples.into_iter().flatten().collect();
        report
    }

    /// Logs (throttled) what a successful query left out that someone should look at.
    fn note_dropped(
        &self,
        group: &GroupId,
        i: usize,
        mapped: &Mapped,
        members: &[Instance],
        context: &dyn Fn() -> String,
    ) {
        if let Some(&(m, v)) = mapped.out_of_bounds.first() {
            if let Some(since) = self.inner.warned.allow(&format!("{group}/{i}/bounds")) {
                tracing::warn!(
                    %group, member = %members[m].name, value = v, dropped = mapped.out_of_bounds.len(), suppressed = since,
                    "{}: values outside the metric's bounds are left out", context()
                );
            }
        }
        if let Some(first) = mapped.ambiguous.first() {
            if let Some(since) = self.inner.warned.allow(&format!("{group}/{i}/ambiguous")) {
                tracing::warn!(
                    %group, first = %first, count = mapped.ambiguous.len(), suppressed = since,
                    "{}: members named ambiguously get no value; aggregate by the member label", context()
                );
            }
        }
        if mapped.not_finite + mapped.unmatched + mapped.unlabelled > 0 {
            tracing::debug!(
                %group, not_finite = mapped.not_finite, unmatched = mapped.unmatched, unlabelled = mapped.unlabelled,
                "{}: elements left out", context()
            );
        }
    }
}

#[async_trait]
impl MetricSource for PrometheusSource {
    fn name(&self) -> &str {
        "prometheus"
    }

    async fn sample(&self, group: &GroupId, members: &[Instance], now: Timestamp) -> Result<Vec<Sample>, SeamError> {
        let report = self.sample_report(group, members, now).await;
        if !report.failures.is_empty() && report.failures.len() >= self.inner.queries.len() {
            // A transient failure first, so the loop retries soon rather than pausing the group.
            let mut errors: Vec<SeamError> = report.failures.into_iter().map(|(_, e)| e).collect();
            errors.sort_by_key(|e| e.kind() != ErrorKind::Transient);
            // `combine` of a non-empty list is always an error.
            return SeamError::combine(errors).map(|()| Vec::new());
        }
        for (i, e) in &report.failures {
            if let Some(since) = self.inner.warned.allow(&format!("{group}/{i}/failed")) {
                tracing::warn!(%group, kind = e.kind().as_str(), suppressed = since, "{e}");
            }
        }
        Ok(report.samples)
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

fn clip(query: &str) -> String {
    let one_line = query.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= QUERY_SHOWN {
        return one_line;
    }
    let mut out: String = one_line.chars().take(QUERY_SHOWN).collect();
    out.push('…');
    out
}

/// At most one log line per key every [`WARN_EVERY`], counting the ones held back.
#[derive(Default)]
struct Throttle {
    last: Mutex<HashMap<String, (tokio::time::Instant, u64)>>,
}

impl Throttle {
    /// `Some(held back since the last one)` when a line may be logged now.
    fn allow(&self, key: &str) -> Option<u64> {
        let now = tokio::time::Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.get_mut(key) {
            Some((at, held)) if now.duration_since(*at) < WARN_EVERY => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                let n = *held;
                (*at, *held) = (now, 0);
                Some(n)
            }
            None => {
                last.insert(key.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_throttle_lets_one_line_through_a_minute_and_counts_the_rest() {
        let t = Throttle::default();
        assert_eq!(t.allow("a"), Some(0));
        assert_eq!(t.allow("a"), None);
        assert_eq!(t.allow("b"), Some(0), "keys are separate");
        assert_eq!(t.allow("a"), None);
        tokio::time::advance(WARN_EVERY).await;
        assert_eq!(t.allow("a"), Some(2));
        assert_eq!(t.allow("a"), None);
    }

    #[test]
    fn long_queries_are_clipped_in_messages() {
        assert_eq!(clip("sum by (x)\n  (rate(y[1m]))"), "sum by (x) (rate(y[1m]))");
        assert_eq!(clip(&"q".repeat(500)).chars().count(), QUERY_SHOWN + 1);
    }
}
