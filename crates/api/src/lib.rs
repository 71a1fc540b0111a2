//! The daemon's REST API, under `/api/v1`: what the controller and its store know (groups,
//! members, events, operations) and the operator's controls (pause, dry-run, protect). A thin
//! shell: every read goes to the store or the controller's status, every change through
//! [`Controller::update_controls`], which the group's next pass obeys.
//!
//! - Auth (`flotilla_listener::auth`): bearer tokens with scopes `read` and `admin`; every change needs `admin`.
//! - Errors are RFC 9457 `application/problem+json` ([`Problem`]), naming the field at fault.
//! - `/api/v1/openapi.json` is generated from the handlers and types here ([`ApiDoc`]).
//! - Served with the listener limits every Flotilla listener has (`flotilla-listener`).

mod actions;
pub mod config;
mod live;
mod problem;
pub mod receivers;
pub mod report;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use flotilla_controller::Controller;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use flotilla_listener::auth::{Scope, Tokens, MIN_TOKEN_LEN};
pub use problem::Problem;
pub use routes::ApiDoc;

/// The Prometheus text exposition, rendered at each scrape of `/metrics`.
pub type Exposition = Arc<dyn Fn() -> String + Send + Sync>;

/// Where and for whom the API serves.
#[derive(Clone)]
pub struct ApiSettings {
    pub listen: SocketAddr,
    pub tokens: Tokens,
    /// Reads without a token, from loopback only.
    pub anonymous_read: bool,
    /// What `/metrics` serves (read scope, like every read); none: 404.
    pub metrics: Option<Exposition>,
    /// HTTPS, when a certificate is configured.
    pub tls: Option<flotilla_listener::tls::TlsAcceptor>,
    /// The file the daemon runs from, for `/config`.
    pub config: Option<config::ConfigSource>,
    /// Signs and checks receiver URLs; none: no receivers.
    pub receiver_key: Option<receivers::ReceiverKey>,
}

/// What the handlers share.
pub(crate) struct Shared {
    pub controller: Arc<Controller>,
    pub tokens: Tokens,
    pub anonymous_read: bool,
    pub metrics: Option<Exposition>,
    pub config: Option<config::ConfigSource>,
    pub listen: SocketAddr,
    pub tls: bool,
    pub receiver_key: Option<receivers::ReceiverKey>,
    /// The newest stream snapshot and the change count it was built at: every connected dashboard
    /// shares it instead of building its own (built once per change, not once per stream).
    pub snapshot: tokio::sync::Mutex<Option<(u64, axum::response::sse::Event)>>,
    /// Turns true when the daemon stops: live streams end (a graceful shutdown waits for them).
    pub stop: watch::Receiver<bool>,
}

/// The API's routes over `controller`; live streams end when `stop` turns true.
pub fn router(controller: Arc<Controller>, settings: &ApiSettings, stop: watch::Receiver<bool>) -> Router {
    routes::router(Arc::new(Shared {
        controller,
        tokens: settings.tokens.clone(),
        anonymous_read: settings.anonymous_read,
        metrics: settings.metrics.clone(),
        config: settings.config.clone(),
        listen: settings.listen,
        tls: settings.tls.is_some(),
        receiver_key: settings.receiver_key.clone(),
        snapshot: tokio::sync::Mutex::new(None),
        stop,
    }))
}

/// Binds the API's listener (so a taken port is an error at start, not later).
pub async fn bind(settings: &ApiSettings) -> std::io::Result<TcpListener> {
    TcpListener::bind(settings.listen).await
}

/// Serves the API on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    controller: Arc<Controller>,
    settings: ApiSettings,
    stop: watch::Receiver<bool>,
) {
    let app = router(controller, &settings, stop.clone());
    let tls = settings.tls.clone();
    flotilla_listener::serve("api", listener, app, flotilla_listener::Limits::default(), tls, stop).await;
}
