//! `PrometheusSource` over real HTTP against a canned Prometheus on 127.0.0.1: the answer is
//! picked by the query's name (`cpu_q`, `slow_q`, ...).

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use flotilla_metrics_prometheus::{MemberBy, PrometheusSettings, PrometheusSource, QuerySettings};
use flotilla_model::{ErrorKind, GroupId, Instance, Metric, MetricSource, Timestamp};

const NOW: Timestamp = Timestamp(1_712_345_678_123);
const TOKEN: &str = "t0k3n-0123456789";

/// One request as the canned server saw it: its form fields and `Authorization` header.
type Request = (HashMap<String, String>, Option<String>);

/// Every request the canned server saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request>>>);

fn vector(elements: &[(&str, &str)]) -> String {
    let result: Vec<String> = elements
        .iter()
        .map(|(id, v)| format!(r#"{{"metric":{{"server_id":"{id}"}},"value":[1712345678.123,"{v}"]}}"#))
        .collect();
    format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#, result.join(","))
}

fn json(status: u16, body: String) -> Response {
    (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body).into_response()
}

async fn answer(seen: Seen, need_token: bool, headers: HeaderMap, body: String) -> Response {
    let form = decode_form(&body);
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    seen.0.lock().unwrap().push((form.clone(), auth.clone()));
    if need_token && auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return json(401, r#"{"status":"error","errorType":"unauthorized","error":"who are you"}"#.into());
    }
    let query = form.get("query").cloned().unwrap_or_default();
    let name = query.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').next().unwrap_or("");
    match name {
        "cpu_q" => json(200, vector(&[("uuid-1", "85"), ("uuid-2", "40"), ("someone-else", "99")])),
        "mem_q" => json(200, vector(&[("uuid-1", "50")])),
        // The group's name, put in the query by `{group}`, decides the value.
        "group_q" if query.contains(r#"g="web""#) => json(200, vector(&[("uuid-2", "7")])),
        "group_q" => json(200, vector(&[])),
        "slow_q" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            json(200, vector(&[("uuid-1", "1")]))
        }
        "down_q" => (StatusCode::SERVICE_UNAVAILABLE, "<html>503 Service Unavailable</html>").into_response(),
        "bad_q" => json(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:6: parse error: unexpected end of input"}"#.into(),
        ),
        "scalar_q" => json(200, r#"{"status":"success","data":{"resultType":"scalar","result":[1712345678.123,"3"]}}"#.into()),
        "nolabel_q" => json(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"42"]}]}}"#.into(),
        ),
        "empty_q" => json(200, vector(&[])),
        "nan_q" => json(200, vector(&[("uuid-1", "NaN"), ("uuid-2", "+Inf")])),
        "wild_q" => json(200, vector(&[("uuid-1", "250"), ("uuid-2", "-3")])),
        "huge_q" => json(200, format!(r#"{{"status":"success","pad":"{}"}}"#, "x".repeat(9 << 20))),
        _ => json(400, r#"{"status":"error","errorType":"bad_data","error":"unknown canned query"}"#.into()),
    }
}

/// A `application/x-www-form-urlencoded` body as a map.
fn decode_form(body: &str) -> HashMap<String, String> {
    let decode = |s: &str| {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    body.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect()
}

async fn serve(need_token: bool) -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let handler = {
        let seen = seen.clone();
        move |headers: HeaderMap, body: String| answer(seen.clone(), need_token, headers, body)
    };
    let app = Router::new()
        .route("/api/v1/query", post(handler.clone()))
        .route("/behind/a/prefix/api/v1/query", post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

fn q(metric: Metric, query: &str) -> QuerySettings {
    QuerySettings {
        metric,
        query: query.into(),
        member_label: "server_id".into(),
        member_by: MemberBy::Tag("server_id".into()),
    }
}

fn source(addr: SocketAddr, queries: Vec<QuerySettings>) -> PrometheusSource {
    let mut s = PrometheusSettings::new(format!("http://{addr}"), queries);
    s.timeout = Duration::from_millis(400);
    PrometheusSource::new(s).unwrap()
}

fn members() -> Vec<Instance> {
    ["uuid-1", "uuid-2"]
        .iter()
        .enumerate()
        .map(|(i, uuid)| {
            let mut m = Instance::new(format!("web_{}", i + 1), &GroupId::new("web"), Timestamp(1));
            m.tags.insert("server_id".into(), uuid.to_string());
            m
        })
        .collect()
}

fn values(samples: &[flotilla_model::Sample], id: &str) -> Vec<(Metric, f64)> {
    samples.iter().find(|s| s.instance.as_str() == id).map(|s| s.values.clone()).unwrap_or_default()
}

#[tokio::test]
async fn values_land_on_their_members_and_missing_ones_stay_missing() {
    let (addr, seen) = serve(false).await;
    let src = source(
        addr,
        vec![q(Metric::Cpu, "cpu_q"), q(Metric::Mem, "mem_q"), q(Metric::Inflight, "group_q{g=\"{group}\"}")],
    );
    assert_eq!(src.name(), "prometheus");
    let samples = src.sample(&GroupId::new("web"), &members(), NOW).await.unwrap();
    assert_eq!(samples.len(), 2);
    assert!(samples.iter().all(|s| s.at == NOW));
    assert_eq!(values(&samples, "web_1"), [(Metric::Cpu, 85.0), (Metric::Mem, 50.0)]);
    // No mem element for uuid-2: no mem value, not zero.
    assert_eq!(values(&samples, "web_2"), [(Metric::Cpu, 40.0), (Metric::Inflight, 7.0)]);

    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let group_form = seen.iter().map(|(f, _)| f).find(|f| f["query"].starts_with("group_q")).unwrap();
    assert_eq!(group_form["query"], r#"group_q{g="web"}"#, "{{group}} replaced");
    assert_eq!(group_form["time"], "1712345678.123", "evaluated at the controller's now");
    assert_eq!(group_form["timeout"], "0.400");
    assert!(seen.iter().all(|(_, auth)| auth.is_none()), "no token configured, none sent");
}

#[tokio::test]
async fn a_base_url_with_a_path_prefix_is_kept() {
    let (addr, _) = serve(false).await;
    let s = PrometheusSettings::new(format!("http://{addr}/behind/a/prefix/"), vec![q(Metric::Cpu, "cpu_q")]);
    let samples = PrometheusSource::new(s).unwrap().sample(&GroupId::new("web"), &members(), NOW).await.unwrap();
    assert_eq!(values(&samples, "web_1"), [(Metric::Cpu, 85.0)]);
}

#[tokio::test]
async fn a_slow_query_times_out_and_the_others_still_count() {
    let (addr, _) = serve(false).await;
    let src = source(addr, vec![q(Metric::Cpu, "cpu_q"), q(Metric::Mem, "slow_q")]);
    let started = tokio::time::Instant::now();
    let report = src.sample_report(&GroupId::new("web"), &members(), NOW).await;
    assert!(started.elapsed() < Duration::from_secs(3), "bounded by the timeout: {:?}", started.elapsed());
    assert_eq!(values(&report.samples, "web_1"), [(Metric::Cpu, 85.0)]);
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let (i, e) = &report.failures[0];
    assert_eq!((*i, e.kind()), (1, ErrorKind::Transient));
    assert!(e.message.contains(&format!("prometheus http://{addr}: queries[1] (mem) `slow_q`")), "{e}");
    assert!(e.message.contains("no answer within 400ms"), "{e}");
    // Through the seam: some succeeded, so Ok with what there is.
    let samples = src.sample(&GroupId::new("web"), &members(), NOW).await.unwrap();
    assert_eq!(values(&samples, "web_2"), [(Metric::Cpu, 40.0)]);
}

#[tokio::test]
async fn a_503_is_transient_and_only_all_failing_is_an_error() {
    let (addr, _) = serve(false).await;
    let e =
        source(addr, vec![q(Metric::Cpu, "down_q")]).sample(&GroupId::new("web"), &members(), NOW).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(e.message.contains(&format!("http://{addr}")) && e.message.contains("`down_q`"), "{e}");
    assert!(e.message.contains("HTTP 503"), "{e}");

    // Both fail: one error with both messages, the transient kind first (retry soon).
    let src = source(addr, vec![q(Metric::Cpu, "bad_q"), q(Metric::Mem, "down_q")]);
    let e = src.sample(&GroupId::new("web"), &members(), NOW).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(e.message.contains("`down_q`") && e.message.contains("`bad_q`"), "{e}");

    // One fails, one works: Ok.
    let src = source(addr, vec![q(Metric::Cpu, "cpu_q"), q(Metric::Mem, "down_q")]);
    assert_eq!(src.sample(&GroupId::new("web"), &members(), NOW).await.unwrap().len(), 2);
}

#[tokio::test]
async fn refused_queries_scalars_and_unlabelled_vectors_are_invalid() {
    let (addr, _) = serve(false).await;
    for (query, says) in [
        ("bad_q", "HTTP 400, bad_data: invalid parameter \"query\": 1:6: parse error: unexpected end of input"),
        ("scalar_q", "the result is a scalar, not one value per member"),
        ("nolabel_q", "no element has the label `server_id`"),
        ("huge_q", "larger than 8 MiB"),
    ] {
        let e =
            source(addr, vec![q(Metric::Cpu, query)]).sample(&GroupId::new("web"), &members(), NOW).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{query}: {e}");
        assert!(e.message.contains(&format!("queries[0] (cpu) `{query}`")), "{e}");
        assert!(e.message.contains(says), "{query}: {e}");
    }
}

#[tokio::test]
async fn empty_nan_and_insane_results_are_missing_data_not_errors() {
    let (addr, _) = serve(false).await;
    let src = source(addr, vec![q(Metric::RequestRate, "empty_q"), q(Metric::Mem, "nan_q"), q(Metric::Cpu, "wild_q")]);
    let report = src.sample_report(&GroupId::new("web"), &members(), NOW).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.samples.is_empty(), "no value at all, so no sample: {:?}", report.samples);
    assert!(src.sample(&GroupId::new("web"), &members(), NOW).await.unwrap().is_empty());
    // Nothing asked when there are no members.
    assert!(src.sample(&GroupId::new("web"), &[], NOW).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_token_is_sent_and_a_refused_one_is_invalid_without_showing_it() {
    let (addr, seen) = serve(true).await;
    let dir = tempfile::tempdir().unwrap();
    let write_token = |name: &str, token: &str| {
        let path = dir.path().join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, "{token}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    };
    let with_token = |path| {
        let mut s = PrometheusSettings::new(format!("http://{addr}"), vec![q(Metric::Cpu, "cpu_q")]);
        s.token_file = Some(path);
        PrometheusSource::new(s).unwrap()
    };
    let good = with_token(write_token("good", TOKEN));
    assert_eq!(good.sample(&GroupId::new("web"), &members(), NOW).await.unwrap().len(), 2);
    assert_eq!(seen.0.lock().unwrap()[0].1.as_deref(), Some(&*format!("Bearer {TOKEN}")), "trimmed, as a bearer token");
    assert!(!format!("{good:?}").contains(TOKEN));

    let wrong = with_token(write_token("wrong", "not-the-token-42"));
    let e = wrong.sample(&GroupId::new("web"), &members(), NOW).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message.contains("HTTP 401: token refused"), "{e}");
    assert!(!e.message.contains("not-the-token-42"), "{e}");

    // A token every user may read is refused at build.
    let open = write_token("open", TOKEN);
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut s = PrometheusSettings::new(format!("http://{addr}"), vec![q(Metric::Cpu, "cpu_q")]);
    s.token_file = Some(open);
    let e = PrometheusSource::new(s).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message.contains("token_file") && e.message.contains("every user may read it"), "{e}");
    assert!(!e.message.contains(TOKEN), "{e}");
}

#[tokio::test]
async fn a_refused_connection_is_transient_and_names_the_url() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let e =
        source(addr, vec![q(Metric::Cpu, "cpu_q")]).sample(&GroupId::new("web"), &members(), NOW).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(e.message.contains(&format!("prometheus http://{addr}: queries[0] (cpu) `cpu_q`: cannot connect")), "{e}");
}

#[test]
fn bad_settings_are_refused_at_build_naming_the_field() {
    let mut s = PrometheusSettings::new("http://127.0.0.1:9090", vec![q(Metric::Cpu, "")]);
    s.timeout = Duration::from_secs(120);
    let e = PrometheusSource::new(s).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message.contains("timeout: must be between 100ms and 60s"), "{e}");
    assert!(e.message.contains("queries[0].query: must not be empty"), "{e}");
}
