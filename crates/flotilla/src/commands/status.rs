use std::path::Path;
use std::process::ExitCode;

use crate::cli::{OutputFormat, StatusArgs};
use crate::{status, wiring};

pub async fn status(state_flag: Option<&Path>, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.as_deref().map(crate::config::load).transpose()?;
    let state_dir = crate::state_dir::resolve(state_flag, config.as_ref().and_then(|c| c.state_dir.as_deref()));
    let (store, _) = wiring::store_and_provider(&state_dir, config.as_ref())?;
    let mut report = status::collect(store.as_ref(), args.events).await?;
    if let Some(config) = &config {
        report.hosts = crate::libvirt::hosts(config, &state_dir).await?;
    }
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => print!("{}", status::render_text(&report)),
    }
    Ok(ExitCode::SUCCESS)
}
