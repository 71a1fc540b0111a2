//! R6: a configured secret (the push token) never appears where it is not meant to be: not in the
//! daemon's log (even when a client sends a wrong token), not in `flotilla status`, not in
//! `config check`, not in any file of the state directory; and the state directory is owner-only.

mod support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::{files_under, wait_until, Env};

const TOKEN: &str = "tok-5f1c9e-never-to-be-seen";
const WRONG: &str = "wrong-82ab-also-never-to-be-seen";

async fn post(addr: SocketAddr, token: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /v1/groups/web/samples HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_push_token_is_never_logged_shown_or_stored() {
    let mut env = Env::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tok = env.file("push.token", &format!("{TOKEN}\n"));
    let cfg = env.file(
        "f.yaml",
        &format!(
            "metrics:\n  sources: [local, push]\n  push: {{ listen: 127.0.0.1:{port}, token_file: {} }}\n\
             groups:\n  - name: web\n    mode: scale\n    min: 1\n    max: 2\n    interval: 500ms\n",
            tok.display()
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let checked = env.run(&["config", "check", cfg]);
    let pid = env.spawn(&["run", "-c", cfg], "run.log", None);
    wait_until(Duration::from_secs(30), "the first member", || env.member_names("web") == ["web_1"]).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ok = post(addr, TOKEN, r#"{"samples":[{"member":"web_1","cpu":42}]}"#).await;
    assert!(ok.starts_with("HTTP/1.1 202"), "{ok}");
    let refused = post(addr, WRONG, r#"{"samples":[{"member":"web_1","cpu":1}]}"#).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = env.ok(&["status", "--output", "json", "--events", "100"]);
    assert_eq!(env.stop(pid).await, Some(0));

    let state = env.path().join("state");
    let mut places: Vec<(String, String)> = vec![
        ("config check".into(), format!("{}{}", support::text(&checked.stdout), support::text(&checked.stderr))),
        ("the daemon's log".into(), env.log("run.log")),
        ("status".into(), status),
        ("the refusal".into(), refused),
    ];
    for f in files_under(&state) {
        places.push((f.display().to_string(), String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned()));
    }
    for (what, text) in &places {
        for secret in [TOKEN, WRONG] {
            assert!(!text.contains(secret), "{secret} appears in {what}");
        }
    }
    assert!(env.log("run.log").contains("metrics push refused"), "the refusal is logged, without the token");
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the state directory is owner-only");
    let db = std::fs::metadata(state.join("flotilla.db")).unwrap().permissions().mode() & 0o777;
    assert_eq!(db, 0o600, "the database is owner-only");
}
