//! Receivers (Heat's signal URLs, Senlin's receivers): a signed URL per alarm to which Aodh,
//! Alertmanager or a script reports the alarm's state. The URL carries a signature of the group and
//! alarm names made with the daemon's receiver key, never the key; a call without a valid signature
//! is refused before anything else is looked at. Every call must also be unique (a replay of one
//! already taken is refused): Aodh's `x-openstack-request-id`, an `Idempotency-Key`, Alertmanager's
//! notification identity, or `X-Flotilla-Signature: t=<unix seconds>,v1=<HMAC of "t.body">` (which
//! also signs the body and must be fresh).

use std::path::Path as FsPath;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use flotilla_model::AlarmState;
use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::problem::Problem;
use crate::routes::{group_of, Problems, S};

/// The most a receiver body may hold (Alertmanager batches alerts).
const MAX_BODY: usize = 1 << 20;
/// A signed body's time may differ from the daemon's by at most this much.
const SIGNED_SKEW: Duration = Duration::from_secs(300);
/// Reasons are cut to this many characters.
const MAX_REASON: usize = 500;

/// The daemon's receiver key: 32 random bytes, kept in a 0600 file.
#[derive(Clone)]
pub struct ReceiverKey(hmac::Key);

impl std::fmt::Debug for ReceiverKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceiverKey(<redacted>)")
    }
}

impl ReceiverKey {
    /// Reads the key at `path`, or makes one there (0600) if there is none.
    pub fn load_or_create(path: &FsPath) -> std::io::Result<Self> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(std::io::Error::other(format!(
                        "{}: the receiver key may be read by others (mode {:o}); chmod 600 it",
                        path.display(),
                        mode & 0o777
                    )));
                }
                let bytes = hex::decode(text.trim()).ok().filter(|b| b.len() >= 32).ok_or_else(|| {
                    std::io::Error::other(format!("{}: not a receiver key (64 hex digits)", path.display()))
                })?;
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                    .map_err(|_| std::io::Error::other("no randomness for a receiver key"))?;
                let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
                f.write_all(hex::encode(bytes).as_bytes())?;
                f.sync_all()?;
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) => Err(e),
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        ReceiverKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    fn subject(group: &str, alarm: &str) -> String {
        format!("flotilla-receiver:v1:{group}/{alarm}")
    }

    /// The signature a receiver URL carries (`?sig=`).
    pub fn url_signature(&self, group: &str, alarm: &str) -> String {
        hex::encode(hmac::sign(&self.0, Self::subject(group, alarm).as_bytes()))
    }

    /// The path and query of the alarm's receiver.
    pub fn path(&self, group: &str, alarm: &str) -> String {
        format!("/api/v1/receivers/{group}/{alarm}?sig={}", self.url_signature(group, alarm))
    }

    fn verify(&self, message: &[u8], sig_hex: &str) -> bool {
        hex::decode(sig_hex).is_ok_and(|sig| hmac::verify(&self.0, message, &sig).is_ok())
    }

    /// `X-Flotilla-Signature` for `body` at `unix_secs` (what Flotilla's own alarm actions send).
    pub fn body_signature(&self, unix_secs: u64, body: &[u8]) -> String {
        let mut msg = format!("{unix_secs}.").into_bytes();
        msg.extend_from_slice(body);
        format!("t={unix_secs},v1={}", hex::encode(hmac::sign(&self.0, &msg)))
    }
}

/// What a report says, whatever its sender's format.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub state: AlarmState,
    pub reason: String,
    /// Which format it came in: `aodh`, `alertmanager` or `flotilla`.
    pub format: &'static str,
    /// The sender's own detail (Aodh's `reason_data`, Alertmanager's alert labels).
    pub detail: Value,
    /// Alertmanager's notification identity (its resends of one notification are replays).
    pub identity: Option<String>,
}

fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(MAX_REASON).collect()
}

/// Reads a receiver body: Aodh's alarm notification, Alertmanager's webhook (version 4), or
/// `{"state": …, "reason": …}`. Errors name the field.
pub fn parse_report(body: &[u8]) -> Result<Report, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("the body must be a JSON object")?;
    let text = |field: &str| -> Result<&str, String> {
        obj.get(field).and_then(Value::as_str).ok_or_else(|| format!("field `{field}`: a string is needed"))
    };
    if obj.contains_key("alarm_id") || obj.contains_key("current") {
        // Aodh's notifier (aodh/notifier/rest.py).
        let current = text("current")?;
        let state = AlarmState::parse(current)
            .ok_or_else(|| format!("field `current`: `{current}` is not ok, alarm or insufficient data"))?;
        let name = obj.get("alarm_name").and_then(Value::as_str).unwrap_or("?");
        let reason = obj.get("reason").and_then(Value::as_str).unwrap_or("");
        return Ok(Report {
            state,
            reason: clean(&format!("Aodh alarm {name}: {reason}")),
            format: "aodh",
            detail: serde_json::json!({
                "alarm_id": obj.get("alarm_id"), "alarm_name": obj.get("alarm_name"),
                "previous": obj.get("previous"), "severity": obj.get("severity"),
                "reason_data": obj.get("reason_data"),
            }),
            identity: None,
        });
    }
    if obj.contains_key("alerts") || obj.contains_key("groupKey") {
        // Alertmanager's webhook_config body.
        let status = text("status")?;
        let state = match status {
            "firing" => AlarmState::Alarm,
            "resolved" => AlarmState::Ok,
            other => return Err(format!("field `status`: `{other}` is not firing or resolved")),
        };
        let alerts = obj.get("alerts").and_then(Value::as_array).ok_or("field `alerts`: an array is needed")?;
        let group_key = text("groupKey")?;
        let mut identity = format!("{group_key}|{status}");
        for a in alerts {
            for f in ["fingerprint", "status", "startsAt", "endsAt"] {
                identity.push('|');
                identity.push_str(a.get(f).and_then(Value::as_str).unwrap_or(""));
            }
        }
        let name = v.pointer("/commonLabels/alertname").and_then(Value::as_str).unwrap_or("?");
        return Ok(Report {
            state,
            reason: clean(&format!("Alertmanager: {} alert(s) {status} ({name})", alerts.len())),
            format: "alertmanager",
            detail: serde_json::json!({
                "groupKey": group_key, "commonLabels": obj.get("commonLabels"), "alerts": alerts.len(),
            }),
            identity: Some(identity),
        });
    }
    let state = text("state")?;
    let state = AlarmState::parse(state)
        .ok_or_else(|| format!("field `state`: `{state}` is not ok, alarm or insufficient data"))?;
    let reason = match obj.get("reason") {
        None | Some(Value::Null) => "reported".to_string(),
        Some(Value::String(r)) => clean(r),
        Some(_) => return Err("field `reason`: a string is needed".into()),
    };
    if let Some(k) = obj.keys().find(|k| !["state", "reason"].contains(&k.as_str())) {
        return Err(format!("field `{k}`: unknown (expected `state`, `reason`)"));
    }
    Ok(Report { state, reason, format: "flotilla", detail: Value::Null, identity: None })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Signed {
    /// The URL's signature (from `GET /api/v1/groups/{group}/receivers`).
    pub sig: Option<String>,
}

/// What a receiver took in.
#[derive(Debug, Serialize, ToSchema)]
pub struct Received {
    pub group: String,
    pub alarm: String,
    /// The alarm's state now.
    pub state: String,
    /// Its state before (`null`: never reported).
    pub previous: Option<String>,
    /// The call changed the state (and woke the group).
    pub changed: bool,
}

fn unauthorized(why: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, format!("receiver: {why}"))
}

/// The call's unique key, if it has one (checked signature first for a signed body).
fn unique_key(
    key: &ReceiverKey,
    headers: &HeaderMap,
    body: &[u8],
    report: &Report,
    now_secs: u64,
) -> Result<String, Problem> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(sig) = header("x-flotilla-signature") {
        let mut t = None;
        let mut v1 = None;
        for part in sig.split(',') {
            match part.trim().split_once('=') {
                Some(("t", x)) => t = x.parse::<u64>().ok(),
                Some(("v1", x)) => v1 = Some(x),
                _ => {}
            }
        }
        let (Some(t), Some(v1)) = (t, v1) else {
            return Err(unauthorized("X-Flotilla-Signature must be t=<unix seconds>,v1=<hex>"));
        };
        let mut msg = format!("{t}.").into_bytes();
        msg.extend_from_slice(body);
        if !key.verify(&msg, v1) {
            return Err(unauthorized("the body's signature does not match"));
        }
        if now_secs.abs_diff(t) > SIGNED_SKEW.as_secs() {
            return Err(unauthorized("the body's signature is too old (or from the future): more than 5 minutes"));
        }
        return Ok(format!("sig:{v1}"));
    }
    let id = header("x-openstack-request-id").or_else(|| header("idempotency-key"));
    if let Some(id) = id.filter(|i| !i.is_empty() && i.len() <= 200) {
        return Ok(format!("id:{id}"));
    }
    report.identity.clone().map(|i| format!("am:{i}")).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "receiver: a call must be unique: send an Idempotency-Key (or x-openstack-request-id) header, \
             or sign the body with X-Flotilla-Signature",
        )
    })
}

/// Reports an alarm's state (Aodh's notification, Alertmanager's webhook, or `{state, reason}`):
/// signed by its URL, unique per call. A transition wakes the group.
#[utoipa::path(post, path = "/api/v1/receivers/{group}/{alarm}",
    params(("group" = String, Path), ("alarm" = String, Path), Signed),
    responses((status = 202, body = Received), Problems), security(()))]
pub(crate) async fn receive(
    State(s): S,
    Path((group, alarm)): Path<(String, String)>,
    Query(signed): Query<Signed>,
    req: Request,
) -> Result<(StatusCode, Json<Received>), Problem> {
    let Some(key) = &s.receiver_key else {
        return Err(Problem::new(StatusCode::NOT_FOUND, "this daemon has no receivers"));
    };
    let sig = signed.sig.ok_or_else(|| unauthorized("unsigned: the URL's `sig` is missing"))?;
    if !key.verify(ReceiverKey::subject(&group, &alarm).as_bytes(), &sig) {
        tracing::warn!(group = %group.escape_debug(), alarm = %alarm.escape_debug(), "receiver: bad signature refused");
        return Err(unauthorized("the URL's signature does not match"));
    }
    let g = group_of(&s, &group)?;
    let (parts, body): (_, Body) = req.into_parts();
    let bytes = flotilla_listener::read_body(body, &parts.headers, MAX_BODY, Duration::from_secs(10))
        .await
        .map_err(|e| Problem::new(e.status(), format!("the body could not be read ({e:?})")))?;
    let report = parse_report(&bytes).map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e))?;
    let now_secs = s.controller.now().as_millis() / 1000;
    let unique = unique_key(key, &parts.headers, &bytes, &report, now_secs)?;
    if !s.controller.note_signal(&format!("{group}/{alarm}/{unique}")).await? {
        tracing::warn!(group = %g, alarm = %alarm, "receiver: a replayed call refused");
        return Err(Problem::new(StatusCode::CONFLICT, "receiver: this call was taken already (a replay)"));
    }
    let detail = serde_json::json!({ "format": report.format, "sender": report.detail });
    let done = s.controller.report_alarm(&g, &alarm, report.state, report.reason, detail).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Received {
            group,
            alarm,
            state: done.status.state.as_str().into(),
            previous: done.previous.map(|p| p.as_str().into()),
            changed: done.changed(),
        }),
    ))
}

/// One of a group's alarms, its state and (admin only) its receiver.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlarmReport {
    pub name: String,
    pub kind: String,
    pub state: String,
    pub since_ms: u64,
    pub updated_ms: u64,
    pub reason: String,
}

/// The group's alarms and their states.
#[utoipa::path(get, path = "/api/v1/groups/{group}/alarms", params(("group" = String, Path)),
    responses((status = 200, body = Vec<AlarmReport>), Problems))]
pub(crate) async fn list_alarms(State(s): S, Path(group): Path<String>) -> Result<Json<Vec<AlarmReport>>, Problem> {
    let g = group_of(&s, &group)?;
    let spec = s.controller.groups().find(|x| x.id == g).expect("group_of found it");
    let alarms = s.controller.alarms(&g).await?;
    Ok(Json(
        alarms
            .into_iter()
            .map(|a| {
                let kind = spec.alarms.iter().find(|d| d.name == a.name).map(|d| match d.kind {
                    flotilla_model::AlarmKind::External => "external",
                });
                AlarmReport {
                    kind: kind.unwrap_or("external").into(),
                    state: a.state.as_str().into(),
                    since_ms: a.since.as_millis(),
                    updated_ms: a.updated.as_millis(),
                    reason: a.reason,
                    name: a.name,
                }
            })
            .collect(),
    ))
}

/// A receiver URL.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiverReport {
    pub alarm: String,
    /// The URL to give Aodh (`alarm_actions`, `ok_actions`), Alertmanager (`webhook_configs.url`)
    /// or a script; it is a credential for this alarm alone.
    pub url: String,
}

/// The receiver URL of each of the group's alarms (admin: each URL lets its holder set its
/// alarm's state).
#[utoipa::path(get, path = "/api/v1/groups/{group}/receivers", params(("group" = String, Path)),
    responses((status = 200, body = Vec<ReceiverReport>), Problems))]
pub(crate) async fn list_receivers(
    State(s): S,
    Path(group): Path<String>,
) -> Result<Json<Vec<ReceiverReport>>, Problem> {
    let g = group_of(&s, &group)?;
    let Some(key) = &s.receiver_key else {
        return Err(Problem::new(StatusCode::NOT_FOUND, "this daemon has no receivers"));
    };
    let spec = s.controller.groups().find(|x| x.id == g).expect("group_of found it");
    let base = format!("{}://{}", if s.tls { "https" } else { "http" }, s.listen);
    Ok(Json(
        spec.alarms
            .iter()
            .map(|a| ReceiverReport { alarm: a.name.clone(), url: format!("{base}{}", key.path(&group, &a.name)) })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AODH: &str = r#"{"alarm_name": "smoke-e57809", "alarm_id": "efc16a70-5269-41c4-8499-6c675ce43a71",
 "severity": "low", "previous": "ok", "current": "alarm",
 "reason": "Transition to alarm due to 1 samples outside threshold, most recent: 80.0",
 "reason_data": {"type": "threshold", "disposition": "outside", "count": 1, "most_recent": 80.0}}"#;

    /// Alertmanager's documented webhook body (prometheus.io, "webhook_config").
    const ALERTMANAGER: &str = r#"{"version": "4", "groupKey": "{}:{alertname=\"HighCPU\"}", "truncatedAlerts": 0,
 "status": "firing", "receiver": "flotilla", "groupLabels": {"alertname": "HighCPU"},
 "commonLabels": {"alertname": "HighCPU", "group": "web"}, "commonAnnotations": {},
 "externalURL": "http://127.0.0.1:9093",
 "alerts": [{"status": "firing", "labels": {"alertname": "HighCPU"}, "annotations": {},
   "startsAt": "2026-12-04T19:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
   "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": "5ef77f1f8a3ecfa1"}]}"#;

    #[test]
    fn the_three_bodies_read_as_states() {
        let a = parse_report(AODH.as_bytes()).unwrap();
        assert_eq!((a.state, a.format), (AlarmState::Alarm, "aodh"));
        assert!(a.reason.contains("1 samples outside threshold"), "{}", a.reason);
        assert_eq!(a.detail["reason_data"]["most_recent"], 80.0);
        let ok = AODH.replace(r#""current": "alarm""#, r#""current": "ok""#);
        assert_eq!(parse_report(ok.as_bytes()).unwrap().state, AlarmState::Ok);
        let idata = AODH.replace(r#""current": "alarm""#, r#""current": "insufficient data""#);
        assert_eq!(parse_report(idata.as_bytes()).unwrap().state, AlarmState::InsufficientData);

        let m = parse_report(ALERTMANAGER.as_bytes()).unwrap();
        assert_eq!((m.state, m.format), (AlarmState::Alarm, "alertmanager"));
        assert!(m.identity.as_deref().unwrap().contains("5ef77f1f8a3ecfa1"));
        let resolved = ALERTMANAGER.replace(r#""status": "firing""#, r#""status": "resolved""#);
        let r = parse_report(resolved.as_bytes()).unwrap();
        assert_eq!(r.state, AlarmState::Ok);
        assert_ne!(r.identity, m.identity, "a resolution is another notification");

        let f = parse_report(br#"{"state": "alarm", "reason": "cpu 93\n%"}"#).unwrap();
        assert_eq!((f.state, f.reason.as_str()), (AlarmState::Alarm, "cpu 93%"));
    }

    #[test]
    fn bad_bodies_name_the_field() {
        for (body, want) in [
            ("[]", "a JSON object"),
            ("{", "not JSON"),
            (r#"{"alarm_id": "x", "current": "firing"}"#, "field `current`"),
            (r#"{"alarm_id": "x"}"#, "field `current`"),
            (r#"{"version": "4", "groupKey": "k", "status": "pending", "alerts": []}"#, "field `status`"),
            (r#"{"groupKey": "k", "status": "firing"}"#, "field `alerts`"),
            (r#"{"state": "on"}"#, "field `state`"),
            (r#"{"state": "ok", "extra": 1}"#, "field `extra`"),
            (r#"{"state": "ok", "reason": 5}"#, "field `reason`"),
            ("{}", "field `state`"),
        ] {
            let e = parse_report(body.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
    }

    #[test]
    fn signatures_bind_the_names_and_the_body() {
        let key = ReceiverKey::from_bytes(&[7; 32]);
        let sig = key.url_signature("web", "cpu-high");
        assert!(key.verify(ReceiverKey::subject("web", "cpu-high").as_bytes(), &sig));
        assert!(!key.verify(ReceiverKey::subject("web", "cpu-low").as_bytes(), &sig), "another alarm");
        assert!(!key.verify(ReceiverKey::subject("web2", "cpu-high").as_bytes(), &sig), "another group");
        let other = ReceiverKey::from_bytes(&[8; 32]);
        assert!(!other.verify(ReceiverKey::subject("web", "cpu-high").as_bytes(), &sig), "another key");
        assert!(!key.verify(b"x", "zz-not-hex"));

        let body = br#"{"state": "alarm"}"#;
        let report = parse_report(body).unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-flotilla-signature", key.body_signature(1000, body).parse().unwrap());
        assert!(unique_key(&key, &h, body, &report, 1000).is_ok());
        assert!(unique_key(&key, &h, body, &report, 1000 + 299).is_ok());
        assert_eq!(
            unique_key(&key, &h, body, &report, 1000 + 301).unwrap_err().status,
            StatusCode::UNAUTHORIZED.as_u16()
        );
        let e = unique_key(&key, &h, br#"{"state": "ok"}"#, &report, 1000).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED.as_u16(), "a changed body");
        let bare = HeaderMap::new();
        assert_eq!(unique_key(&key, &bare, body, &report, 1000).unwrap_err().status, StatusCode::BAD_REQUEST.as_u16());
        let mut id = HeaderMap::new();
        id.insert("x-openstack-request-id", "req-1".parse().unwrap());
        assert_eq!(unique_key(&key, &id, body, &report, 1000).unwrap(), "id:req-1");
    }

    #[test]
    fn a_key_file_is_made_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("receiver.key");
        let a = ReceiverKey::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let b = ReceiverKey::load_or_create(&path).unwrap();
        assert_eq!(a.url_signature("g", "a"), b.url_signature("g", "a"));
        assert!(!format!("{a:?}").contains(&std::fs::read_to_string(&path).unwrap()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(ReceiverKey::load_or_create(&path).unwrap_err().to_string().contains("chmod 600"));
    }
}
