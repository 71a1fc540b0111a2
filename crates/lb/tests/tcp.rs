//! TCP (L4) mode: bytes round-trip, connections spread, refused backends are skipped, a drain
//! past its deadline closes open connections.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use flotilla_lb::{GroupBalancer, LbConfig, Selection};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP backend that greets each connection with its id and a newline, then echoes.
struct Echo {
    id: String,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Echo {
    async fn start(id: &str) -> Echo {
        let listener = TcpListener::bind(localhost()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let greeting = format!("{id}\n");
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut s, _)) = accepted else { continue };
                        let greeting = greeting.clone();
                        conns.spawn(async move {
                            if s.write_all(greeting.as_bytes()).await.is_err() {
                                return;
                            }
                            let (mut r, mut w) = s.split();
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Echo { id: id.to_string(), addr, task }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn tcp_cfg() -> LbConfig {
    let mut cfg = LbConfig::tcp(localhost());
    cfg.health.interval = Duration::from_millis(100);
    cfg.connect_timeout = Duration::from_secs(1);
    cfg
}

async fn tcp_balancer(cfg: LbConfig, backends: &[&Echo]) -> Arc<GroupBalancer> {
    let lb = GroupBalancer::bind("tcp".into(), cfg).await.unwrap();
    for b in backends {
        lb.add_backend(b.id.clone(), b.addr, 1);
        assert!(lb.wait_healthy(&b.id, Duration::from_secs(10)).await);
    }
    lb
}

/// Connects through the balancer and returns the greeting (who serves) and the stream.
async fn open(lb: SocketAddr) -> (String, BufReader<TcpStream>) {
    let s = TcpStream::connect(lb).await.unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line)).await.unwrap().unwrap();
    (line.trim().to_string(), r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_round_trip_through_the_l4_proxy() {
    let e = Echo::start("e1").await;
    let lb = tcp_balancer(tcp_cfg(), &[&e]).await;
    let (who, mut s) = open(lb.local_addr()).await;
    assert_eq!(who, "e1");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = s.get_mut().split();
    let send = async {
        w.write_all(&payload).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut back = Vec::new();
    let recv = r.read_to_end(&mut back);
    let (_, n) = tokio::join!(send, recv);
    n.unwrap();
    assert_eq!(back, payload);
    drop(s);
    eventually("connection accounted", Duration::from_secs(5), || lb.backends()[0].inflight == 0).await;
    assert_eq!(lb.backends()[0].requests_total, 1);
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_spread_across_backends() {
    let (e1, e2) = (Echo::start("e1").await, Echo::start("e2").await);
    let mut cfg = tcp_cfg();
    cfg.selection = Selection::RoundRobin;
    let lb = tcp_balancer(cfg, &[&e1, &e2]).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut open_conns = Vec::new();
    for _ in 0..10 {
        let (who, s) = open(lb.local_addr()).await;
        *seen.entry(who).or_default() += 1;
        open_conns.push(s);
    }
    assert_eq!(seen.get("e1"), Some(&5), "{seen:?}");
    assert_eq!(seen.get("e2"), Some(&5), "{seen:?}");
    assert_eq!(lb.backends().iter().map(|b| b.inflight).sum::<u32>(), 10, "in-flight = open connections");
    drop(open_conns);
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_backend_is_skipped_and_ejected() {
    let (live, dead) = (Echo::start("live").await, Echo::start("dead").await);
    let mut cfg = tcp_cfg();
    // Slow checks: only the connect failure can find out that `dead` died.
    cfg.health.interval = Duration::from_secs(60);
    cfg.selection = Selection::RoundRobin;
    let lb = tcp_balancer(cfg, &[&live, &dead]).await;
    dead.task.abort();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..6 {
        let (who, _s) = open(lb.local_addr()).await;
        assert_eq!(who, "live");
    }
    let d = lb.backends().into_iter().find(|b| b.id == "dead").unwrap();
    assert!(!d.healthy, "{d:?}");
    assert!(lb.stats().retried_total >= 1);
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_drain_past_its_deadline_closes_open_connections() {
    let (e1, e2) = (Echo::start("e1").await, Echo::start("e2").await);
    let lb = tcp_balancer(tcp_cfg(), &[&e1]).await;
    let (who, mut held) = open(lb.local_addr()).await;
    assert_eq!(who, "e1");
    lb.add_backend("e2".into(), e2.addr, 1);
    assert!(lb.wait_healthy("e2", Duration::from_secs(10)).await);
    let drain = {
        let lb = lb.clone();
        tokio::spawn(async move { lb.drain("e1", Duration::from_millis(500)).await })
    };
    eventually("e1 draining", Duration::from_secs(5), || lb.backends().iter().any(|b| b.id == "e1" && b.draining))
        .await;
    let (who, s) = open(lb.local_addr()).await;
    assert_eq!(who, "e2", "new connections avoid the draining backend");
    drop(s);
    let report = drain.await.unwrap();
    assert!(!report.completed && report.inflight_left == 1, "{report:?}");
    // The held connection is closed by the balancer.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), held.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "connection closed after the drain deadline");
    lb.shutdown().await;
}
