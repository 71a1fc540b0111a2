//! One PromQL instant query over the HTTP API (`POST /api/v1/query`), and the reading of its answer.
//!
//! The answer is read within the timeout and at most [`MAX_BODY`] bytes; a vector of more than
//! [`MAX_SERIES`] elements is refused. Errors say what happened without context (the caller names
//! the server and the query) and never contain the token.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_model::{ErrorKind, SeamError, Timestamp};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, LOCATION};
use serde::Deserialize;
use serde_json::Value;

use crate::settings::shown;

/// The largest answer read (8 MiB): far more than one value per member of any group needs.
pub const MAX_BODY: usize = 8 << 20;
/// The most elements a result vector may have.
pub const MAX_SERIES: usize = 10_000;
/// The longest piece of Prometheus's own error text that is passed on.
const MAX_ERROR_TEXT: usize = 400;

/// One element of an instant vector: its labels and its value (which may be NaN or ±Inf).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The server's query endpoint and how to call it.
pub(crate) struct Endpoint {
    http: reqwest::Client,
    /// `<base>/api/v1/query`.
    url: reqwest::Url,
    /// `Bearer <token>`, marked sensitive (never in `Debug`).
    auth: Option<HeaderValue>,
    timeout: Duration,
}

impl Endpoint {
    pub(crate) fn new(
        base: &reqwest::Url,
        certs: Vec<reqwest::Certificate>,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, SeamError> {
        let mut url = base.clone();
        url.set_path(&format!("{}/api/v1/query", base.path().trim_end_matches('/')));
        let auth = match token {
            Some(t) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| SeamError::invalid("token_file: the token is not fit for an HTTP header"))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            // The API does not redirect; following one could hand the token to another server.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("flotilla-metrics-prometheus/", env!("CARGO_PKG_VERSION")));
        for c in certs {
            b = b.add_root_certificate(c);
        }
        let http = b.build().map_err(|e| SeamError::bug(format!("cannot build the HTTP client: {e}")))?;
        Ok(Endpoint { http, url, auth, timeout })
    }

    /// Runs `query` evaluated at `at`; the elements of the instant vector it gives.
    pub(crate) async fn instant(&self, query: &str, at: Timestamp) -> Result<Vec<Series>, SeamError> {
        match tokio::time::timeout(self.timeout, self.call(query, at)).await {
            Ok(answer) => answer,
            Err(_) => Err(SeamError::transient(format!("no answer within {}", fmt_duration(self.timeout)))),
        }
    }

    async fn call(&self, query: &str, at: Timestamp) -> Result<Vec<Series>, SeamError> {
        let time = format!("{}.{:03}", at.as_millis() / 1000, at.as_millis() % 1000);
        // Tells Prometheus to give up when we do, so an expensive query does not outlive us.
        let timeout = format!("{:.3}", self.timeout.as_secs_f64());
        let mut req = self.http.post(self.url.clone()).header(ACCEPT, "application/json").form(&[
            ("query", query),
            ("time", time.as_str()),
            ("timeout", timeout.as_str()),
        ]);
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let mut resp = req.send().await.map_err(transport_error)?;
        let status = resp.status().as_u16();
        if resp.status().is_redirection() {
            let to = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("?");
            return Err(SeamError::invalid(format!(
                "HTTP {status}: redirected to `{}`; give the URL it points to",
                shown(to)
            )));
        }
        let declared = resp.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        interpret(status, &body)
    }
}

fn too_large() -> SeamError {
    SeamError::invalid(format!(
        "the answer is larger than {} MiB; make the query return one element per member",
        MAX_BODY >> 20
    ))
}

fn transport_error(e: reqwest::Error) -> SeamError {
    let kind = if e.is_builder() { ErrorKind::Bug } else { ErrorKind::Transient };
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // The caller names the URL; reqwest's own text would repeat it.
    SeamError::new(kind, format!("{what}: {}", chain(&e.without_url())))
}

/// An error and its causes in one line, each said once.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The API's envelope (<https://prometheus.io/docs/prometheus/latest/querying/api/#format-overview>).
#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: Value,
}

/// An instant vector element as written: `{"metric": {..}, "value": [<time>, "<value>"]}`. A
/// native histogram sample carries `histogram` instead of `value`: it has no single value.
#[derive(Deserialize)]
struct RawSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(Value, String)>,
}

/// Reads an answer: the vector's elements, or what went wrong with the error kind the loop needs
/// (a query or token problem is `Invalid`, a server in trouble `Transient`).
pub fn interpret(status: u16, body: &[u8]) -> Result<Vec<Series>, SeamError> {
    let envelope: Option<Envelope> = serde_json::from_slice(body).ok();
    if matches!(status, 401 | 403) {
        return Err(SeamError::invalid(format!("HTTP {status}: token refused (check `token_file`)")));
    }
    let Some(env) = envelope else {
        let text = clip_text(&String::from_utf8_lossy(body));
        let says = if text.is_empty() { String::new() } else { format!(": {text}") };
        return Err(match status {
            200..=299 => SeamError::invalid(format!("HTTP {status}: not a Prometheus API answer{says}")),
            404 => SeamError::invalid(format!("HTTP 404: no Prometheus query API at this URL{says}")),
            429 | 500..=599 => SeamError::transient(format!("HTTP {status}{says}")),
            _ => SeamError::invalid(format!("HTTP {status}{says}")),
        });
    };
    if env.status != "success" || !(200..=299).contains(&status) {
        let error_type = env.error_type.as_deref().unwrap_or("unknown");
        let text = clip_text(env.error.as_deref().unwrap_or("no error text"));
        let message = format!("HTTP {status}, {error_type}: {text}");
        // A server in trouble may recover; a query it cannot run will not until the config changes.
        let transient = matches!(status, 429 | 500..=599)
            || matches!(error_type, "timeout" | "canceled" | "unavailable" | "internal");
        return Err(if transient { SeamError::transient(message) } else { SeamError::invalid(message) });
    }
    let Some(data) = env.data else {
        return Err(SeamError::invalid("the answer has no `data`"));
    };
    match data.result_type.as_str() {
        "vector" => {}
        "scalar" => return Err(SeamError::invalid(
            "the result is a scalar, not one value per member: keep the member label, e.g. `avg by (server_id) (...)`",
        )),
        "matrix" => {
            return Err(SeamError::invalid(
                "the result is a range vector: give an instant vector (e.g. `rate(x[1m])`, not `x[1m]`)",
            ))
        }
        other => return Err(SeamError::invalid(format!("the result is a {}, not an instant vector", shown(other)))),
    }
    let elements = data.result.as_array().map_or(0, Vec::len);
    if elements > MAX_SERIES {
        return Err(SeamError::invalid(format!(
            "the result has {elements} elements, more than {MAX_SERIES}; narrow the query to the group's members"
        )));
    }
    let raw: Vec<RawSeries> = serde_json::from_value(data.result)
        .map_err(|e| SeamError::invalid(format!("the result vector cannot be read: {e}")))?;
    Ok(raw
        .into_iter()
        .map(|r| {
            // Unparsable text is as good as no value: missing, never zero.
            let value = r.value.map_or(f64::NAN, |(_, v)| v.parse::<f64>().unwrap_or(f64::NAN));
            Series { labels: r.metric, value }
        })
        .collect())
}

fn clip_text(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX_ERROR_TEXT {
        return one_line;
    }
    let mut out: String = one_line.chars().take(MAX_ERROR_TEXT).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Vec<Series> {
        interpret(200, body.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(status: u16, body: &str) -> SeamError {
        interpret(status, body.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_vector_gives_each_element_with_its_labels_and_value() {
        let s = ok(r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"server_id":"a","job":"lab"},"value":[1712345678.123,"85.5"]},
            {"metric":{"server_id":"b"},"value":[1712345678.123,"0"]}]}}"#);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].labels["server_id"].as_str(), s[0].value), ("a", 85.5));
        assert_eq!(s[0].labels["job"], "lab");
        assert_eq!((s[1].labels["server_id"].as_str(), s[1].value), ("b", 0.0));
    }

    #[test]
    fn an_empty_result_is_no_values_not_an_error() {
        assert!(ok(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#).is_empty());
    }

    #[test]
    fn nan_inf_and_unreadable_values_stay_not_finite() {
        let s = ok(r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"i":"a"},"value":[1,"NaN"]}, {"metric":{"i":"b"},"value":[1,"+Inf"]},
            {"metric":{"i":"c"},"value":[1,"-Inf"]}, {"metric":{"i":"d"},"value":[1,"many"]},
            {"metric":{"i":"e"},"histogram":[1,{"count":"3","sum":"1"}]}]}}"#);
        assert_eq!(s.len(), 5);
        assert!(s.iter().all(|x| !x.value.is_finite()), "{s:?}");
    }

    #[test]
    fn a_scalar_or_a_range_vector_is_not_per_member() {
        let e = err(200, r#"{"status":"success","data":{"resultType":"scalar","result":[1712345678,"3"]}}"#);
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.message.contains("scalar, not one value per member"), "{e}");
        let e = err(200, r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#);
        assert!(e.message.contains("range vector"), "{e}");
        let e = err(200, r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#);
        assert!(e.message.contains("not an instant vector"), "{e}");
    }

    #[test]
    fn error_bodies_keep_prometheus_text_and_get_the_right_kind() {
        let bad = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unexpected <EOF>"}"#;
        let e = err(400, bad);
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.message.contains("bad_data: invalid parameter \"query\": 1:5: parse error"), "{e}");
        let e = err(422, r#"{"status":"error","errorType":"execution","error":"many-to-many matching not allowed"}"#);
        assert_eq!(e.kind(), ErrorKind::Invalid);
        let e = err(503, r#"{"status":"error","errorType":"timeout","error":"query timed out in query execution"}"#);
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert!(e.message.contains("HTTP 503, timeout: query timed out"), "{e}");
        // A 200 that says error is still an error.
        let e = err(200, r#"{"status":"error","errorType":"bad_data","error":"nope"}"#);
        assert_eq!(e.kind(), ErrorKind::Invalid);
        let e = err(200, r#"{"status":"error","errorType":"unavailable","error":"shutting down"}"#);
        assert_eq!(e.kind(), ErrorKind::Transient);
    }

    #[test]
    fn non_api_answers_by_status() {
        let e = err(503, "<html><body><h1>503 Service Unavailable</h1>\n</body></html>");
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert!(e.message.starts_with("HTTP 503"), "{e}");
        for status in [401, 403] {
            let e = err(status, r#"{"status":"error","errorType":"unauthorized","error":"bad token"}"#);
            assert_eq!(e.kind(), ErrorKind::Invalid);
            assert!(e.message.contains("token refused"), "{e}");
        }
        let e = err(404, "404 page not found");
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.message.contains("no Prometheus query API"), "{e}");
        let e = err(200, "<html>login</html>");
        assert!(e.message.contains("not a Prometheus API answer"), "{e}");
        let e = err(500, &"x".repeat(5000));
        assert!(e.message.chars().count() < 500, "clipped: {}", e.message.len());
    }

    #[test]
    fn too_many_elements_are_refused() {
        let one = r#"{"metric":{"i":"a"},"value":[1,"1"]}"#;
        let many = vec![one; MAX_SERIES + 1].join(",");
        let body = format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{many}]}}}}"#);
        let e = err(200, &body);
        assert!(e.message.contains("more than 10000"), "{e}");
    }
}
