//! The operator's one-shot actions (set desired, hand over, roll, drain or replace a member):
//! each is queued for the group's next pass, which carries it out through the same operations as
//! the policy's own, and answered `202 Accepted` with the group's controls. What can be checked
//! now (bounds, mode, the member) is refused now; the rest is recorded as an event by the pass.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::Json;
use flotilla_controller::RequestError;
use flotilla_model::{Mode, OperatorRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::Problem;
use crate::report::MemberReport;
use crate::routes::{full_report, group_of, json_body, member_of, ControlsReport, Problems, S};
use crate::Shared;

type Accepted = Result<(StatusCode, Json<ControlsReport>), Problem>;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Desired {
    /// The member count wanted, within the group's min and max.
    #[serde(deserialize_with = "whole")]
    pub desired: u32,
}

/// A count: JSON Schema's integer, so `3.0` is 3 as well as `3`.
fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    let exact = n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64));
    exact.and_then(|v| u32::try_from(v).ok()).ok_or_else(|| {
        serde::de::Error::custom(format!("{n} is not a member count (a whole number, 0 to {})", u32::MAX))
    })
}

async fn queue(s: &Shared, group: &flotilla_model::GroupId, request: OperatorRequest) -> Accepted {
    match s.controller.request(group, request).await {
        Ok(c) => Ok((StatusCode::ACCEPTED, Json(c.into()))),
        Err(RequestError::Busy(waiting)) => Err(Problem::new(
            StatusCode::CONFLICT,
            format!("`{}` is waiting for the group's next pass; ask again once it is answered", waiting.text()),
        )),
        Err(RequestError::Seam(e)) => Err(e.into()),
    }
}

fn mode_of(s: &Shared, group: &flotilla_model::GroupId) -> Option<(Mode, u32, u32)> {
    s.controller.groups().find(|g| &g.id == group).map(|g| (g.mode, g.min, g.max))
}

/// Sets the group's member count: its next pass scales out or in to it (and stamps the cooldown,
/// so the policy does not undo it on its next sample).
#[utoipa::path(put, path = "/api/v1/groups/{group}/desired", params(("group" = String, Path)), request_body = Desired,
    responses((status = 202, body = ControlsReport), Problems))]
pub(crate) async fn set_desired(State(s): S, Path(group): Path<String>, req: Request) -> Accepted {
    let g = group_of(&s, &group)?;
    let (parts, body) = req.into_parts();
    let Desired { desired } = json_body(&parts.headers, body).await?;
    let Some((mode, min, max)) = mode_of(&s, &g) else { return Err(Problem::new(StatusCode::NOT_FOUND, "no group")) };
    if mode == Mode::Handover {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "a handover-mode group has one primary; desired does not apply",
        ));
    }
    // Well-formed, but not for this group: its bounds are its state, not the schema's (409).
    if desired < min || desired > max {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("field `desired`: {desired} is outside the group's min {min} .. max {max}"),
        ));
    }
    queue(&s, &g, OperatorRequest::Desired(desired)).await
}

/// Handover mode: retires the primary; the oldest running clone takes over.
#[utoipa::path(post, path = "/api/v1/groups/{group}/handover", params(("group" = String, Path)),
    responses((status = 202, body = ControlsReport), Problems))]
pub(crate) async fn handover(State(s): S, Path(group): Path<String>) -> Accepted {
    let g = group_of(&s, &group)?;
    if mode_of(&s, &g).is_some_and(|(mode, ..)| mode != Mode::Handover) {
        return Err(Problem::new(StatusCode::CONFLICT, format!("group `{g}` is not in handover mode")));
    }
    queue(&s, &g, OperatorRequest::Handover).await
}

/// Starts a rolling replacement: every member running now is replaced, new before old, the
/// rollout's `max_unavailable` at a time (1 if the group has no rollout settings). A failed batch
/// stops it.
#[utoipa::path(post, path = "/api/v1/groups/{group}/rollout", params(("group" = String, Path)),
    responses((status = 202, body = ControlsReport), Problems))]
pub(crate) async fn rollout(State(s): S, Path(group): Path<String>) -> Accepted {
    let g = group_of(&s, &group)?;
    Ok((StatusCode::ACCEPTED, Json(s.controller.replace_all(&g).await?.into())))
}

/// One member: state, protection, address, its last readings (CPU, memory, requests/s).
#[utoipa::path(get, path = "/api/v1/groups/{group}/members/{member}",
    params(("group" = String, Path), ("member" = String, Path)), responses((status = 200, body = MemberReport), Problems))]
pub(crate) async fn get_member(
    State(s): S,
    Path((group, member)): Path<(String, String)>,
) -> Result<Json<MemberReport>, Problem> {
    let g = group_of(&s, &group)?;
    let id = member_of(&s, &g, &member).await?;
    let name = s.controller.store().instances(&g).await?.into_iter().find(|i| i.id == id).map(|i| i.name);
    full_report(&s, &g, 0)
        .await?
        .members
        .into_iter()
        .find(|m| Some(&m.name) == name.as_ref())
        .map(Json)
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("no member `{member}` in group `{group}`")))
}

/// Drains a member (the balancer sends it nothing new, in-flight requests finish) and deletes it;
/// the group shrinks by one, never below min.
#[utoipa::path(post, path = "/api/v1/groups/{group}/members/{member}/drain",
    params(("group" = String, Path), ("member" = String, Path)), responses((status = 202, body = ControlsReport), Problems))]
pub(crate) async fn drain(State(s): S, Path((group, member)): Path<(String, String)>) -> Accepted {
    let g = group_of(&s, &group)?;
    let id = member_of(&s, &g, &member).await?;
    if s.controller.controls(&g).await?.protected.contains(&id) {
        return Err(Problem::new(StatusCode::CONFLICT, format!("member `{id}` is protected; unprotect it first")));
    }
    queue(&s, &g, OperatorRequest::Drain(id)).await
}

/// Replaces a member: a new one is made and serves first, then the old is drained and deleted.
#[utoipa::path(post, path = "/api/v1/groups/{group}/members/{member}/replace",
    params(("group" = String, Path), ("member" = String, Path)), responses((status = 202, body = ControlsReport), Problems))]
pub(crate) async fn replace(State(s): S, Path((group, member)): Path<(String, String)>) -> Accepted {
    let g = group_of(&s, &group)?;
    let id = member_of(&s, &g, &member).await?;
    queue(&s, &g, OperatorRequest::Replace(id)).await
}

/// What a member says when it checks in (no body: it serves).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckIn {
    /// It serves (default true); false: it knows it fails, and wants replacing.
    #[serde(default = "yes")]
    pub ok: bool,
    /// A word on its state, at most 200 characters (shown in the event).
    pub note: Option<String>,
}

fn yes() -> bool {
    true
}

/// What the daemon took in.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckedIn {
    pub member: String,
    pub at_ms: u64,
    pub ok: bool,
    /// The longest silence before the member counts as failing, in ms.
    pub every_ms: u64,
}

/// A member reports in (seed 004): when it is up, then at least every `checkin.every`. A silent
/// member, or one that says it fails, is replaced like one failing its health check. Takes a
/// `checkin` token (or any other).
#[utoipa::path(post, path = "/api/v1/groups/{group}/members/{member}/check-in",
    params(("group" = String, Path), ("member" = String, Path)), request_body(content = Option<CheckIn>),
    responses((status = 200, body = CheckedIn), Problems))]
pub(crate) async fn check_in(
    State(s): S,
    Path((group, member)): Path<(String, String)>,
    req: Request,
) -> Result<Json<CheckedIn>, Problem> {
    let g = group_of(&s, &group)?;
    let spec = s.controller.groups().find(|x| x.id == g).expect("group_of found it");
    let Some(policy) = spec.checkin else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("group `{group}` expects no check-ins (give it a `checkin:` section)"),
        ));
    };
    let (parts, body) = req.into_parts();
    let CheckIn { ok, note } = json_body(&parts.headers, body).await?;
    if let Some(n) = &note {
        if n.chars().count() > 200 || n.chars().any(char::is_control) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "field `note`: at most 200 characters, no control characters",
            ));
        }
    }
    let id = member_of(&s, &g, &member).await?;
    let state = s.controller.check_in(&g, &id, ok, note).await?;
    Ok(Json(CheckedIn {
        member: id.to_string(),
        at_ms: state.at.as_millis(),
        ok,
        every_ms: u64::try_from(policy.every.as_millis()).unwrap_or(u64::MAX),
    }))
}
