//! The member's HTTP surface: what the balancer routes to and what demos poke at.
//!
//! Every response carries `x-flotilla-member: <name>` so a client (the balancer's tests, the local
//! provider's health check) can tell which member answered, not just that something did.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::burn::{burn_cpu, join_all, LoadGen};

/// The header naming the member that answered.
pub use flotilla_model::vocab::MEMBER_HEADER;

/// The longest `/work` request: a typo must not pin a core for an hour.
pub const MAX_WORK_MS: u64 = 60_000;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) name: Arc<str>,
    pub(crate) load: Arc<LoadGen>,
}

pub(crate) fn router(state: AppState) -> Router {
    let member = HeaderValue::from_str(&state.name).ok();
    Router::new()
        .route("/", get(root))
        .route("/healthz", get(healthz))
        .route("/work", get(work))
        .route("/sleep", get(sleep))
        .route("/load", get(load_get).post(load_start).delete(load_stop))
        .with_state(state)
        .layer(axum::middleware::map_response(move |mut res: Response| {
            let member = member.clone();
            async move {
                if let Some(v) = member {
                    res.headers_mut().insert(HeaderName::from_static(MEMBER_HEADER), v);
                }
                res
            }
        }))
}

fn text(status: StatusCode, body: String) -> Response {
    (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn json(body: serde_json::Value) -> Response {
    (StatusCode::OK, [(CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn bad_request(msg: String) -> Response {
    text(StatusCode::BAD_REQUEST, format!("{msg}\n"))
}

async fn root(State(s): State<AppState>) -> Response {
    text(StatusCode::OK, format!("{}\n", s.name))
}

async fn healthz() -> Response {
    text(StatusCode::OK, "ok".to_string())
}

/// `GET /sleep?ms=N`: answers after N ms without using CPU: a slow request (drain tests, slow
/// upstreams) that does not move the member's CPU metric.
async fn sleep(State(s): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let ms = match parse_ms(q.get("ms").map(String::as_str)) {
        Ok(ms) => ms,
        Err(msg) => return bad_request(msg),
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    text(StatusCode::OK, format!("{} slept ms={ms}\n", s.name))
}

/// `GET /work?ms=N`: burns N ms of CPU on a blocking thread (N above 60000 is capped).
async fn work(State(s): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let ms = match parse_ms(q.get("ms").map(String::as_str)) {
        Ok(ms) => ms,
        Err(msg) => return bad_request(msg),
    };
    if let Err(e) = tokio::task::spawn_blocking(move || burn_cpu(Duration::from_millis(ms))).await {
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("work failed: {e}\n"));
    }
    text(StatusCode::OK, format!("{} ms={ms}\n", s.name))
}

/// Parses `ms`: a whole number of milliseconds, capped at [`MAX_WORK_MS`].
pub(crate) fn parse_ms(raw: Option<&str>) -> Result<u64, String> {
    let raw = raw.ok_or_else(|| "missing query parameter `ms` (milliseconds of CPU to burn)".to_string())?;
    raw.trim()
        .parse::<u64>()
        .map(|ms| ms.min(MAX_WORK_MS))
        .map_err(|_| format!("bad query parameter `ms`: expected whole milliseconds (0..={MAX_WORK_MS}), got {raw:?}"))
}

/// Parses `duty`: a fraction in 0..=1 (`0.5`, `1`); a percentage like `50` is refused, not guessed.
pub(crate) fn parse_duty(raw: Option<&str>) -> Result<f64, String> {
    let raw = raw.ok_or_else(|| "missing query parameter `duty` (a fraction in 0..=1, e.g. 0.5)".to_string())?;
    match raw.trim().parse::<f64>() {
        Ok(d) if d.is_finite() && (0.0..=1.0).contains(&d) => Ok(d),
        _ => Err(format!("bad query parameter `duty`: expected a fraction in 0..=1 (e.g. 0.5), got {raw:?}")),
    }
}

async fn load_get(State(s): State<AppState>) -> Response {
    json(serde_json::json!({ "duty": s.load.duty() }))
}

/// `POST /load?duty=D`: starts or replaces the background load.
async fn load_start(State(s): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let duty = match parse_duty(q.get("duty").map(String::as_str)) {
        Ok(d) => d,
        Err(msg) => return bad_request(msg),
    };
    let load = Arc::clone(&s.load);
    let started = tokio::task::spawn_blocking(move || load.start(duty).map(join_all)).await;
    match started {
        Ok(Ok(())) => {
            tracing::info!(member = %s.name, duty, "load started");
            json(serde_json::json!({ "duty": s.load.duty() }))
        }
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("could not start load threads: {e}\n")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("load start failed: {e}\n")),
    }
}

/// `DELETE /load`: stops the background load; answers once its threads have exited.
async fn load_stop(State(s): State<AppState>) -> Response {
    let load = Arc::clone(&s.load);
    if let Err(e) = tokio::task::spawn_blocking(move || join_all(load.stop())).await {
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("load stop failed: {e}\n"));
    }
    tracing::info!(member = %s.name, "load stopped");
    json(serde_json::json!({ "duty": 0.0 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_parsing_caps_and_names_the_parameter() {
        assert_eq!(parse_ms(Some("0")), Ok(0));
        assert_eq!(parse_ms(Some("250")), Ok(250));
        assert_eq!(parse_ms(Some("999999")), Ok(MAX_WORK_MS));
        for bad in [None, Some(""), Some("-1"), Some("1.5"), Some("abc")] {
            assert!(parse_ms(bad).unwrap_err().contains("`ms`"), "{bad:?}");
        }
    }

    #[test]
    fn duty_parsing_accepts_fractions_only() {
        assert_eq!(parse_duty(Some("0")), Ok(0.0));
        assert_eq!(parse_duty(Some("0.5")), Ok(0.5));
        assert_eq!(parse_duty(Some("1")), Ok(1.0));
        assert_eq!(parse_duty(Some("1.0")), Ok(1.0));
        for bad in [None, Some("50"), Some("1.01"), Some("-0.1"), Some("NaN"), Some("inf"), Some("x")] {
            assert!(parse_duty(bad).unwrap_err().contains("`duty`"), "{bad:?}");
        }
    }
}
