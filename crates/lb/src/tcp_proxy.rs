//! The L4 proxy: each client connection gets one backend connection and bytes are copied both
//! ways. Selection, queueing, connect-retry and passive ejection are the HTTP proxy's; in-flight
//! means open connections, and a drain past its deadline (or a removal) closes them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::backend::Backend;
use crate::group::{Refusal, Shared};
use crate::select::Tried;

pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let sh = shared.clone();
    shared
        .accept_loop(listener, move |stream, _peer| {
            let sh = sh.clone();
            async move { connection(sh, stream).await }
        })
        .await;
}

async fn connection(shared: Arc<Shared>, mut client: TcpStream) {
    let start = Instant::now();
    let cfg = &shared.cfg;
    let hint = shared.conn_seq.fetch_add(1, Ordering::Relaxed);
    let mut snap = shared.snapshot();
    let mut tried = Tried::default();
    let mut queue_deadline = None;
    let mut extra = 0u32;
    let mut last: Option<Arc<Backend>> = None;
    let (attempt, mut upstream) = loop {
        let attempt = match shared.acquire(&mut snap, &tried, hint, &mut queue_deadline).await {
            Ok(a) => a,
            Err(refusal) => {
                match (refusal, last) {
                    (Refusal::Exhausted, Some(b)) => b.record(start.elapsed(), true, Instant::now()),
                    _ => shared.record_local(start, true),
                }
                return; // closing the client connection is all L4 can say
            }
        };
        let backend = attempt.backend().clone();
        match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(backend.addr)).await {
            Ok(Ok(s)) => break (attempt, s),
            Ok(Err(_)) | Err(_) => {
                backend.eject("connect failed");
                drop(attempt);
                if extra >= cfg.retries {
                    backend.record(start.elapsed(), true, Instant::now());
                    return;
                }
                extra += 1;
                backend.count_retry();
                tried.push(&backend);
                last = Some(backend);
            }
        }
    };
    let _ = upstream.set_nodelay(true);
    let backend = attempt.backend().clone();
    let mut close = backend.subscribe_close();
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = r {
                tracing::debug!(backend = %backend.id, error = %e, "tcp connection ended with an error");
            }
        }
        _ = crate::group::until_set(&mut close) => {
            tracing::debug!(backend = %backend.id, "tcp connection closed by drain deadline or removal");
        }
    }
    backend.record(start.elapsed(), false, Instant::now());
    drop(attempt);
}
