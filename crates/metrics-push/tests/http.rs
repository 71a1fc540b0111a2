//! The push endpoint over real HTTP on 127.0.0.1.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_metrics_push::{AlarmCondition, PushSettings, PushSource};
use flotilla_model::{Clock, ErrorKind, FakeClock, GroupId, Instance, Metric, MetricSource, Timestamp};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

const TOKEN: &str = "test-token-0123456789abcdef";
const T0: Timestamp = Timestamp(1_700_000_000_000);

async fn start(clock: &FakeClock) -> (Arc<PushSource>, SocketAddr) {
    let settings = PushSettings::new("127.0.0.1:0".parse().unwrap(), TOKEN);
    PushSource::start_with_clock(settings, Arc::new(clock.clone())).await.unwrap()
}

struct Reply {
    status: u16,
    headers: hyper::HeaderMap,
    body: Value,
}

async fn send(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>, body: &str) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let res = client.request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Reply { status, headers, body }
}

async fn push(addr: SocketAddr, group: &str, body: &str) -> Reply {
    send(addr, "POST", &format!("/v1/groups/{group}/samples"), Some(&format!("Bearer {TOKEN}")), body).await
}

fn member(id: &str, name: &str) -> Instance {
    let mut i = Instance::new(id, &GroupId::new("web"), T0);
    i.name = name.into();
    i
}

fn error_text(r: &Reply) -> &str {
    r.body["error"].as_str().unwrap_or_else(|| panic!("no error in {:?}", r.body))
}

#[tokio::test]
async fn healthz_needs_no_token() {
    let (_source, addr) = start(&FakeClock::new(T0)).await;
    let r = send(addr, "GET", "/healthz", None, "").await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ok")));
}

#[tokio::test]
async fn pushes_need_the_token() {
    let clock = FakeClock::new(T0);
    let (source, addr) = start(&clock).await;
    let body = r#"{"samples":[{"member":"web-1","cpu":90}]}"#;
    let path = "/v1/groups/web/samples";

    let r = send(addr, "POST", path, None, body).await;
    assert_eq!(r.status, 401);
    assert!(error_text(&r).contains("missing token"), "{:?}", r.body);
    assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");

    let r = send(addr, "POST", path, Some("Bearer not-the-token-at-all"), body).await;
    assert_eq!((r.status, error_text(&r)), (401, "wrong token"));
    let r = send(addr, "POST", path, Some(&format!("Bearer {TOKEN}x")), body).await;
    assert_eq!(r.status, 401);
    let r = send(addr, "POST", path, Some(&format!("Basic {TOKEN}")), body).await;
    assert_eq!(r.status, 401);
    assert!(error_text(&r).contains("Bearer"), "{:?}", r.body);
    // The query token is for the alarm webhook only.
    let r = send(addr, "POST", &format!("{path}?token={TOKEN}"), None, body).await;
    assert_eq!(r.status, 401);
    assert!(error_text(&r).contains("header only"), "{:?}", r.body);

    let members = [member("web-1", "web-1")];
    assert!(source.sample(&GroupId::new("web"), &members, clock.now()).await.unwrap().is_empty());

    let r = send(addr, "POST", path, Some(&format!("bearer {TOKEN}")), body).await;
    assert_eq!((r.status, &r.body), (202, &serde_json::json!({"accepted": 1, "expired": 0})));
    assert_eq!(source.sample(&GroupId::new("web"), &members, clock.now()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn samples_round_trip_into_sample_and_expire_after_max_age() {
    let clock = FakeClock::new(T0);
    let (source, addr) = start(&clock).await;
    let at = T0.0 - 5_000;
    let body = format!(
        r#"{{"samples":[
            {{"member":"VM-test_1","cpu":95.0,"mem":30.5}},
            {{"member":"i-2","rps":12.5,"p99_ms":80,"at_ms":{at}}},
            {{"member":"not-yet-a-member","cpu":50}}
        ]}}"#
    );
    let r = push(addr, "web", &body).await;
    assert_eq!((r.status, r.body["accepted"].as_u64()), (202, Some(3)));

    let group = GroupId::new("web");
    // Matched by name (i-1 is called VM-test_1) and by id (i-2); i-3 pushed nothing.
    let members = [member("i-1", "VM-test_1"), member("i-2", "web-2"), member("i-3", "web-3")];
    let s = source.sample(&group, &members, clock.now()).await.unwrap();
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[0].instance.as_str(), "i-1");
    assert_eq!(s[0].values, vec![(Metric::Cpu, 95.0), (Metric::Mem, 30.5)]);
    assert_eq!(s[0].at, T0);
    assert_eq!(s[1].instance.as_str(), "i-2");
    assert_eq!(s[1].values, vec![(Metric::RequestRate, 12.5), (Metric::LatencyP99, 80.0)]);
    assert_eq!(s[1].at, Timestamp(at));
    assert!(source.sample(&GroupId::new("db"), &members, clock.now()).await.unwrap().is_empty());

    // The stranger's values are kept: once it is a member, they are returned.
    let s = source.sample(&group, &[member("not-yet-a-member", "not-yet-a-member")], clock.now()).await.unwrap();
    assert_eq!(s[0].get(Metric::Cpu), Some(50.0));

    // max_age is 30 s: i-2's reading was 5 s old, so it goes first.
    clock.advance(Duration::from_secs(26));
    let s = source.sample(&group, &members, clock.now()).await.unwrap();
    assert_eq!(s.iter().map(|s| s.instance.as_str()).collect::<Vec<_>>(), ["i-1"]);
    clock.advance(Duration::from_secs(4));
    assert_eq!(source.sample(&group, &members, clock.now()).await.unwrap().len(), 1);
    clock.advance(Duration::from_millis(1));
    assert!(source.sample(&group, &members, clock.now()).await.unwrap().is_empty());

    // A fresh push brings it back; one taken longer ago than max_age is reported, not stored.
    let old = clock.now().0 - 31_000;
    let r = push(
        addr,
        "web",
        &format!(r#"{{"samples":[{{"member":"i-1","cpu":20}},{{"member":"i-2","cpu":1,"at_ms":{old}}}]}}"#),
    )
    .await;
    assert_eq!(r.body, serde_json::json!({"accepted": 1, "expired": 1}));
    let s = source.sample(&group, &members, clock.now()).await.unwrap();
    assert_eq!((s.len(), s[0].get(Metric::Cpu), s[0].at), (1, Some(20.0), clock.now()));
}

#[tokio::test]
async fn bad_bodies_are_400s_that_name_the_field() {
    let clock = FakeClock::new(T0);
    let (source, addr) = start(&clock).await;
    let cases = [
        (r#"{"samples":[{"member":"web-1","cpu":10},{"member":"web-2","load1":3}]}"#, &["samples[1]", "load1"][..]),
        (r#"{"samples":[{"member":"web-1","cpu":140}]}"#, &["samples[0].cpu", "web-1", "0..=100"]),
        (r#"{"samples":[{"member":"web-1","rps":-2}]}"#, &["samples[0].rps", "web-1", "negative"]),
        ("{\"samples\":[\n  {\"member\":\"web-1\",\n   \"mem\":\"lots\"}]}", &["samples[0].mem", "line 3"]),
        (r#"{"samples":[{"cpu":1}]}"#, &["samples[0]", "member"]),
        (r#"{"samples":{"member":"x"}}"#, &["samples", "sequence"]),
        (r#"{"samples":[{"member":"web-1","cpu":1}]"#, &["EOF", "line 1"]),
        ("", &["EOF"]),
    ];
    for (body, needles) in cases {
        let r = push(addr, "web", body).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        let e = error_text(&r);
        for n in needles {
            assert!(e.contains(n), "{body}: {e:?} should name {n}");
        }
    }
    // A batch with one bad sample stores nothing.
    let s = source.sample(&GroupId::new("web"), &[member("web-1", "web-1")], clock.now()).await.unwrap();
    assert!(s.is_empty(), "{s:?}");

    let r = push(addr, "we%20b", r#"{"samples":[]}"#).await;
    assert_eq!(r.status, 400);
    assert!(error_text(&r).contains("group name"), "{:?}", r.body);

    let big = format!(r#"{{"samples":[{}]}}"#, vec![r#"{"member":"web-1","cpu":1}"#; 50_000].join(","));
    let r = push(addr, "web", &big).await;
    assert_eq!(r.status, 413, "{:?}", r.body);
}

#[tokio::test]
async fn aodh_alarms_are_stored_per_group_and_alarm() {
    let clock = FakeClock::new(T0);
    let (source, addr) = start(&clock).await;
    let group = GroupId::new("web");
    let notification = |current: &str, previous: &str| {
        format!(
            r#"{{"alarm_name": "web-cpu-high", "alarm_id": "b6f3e6f4-0c1a", "severity": "moderate",
                "previous": "{previous}", "current": "{current}",
                "reason": "Transition to {current} due to 3 samples outside threshold, most recent: 92.5",
                "reason_data": {{"type": "threshold", "disposition": "outside", "count": 3, "most_recent": 92.5}}}}"#
        )
    };

    // Aodh sends no header: the token comes in the URL. Without it: 401, nothing stored.
    let r = send(addr, "POST", "/v1/groups/web/alarm", None, &notification("alarm", "ok")).await;
    assert_eq!(r.status, 401);
    let r =
        send(addr, "POST", "/v1/groups/web/alarm?token=wrong-token-wrong-token", None, &notification("alarm", "ok"))
            .await;
    assert_eq!(r.status, 401);
    assert!(source.alarm_state(&group).is_empty());

    let path = format!("/v1/groups/web/alarm?token={TOKEN}&aodh-alarm-ssl-verify=0");
    let r = send(addr, "POST", &path, None, &notification("alarm", "insufficient data")).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["current"], "alarm");
    let a = source.alarm_state(&group);
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0].alarm_id.as_str(), a[0].alarm_name.as_deref(), a[0].current, a[0].previous),
        ("b6f3e6f4-0c1a", Some("web-cpu-high"), AlarmCondition::Alarm, Some(AlarmCondition::InsufficientData))
    );
    assert_eq!((a[0].most_recent, a[0].received_at), (Some(92.5), T0));
    // Not turned into metric values.
    let members = [member("web-1", "web-1")];
    assert!(source.sample(&group, &members, clock.now()).await.unwrap().is_empty());

    // `ok` replaces the state (by alarm id); the Bearer header works too; states outlive max_age.
    clock.advance(Duration::from_secs(600));
    let r = send(addr, "POST", "/v1/groups/web/alarm", Some(&format!("Bearer {TOKEN}")), &notification("ok", "alarm"))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let a = source.alarm_state(&group);
    assert_eq!((a.len(), a[0].current, a[0].received_at), (1, AlarmCondition::Ok, clock.now()));
    assert!(source.alarm_state(&GroupId::new("db")).is_empty());

    let r = send(addr, "POST", &path, None, r#"{"alarm_id":"x","current":"firing"}"#).await;
    assert_eq!(r.status, 400);
    assert!(error_text(&r).contains("`current`"), "{:?}", r.body);
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_error() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let e = PushSource::start(PushSettings::new(addr, TOKEN)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message.contains(&addr.to_string()) && e.message.contains("already in use"), "{}", e.message);
}

#[tokio::test]
async fn bad_settings_are_refused_at_start() {
    let e = PushSource::start(PushSettings::new("127.0.0.1:0".parse().unwrap(), "short")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message.contains("metrics.push.token") && !e.message.contains("short\""), "{}", e.message);
}

async fn refused(addr: SocketAddr) -> bool {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let clock = FakeClock::new(T0);
    let (source, addr) = start(&clock).await;
    assert_eq!(push(addr, "web", r#"{"samples":[{"member":"web-1","cpu":1}]}"#).await.status, 202);
    source.shutdown().await;
    source.shutdown().await;
    assert!(refused(addr).await, "still listening on {addr} after shutdown");
    // What was pushed stays readable until it expires.
    assert_eq!(source.sample(&GroupId::new("web"), &[member("web-1", "web-1")], clock.now()).await.unwrap().len(), 1);

    let (source, addr) = start(&clock).await;
    assert_eq!(send(addr, "GET", "/healthz", None, "").await.status, 200);
    drop(source);
    assert!(refused(addr).await, "still listening on {addr} after drop");
}

/// Captures log lines of this (current-thread) test.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let clock = FakeClock::new(T0);
    let settings = PushSettings::new("127.0.0.1:0".parse().unwrap(), TOKEN);
    assert!(!format!("{settings:?}").contains(TOKEN));
    let (source, addr) = PushSource::start_with_clock(settings, Arc::new(clock.clone())).await.unwrap();
    let wrong = "wrong-token-that-is-long-enough";
    send(addr, "POST", "/v1/groups/web/samples", Some(&format!("Bearer {wrong}")), "{}").await;
    push(addr, "web", r#"{"samples":[{"member":"web-1","cpu":1}]}"#).await;
    push(addr, "web", r#"{"samples":[{"member":"web-1","cpu":101}]}"#).await;
    let alarm = r#"{"alarm_id":"a1","current":"alarm"}"#;
    send(addr, "POST", &format!("/v1/groups/web/alarm?token={TOKEN}"), None, alarm).await;
    send(addr, "POST", &format!("/v1/groups/web/alarm?token={wrong}"), None, alarm).await;
    source.shutdown().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("metrics push refused") && text.contains("alarm notification"), "{text}");
    assert!(!text.contains(TOKEN) && !text.contains(wrong), "{text}");
}
