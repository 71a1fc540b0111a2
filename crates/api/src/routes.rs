//! The endpoints, their auth, and the OpenAPI document generated from them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use flotilla_model::{
    Decision, EventFilter, EventKind, GroupControls, GroupId, HoldReason, InstanceId, OpState, Timestamp,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::actions;
use crate::problem::Problem;
use crate::report::{
    self, DecisionReport, EventReport, GroupReport, InputReport, LiveReport, MemberReport, ReadingReport,
};
use crate::Shared;
use flotilla_listener::auth::{authorize, Refusal, Scope};

pub(crate) type S = State<Arc<Shared>>;

/// The largest request body the API reads.
const MAX_BODY: usize = 16 * 1024;
/// Events per page, at most.
const MAX_PAGE: usize = 1000;
/// At most this many events of one millisecond join a page (a page never splits a millisecond).
const MAX_SCAN: usize = 100_000;

#[derive(OpenApi)]
#[openapi(
    info(title = "Flotilla API", description = "Groups, members, events, operations and operator controls of a running Flotilla daemon."),
    paths(list_groups, get_group, pause, resume, set_dry_run, list_members, protect, unprotect, list_events, list_operations,
        actions::set_desired, actions::handover, actions::rollout, actions::get_member, actions::drain, actions::replace, actions::check_in, crate::live::series, crate::config::get_config,
        crate::receivers::receive, crate::receivers::list_alarms, crate::receivers::list_receivers),
    components(schemas(GroupReport, LiveReport, report::ScalingReport, crate::live::Series, crate::live::Point, DecisionReport, InputReport, ReadingReport, MemberReport, EventReport, ControlsReport, DryRun, actions::Desired, EventsPage, OperationReport, Problem, actions::CheckIn, actions::CheckedIn,
        crate::receivers::Received, crate::receivers::AlarmReport, crate::receivers::ReceiverReport,
        crate::config::EffectiveConfig, crate::config::EffectiveGroup, crate::config::EffectivePolicy, crate::config::EffectiveRule, crate::config::EffectiveApi)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// The problems any endpoint may answer (each as `application/problem+json`).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only its schema is used
pub(crate) enum Problems {
    /// The request is malformed; `detail` names the field.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(#[to_schema] Problem),
    /// No token, or a token not known.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(#[to_schema] Problem),
    /// A read token on a change.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(#[to_schema] Problem),
    /// No such group, member or endpoint.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(#[to_schema] Problem),
    /// The group's state forbids it now (another request waits, wrong mode).
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(#[to_schema] Problem),
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/groups", get(list_groups))
        .route("/groups/{group}", get(get_group))
        .route("/groups/{group}/pause", post(pause))
        .route("/groups/{group}/resume", post(resume))
        .route("/groups/{group}/dry-run", put(set_dry_run))
        .route("/groups/{group}/members", get(list_members))
        .route("/groups/{group}/members/{member}/protect", post(protect))
        .route("/groups/{group}/members/{member}/unprotect", post(unprotect))
        .route("/groups/{group}/operations", get(list_operations))
        .route("/groups/{group}/desired", put(actions::set_desired))
        .route("/groups/{group}/handover", post(actions::handover))
        .route("/groups/{group}/rollout", post(actions::rollout))
        .route("/groups/{group}/members/{member}", get(actions::get_member))
        .route("/groups/{group}/members/{member}/drain", post(actions::drain))
        .route("/groups/{group}/members/{member}/replace", post(actions::replace))
        .route("/groups/{group}/members/{member}/check-in", post(actions::check_in))
        .route("/groups/{group}/alarms", get(crate::receivers::list_alarms))
        .route("/groups/{group}/receivers", get(crate::receivers::list_receivers))
        .route("/events", get(list_events))
        .route("/stream", get(crate::live::stream))
        .route("/groups/{group}/series", get(crate::live::series))
        .route("/config", get(crate::config::get_config))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such endpoint under /api/v1") })
        .method_not_allowed_fallback(|| async {
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "this endpoint does not take that method")
        })
        .layer(middleware::from_fn_with_state(shared.clone(), auth))
        .with_state(shared.clone());
    // Receivers are signed by their URL, not by a bearer token: Aodh and Alertmanager call them.
    let receivers = Router::new()
        .route("/api/v1/receivers/{group}/{alarm}", post(crate::receivers::receive))
        .with_state(shared.clone());
    let metrics = Router::new()
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(shared.clone(), auth))
        .with_state(shared);
    Router::new().merge(receivers).nest("/api/v1", api).merge(metrics).merge(crate::live::dashboard())
}

/// OpenMetrics text (what prometheus-client writes; Prometheus scrapes it).
async fn metrics(State(s): S) -> Response {
    match &s.metrics {
        Some(render) => {
            ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], render())
                .into_response()
        }
        None => Problem::new(StatusCode::NOT_FOUND, "this daemon exports no metrics").into_response(),
    }
}

/// Reads need `read`, everything else `admin`.
async fn auth(State(s): S, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request, next: Next) -> Response {
    let needs = match *req.method() {
        // A receiver URL is a credential: only admins read them.
        Method::GET if req.uri().path().ends_with("/receivers") => Scope::Admin,
        Method::GET | Method::HEAD => Scope::Read,
        Method::POST if req.uri().path().ends_with("/check-in") => Scope::CheckIn,
        _ => Scope::Admin,
    };
    let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match authorize(&s.tokens, s.anonymous_read, presented, peer, needs) {
        Ok(_) => next.run(req).await,
        Err(Refusal::Unauthenticated(why)) => {
            tracing::debug!(%peer, why, "api: unauthenticated");
            Problem::new(StatusCode::UNAUTHORIZED, why).into_response()
        }
        Err(Refusal::Forbidden(why)) => Problem::new(StatusCode::FORBIDDEN, why).into_response(),
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

pub(crate) fn group_of(s: &Shared, name: &str) -> Result<GroupId, Problem> {
    let id = GroupId::new(name);
    if s.controller.groups().any(|g| g.id == id) {
        Ok(id)
    } else {
        Err(Problem::new(StatusCode::NOT_FOUND, format!("no group `{name}` in this daemon's config")))
    }
}

/// What the controller knows of a group beyond the store: its shape and last decision.
fn live(s: &Shared, group: &GroupId, members: &[MemberReport]) -> Option<LiveReport> {
    let spec = s.controller.groups().find(|g| &g.id == group)?;
    let status = s.controller.status(group).unwrap_or_default();
    let capacity = |state: &str| ["running", "unknown", "creating"].iter().any(|p| state.starts_with(p));
    Some(LiveReport {
        mode: match spec.mode {
            flotilla_model::Mode::Scale => "scale",
            flotilla_model::Mode::Handover => "handover",
        }
        .to_string(),
        min: spec.min,
        max: spec.max,
        policy: spec.policy.kind().to_string(),
        scaling: crate::live::scaling(spec),
        size: u32::try_from(members.iter().filter(|m| capacity(&m.state)).count()).unwrap_or(u32::MAX),
        last_decision: status.last.as_ref().map(|e| {
            let (outcome, reason) = outcome_of(&e.decision);
            DecisionReport {
                at_ms: e.at.as_millis(),
                outcome: outcome.into(),
                reason,
                value: e.value,
                cpu: e.cpu,
                mem: e.mem,
                desired: e.desired,
                sampled: e.sampled,
                running: e.running,
                up_count: e.up_count,
                down_count: e.down_count,
                summary: status.summary.clone().unwrap_or_default(),
                inputs: status
                    .inputs
                    .iter()
                    .map(|i| InputReport {
                        member: i.member.0.clone(),
                        fresh: i.fresh,
                        values: i
                            .values
                            .iter()
                            .map(|&(m, value, age_ms)| ReadingReport { metric: m.as_str().into(), value, age_ms })
                            .collect(),
                    })
                    .collect(),
                held_back: status.held_back.clone(),
            }
        }),
        last_error: status.last_error,
    })
}

/// The outcome in the controller's words (as `/metrics` counts it), and its reason.
fn outcome_of(d: &Decision) -> (&'static str, String) {
    let reason = match d {
        Decision::Hold(HoldReason::Cooldown { remaining_ms }) => format!("cooldown, {remaining_ms} ms left"),
        Decision::Hold(h) => flotilla_controller::hold_words(h).to_string(),
        Decision::ScaleOut { reason, .. }
        | Decision::ScaleIn { reason, .. }
        | Decision::Handover { reason, .. }
        | Decision::Replace { reason, .. } => reason.clone(),
    };
    (flotilla_controller::outcome(d), reason)
}

pub(crate) async fn full_report(s: &Shared, group: &GroupId, events: usize) -> Result<GroupReport, Problem> {
    let store = s.controller.store().as_ref();
    let pending = store.unfinished_operations().await?;
    let mut r = report::group_report(store, group, events, &pending).await?;
    r.live = live(s, group, &r.members);
    let failing = s.controller.health_view(group).await;
    for m in &mut r.members {
        m.failing_since_ms = failing.iter().find(|u| u.id.as_str() == m.name).map(|u| u.since.as_millis());
        let last = s.controller.last_check_in(group, &InstanceId::new(m.name.clone()));
        m.checked_in_ms = last.as_ref().map(|c| c.at.as_millis());
        m.checked_in_ok = last.map(|c| c.ok);
    }
    Ok(r)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GroupsQuery {
    /// Each group's newest events to include, 0 to 200 (default 0).
    #[param(maximum = 200)]
    events: Option<usize>,
}

/// Every configured group, with its members and last decision.
#[utoipa::path(get, path = "/api/v1/groups", params(GroupsQuery), responses((status = 200, body = Vec<GroupReport>), Problems))]
async fn list_groups(
    State(s): S,
    query: Result<Query<GroupsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<GroupReport>>, Problem> {
    let Query(q) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let events = q.events.unwrap_or(0);
    if events > 200 {
        return Err(Problem::new(StatusCode::BAD_REQUEST, format!("`events` must be 0 to 200 (got {events})")));
    }
    let mut out = Vec::new();
    let ids: Vec<GroupId> = s.controller.groups().map(|g| g.id.clone()).collect();
    for g in ids {
        out.push(full_report(&s, &g, events).await?);
    }
    Ok(Json(out))
}

/// One group, with its newest 20 events.
#[utoipa::path(get, path = "/api/v1/groups/{group}", params(("group" = String, Path)), responses((status = 200, body = GroupReport), Problems))]
async fn get_group(State(s): S, Path(group): Path<String>) -> Result<Json<GroupReport>, Problem> {
    let g = group_of(&s, &group)?;
    Ok(Json(full_report(&s, &g, 20).await?))
}

/// A group's operator controls.
#[derive(Debug, Serialize, ToSchema)]
pub struct ControlsReport {
    pub paused: bool,
    pub dry_run: bool,
    /// Protected members, sorted.
    pub protected: Vec<String>,
    /// The request waiting for the group's next pass, if any (`desired 3`, `drain web_2`).
    pub request: Option<String>,
    /// An operator's rolling replacement in progress: members created before this are replaced.
    pub replace_before_ms: Option<u64>,
}

impl From<GroupControls> for ControlsReport {
    fn from(c: GroupControls) -> Self {
        ControlsReport {
            paused: c.paused,
            dry_run: c.dry_run,
            protected: c.protected.into_iter().map(|i| i.0).collect(),
            request: c.request.as_ref().map(flotilla_model::OperatorRequest::text),
            replace_before_ms: c.replace_before.map(flotilla_model::Timestamp::as_millis),
        }
    }
}

async fn change(
    s: &Shared,
    group: &str,
    what: String,
    f: impl FnOnce(&mut GroupControls),
) -> Result<Json<ControlsReport>, Problem> {
    let g = group_of(s, group)?;
    Ok(Json(s.controller.update_controls(&g, &what, f).await?.into()))
}

/// Pauses a group: it decides and explains, and acts on nothing (not even repairs) until resumed.
#[utoipa::path(post, path = "/api/v1/groups/{group}/pause", params(("group" = String, Path)), responses((status = 200, body = ControlsReport), Problems))]
async fn pause(State(s): S, Path(group): Path<String>) -> Result<Json<ControlsReport>, Problem> {
    change(&s, &group, "pause".into(), |c| c.paused = true).await
}

/// Resumes a paused group.
#[utoipa::path(post, path = "/api/v1/groups/{group}/resume", params(("group" = String, Path)), responses((status = 200, body = ControlsReport), Problems))]
async fn resume(State(s): S, Path(group): Path<String>) -> Result<Json<ControlsReport>, Problem> {
    change(&s, &group, "resume".into(), |c| c.paused = false).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRun {
    /// On: decide and record what would be done, act on nothing.
    pub enabled: bool,
}

/// Reads a small JSON body; a problem names the field at fault.
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, Problem> {
    let bytes = flotilla_listener::read_body(body, headers, MAX_BODY, Duration::from_secs(10))
        .await
        .map_err(|e| Problem::new(e.status(), format!("the body could not be read ({e:?})")))?;
    // No body reads as `{}`: the fields it needs are then named as missing, the optional ones default.
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." || path == "?" { "the body".to_string() } else { format!("field `{path}`") };
        Problem::new(StatusCode::BAD_REQUEST, format!("{at}: {}", e.inner()))
    })
}

/// Turns dry-run on or off.
#[utoipa::path(put, path = "/api/v1/groups/{group}/dry-run", params(("group" = String, Path)), request_body = DryRun,
    responses((status = 200, body = ControlsReport), Problems))]
async fn set_dry_run(State(s): S, Path(group): Path<String>, req: Request) -> Result<Json<ControlsReport>, Problem> {
    let (parts, body) = req.into_parts();
    let DryRun { enabled } = json_body(&parts.headers, body).await?;
    let what = if enabled { "dry run on" } else { "dry run off" };
    change(&s, &group, what.into(), |c| c.dry_run = enabled).await
}

/// A group's members, oldest first.
#[utoipa::path(get, path = "/api/v1/groups/{group}/members", params(("group" = String, Path)), responses((status = 200, body = Vec<MemberReport>), Problems))]
async fn list_members(State(s): S, Path(group): Path<String>) -> Result<Json<Vec<MemberReport>>, Problem> {
    let g = group_of(&s, &group)?;
    Ok(Json(full_report(&s, &g, 0).await?.members))
}

pub(crate) async fn member_of(s: &Shared, group: &GroupId, member: &str) -> Result<InstanceId, Problem> {
    let known = s.controller.store().instances(group).await?;
    known
        .into_iter()
        .find(|i| i.id.as_str() == member || i.name == member)
        .map(|i| i.id)
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("no member `{member}` in group `{group}`")))
}

/// Protects a member: no scale-in, handover or trim to max picks it.
#[utoipa::path(post, path = "/api/v1/groups/{group}/members/{member}/protect",
    params(("group" = String, Path), ("member" = String, Path)), responses((status = 200, body = ControlsReport), Problems))]
async fn protect(State(s): S, Path((group, member)): Path<(String, String)>) -> Result<Json<ControlsReport>, Problem> {
    let g = group_of(&s, &group)?;
    let id = member_of(&s, &g, &member).await?;
    change(&s, &group, format!("protect {id}"), |c| {
        c.protected.insert(id);
    })
    .await
}

/// Lifts a member's protection (a member that is gone may be unprotected too).
#[utoipa::path(post, path = "/api/v1/groups/{group}/members/{member}/unprotect",
    params(("group" = String, Path), ("member" = String, Path)), responses((status = 200, body = ControlsReport), Problems))]
async fn unprotect(
    State(s): S,
    Path((group, member)): Path<(String, String)>,
) -> Result<Json<ControlsReport>, Problem> {
    let id = InstanceId::new(member);
    change(&s, &group, format!("unprotect {id}"), |c| {
        c.protected.remove(&id);
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this group's events (also a group no longer configured); empty: every group.
    group: Option<String>,
    /// Only events of this kind (`decision`, `scale-out`, `scale-in`, `handover`, `member-up`, `member-gone`,
    /// `recovered`, `error`, `info`); empty: any.
    #[param(pattern = "^(|decision|scale-out|scale-in|handover|member-up|member-gone|recovered|error|info)$")]
    kind: Option<String>,
    /// Only events at or after this time (Unix ms).
    since_ms: Option<u64>,
    /// Only events before this time (Unix ms): the previous page's `next_before_ms`.
    before_ms: Option<u64>,
    /// Events per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A page of events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsPage {
    pub events: Vec<EventReport>,
    /// Pass as `before_ms` for the next (older) page; absent on the last page.
    pub next_before_ms: Option<u64>,
}

/// Events, newest first, filtered and paged.
#[utoipa::path(get, path = "/api/v1/events", params(EventsQuery), responses((status = 200, body = EventsPage), Problems))]
async fn list_events(
    State(s): S,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventsPage>, Problem> {
    let Query(q) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, format!("`limit` must be 1 to {MAX_PAGE} (got {limit})")));
    }
    // An empty filter is no filter (`?group=&kind=` as a form would send it).
    let kind = match q.kind.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => Some(
            EventKind::parse(k)
                .ok_or_else(|| Problem::new(StatusCode::BAD_REQUEST, format!("`kind`: unknown kind `{k}`")))?,
        ),
        None => None,
    };
    for (name, v) in [("since_ms", q.since_ms), ("before_ms", q.before_ms)] {
        if v.is_some_and(|v| i64::try_from(v).is_err()) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                format!("`{name}` is past the largest time (2^63 - 1 ms)"),
            ));
        }
    }
    let group = q.group.as_deref().filter(|g| !g.is_empty()).map(GroupId::new);
    let filter = EventFilter {
        group,
        kind,
        since: q.since_ms.map(Timestamp::from_millis),
        before: q.before_ms.map(Timestamp::from_millis),
    };
    let store = s.controller.store();
    let mut page = store.find_events(&filter, limit + 1).await?;
    let more_than_a_page = page.len() > limit;
    page.truncate(limit);
    let last = page.last().map(|e| e.at);
    let mut more = more_than_a_page;
    if let (true, Some(last)) = (more_than_a_page, last) {
        // Events of the same millisecond as the page's last one go on this page, so a `before_ms`
        // cursor never skips one.
        let same_ms =
            EventFilter { since: Some(last), before: Some(last.plus(Duration::from_millis(1))), ..filter.clone() };
        page.retain(|e| e.at != last);
        page.extend(store.find_events(&same_ms, MAX_SCAN).await?);
        let older = EventFilter { before: Some(last), ..filter };
        more = !store.find_events(&older, 1).await?.is_empty();
    }
    let events: Vec<EventReport> = page.into_iter().map(EventReport::from).collect();
    let last = last.map(Timestamp::as_millis);
    let next_before_ms = if more { last } else { None };
    Ok(Json(EventsPage { events, next_before_ms }))
}

/// One operation of the log.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperationReport {
    pub id: i64,
    /// `scale-out`, `scale-in`, `stop`, `handover`, `replace`.
    pub kind: String,
    /// `pending`, `done`, `failed`.
    pub state: String,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The members it creates, and those it retires.
    pub creates: Vec<String>,
    pub retires: Vec<String>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OperationsQuery {
    /// At most this many, newest first (1 to 1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A group's operations, newest first.
#[utoipa::path(get, path = "/api/v1/groups/{group}/operations", params(("group" = String, Path), OperationsQuery),
    responses((status = 200, body = Vec<OperationReport>), Problems))]
async fn list_operations(
    State(s): S,
    Path(group): Path<String>,
    query: Result<Query<OperationsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<OperationReport>>, Problem> {
    let Query(q) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, format!("`limit` must be 1 to {MAX_PAGE} (got {limit})")));
    }
    let g = group_of(&s, &group)?;
    let ops = s.controller.store().operations(&g, limit).await?;
    Ok(Json(
        ops.into_iter()
            .map(|op| {
                use flotilla_model::OpKind;
                let ids = |v: &[InstanceId]| v.iter().map(|i| i.0.clone()).collect::<Vec<_>>();
                let (creates, retires) = match &op.kind {
                    OpKind::ScaleOut { names, .. } => (names.clone(), Vec::new()),
                    OpKind::ScaleIn { victims } | OpKind::Stop { victims } => (Vec::new(), ids(victims)),
                    OpKind::Handover { retire, .. } => (Vec::new(), vec![retire.0.clone()]),
                    OpKind::Replace { old, names, .. } => (names.clone(), ids(old)),
                };
                OperationReport {
                    id: op.id.0,
                    kind: op.kind.as_str().into(),
                    state: op.state.as_str().into(),
                    error: match op.state {
                        OpState::Failed(why) => Some(why),
                        _ => None,
                    },
                    creates,
                    retires,
                    created_at_ms: op.created_at.as_millis(),
                    updated_at_ms: op.updated_at.as_millis(),
                }
            })
            .collect(),
    ))
}
