use std::path::Path;
use std::process::ExitCode;

use crate::cli::{OutputFormat, StatusArgs};
use crate::daemon::{self, CallError};
use crate::{status, wiring};

/// From the running daemon's API when there is one (it knows the live shape and the last decision),
/// else from the store. A daemon that will not answer (no token, gone) is said, then the store is read.
pub async fn status(state_flag: Option<&Path>, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.as_deref().map(crate::config::load).transpose()?;
    let state_dir = crate::state_dir::resolve(state_flag, config.as_ref().and_then(|c| c.state_dir.as_deref()));
    let mut report = None;
    if let Some(d) = daemon::find_for_read(&state_dir, &args.daemon)? {
        let path = format!("/groups?events={}", args.events.clamp(1, 200));
        match d.call::<Vec<status::GroupReport>>(reqwest::Method::GET, &path, None).await {
            Ok(groups) => report = Some(status::StatusReport { groups, hosts: None }),
            Err(e @ (CallError::Unreachable(_) | CallError::Refused { status: 401 | 403, .. })) => {
                eprintln!("{e}; reading the store instead (without the live shape and last decision)");
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Read-only, beside a running daemon: SQLite allows it.
    let mut report = match report {
        Some(r) => r,
        None => {
            let (store, _) = wiring::store_and_provider(&state_dir, config.as_ref())?;
            status::collect(store.as_ref(), args.events).await?
        }
    };
    if let Some(config) = &config {
        report.hosts = crate::libvirt::hosts(config, &state_dir).await?;
    }
    let text = match args.output {
        OutputFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        OutputFormat::Text => status::render_text(&report),
    };
    super::print_out(&text)?;
    Ok(ExitCode::SUCCESS)
}
