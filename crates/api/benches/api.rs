//! What the API costs at size (issue 11's benchmark; not a test, nothing asserted): 100 groups ×
//! 10 members on the real controller and a SQLite file holding 100,000 events, served by the real
//! API on 127.0.0.1. Prints latency percentiles for `GET /groups`, an events page and a deep events
//! page (one client, then eight), and the daemon CPU each connected dashboard stream costs while
//! the groups change four times a second.
//!
//! `cargo bench -p flotilla-api --bench api` (about a minute).

use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use flotilla_controller::{Controller, ControllerParts, Options};
use flotilla_lb::RecordingBalancer;
use flotilla_model::{Event, EventKind, GroupId, GroupSpec, Mode, Store, SystemClock};
use flotilla_store_sqlite::SqliteStore;
use flotilla_testkit::fake_provider::FakeProvider;
use flotilla_testkit::scripted_metrics::ScriptedMetrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GROUPS: usize = 100;
const MEMBERS: u32 = 10;
const EVENTS: usize = 100_000;
const TOKEN: &str = "bench-read-token-0123456789";

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(bench());
}

/// The process's CPU seconds so far (user + system), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // The kernel's USER_HZ is 100 on every Linux we run on.
    ticks / 100.0
}

async fn bench() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap());
    let clock = SystemClock;
    let provider = Arc::new(FakeProvider::new(clock));
    let metrics = Arc::new(ScriptedMetrics::new());
    metrics.set_all(40.0, 30.0);
    let groups: Vec<GroupSpec> = (0..GROUPS)
        .map(|i| {
            let mut g = GroupSpec::example(&format!("g{i:03}"));
            (g.mode, g.min, g.max) = (Mode::Scale, MEMBERS, MEMBERS * 2);
            g
        })
        .collect();
    let ids: Vec<GroupId> = groups.iter().map(|g| g.id.clone()).collect();
    let controller = Controller::new(ControllerParts {
        store: store.clone(),
        provider,
        sources: vec![metrics],
        balancer: Arc::new(RecordingBalancer::new()),
        clock: Arc::new(clock),
        groups,
        options: Options::default(),
    });

    // Members through the real path (a reconcile creates the group's min), then samples.
    let t = Instant::now();
    controller.recover().await.unwrap();
    for id in &ids {
        controller.reconcile(id).await.unwrap();
        controller.reconcile(id).await.unwrap();
    }
    let members: usize = futures_count(&store, &ids).await;
    println!("setup: {GROUPS} groups, {members} members in {:.1}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let now = flotilla_model::Clock::now(&clock);
    for n in 0..EVENTS {
        let group = ids[n % GROUPS].clone();
        let message = format!("bench event {n}: scale-out: scale out by 1 (cpu/mem max 91.0 >= 80 for 4 samples)");
        let at = flotilla_model::Timestamp::from_millis(now.as_millis() - (EVENTS - n) as u64 * 10);
        let e = Event { at, group, kind: EventKind::Info, message, data: None };
        store.record_event(&e).await.unwrap();
    }
    println!("setup: {EVENTS} events written in {:.1}s", t.elapsed().as_secs_f64());

    let settings = flotilla_api::ApiSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        tokens: flotilla_api::Tokens::parse(&format!("read {TOKEN}")).unwrap(),
        anonymous_read: false,
        metrics: None,
        tls: None,
        config: None,
        receiver_key: None,
    };
    let listener = flotilla_api::bind(&settings).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(flotilla_api::serve(listener, controller.clone(), settings, rx));

    let deep = format!("/api/v1/events?group=g042&limit=100&before_ms={}", now.as_millis() - (EVENTS as u64 / 2) * 10);
    println!("\n| request | clients | requests | p50 ms | p99 ms | max ms | req/s |");
    println!("|---|---|---|---|---|---|---|");
    for (path, n) in [
        ("/api/v1/groups".to_string(), 200),
        ("/api/v1/groups/g042".to_string(), 1000),
        ("/api/v1/events?limit=100".to_string(), 1000),
        (deep.clone(), 1000),
    ] {
        for clients in [1, 8] {
            let (lat, took) = load(addr, &path, n, clients).await;
            let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
            println!(
                "| `GET {}` | {clients} | {n} | {:.2} | {:.2} | {:.2} | {:.0} |",
                path.replace("/api/v1", ""),
                pct(0.50),
                pct(0.99),
                pct(1.0),
                n as f64 / took.as_secs_f64()
            );
        }
    }

    // Live streams: the daemon's CPU with 0, 1, 10 and 50 dashboards connected while the groups
    // change four times a second (each change wakes every stream; each sends at most 2/s).
    println!(
        "\n| streams | daemon CPU % (2 cores = 200) | per stream, CPU % | snapshots received | KiB per snapshot |"
    );
    println!("|---|---|---|---|---|");
    let mut base = 0.0;
    for streams in [0usize, 1, 10, 50] {
        let (cpu, snapshots, bytes) = streams_cost(addr, &controller, &ids, streams, Duration::from_secs(8)).await;
        if streams == 0 {
            base = cpu;
        }
        let per = if streams == 0 { 0.0 } else { (cpu - base) / streams as f64 };
        let kib = if snapshots == 0 { 0.0 } else { bytes as f64 / snapshots as f64 / 1024.0 };
        println!("| {streams} | {cpu:.1} | {per:.2} | {snapshots} | {kib:.0} |");
    }
    let _ = stop.send(true);
    let _ = server.await;
}

async fn futures_count(store: &Arc<SqliteStore>, ids: &[GroupId]) -> usize {
    let mut n = 0;
    for id in ids {
        n += store.instances(id).await.unwrap().len();
    }
    n
}

/// `n` GETs of `path` over `clients` keep-alive connections; sorted latencies and the wall time.
async fn load(addr: std::net::SocketAddr, path: &str, n: usize, clients: usize) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let per = n / clients;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let path = path.to_string();
            tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
                let mut lat = Vec::with_capacity(per);
                let mut buf = vec![0u8; 1 << 16];
                for _ in 0..per {
                    let t = Instant::now();
                    s.write_all(req.as_bytes()).await.unwrap();
                    read_response(&mut s, &mut buf).await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let took = started.elapsed();
    all.sort();
    (all, took)
}

/// Reads one response with a Content-Length body (what axum's Json answers), asserting a 200.
async fn read_response(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) {
    let mut have = 0;
    loop {
        if have == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = s.read(&mut buf[have..]).await.unwrap();
        assert!(n > 0, "connection closed");
        have += n;
        let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = std::str::from_utf8(&buf[..end]).unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .expect("content-length");
        while have < end + 4 + len {
            if have == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            let n = s.read(&mut buf[have..]).await.unwrap();
            assert!(n > 0, "connection closed mid-body");
            have += n;
        }
        return;
    }
}

/// The process CPU % over `window` with `streams` SSE readers connected and a change every 250 ms;
/// with the snapshots received and their bytes.
async fn streams_cost(
    addr: std::net::SocketAddr,
    controller: &Arc<Controller>,
    ids: &[GroupId],
    streams: usize,
    window: Duration,
) -> (f64, usize, usize) {
    let (done_tx, done) = tokio::sync::watch::channel(false);
    let readers: Vec<_> = (0..streams)
        .map(|_| {
            let mut done = done.clone();
            tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                let req = format!(
                    "GET /api/v1/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
                );
                s.write_all(req.as_bytes()).await.unwrap();
                let (mut snapshots, mut bytes) = (0usize, 0usize);
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    tokio::select! {
                        r = s.read(&mut buf) => match r {
                            Ok(n) if n > 0 => {
                                bytes += n;
                                snapshots += buf[..n].windows(6).filter(|w| w == b"data: " || w == b"\ndata:").count();
                            }
                            _ => break,
                        },
                        _ = done.changed() => break,
                    }
                }
                (snapshots, bytes)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut n = 0usize;
    while t0.elapsed() < window {
        tick.tick().await;
        let g = &ids[n % ids.len()];
        controller.update_controls(g, "bench", |_| {}).await.unwrap();
        n += 1;
    }
    let cpu = (cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    let _ = done_tx.send(true);
    let (mut snapshots, mut bytes) = (0, 0);
    for r in readers {
        let (s, b) = r.await.unwrap();
        snapshots += s;
        bytes += b;
    }
    (cpu, snapshots, bytes)
}
