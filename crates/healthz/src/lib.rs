//! The one readiness probe of the providers: `GET /healthz` over plain HTTP/1.1; ready means
//! status 200. A ready file or a started domain only says a port is bound; a 200 says the server
//! answers. A member that names itself in `x-flotilla-member` (the bundled workload does) must name
//! the member being probed: another name means the port belongs to someone else (a stale record).
//! The lab guest's busybox httpd names nobody and answers `ok`.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Replies are tiny; refuse to buffer more than this.
const MAX_REPLY: u64 = 64 * 1024;

/// Ok if `http://<addr>/healthz` answers 200 within `timeout`.
pub async fn check(addr: &str, name: &str, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, probe(addr)).await {
        Err(_) => Err(format!("GET http://{addr}/healthz did not answer within {timeout:?}")),
        Ok(Err(e)) => Err(format!("GET http://{addr}/healthz: {e}")),
        Ok(Ok(reply)) => judge(&reply, name).map_err(|e| format!("GET http://{addr}/healthz: {e}")),
    }
}

async fn probe(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.take(MAX_REPLY).read_to_end(&mut raw).await?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

fn judge(reply: &str, name: &str) -> Result<(), String> {
    let head = reply.split("\r\n\r\n").next().unwrap_or("");
    let mut lines = head.lines();
    let first = lines.next().unwrap_or("");
    if first.split_whitespace().nth(1) != Some("200") {
        return Err(if first.is_empty() { "empty reply".into() } else { format!("answered {first:?}") });
    }
    let member = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(flotilla_model::vocab::MEMBER_HEADER))
        .map(|(_, v)| v.trim());
    match member {
        Some(m) if m != name => Err(format!("answered for member {m:?}, not {name:?}")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_status_and_member() {
        assert_eq!(judge("HTTP/1.0 200 OK\r\nContent-type: text/plain\r\n\r\nok\n", "a"), Ok(()));
        assert!(judge("HTTP/1.1 200 OK\r\nx-flotilla-member: b\r\n\r\n", "a").is_err());
        assert!(judge("HTTP/1.1 404 Not Found\r\n\r\n", "a").unwrap_err().contains("404"));
        assert!(judge("", "a").is_err());
    }

    #[tokio::test]
    async fn closed_port_is_an_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        assert!(check(&addr, "a", Duration::from_secs(2)).await.is_err());
    }
}
