use std::path::Path;
use std::process::ExitCode;

pub fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let config = crate::config::load(file)?;
    println!("{}: ok ({} group(s))", file.display(), config.groups.len());
    for g in &config.groups {
        println!(
            "  {}: mode {:?}, {}..{} members, {:?} high {} low {} ({} up / {} down samples every {:?})",
            g.id,
            g.mode,
            g.min,
            g.max,
            g.threshold.metric,
            g.threshold.high,
            g.threshold.low,
            g.threshold.min_up,
            g.threshold.min_down,
            g.interval
        );
    }
    Ok(ExitCode::SUCCESS)
}
