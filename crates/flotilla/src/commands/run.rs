use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;
use flotilla_controller::Shutdown;

use crate::cli::RunArgs;
use crate::wiring;

pub async fn run(state_flag: Option<&Path>, args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = crate::config::load(&args.config)?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let state_dir = crate::state_dir::resolve(state_flag, config.state_dir.as_deref());
    let built = wiring::build(&config, &state_dir).await?;
    tracing::info!(state_dir = %state_dir.display(), groups = config.groups.len(), "flotilla controller starting");
    let api = match &config.api {
        Some(api) => {
            // `/config` shows the file as written, secrets redacted, beside the validated groups.
            let src = std::fs::read_to_string(&args.config).unwrap_or_default();
            let source = flotilla_api::config::ConfigSource {
                file: args.config.display().to_string(),
                source: flotilla_config::redact::redacted(&src),
            };
            Some(start_api(api, &built, Some(source)).await?)
        }
        None => None,
    };
    if let Some(api) = &api {
        // `flotilla status`, `group` and `member` on this state directory find the daemon here.
        crate::daemon::advertise(&state_dir, &api.url)
            .with_context(|| format!("cannot write {}", state_dir.join(crate::daemon::URL_FILE).display()))?;
    }
    let result = serve(built, args.stop_members).await;
    if let Some(api) = api {
        crate::daemon::withdraw(&state_dir);
        api.stop().await;
    }
    result
}

/// The API, its dashboard and `/metrics`, served beside the controller.
pub(crate) struct ApiHandle {
    pub addr: std::net::SocketAddr,
    /// `http://addr` or `https://addr`.
    pub url: String,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ApiHandle {
    /// Ends live streams, waits for requests in flight, and closes the listener.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

pub(crate) async fn start_api(
    api: &flotilla_config::ApiConfig,
    built: &wiring::Built,
    config: Option<flotilla_api::config::ConfigSource>,
) -> anyhow::Result<ApiHandle> {
    let exporter = crate::prom::Exporter {
        controller: built.controller.clone(),
        lb: built.lb.clone(),
        calls: built.calls.clone(),
    };
    let settings = flotilla_api::ApiSettings {
        listen: api.listen,
        tokens: api.tokens.clone(),
        anonymous_read: api.anonymous_read,
        metrics: Some(Arc::new(move || exporter.render())),
        tls: api.tls.as_ref().map(|t| t.acceptor.clone()),
        config,
        receiver_key: receiver_key(built)?,
    };
    let listener =
        flotilla_api::bind(&settings).await.with_context(|| format!("api.listen: cannot listen on {}", api.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if api.tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}");
    tracing::info!("API at {url}/api/v1 (OpenAPI: {url}/api/v1/openapi.json); dashboard at {url}/dashboard/");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(flotilla_api::serve(listener, built.controller.clone(), settings, rx));
    Ok(ApiHandle { addr, url, stop, task })
}

/// The daemon's receiver key (`<state>/receiver.key`, made on first use), when a group declares
/// alarms: their receiver URLs are signed with it.
fn receiver_key(built: &wiring::Built) -> anyhow::Result<Option<flotilla_api::receivers::ReceiverKey>> {
    if built.controller.groups().all(|g| g.alarms.is_empty()) {
        return Ok(None);
    }
    let path = built.state_dir.join("receiver.key");
    flotilla_api::receivers::ReceiverKey::load_or_create(&path)
        .map(Some)
        .with_context(|| format!("receiver key {}", path.display()))
}

/// Runs the loop until SIGINT/SIGTERM, then optionally deletes the members.
pub(crate) async fn serve(built: wiring::Built, stop_members: bool) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::default();
    let mut loop_task =
        tokio::spawn(flotilla_controller::run(built.controller.clone(), shutdown.clone(), Duration::from_secs(10)));
    tokio::select! {
        _ = super::shutdown_signal() => {
            tracing::info!("shutting down");
            shutdown.trigger();
            (&mut loop_task).await??;
        }
        res = &mut loop_task => res??,
    }
    let stopped = if stop_members {
        stop_all(&built).await
    } else {
        tracing::info!("members keep running; the next start re-adopts them (use --stop-members to delete them)");
        Ok(())
    };
    // The listeners close even when a deletion failed (the error is still the exit status).
    built.lb.shutdown().await;
    stopped?;
    Ok(ExitCode::SUCCESS)
}

/// Deletes every member of the configured groups through the controller's operations runner: each
/// is drained (while the balancer still serves) and deleted under a stored operation.
pub(crate) async fn stop_all(built: &wiring::Built) -> anyhow::Result<()> {
    for spec in built.controller.groups() {
        let members = built.provider.list(Some(&spec.id)).await?;
        if members.is_empty() {
            continue;
        }
        let victims: Vec<_> = members.iter().map(|m| m.id.clone()).collect();
        built.controller.perform(&spec.id, flotilla_model::OpKind::Stop { victims: victims.clone() }).await?;
        tracing::info!(group = %spec.id, stopped = victims.len(), "members stopped");
    }
    Ok(())
}
