//! What the dashboard reads: a group's scaling value over time, a live stream of snapshots, and the
//! dashboard's own files (embedded in the binary; nothing is fetched from elsewhere).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use flotilla_model::{Aggregation, Metric, MetricChoice, PolicySpec, Sample};
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::problem::Problem;
use crate::report::{GroupReport, ScalingReport};
use crate::routes::{full_report, group_of, Problems, S};
use crate::Shared;

/// Points per series, at most (a week at two-minute steps).
const MAX_POINTS: u64 = 5_000;
/// Samples read for one series (the store keeps a bounded window per group anyway).
const MAX_SAMPLES: usize = 100_000;
/// Snapshots are sent at most this often, however fast things change.
const MIN_GAP: Duration = Duration::from_millis(500);
/// A stream ends after this long; the browser reconnects (so no connection outlives the
/// listener's connection age, and a forgotten tab costs nothing for long).
const STREAM_LIFE: Duration = Duration::from_secs(300);
/// Events in each group of a snapshot.
const SNAPSHOT_EVENTS: usize = 30;

/// The policy's metric, how members combine, and the lines it acts at.
pub(crate) fn scaling(spec: &flotilla_model::GroupSpec) -> ScalingReport {
    let combine = |a: Aggregation| match a {
        Aggregation::Mean => "mean",
        Aggregation::Max => "max",
    };
    match &spec.policy {
        PolicySpec::Threshold(t) => ScalingReport {
            metric: match t.metric {
                MetricChoice::Cpu => "cpu",
                MetricChoice::Mem => "mem",
                MetricChoice::Max => "max",
                MetricChoice::Rps => "rps",
            }
            .into(),
            combine: combine(spec.aggregation).into(),
            high: Some(t.high),
            low: Some(t.low),
            target: None,
        },
        PolicySpec::TargetTracking(t) => ScalingReport {
            metric: t.metric.metric().as_str().into(),
            combine: "mean".into(),
            high: None,
            low: None,
            target: Some(t.target),
        },
        PolicySpec::RequestCount(r) => ScalingReport {
            metric: "requests".into(),
            combine: "sum".into(),
            high: None,
            low: None,
            #[allow(clippy::cast_precision_loss)] // a request count far below 2^52
            target: Some(r.requests as f64),
        },
        // The value is how many rules' alarms are in alarm; the rules act at one.
        PolicySpec::Alarm(_) => {
            ScalingReport { metric: "alarms".into(), combine: "count".into(), high: Some(1.0), low: None, target: None }
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// From this time (Unix ms); default 15 minutes before `until_ms`. A range with nothing in it
    /// (`since_ms` at or after `until_ms`) has no points.
    #[param(maximum = 9_223_372_036_854_775_807_i64)]
    since_ms: Option<u64>,
    /// Up to this time (Unix ms); default now.
    #[param(maximum = 9_223_372_036_854_775_807_i64)]
    until_ms: Option<u64>,
    /// Width of one point in ms, 100 to 86400000 (default: the range over 300, at least 1000);
    /// widened when the range would need more than 5000 points (the answer's `step_ms` says which).
    #[param(minimum = 100, maximum = 86_400_000)]
    step_ms: Option<u64>,
    /// Only this member's values (default: the group's, combined as the policy combines them).
    member: Option<String>,
    /// A metric (`cpu`, `mem`, `rps`, `requests`, `inflight`, `p50_ms`, `p95_ms`, `p99_ms`,
    /// `error_pct`) instead of the policy's value.
    #[param(pattern = "^(|cpu|mem|rps|requests|inflight|p50_ms|p95_ms|p99_ms|error_pct)$")]
    metric: Option<String>,
}

/// A value over time, one point per step that had samples.
#[derive(Debug, Serialize, ToSchema)]
pub struct Series {
    pub step_ms: u64,
    /// What the values are (the policy's metric unless one was asked for).
    pub metric: String,
    /// `mean`, `max` or `sum` over the members, or `member`.
    pub combine: String,
    pub points: Vec<Point>,
}

/// One step: the value, and how many members reported in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Point {
    /// The step's start (Unix ms).
    pub at_ms: u64,
    pub value: f64,
    pub members: u32,
}

/// A group's scaling value (or one metric, or one member's) over a time range, from the samples the
/// store keeps (`store.sample_window` per group).
#[utoipa::path(get, path = "/api/v1/groups/{group}/series", params(("group" = String, Path), SeriesQuery),
    responses((status = 200, body = Series), Problems))]
pub(crate) async fn series(
    State(s): S,
    Path(group): Path<String>,
    query: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Series>, Problem> {
    let Query(q) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let g = group_of(&s, &group)?;
    let bad = |m: String| Problem::new(StatusCode::BAD_REQUEST, m);
    let now = s.controller.now().as_millis();
    let until = q.until_ms.unwrap_or(now);
    let since = q.since_ms.unwrap_or(until.saturating_sub(15 * 60_000));
    for (name, v) in [("since_ms", since), ("until_ms", until)] {
        if i64::try_from(v).is_err() {
            return Err(bad(format!("`{name}` is past the largest time (2^63 - 1 ms)")));
        }
    }
    let range = until.saturating_sub(since);
    if let Some(step) = q.step_ms.filter(|s| !(100..=86_400_000).contains(s)) {
        return Err(bad(format!("`step_ms` must be 100 to 86400000 (got {step})")));
    }
    let step = q.step_ms.unwrap_or((range / 300).max(1000));
    // At most MAX_POINTS points: a wider step rather than a refusal (the answer says which).
    let step = step.max(range.div_ceil(MAX_POINTS));
    let metric = match q.metric.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => Some(Metric::parse(m).ok_or_else(|| bad(format!("`metric`: unknown metric `{m}`")))?),
        None => None,
    };
    let member = match q.member.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => Some(crate::routes::member_of(&s, &g, m).await?),
        None => None,
    };
    let spec = s.controller.groups().find(|x| x.id == g).expect("group_of found it");
    let scaling = scaling(spec);
    let value = |sample: &Sample| match metric {
        Some(m) => sample.get(m),
        None => flotilla_policy::policy_value(&spec.policy, sample),
    };
    let combine = match (&member, metric) {
        (Some(_), _) => "member",
        (None, Some(Metric::Requests | Metric::RequestRate | Metric::Inflight)) => "sum",
        (None, Some(_)) => "mean",
        (None, None) => scaling.combine.as_str(),
    }
    .to_string();
    let mut samples = s.controller.store().samples(&g, MAX_SAMPLES).await?;
    samples.retain(|x| {
        let at = x.at.as_millis();
        at >= since && at < until && member.as_ref().is_none_or(|m| &x.instance == m)
    });
    samples.sort_by_key(|x| x.at);
    // Each step: every member's newest value in it, combined.
    let mut steps: BTreeMap<u64, BTreeMap<&str, f64>> = BTreeMap::new();
    for x in &samples {
        if let Some(v) = value(x) {
            let at = since + (x.at.as_millis() - since) / step * step;
            steps.entry(at).or_default().insert(x.instance.as_str(), v);
        }
    }
    let points = steps
        .into_iter()
        .map(|(at_ms, values)| {
            let n = values.len();
            let sum: f64 = values.values().sum();
            #[allow(clippy::cast_precision_loss)] // member counts are small
            let value = match combine.as_str() {
                "max" => values.values().copied().fold(f64::MIN, f64::max),
                "sum" => sum,
                _ => sum / n as f64,
            };
            Point { at_ms, value, members: u32::try_from(n).unwrap_or(u32::MAX) }
        })
        .collect();
    let metric = metric.map_or(scaling.metric.clone(), |m| m.as_str().to_string());
    Ok(Json(Series { step_ms: step, metric, combine, points }))
}

/// What a stream sends: every group as `GET /groups/{group}` shows it, with its newest events.
#[derive(Debug, Serialize)]
struct Snapshot {
    at_ms: u64,
    groups: Vec<GroupReport>,
}

async fn snapshot(s: &Shared) -> Event {
    let ids: Vec<_> = s.controller.groups().map(|g| g.id.clone()).collect();
    let mut groups = Vec::with_capacity(ids.len());
    for g in &ids {
        match full_report(s, g, SNAPSHOT_EVENTS).await {
            Ok(mut r) => {
                // The page shows each event's message; its detail is for `/events` (a fifth of
                // the bytes, sent to every dashboard at every change).
                r.events.iter_mut().for_each(|e| e.data = None);
                groups.push(r);
            }
            Err(p) => return Event::default().event("problem").data(p.detail),
        }
    }
    let snap = Snapshot { at_ms: s.controller.now().as_millis(), groups };
    Event::default()
        .event("snapshot")
        .json_data(&snap)
        .unwrap_or_else(|e| Event::default().event("problem").data(e.to_string()))
}

/// The snapshot as of change `version` or later: the one already built if it is that new, else a
/// fresh one (built under the lock, so streams woken by the same change wait for one build).
async fn shared_snapshot(s: &Shared, version: u64) -> Event {
    let mut cache = s.snapshot.lock().await;
    if let Some((built_at, event)) = cache.as_ref() {
        if *built_at >= version {
            return event.clone();
        }
    }
    let event = snapshot(s).await;
    *cache = Some((version, event.clone()));
    event
}

/// Server-sent events: a `snapshot` of every group at once, then again whenever something changed
/// (an event, a decision), at most every 500 ms. Ends after five minutes (reconnect) or when the
/// daemon stops.
pub(crate) async fn stream(State(s): S) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let deadline = tokio::time::Instant::now() + STREAM_LIFE;
    let changes = s.controller.changes();
    let stop = s.stop.clone();
    let state = (s, changes, stop, true);
    let events = stream::unfold(state, move |(s, mut changes, mut stop, first)| async move {
        if !first {
            tokio::time::sleep(MIN_GAP).await;
            tokio::select! {
                r = changes.changed() => r.ok()?,
                _ = stop.wait_for(|v| *v) => return None,
                () = tokio::time::sleep_until(deadline) => return None,
            }
        }
        if *stop.borrow() {
            return None;
        }
        let version = *changes.borrow_and_update();
        let event = shared_snapshot(&s, version).await;
        Some((Ok(event), (s, changes, stop, false)))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// The dashboard: `/dashboard/` and its files, readable without a token (they hold no data; the
/// page asks for a token to read the API).
pub(crate) fn dashboard() -> Router {
    fn file(body: &'static str, kind: &'static str) -> Response {
        let mut r = (StatusCode::OK, body).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
        );
        r
    }
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard/", get(|| async { file(include_str!("dashboard/index.html"), "text/html; charset=utf-8") }))
        .route(
            "/dashboard/app.js",
            get(|| async { file(include_str!("dashboard/app.js"), "text/javascript; charset=utf-8") }),
        )
        .route(
            "/dashboard/app.css",
            get(|| async { file(include_str!("dashboard/app.css"), "text/css; charset=utf-8") }),
        )
        .route("/dashboard/favicon.svg", get(|| async { file(include_str!("dashboard/favicon.svg"), "image/svg+xml") }))
}
