//! Seed 003's signals on a real `flotilla run` (local members): a group scaled by its alarms'
//! receivers. Aodh's notification, Alertmanager's webhook and a signed `{state}` each move the
//! group by their rule; an unsigned, mis-signed or replayed call is refused and changes nothing.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use support::{call, wait_until, Env, Reply};

const ADMIN: &str = "admin-token-0123456789abcdef";
const READ: &str = "read-token-0123456789abcdefgh";

/// Aodh 22's notification body, as the lab's webhook sink recorded it.
fn aodh(current: &str, previous: &str) -> String {
    serde_json::json!({
        "alarm_name": "web-cpu-high", "alarm_id": "efc16a70-5269-41c4-8499-6c675ce43a71", "severity": "low",
        "previous": previous, "current": current,
        "reason": format!("Transition to {current} due to 1 samples outside threshold, most recent: 80.0"),
        "reason_data": {"type": "threshold", "disposition": "outside", "count": 1, "most_recent": 80.0}
    })
    .to_string()
}

/// Alertmanager's webhook body (its documented `webhook_config` format, version 4).
fn alertmanager(status: &str, starts: &str) -> String {
    serde_json::json!({
        "version": "4", "groupKey": "{}:{alertname=\"WebCpuHigh\"}", "truncatedAlerts": 0, "status": status,
        "receiver": "flotilla", "groupLabels": {"alertname": "WebCpuHigh"},
        "commonLabels": {"alertname": "WebCpuHigh", "group": "web"}, "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [{"status": status, "labels": {"alertname": "WebCpuHigh"}, "annotations": {},
            "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": "5ef77f1f8a3ecfa1"}]
    })
    .to_string()
}

fn config(env: &Env, api: SocketAddr) -> String {
    let tokens = env.private_file("api.tokens", &format!("admin {ADMIN}\nread {READ}\n"));
    let yaml = format!(
        r#"
api:
  listen: {api}
  tokens_file: {}
groups:
  - name: web
    mode: scale
    min: 1
    max: 4
    interval: 500ms
    cooldown_up: 0s
    cooldown_down: 0s
    drain_timeout: 2s
    alarms:
      - {{name: cpu-high, kind: external}}
      - {{name: cpu-low, kind: external}}
    policy:
      kind: alarm
      rules:
        - {{alarm: cpu-high, adjustment: 1, cooldown: 0s}}
        - {{alarm: cpu-low, adjustment: -1, cooldown: 0s}}
"#,
        tokens.display()
    );
    env.file("alarms.yaml", &yaml).to_str().unwrap().to_string()
}

async fn post(api: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    call(api, "POST", path, headers, Some(body)).await
}

fn problem(r: &Reply, status: u16, has: &str) {
    assert_eq!(r.status, status, "{}\n{}", r.head, r.body);
    let detail = r.body["detail"].as_str().unwrap_or("");
    assert!(detail.contains(has), "{detail:?} lacks {has:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_scale_a_group_and_refuse_unsigned_and_replayed_calls() {
    let mut env = Env::serial();
    let api = support::free_port();
    let cfg = config(&env, api);
    let out = env.ok(&["config", "check", &cfg]);
    assert!(out.contains("alarms: cpu-high -> change_in_capacity 1, cpu-low -> change_in_capacity -1"), "{out}");
    let daemon = env.spawn(&["run", "-c", &cfg], "run.log", None);
    wait_until(Duration::from_secs(30), "web_1", || env.running_members("web").len() == 1).await;
    let admin = format!("Bearer {ADMIN}");
    let read = format!("Bearer {READ}");

    // Receiver URLs are credentials: admin only. States start as insufficient data.
    let r = call(api, "GET", "/api/v1/groups/web/receivers", &[("Authorization", &read)], None).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = call(api, "GET", "/api/v1/groups/web/receivers", &[("Authorization", &admin)], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let url = |alarm: &str| -> String {
        let u = r.body.as_array().unwrap().iter().find(|x| x["alarm"] == alarm).unwrap()["url"].as_str().unwrap();
        u.strip_prefix(&format!("http://{api}")).expect("the daemon's own address").to_string()
    };
    let (high, low) = (url("cpu-high"), url("cpu-low"));
    assert!(high.starts_with("/api/v1/receivers/web/cpu-high?sig="), "{high}");
    let key = std::fs::read_to_string(env.path().join("state/receiver.key")).unwrap();
    assert!(!r.body.to_string().contains(key.trim()), "the key itself is never shown");
    let alarms = call(api, "GET", "/api/v1/groups/web/alarms", &[("Authorization", &read)], None).await;
    assert_eq!(alarms.body[0]["state"], "insufficient data", "{}", alarms.body);

    // Refused: no signature, a wrong one, another alarm's, no unique key, a body that means nothing.
    let rid = [("x-openstack-request-id", "req-1")];
    problem(&post(api, "/api/v1/receivers/web/cpu-high", &rid, &aodh("alarm", "ok")).await, 401, "unsigned");
    let flip = if high.ends_with('0') { '1' } else { '0' };
    let bad = format!("{}{flip}", &high[..high.len() - 1]);
    problem(&post(api, &bad, &rid, &aodh("alarm", "ok")).await, 401, "does not match");
    let swapped = high.replace("cpu-high", "cpu-low");
    problem(&post(api, &swapped, &rid, &aodh("alarm", "ok")).await, 401, "does not match");
    problem(&post(api, &high, &[], &aodh("alarm", "ok")).await, 400, "must be unique");
    problem(&post(api, &high, &rid, r#"{"current": "firing"}"#).await, 400, "field `current`");
    let r = call(api, "GET", "/api/v1/groups/web/alarms", &[("Authorization", &read)], None).await;
    assert_eq!(r.body[0]["state"], "insufficient data", "nothing refused changed a state: {}", r.body);
    assert_eq!(env.running_members("web").len(), 1);

    // Aodh's notification: the alarm fires, the group grows by one, once for the transition.
    let r = post(api, &high, &rid, &aodh("alarm", "ok")).await;
    assert_eq!((r.status, r.body["changed"].as_bool()), (202, Some(true)), "{}", r.body);
    wait_until(Duration::from_secs(30), "2 members", || env.running_members("web").len() == 2).await;
    problem(&post(api, &high, &rid, &aodh("alarm", "ok")).await, 409, "replay");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.running_members("web").len(), 2, "one adjustment per transition (Heat's way)");

    // Back to ok (another Aodh call), then Alertmanager fires: a new transition, one more member.
    let r = post(api, &high, &[("x-openstack-request-id", "req-2")], &aodh("ok", "alarm")).await;
    assert_eq!(r.body["state"], "ok", "{}", r.body);
    let fire = alertmanager("firing", "2026-12-04T19:00:00Z");
    let r = post(api, &high, &[], &fire).await;
    assert_eq!((r.status, r.body["previous"].as_str()), (202, Some("ok")), "{}", r.body);
    wait_until(Duration::from_secs(30), "3 members", || env.running_members("web").len() == 3).await;
    problem(&post(api, &high, &[], &fire).await, 409, "replay");

    // A script's signed `{state}` on the low alarm: one member goes. A stale signature is refused.
    let key = flotilla_api::receivers::ReceiverKey::from_bytes(&hex_decode(key.trim()));
    let body = r#"{"state": "alarm", "reason": "quiet"}"#;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let old = key.body_signature(now - 600, body.as_bytes());
    problem(&post(api, &low, &[("X-Flotilla-Signature", &old)], body).await, 401, "too old");
    let sig = key.body_signature(now, body.as_bytes());
    let r = post(api, &low, &[("X-Flotilla-Signature", &sig)], body).await;
    assert_eq!(r.status, 202, "{}", r.body);
    wait_until(Duration::from_secs(30), "2 members", || env.running_members("web").len() == 2).await;
    problem(&post(api, &low, &[("X-Flotilla-Signature", &sig)], body).await, 409, "replay");

    // Every transition is an event with the sender's detail.
    let ev = call(api, "GET", "/api/v1/events?group=web&limit=200", &[("Authorization", &read)], None).await;
    let msgs: Vec<&Value> = ev.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message"].as_str().unwrap().starts_with("alarm "))
        .collect();
    assert_eq!(msgs.len(), 4, "{msgs:#?}");
    assert!(msgs.iter().any(|e| e["message"].as_str().unwrap().contains("Aodh alarm web-cpu-high")), "{msgs:#?}");
    let log = env.log("run.log");
    assert!(!log.contains(key_hex(&env).trim()), "the key never reaches the log");
    assert_eq!(env.stop(daemon).await, Some(0), "{log}");
}

fn key_hex(env: &Env) -> String {
    std::fs::read_to_string(env.path().join("state/receiver.key")).unwrap()
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}
