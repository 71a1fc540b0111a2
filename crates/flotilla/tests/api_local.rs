//! The REST API of a real `flotilla run` on local members: auth (401, 403), problem bodies that
//! name the field, paging, the OpenAPI document, and behaviour through the API: a paused group
//! holds through a real load spike and says what it would do; a protected member survives the
//! scale-in that would otherwise pick it.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use support::{wait_until, Env, Reply};

const ADMIN: &str = "admin-token-0123456789abcdef";
const READ: &str = "read-token-0123456789abcdefgh";

/// One request on a fresh connection; the body parsed as JSON (Null if it is not).
async fn call(api: SocketAddr, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| ("Authorization", a)).into_iter().collect();
    support::call(api, method, path, &headers, body).await
}

fn config(env: &Env, api: SocketAddr) -> String {
    let tokens = env.private_file("api.tokens", &format!("# test tokens\nadmin {ADMIN}\nread {READ}\n"));
    let yaml = format!(
        r#"
api:
  listen: {api}
  tokens_file: {}
groups:
  - name: web
    mode: scale
    min: 1
    max: 3
    interval: 500ms
    stale_after: 2s
    cooldown_up: 0s
    cooldown_down: 0s
    drain_timeout: 2s
    policy: {{ metric: cpu, high: 70, low: 20, min_up: 2, min_down: 2 }}
"#,
        tokens.display()
    );
    env.file("f.yaml", &yaml).to_str().unwrap().to_string()
}

fn is_problem(r: &Reply, status: u16, detail_has: &str) {
    assert_eq!(r.status, status, "{}\n{}", r.head, r.body);
    assert!(r.head.to_lowercase().contains("content-type: application/problem+json"), "{}", r.head);
    assert_eq!(r.body["status"], status);
    let detail = r.body["detail"].as_str().unwrap_or("");
    assert!(detail.contains(detail_has), "detail {detail:?} lacks {detail_has:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reads_steers_and_refuses_what_it_must() {
    let mut env = Env::serial();
    let api = support::free_port();
    let cfg = config(&env, api);
    let daemon = env.spawn(&["run", "-c", &cfg], "run.log", None);
    wait_until(Duration::from_secs(30), "web_1", || env.running_members("web").len() == 1).await;
    assert!(env.log("run.log").contains(&format!("API at http://{api}/api/v1")), "{}", env.log("run.log"));

    // Auth: nothing, a stranger, a reader changing something.
    let r = call(api, "GET", "/api/v1/groups", None, None).await;
    is_problem(&r, 401, "bearer token");
    assert!(r.head.to_lowercase().contains("www-authenticate: bearer"), "{}", r.head);
    is_problem(&call(api, "GET", "/api/v1/groups", Some("stranger-0123456789abcdef"), None).await, 401, "unknown");
    is_problem(&call(api, "POST", "/api/v1/groups/web/pause", Some(READ), None).await, 403, "admin");

    // Reads.
    let r = call(api, "GET", "/api/v1/groups", Some(READ), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let g = &r.body[0];
    assert_eq!(
        (g["name"].as_str(), g["live"]["min"].as_u64(), g["live"]["max"].as_u64()),
        (Some("web"), Some(1), Some(3))
    );
    assert_eq!(g["live"]["policy"], "threshold");
    assert_eq!(g["members"][0]["name"], "web_1");
    // The last decision, explained: its numbers and what each member reported, with ages.
    let mut r = call(api, "GET", "/api/v1/groups/web", Some(READ), None).await;
    for _ in 0..20 {
        if r.body["live"]["last_decision"]["inputs"][0]["values"].as_array().is_some_and(|v| !v.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        r = call(api, "GET", "/api/v1/groups/web", Some(READ), None).await;
    }
    let d = &r.body["live"]["last_decision"];
    assert_eq!(d["outcome"], "hold", "{}", r.body);
    assert!(d["summary"].as_str().unwrap().starts_with("[metrics] cpu="), "{d}");
    let input = &d["inputs"][0];
    assert_eq!((input["member"].as_str(), input["fresh"].as_bool()), (Some("web_1"), Some(true)), "{d}");
    let cpu = input["values"].as_array().unwrap().iter().find(|v| v["metric"] == "cpu").expect("a cpu reading");
    assert!(cpu["age_ms"].as_u64().unwrap() < 2000, "{cpu}");
    let r = call(api, "GET", "/api/v1/events?group=web&kind=decision", Some(READ), None).await;
    let first = r.body["events"].as_array().unwrap().last().cloned().unwrap_or_default();
    assert!(first["message"].as_str().unwrap_or("").starts_with("scale-out: scale out by 1 (below min)"), "{}", r.body);
    // Each decision event carries its detail for programs: outcome, rule, bounds, inputs.
    let data = &first["data"];
    assert_eq!((data["outcome"].as_str(), data["reason"].as_str()), (Some("scale-out"), Some("below min")), "{first}");
    assert_eq!((data["min"].as_u64(), data["max"].as_u64(), data["running"].as_u64()), (Some(1), Some(3), Some(0)));
    assert!(data["numbers"].as_str().unwrap().starts_with("[metrics]") && data["inputs"].is_array(), "{first}");
    let hold = r.body["events"].as_array().unwrap().iter().find(|e| e["data"]["outcome"] == "hold").expect("a hold");
    assert_eq!(
        (hold["data"]["reason"].as_str(), hold["data"]["running"].as_u64()),
        (Some("steady"), Some(1)),
        "{hold}"
    );
    is_problem(&call(api, "GET", "/api/v1/groups/nope", Some(READ), None).await, 404, "no group `nope`");
    is_problem(&call(api, "GET", "/api/v1/nowhere", Some(READ), None).await, 404, "no such endpoint");
    let r = call(api, "GET", "/api/v1/openapi.json", Some(READ), None).await;
    assert!(r.body["paths"]["/api/v1/groups/{group}/pause"]["post"].is_object(), "{}", r.body);
    assert!(r.body["components"]["schemas"]["Problem"].is_object());

    // Bad input names the field.
    let dry = "/api/v1/groups/web/dry-run";
    is_problem(&call(api, "PUT", dry, Some(ADMIN), Some(r#"{"enabled":"yes"}"#)).await, 400, "field `enabled`");
    is_problem(&call(api, "PUT", dry, Some(ADMIN), Some(r#"{"enabled":true,"x":1}"#)).await, 400, "unknown field `x`");
    is_problem(&call(api, "PUT", dry, Some(ADMIN), Some("{")).await, 400, "the body");
    is_problem(&call(api, "GET", "/api/v1/events?limit=0", Some(READ), None).await, 400, "`limit` must be 1 to 1000");
    is_problem(&call(api, "GET", "/api/v1/events?kind=bogus", Some(READ), None).await, 400, "unknown kind `bogus`");
    is_problem(&call(api, "POST", "/api/v1/groups/web/members/ghost/protect", Some(ADMIN), None).await, 404, "ghost");

    // Pause: a real spike, and no scale-out; the group says what it would do, once.
    let r = call(api, "POST", "/api/v1/groups/web/pause", Some(ADMIN), None).await;
    assert_eq!((r.status, r.body["paused"].as_bool()), (200, Some(true)), "{}", r.body);
    support::set_duty(&env, "web", Some(1.0)).await;
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(env.member_names("web"), ["web_1"], "paused, yet scaled:\n{}", env.log("run.log"));
    }
    let r = call(api, "GET", "/api/v1/events?group=web&kind=info&limit=50", Some(READ), None).await;
    let said: Vec<&str> = r.body["events"].as_array().unwrap().iter().filter_map(|e| e["message"].as_str()).collect();
    assert_eq!(said.iter().filter(|m| m.starts_with("paused: would scale out by 1")).count(), 1, "{said:?}");
    assert!(said.contains(&"operator: pause"), "{said:?}");
    assert_eq!(call(api, "GET", "/api/v1/groups/web", Some(READ), None).await.body["paused"], true);
    call(api, "POST", "/api/v1/groups/web/resume", Some(ADMIN), None).await;
    wait_until(Duration::from_secs(30), "the scale-out once resumed", || env.member_names("web").len() >= 2).await;

    // Protect the oldest (the default victim), drop the load: the scale-in takes another.
    let r = call(api, "POST", "/api/v1/groups/web/members/web_1/protect", Some(ADMIN), None).await;
    assert_eq!(r.body["protected"], serde_json::json!(["web_1"]), "{}", r.body);
    support::set_duty(&env, "web", None).await;
    wait_until(Duration::from_secs(40), "the scale-in to one", || env.member_names("web").len() == 1).await;
    assert_eq!(env.member_names("web"), ["web_1"], "the protected member stays");
    let r = call(api, "GET", "/api/v1/groups/web/members", Some(READ), None).await;
    assert_eq!(r.body[0]["protected"], true, "{}", r.body);
    let r = call(api, "GET", "/api/v1/groups/web/operations?limit=10", Some(READ), None).await;
    let kinds: Vec<&str> = r.body.as_array().unwrap().iter().filter_map(|o| o["kind"].as_str()).collect();
    assert!(kinds.contains(&"scale-in") && kinds.contains(&"scale-out"), "{kinds:?}");

    // Paging: one event per page, the cursor walks back without gaps or repeats.
    let mut seen = Vec::new();
    let mut path = "/api/v1/events?group=web&limit=1".to_string();
    for _ in 0..200 {
        let r = call(api, "GET", &path, Some(READ), None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        for e in r.body["events"].as_array().unwrap() {
            seen.push((e["at_ms"].as_u64().unwrap(), e["message"].as_str().unwrap().to_string()));
        }
        match r.body["next_before_ms"].as_u64() {
            Some(t) => path = format!("/api/v1/events?group=web&limit=1&before_ms={t}"),
            None => break,
        }
    }
    let all = call(api, "GET", "/api/v1/events?group=web&limit=1000", Some(READ), None).await;
    assert_eq!(seen.len(), all.body["events"].as_array().unwrap().len(), "pages cover every event once");
    assert!(seen.windows(2).all(|w| w[0].0 >= w[1].0), "newest first");
    assert_eq!(env.stop(daemon).await, Some(0));
}

/// What the API answers and the group's names once `want` holds.
async fn names_once(env: &Env, what: &str, want: impl Fn(&[String]) -> bool) -> Vec<String> {
    wait_until(Duration::from_secs(30), what, || want(&env.member_names("web"))).await;
    env.member_names("web")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_actions_resize_drain_replace_and_roll_real_members() {
    let mut env = Env::serial();
    let api = support::free_port();
    // A long scale-in cooldown: the operator's resize is not undone by the idle policy meanwhile.
    let cfg = config(&env, api);
    let yaml = std::fs::read_to_string(&cfg).unwrap().replace("cooldown_down: 0s", "cooldown_down: 300s");
    std::fs::write(&cfg, yaml).unwrap();
    let daemon = env.spawn(&["run", "-c", &cfg], "run.log", None);
    wait_until(Duration::from_secs(30), "web_1", || env.running_members("web").len() == 1).await;

    let desired = "/api/v1/groups/web/desired";
    is_problem(&call(api, "PUT", desired, Some(ADMIN), Some(r#"{"desired":9}"#)).await, 409, "field `desired`: 9");
    is_problem(&call(api, "PUT", desired, Some(ADMIN), Some(r#"{"desired":-1}"#)).await, 400, "field `desired`");
    is_problem(&call(api, "PUT", desired, Some(READ), Some(r#"{"desired":2}"#)).await, 403, "admin");
    is_problem(&call(api, "POST", "/api/v1/groups/web/handover", Some(ADMIN), None).await, 409, "not in handover");
    is_problem(&call(api, "POST", "/api/v1/groups/web/members/ghost/drain", Some(ADMIN), None).await, 404, "ghost");
    let r = call(api, "PUT", desired, Some(ADMIN), Some(r#"{"desired":3}"#)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(names_once(&env, "three members", |n| n.len() == 3).await, ["web_1", "web_2", "web_3"]);
    let r = call(api, "GET", "/api/v1/groups/web/members/web_2", Some(READ), None).await;
    assert_eq!((r.status, r.body["name"].as_str()), (200, Some("web_2")), "{}", r.body);

    // Drain one: the group shrinks by one, the others stay.
    let r = call(api, "POST", "/api/v1/groups/web/members/web_2/drain", Some(ADMIN), None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(names_once(&env, "web_2 drained", |n| n.len() == 2).await, ["web_1", "web_3"]);
    // Replace one: a new member first, then the old one goes.
    let r = call(api, "POST", "/api/v1/groups/web/members/web_1/replace", Some(ADMIN), None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(names_once(&env, "web_1 replaced", |n| !n.contains(&"web_1".to_string())).await, ["web_3", "web_4"]);
    // A rolling replacement: everyone, one at a time, then it ends.
    let r = call(api, "POST", "/api/v1/groups/web/rollout", Some(ADMIN), None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.body["replace_before_ms"].as_u64().is_some(), "{}", r.body);
    let rolled =
        names_once(&env, "everyone replaced", |n| n.len() == 2 && !n.iter().any(|m| m == "web_3" || m == "web_4"))
            .await;
    assert_eq!(rolled, ["web_5", "web_6"]);
    wait_until(Duration::from_secs(10), "the rollout to end", || {
        env.log("run.log").contains("operator: rolling replacement finished")
    })
    .await;
    let r = call(api, "GET", "/api/v1/events?group=web&kind=info&limit=200", Some(READ), None).await;
    let said: Vec<&str> = r.body["events"].as_array().unwrap().iter().filter_map(|e| e["message"].as_str()).collect();
    for want in [
        "operator: asked: desired 3",
        "operator: desired 3 carried out as: scale out by 2",
        "operator: drain web_2 carried out as: scale in, removing web_2",
        "operator: replace web_1 carried out as: replace web_1",
        "operator: asked: rolling replacement",
    ] {
        assert!(said.contains(&want), "{want:?} not in {said:?}");
    }
    // Nothing left behind: every process the provider made is a member.
    assert_eq!(env.live_member_names().len(), 2, "{:?}", env.live_member_names());
    assert_eq!(env.stop(daemon).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tokens_file_is_a_field_error_that_never_shows_a_token() {
    let env = Env::new();
    let tokens = env.file("api.tokens", "admin short-one\n");
    let cfg = env.file(
        "f.yaml",
        &format!("api: {{ listen: 127.0.0.1:0, tokens_file: {} }}\ngroups: [{{ name: web }}]\n", tokens.display()),
    );
    let out = env.run(&["config", "check", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = support::text(&out.stderr);
    assert!(err.contains("api.tokens_file: line 1: a token is one word of at least 16"), "{err}");
    assert!(!err.contains("short-one"), "{err}");
    // Anonymous reads only on loopback.
    let cfg = env.file("g.yaml", "api: { listen: 0.0.0.0:8070, anonymous_read: true }\ngroups: [{ name: web }]\n");
    let err = support::text(&env.run(&["config", "check", cfg.to_str().unwrap()]).stderr);
    assert!(err.contains("api.anonymous_read: only on a loopback listener"), "{err}");
    // Check-in periods have bounds.
    let cfg = env.file("h.yaml", "groups: [{ name: web, checkin: { every: 0s, grace: 2h } }]\n");
    let err = support::text(&env.run(&["config", "check", cfg.to_str().unwrap()]).stderr);
    assert!(err.contains("groups[0].checkin.every: must be 1s to 1h (got 0s)"), "{err}");
    assert!(err.contains("groups[0].checkin.grace: must be at most 1h (got 2h)"), "{err}");
}

/// `/metrics` after a scale-out through the balancer: the series are there, with the numbers the
/// daemon acted on, and the OpenMetrics text parses with the official Python client's parser
/// (`.ci/run` installs `prometheus_client` from PyPI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_the_groups_the_operations_the_provider_and_the_balancer() {
    let mut env = Env::serial();
    let api = support::free_port();
    let listen = support::free_port();
    let cfg = config(&env, api);
    // A second group tracks a target: the `desired` series is a target policy's.
    let cfg = std::fs::read_to_string(&cfg).unwrap()
        + &format!("    balancer: {{ listen: {listen}, health: {{ path: /healthz, interval: 250ms }} }}\n")
        + "  - { name: tracked, min: 1, max: 2, interval: 500ms, policy: { kind: target, metric: cpu, target: 50 } }\n";
    let cfg = env.file("m.yaml", &cfg);
    let daemon = env.spawn(&["run", "-c", cfg.to_str().unwrap()], "run.log", None);
    wait_until(Duration::from_secs(30), "web_1", || env.running_members("web").len() == 1).await;
    for _ in 0..20 {
        let out = support::raw_request(&listen.to_string(), "GET", "/work?ms=1").await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    is_problem(&call(api, "GET", "/metrics", None, None).await, 401, "bearer token");
    // The body is text, not JSON: fetch it raw, until a pass saw the member running.
    let scrape = || async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(api).await.unwrap();
        let req =
            format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {READ}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.to_lowercase().contains("content-type: application/openmetrics-text; version=1.0.0"), "{out}");
        out.split_once("\r\n\r\n").unwrap().1.to_string()
    };
    let mut text = scrape().await;
    for _ in 0..40 {
        if text.contains("flotilla_group_running{group=\"web\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        text = scrape().await;
    }
    for series in [
        "flotilla_group_min{group=\"web\"} 1",
        "flotilla_group_max{group=\"web\"} 3",
        "flotilla_group_running{group=\"web\"} 1",
        "flotilla_decisions_total{group=\"web\",outcome=\"scale-out\"} 1",
        "flotilla_operations_total{group=\"web\",kind=\"scale-out\",result=\"done\"} 1",
        "flotilla_operation_seconds_total{group=\"web\",kind=\"scale-out\",result=\"done\"}",
        "flotilla_provider_call_seconds_count{provider=\"local\",call=\"create\"} 2",
        "flotilla_provider_call_seconds_bucket{le=\"0.005\",provider=\"local\",call=\"list\"}",
        "flotilla_balancer_requests_total{group=\"web\",member=\"web_1\"} 20",
        "flotilla_balancer_backend_healthy{group=\"web\",member=\"web_1\"} 1",
        "flotilla_balancer_latency_p99_seconds{group=\"web\",member=\"web_1\"}",
        "flotilla_member_sample_age_seconds{group=\"web\",member=\"web_1\"}",
        "flotilla_balancer_latency_seconds_count{group=\"web\",member=\"web_1\"} 20",
        "flotilla_balancer_latency_seconds_bucket{le=\"+Inf\",group=\"web\",member=\"web_1\"} 20",
        "# EOF",
    ] {
        assert!(text.contains(series), "no {series} in:\n{text}");
    }
    // The Grafana dashboard in the repository queries only metrics this daemon exports.
    let dashboard = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/flotilla.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(dashboard).unwrap()).unwrap();
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string()))
        .collect();
    queries.extend(
        dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["definition"].as_str().map(String::from)),
    );
    assert!(queries.len() >= 14, "{queries:?}");
    let mut checked = 0;
    for q in &queries {
        for name in q.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("flotilla_")) {
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "the Grafana dashboard queries {name}, which /metrics lacks:\n{q}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 29, "{checked} metric references checked");

    // A real parser: the official Python client's OpenMetrics parser reads every family.
    let parse = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
                 fams = list(p(sys.stdin.read()))\nprint(len(fams), sum(len(f.samples) for f in fams))";
    match std::process::Command::new("python3")
        .args(["-c", parse])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            let err = support::text(&out.stderr);
            if err.contains("No module named 'prometheus_client'") && !flotilla_testkit::lab::labs_required() {
                eprintln!("SKIPPED the OpenMetrics parse: Python's prometheus_client is not installed");
            } else {
                assert!(out.status.success(), "the OpenMetrics parser refused it: {err}\n{text}");
                eprintln!("OpenMetrics parser: {} families, samples", support::text(&out.stdout).trim());
            }
        }
        Err(e) => panic!("python3: {e}"),
    }
    assert_eq!(env.stop(daemon).await, Some(0));
}

/// Schemathesis (PyPI) against the generated OpenAPI document of a running daemon: every
/// operation, generated and mutated inputs, stateful sequences; it must find nothing (no server
/// error, no undocumented status or content type, nothing invalid accepted or valid refused).
/// `.ci/run` installs it; elsewhere the test says it skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_against_the_openapi_document() {
    if std::process::Command::new("schemathesis").arg("--version").output().is_err() {
        assert!(
            !flotilla_testkit::lab::labs_required(),
            "FLOTILLA_LABS=1 needs schemathesis (pip install schemathesis)"
        );
        eprintln!("SKIPPED schemathesis_finds_nothing_against_the_openapi_document: schemathesis is not installed");
        return;
    }
    let mut env = Env::serial();
    let api = support::free_port();
    let cfg = config(&env, api);
    let daemon = env.spawn(&["run", "-c", &cfg], "run.log", None);
    wait_until(Duration::from_secs(30), "web_1", || env.running_members("web").len() == 1).await;
    let out = tokio::process::Command::new("schemathesis")
        .args(["run", &format!("http://{api}/api/v1/openapi.json")])
        .args(["-H", &format!("Authorization: Bearer {ADMIN}"), "--max-examples", "40", "--seed", "1"])
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    let said = format!("{}{}", support::text(&out.stdout), support::text(&out.stderr));
    let summary: Vec<&str> = said.lines().filter(|l| l.contains("generated")).collect();
    eprintln!("schemathesis: {summary:?}");
    assert!(out.status.success(), "schemathesis found something:\n{said}");
    assert_eq!(env.stop(daemon).await, Some(0));
}

/// Reads a server-sent event stream until `want` shows in it or `limit` passes; what it read.
async fn stream_until(api: SocketAddr, token: Option<&str>, limit: Duration, want: impl Fn(&str) -> bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(api).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!("GET /api/v1/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{auth}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 16384];
    while !want(&String::from_utf8_lossy(&seen)) {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// What the dashboard reads: the live stream (a snapshot on connect, another on each change), the
/// scaling value over time, and the embedded files with their security headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_the_series_and_the_dashboard_files() {
    let mut env = Env::serial();
    let api = support::free_port();
    let cfg = config(&env, api);
    let daemon = env.spawn(&["run", "-c", &cfg], "run.log", None);
    wait_until(Duration::from_secs(30), "web_1", || env.running_members("web").len() == 1).await;

    // The stream: no token, no stream; with one, a snapshot at once and a new one on a pause.
    let denied = stream_until(api, None, Duration::from_secs(5), |s| s.contains("\r\n\r\n")).await;
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    let reader = tokio::spawn(async move {
        stream_until(api, Some(READ), Duration::from_secs(10), |s| s.contains("\"paused\":true")).await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(call(api, "POST", "/api/v1/groups/web/pause", Some(ADMIN), None).await.status, 200);
    let seen = reader.await.unwrap();
    assert!(seen.to_lowercase().contains("content-type: text/event-stream"), "{seen}");
    let snapshots: Vec<Value> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    assert!(snapshots.len() >= 2, "a snapshot on connect and one after the pause:\n{seen}");
    assert_eq!(
        (snapshots[0]["groups"][0]["name"].as_str(), snapshots[0]["groups"][0]["paused"].as_bool()),
        (Some("web"), Some(false))
    );
    assert_eq!(snapshots.last().unwrap()["groups"][0]["paused"], true, "{seen}");

    // The series: the policy's metric, one point per step with the members that reported.
    let r = call(api, "GET", "/api/v1/groups/web/series?step_ms=1000", Some(READ), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.body["metric"].as_str(), r.body["step_ms"].as_u64()), (Some("cpu"), Some(1000)), "{}", r.body);
    let points = r.body["points"].as_array().unwrap();
    assert!(!points.is_empty() && points.iter().all(|p| p["members"] == 1 && p["value"].is_number()), "{}", r.body);
    assert!(points.windows(2).all(|w| w[1]["at_ms"].as_u64() > w[0]["at_ms"].as_u64()), "{}", r.body);
    let r = call(api, "GET", "/api/v1/groups/web/series?member=web_1&metric=mem", Some(READ), None).await;
    assert_eq!((r.status, r.body["combine"].as_str(), r.body["metric"].as_str()), (200, Some("member"), Some("mem")));
    let series = "/api/v1/groups/web/series";
    is_problem(&call(api, "GET", &format!("{series}?step_ms=5"), Some(READ), None).await, 400, "`step_ms` must be");
    is_problem(&call(api, "GET", &format!("{series}?metric=bogus"), Some(READ), None).await, 400, "`metric`");
    // An empty range has no points; a range too long for its step gets a wider step, said so.
    let r = call(api, "GET", &format!("{series}?since_ms=9&until_ms=5"), Some(READ), None).await;
    assert_eq!((r.status, r.body["points"].as_array().map(Vec::len)), (200, Some(0)), "{}", r.body);
    let huge = format!("{series}?since_ms=0&until_ms=100000000000&step_ms=100");
    let r = call(api, "GET", &huge, Some(READ), None).await;
    assert_eq!((r.status, r.body["step_ms"].as_u64()), (200, Some(20_000_000)), "{}", r.body);
    is_problem(&call(api, "GET", &format!("{series}?member=ghost"), Some(READ), None).await, 404, "ghost");
    is_problem(&call(api, "GET", &format!("{series}?bogus=1"), Some(READ), None).await, 400, "bogus");

    // The dashboard's files: no token needed (they hold no data), locked down by headers.
    let r = call(api, "GET", "/", None, None).await;
    assert!(r.status == 303 && r.head.to_lowercase().contains("location: /dashboard/"), "{}", r.head);
    for (path, kind) in
        [("/dashboard/", "text/html"), ("/dashboard/app.js", "javascript"), ("/dashboard/app.css", "text/css")]
    {
        let r = call(api, "GET", path, None, None).await;
        let head = r.head.to_lowercase();
        assert_eq!(r.status, 200, "{path}: {head}");
        assert!(head.contains(&format!("content-type: {kind}")) || head.contains(kind), "{path}: {head}");
        assert!(head.contains("content-security-policy: default-src 'self'"), "{path}: {head}");
        assert!(head.contains("x-content-type-options: nosniff"), "{path}: {head}");
    }
    assert_eq!(env.stop(daemon).await, Some(0));
}

/// One CLI verb with (or without) a token: exit code, stdout, stderr.
fn cli_with(env: &Env, token: Option<&str>, args: &[&str]) -> (Option<i32>, String, String) {
    let mut c = env.cmd(args);
    c.env_remove("FLOTILLA_API").env_remove("FLOTILLA_API_TOKEN_FILE");
    match token {
        Some(t) => c.env("FLOTILLA_API_TOKEN", t),
        None => c.env_remove("FLOTILLA_API_TOKEN"),
    };
    let out = c.output().unwrap();
    (out.status.code(), support::text(&out.stdout), support::text(&out.stderr))
}

/// The CLI on a running daemon finds its API through the state directory: `status` shows what only
/// the daemon knows (the last decision), `group` and `member` steer it with an admin token and are
/// refused without one. With the daemon stopped, settings are saved in the store and one-shot
/// actions say they need a daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_steers_a_running_daemon_and_the_store_when_none_runs() {
    let mut env = Env::serial();
    let api = support::free_port();
    let cfg = config(&env, api);
    let yaml = std::fs::read_to_string(&cfg).unwrap().replace("cooldown_down: 0s", "cooldown_down: 300s");
    std::fs::write(&cfg, yaml).unwrap();
    let daemon = env.spawn(&["run", "-c", &cfg], "run.log", None);
    wait_until(Duration::from_secs(30), "web_1", || env.running_members("web").len() == 1).await;

    // Status through the API: the live shape and the last decision.
    let mut said = cli_with(&env, Some(READ), &["status"]);
    for _ in 0..20 {
        if said.1.contains("last decision") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        said = cli_with(&env, Some(READ), &["status"]);
    }
    let (code, out, err) = said;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("scale mode, threshold policy, 1 counted (min 1, max 3)"), "{out}");
    assert!(out.contains("last decision") && out.contains("[metrics] cpu="), "{out}");
    // Without a token: said, and the store is read instead.
    let (code, out, err) = cli_with(&env, None, &["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("the daemon refused (401)") && err.contains("reading the store instead"), "{err}");
    assert!(out.contains("group web (1 member(s)") && !out.contains("last decision"), "{out}");

    // Steering: refused with a read token, done with the admin one.
    let (code, _, err) = cli_with(&env, Some(READ), &["group", "pause", "web"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("refused (403)") && err.contains("admin token"), "{err}");
    let (code, out, err) = cli_with(&env, Some(ADMIN), &["group", "pause", "web"]);
    assert_eq!((code, out.trim()), (Some(0), "web: pause done"), "{err}");
    assert!(cli_with(&env, Some(READ), &["status"]).1.contains("PAUSED by an operator"));
    cli_with(&env, Some(ADMIN), &["group", "resume", "web"]);
    let (code, out, err) = cli_with(&env, Some(ADMIN), &["group", "desired", "web", "3"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("queued: desired 3"), "{out}");
    wait_until(Duration::from_secs(30), "three members", || env.member_names("web").len() == 3).await;
    let (code, _, err) = cli_with(&env, Some(ADMIN), &["group", "desired", "web", "9"]);
    assert!(code != Some(0) && err.contains("refused (409)") && err.contains("9"), "{err}");
    assert_eq!(cli_with(&env, Some(ADMIN), &["member", "protect", "web", "web_1"]).0, Some(0));
    let (code, _, err) = cli_with(&env, Some(ADMIN), &["member", "drain", "web", "ghost"]);
    assert!(code != Some(0) && err.contains("refused (404)") && err.contains("ghost"), "{err}");
    assert_eq!(cli_with(&env, Some(ADMIN), &["member", "drain", "web", "web_2"]).0, Some(0));
    wait_until(Duration::from_secs(30), "web_2 drained", || env.member_names("web") == ["web_1", "web_3"]).await;
    assert_eq!(env.stop(daemon).await, Some(0));
    assert!(!env.path().join("state/api.url").exists(), "the daemon withdrew its address");

    // No daemon: settings go to the store, one-shot actions need a daemon.
    let (code, out, err) = cli_with(&env, None, &["group", "pause", "web"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("web: pause saved in") && out.contains("no daemon runs"), "{out}");
    let (code, _, err) = cli_with(&env, None, &["member", "drain", "web", "web_1"]);
    assert!(code != Some(0) && err.contains("no daemon runs on") && err.contains("drain web_1"), "{err}");
    let (code, _, err) = cli_with(&env, None, &["member", "protect", "web", "ghost"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("MEMBER: no member `ghost` in group `web`"), "{err}");
    let (code, _, err) = cli_with(&env, None, &["group", "pause", "nope"]);
    assert!(code == Some(2) && err.contains("GROUP: no group `nope`"), "{err}");
    let out = cli_with(&env, None, &["status"]).1;
    assert!(out.contains("PAUSED by an operator") && out.contains("web_1 (protected)"), "{out}");
    assert!(out.contains("operator (offline): pause"), "{out}");
    // A started daemon honours what was saved: it stays paused.
    let daemon = env.spawn(&["run", "-c", &cfg], "run2.log", None);
    wait_until(Duration::from_secs(30), "the API", || env.path().join("state/api.url").exists()).await;
    assert_eq!(call(api, "GET", "/api/v1/groups/web", Some(READ), None).await.body["paused"], true);
    assert_eq!(env.stop(daemon).await, Some(0));
}

/// `api.tls`: the daemon serves HTTPS with the configured certificate; the CLI verifies it (refused
/// without the certificate to trust, fine with it), plain HTTP gets no answer, and a key that does
/// not fit is a config error naming the field. `/config` shows what the daemon runs by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_configured_certificate_and_the_effective_config() {
    let mut env = Env::serial();
    let api = support::free_port();
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = env.file("api.crt", &c.cert.pem());
    let key = env.private_file("api.key", &c.key_pair.serialize_pem());
    let cfg = config(&env, api);
    let yaml = std::fs::read_to_string(&cfg).unwrap().replacen(
        "api:\n",
        &format!("api:\n  tls: {{ cert: {}, key: {} }}\n", cert.display(), key.display()),
        1,
    );
    std::fs::write(&cfg, &yaml).unwrap();

    // A key from another certificate: refused before anything starts, naming the field.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let wrong_key = env.file("other.key", &other.key_pair.serialize_pem());
    let bad = env.file("bad.yaml", &yaml.replace(&key.display().to_string(), &wrong_key.display().to_string()));
    let out = env.run(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(support::text(&out.stderr).contains("api.tls.key:"), "{}", support::text(&out.stderr));

    let daemon = env.spawn(&["run", "-c", &cfg], "run.log", None);
    wait_until(Duration::from_secs(30), "web_1", || env.running_members("web").len() == 1).await;
    assert!(env.log("run.log").contains(&format!("API at https://{api}/api/v1")), "{}", env.log("run.log"));
    // Plain HTTP to the TLS port: no HTTP answer.
    let plain = call(api, "GET", "/api/v1/groups", Some(READ), None).await;
    assert_eq!(plain.status, 0, "{}", plain.head);

    let status = |ca: Option<&std::path::Path>| {
        let mut c = env.cmd(&["status"]);
        c.env("FLOTILLA_API_TOKEN", READ).env_remove("FLOTILLA_API").env_remove("FLOTILLA_API_TOKEN_FILE");
        match ca {
            Some(p) => c.env("FLOTILLA_API_CA", p),
            None => c.env_remove("FLOTILLA_API_CA"),
        };
        let out = c.output().unwrap();
        (support::text(&out.stdout), support::text(&out.stderr))
    };
    // Not trusted: the CLI says why and reads the store.
    let (out, err) = status(None);
    assert!(err.contains("does not answer") && err.to_lowercase().contains("certificate"), "{err}");
    assert!(!out.contains("last decision"), "{out}");
    // Trusted: through the API.
    let (mut out, mut err) = status(Some(&cert));
    for _ in 0..20 {
        if out.contains("last decision") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        (out, err) = status(Some(&cert));
    }
    assert!(out.contains("last decision"), "{out}\n{err}");

    // The effective config, over HTTPS with the same trust.
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(c.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let get = |token: Option<&'static str>| {
        let mut r = http.get(format!("https://{api}/api/v1/config"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(get(None).await.unwrap().status(), 401);
    let v: Value = get(Some(READ)).await.unwrap().json().await.unwrap();
    assert_eq!(v["file"], cfg.as_str(), "{v}");
    assert_eq!(v["source"]["api"]["tls"]["key"], key.display().to_string(), "where the key is, not what: {v}");
    let g = &v["groups"][0];
    assert_eq!((g["name"].as_str(), g["min"].as_u64(), g["max"].as_u64()), (Some("web"), Some(1), Some(3)), "{v}");
    assert_eq!((g["policy"]["kind"].as_str(), g["policy"]["high"].as_f64()), (Some("threshold"), Some(70.0)), "{v}");
    assert_eq!(g["interval_ms"], 500, "{v}");
    assert_eq!(g["victim"], "oldest", "a default filled in: {v}");
    assert_eq!((v["api"]["tls"].as_bool(), v["api"]["tokens"].as_u64()), (Some(true), Some(2)), "{v}");
    assert!(!v.to_string().contains(ADMIN) && !v.to_string().contains(READ), "no token in {v}");
    assert_eq!(env.stop(daemon).await, Some(0));
}

/// Check-ins (seed 004): a member that reports in stays; one that says it fails is replaced, new
/// before old; one that stays silent past `every` (once older than its grace) is replaced too. A
/// `checkin` token may check in and do nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_check_in_stay_and_silent_or_failing_ones_are_replaced() {
    const CHECKIN: &str = "checkin-token-0123456789abcdef";
    let mut env = Env::serial();
    let api = support::free_port();
    let cfg = config(&env, api);
    let tokens = env.path().join("api.tokens");
    let mut t = std::fs::read_to_string(&tokens).unwrap();
    t.push_str(&format!("checkin {CHECKIN}\n"));
    std::fs::write(&tokens, t).unwrap();
    let yaml = std::fs::read_to_string(&cfg).unwrap().replace("cooldown_down: 0s", "cooldown_down: 300s")
        + "    checkin: { every: 2s, grace: 3s }\n";
    std::fs::write(&cfg, yaml).unwrap();
    let daemon = env.spawn(&["run", "-c", &cfg], "run.log", None);
    wait_until(Duration::from_secs(30), "web_1", || env.running_members("web").len() == 1).await;
    let check_in = |member: &'static str, body: Option<&'static str>| async move {
        call(api, "POST", &format!("/api/v1/groups/web/members/{member}/check-in"), Some(CHECKIN), body).await
    };

    // The check-in token: checks in, reads nothing.
    is_problem(&call(api, "GET", "/api/v1/groups", Some(CHECKIN), None).await, 403, "checkin");
    let r = check_in("web_1", None).await;
    assert_eq!(
        (r.status, r.body["ok"].as_bool(), r.body["every_ms"].as_u64()),
        (200, Some(true), Some(2000)),
        "{}",
        r.body
    );
    is_problem(&check_in("ghost", None).await, 404, "ghost");
    is_problem(&check_in("web_1", Some(r#"{"ok":"yes"}"#)).await, 400, "field `ok`");
    let long = Box::leak(format!(r#"{{"note":"{}"}}"#, "x".repeat(201)).into_boxed_str());
    is_problem(&check_in("web_1", Some(long)).await, 400, "field `note`");

    // Reporting in every 500 ms for 6 s (past grace and `every`): it stays.
    for _ in 0..12 {
        assert_eq!(check_in("web_1", None).await.status, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(env.member_names("web"), ["web_1"], "a member checking in was replaced:\n{}", env.log("run.log"));
    let r = call(api, "GET", "/api/v1/groups/web/members/web_1", Some(READ), None).await;
    assert_eq!(r.body["checked_in_ok"], true, "{}", r.body);
    assert!(r.body["checked_in_ms"].as_u64().is_some(), "{}", r.body);

    // It says it fails: replaced, new before old.
    let r = check_in("web_1", Some(r#"{"ok":false,"note":"disk full"}"#)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until(Duration::from_secs(15), "web_1 replaced", || env.member_names("web") == ["web_2"]).await;
    // web_2 never checks in: once older than its grace it is replaced too.
    wait_until(Duration::from_secs(20), "silent web_2 replaced", || env.member_names("web") == ["web_3"]).await;

    let r = call(api, "GET", "/api/v1/events?group=web&limit=200", Some(READ), None).await;
    let said: Vec<&str> = r.body["events"].as_array().unwrap().iter().filter_map(|e| e["message"].as_str()).collect();
    assert!(said.contains(&"check-in: web_1 checked in"), "{said:?}");
    assert!(said.contains(&"check-in: web_1 checked in failing: disk full"), "{said:?}");
    let r = call(api, "GET", "/api/v1/groups/web/operations?limit=20", Some(READ), None).await;
    let replaced = r.body.as_array().unwrap().iter().filter(|o| o["kind"] == "replace" && o["state"] == "done").count();
    assert!(replaced >= 2, "{}", r.body);
    assert_eq!(env.live_member_names().len(), 1, "nothing left behind: {:?}", env.live_member_names());
    assert_eq!(env.stop(daemon).await, Some(0));
}
