use std::path::Path;
use std::process::ExitCode;

use crate::cli::{OutputFormat, StatusArgs};
use crate::{status, wiring};

pub async fn status(state_flag: Option<&Path>, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let state_dir = crate::state_dir::resolve(state_flag, None);
    let (store, _) = wiring::store_and_provider(&state_dir, None)?;
    let report = status::collect(store.as_ref(), args.events).await?;
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => print!("{}", status::render_text(&report)),
    }
    Ok(ExitCode::SUCCESS)
}
