//! Serving an axum [`Router`] with the limits a listener open to a network needs, so every
//! listener Flotilla runs (the metrics push endpoint, the API) has them, the same way:
//!
//! - a request head must arrive within [`Limits::header_timeout`] (a client that trickles its
//!   headers, or opens a connection and says nothing, is cut off);
//! - [`read_body`] reads at most `limit` bytes within [`Limits::body_timeout`] (413 / 408);
//! - at most [`Limits::max_connections`] connections at once; more are closed at accept, and the
//!   refusals are logged at most once per [`Limits::log_every`] with a count ([`Throttled`]);
//! - a connection lives at most [`Limits::max_connection_age`], then is closed between requests;
//! - on stop, connections finish the request in flight and close;
//! - with [`tls::Tls`], every connection is TLS; its handshake must end within the header timeout.
//!
//! Handlers see the peer address as axum's `ConnectInfo<SocketAddr>`.

pub mod auth;
pub mod tls;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::connect_info::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

/// The bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub max_connection_age: Duration,
    pub log_every: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connection_age: Duration::from_secs(600),
            log_every: Duration::from_secs(10),
        }
    }
}

/// A warning logged at most once per period; the others are counted and reported with the next.
#[derive(Debug)]
pub struct Throttled {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttled {
    pub fn new(every: Duration) -> Self {
        Throttled { every, state: Mutex::new((None, 0)) }
    }

    /// Whether to log now, and how many were held back since the last one logged.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match st.0 {
            Some(last) if now.duration_since(last) < self.every => {
                st.1 += 1;
                None
            }
            _ => {
                let held = std::mem::take(&mut st.1);
                st.0 = Some(now);
                Some(held)
            }
        }
    }
}

/// Why a body could not be read: the response to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    TooSlow,
    Broken,
}

impl BodyError {
    pub fn status(self) -> StatusCode {
        match self {
            BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TooSlow => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads at most `limit` bytes of body within `timeout`. A declared length over the limit is
/// refused before anything is read.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize, timeout: Duration) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(BodyError::TooSlow),
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(if e.into_inner().is::<http_body_util::LengthLimitError>() {
            BodyError::TooLarge
        } else {
            BodyError::Broken
        }),
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves `app` on `listener` until `stop` turns true, within `limits`, over TLS when `tls` is
/// given. `name` is for the logs.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<tls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refused = Throttled::new(limits.log_every);
    let accept_failed = Throttled::new(limits.log_every);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    if let Some(held) = accept_failed.allow(Instant::now()) {
                        tracing::warn!(listener = name, error = %e, held_back = held, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            if let Some(held) = refused.allow(Instant::now()) {
                tracing::warn!(listener = name, %peer, max = limits.max_connections, held_back = held,
                    "connection refused: at the connection limit");
            }
            drop(stream);
            continue;
        };
        let app = app.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let _permit = permit;
            match tls {
                None => connection(name, stream, peer, app, limits, stop).await,
                Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => connection(name, stream, peer, app, limits, stop).await,
                    Ok(Err(e)) => tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(listener = name, %peer, "TLS handshake too slow"),
                },
            }
        });
        // Reap finished connection tasks as we go.
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// One client connection (plain or TLS), served until it ends, ages out or the listener stops.
async fn connection<I>(
    name: &'static str,
    io: I,
    peer: std::net::SocketAddr,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move {
            let res = tower_service::Service::call(&mut app, req.map(Body::new)).await;
            Ok::<_, Infallible>(res.unwrap_or_else(|e| match e {}))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let age = tokio::time::sleep(limits.max_connection_age);
    tokio::pin!(age);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(listener = name, %peer, error = %e, "connection ended");
                }
                break;
            }
            _ = &mut age, if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = stopped(&mut stop), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
