//! The readiness probe: `GET /healthz` on the member's port over plain HTTP/1.1.
//!
//! A ready file only says the socket is bound; a 200 from `/healthz` says the server answers.
//! The workload names itself in `x-flotilla-member`: a different name means the port belongs to
//! someone else (a stale ready file), which must not count as ready.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Replies are tiny; refuse to buffer more than this.
const MAX_REPLY: u64 = 64 * 1024;

/// Ok if `127.0.0.1:port/healthz` answers 200 (from `name`, when it says who it is) within `timeout`.
pub async fn check(port: u16, name: &str, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, probe(port)).await {
        Err(_) => Err(format!("/healthz did not answer within {timeout:?}")),
        Ok(Err(e)) => Err(format!("/healthz: {e}")),
        Ok(Ok(reply)) => judge(&reply, name),
    }
}

async fn probe(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.take(MAX_REPLY).read_to_end(&mut raw).await?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

fn judge(reply: &str, name: &str) -> Result<(), String> {
    let head = reply.split("\r\n\r\n").next().unwrap_or("");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).unwrap_or("");
    if status != "200" {
        return Err(format!("/healthz answered {:?}", lines_first(reply)));
    }
    let member = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("x-flotilla-member"))
        .map(|(_, v)| v.trim());
    match member {
        Some(m) if m != name => Err(format!("/healthz answered for member {m:?}, not {name:?}")),
        _ => Ok(()),
    }
}

fn lines_first(reply: &str) -> &str {
    reply.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_status_and_member() {
        assert_eq!(judge("HTTP/1.1 200 OK\r\nx-flotilla-member: a\r\n\r\nok", "a"), Ok(()));
        assert_eq!(judge("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", "a"), Ok(()));
        assert!(judge("HTTP/1.1 200 OK\r\nX-Flotilla-Member: b\r\n\r\nok", "a").unwrap_err().contains("\"b\""));
        assert!(judge("HTTP/1.1 503 Service Unavailable\r\n\r\n", "a").unwrap_err().contains("503"));
        assert!(judge("", "a").is_err());
    }

    #[tokio::test]
    async fn closed_port_is_an_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        assert!(check(port, "a", Duration::from_secs(2)).await.is_err());
    }
}
