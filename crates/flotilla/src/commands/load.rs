use std::path::Path;
use std::process::ExitCode;

use flotilla_model::{GroupId, Store};

use crate::cli::LoadArgs;
use crate::{load, usage, wiring};

pub async fn load(state_flag: Option<&Path>, args: LoadArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.split_duty) {
        return usage(format!("--split-duty must be between 0 and 1, got {}", args.split_duty));
    }
    let state_dir = crate::state_dir::resolve(state_flag, None);
    let (store, _) = wiring::store_and_provider(&state_dir, None)?;
    let group = match args.group {
        Some(g) => GroupId::new(g),
        None => {
            let groups = store.groups().await?;
            match groups.as_slice() {
                [only] => only.clone(),
                [] => {
                    return usage(format!(
                        "no groups in {}; start one with `flotilla deploy` or `flotilla run`",
                        state_dir.display()
                    ))
                }
                _ => {
                    let names: Vec<&str> = groups.iter().map(|g| g.as_str()).collect();
                    return usage(format!("several groups ({}); choose one with --group", names.join(", ")));
                }
            }
        }
    };
    let say = |s: String| println!("[load] {s}");
    if args.stop {
        let stopped = load::stop_all(store.as_ref(), &group).await?;
        say(format!("stopped load on {}", if stopped.is_empty() { "no member".into() } else { stopped.join(", ") }));
        return Ok(ExitCode::SUCCESS);
    }
    load::split_after_scale(store.as_ref(), &group, args.wait, args.split_duty, &say).await?;
    say("load keeps running on the members; `flotilla load --stop` ends it".into());
    Ok(ExitCode::SUCCESS)
}
