use std::path::Path;
use std::process::ExitCode;

use flotilla_model::PolicySpec;

pub fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let config = crate::config::load(file)?;
    println!("{}: ok ({} group(s))", file.display(), config.groups.len());
    for w in &config.warnings {
        println!("  warning: {w}");
    }
    for g in config.groups.iter().map(|g| &g.spec) {
        let policy = match &g.policy {
            PolicySpec::Threshold(t) => format!(
                "{:?} high {} low {} ({} up / {} down samples every {:?})",
                t.metric, t.high, t.low, t.min_up, t.min_down, g.interval
            ),
            PolicySpec::TargetTracking(t) => format!(
                "target {:?} {} per member (scale in after {} samples, every {:?})",
                t.metric, t.target, t.scale_in_samples, g.interval
            ),
            PolicySpec::RequestCount(r) => {
                format!("{} requests within {:?} scale out (every {:?})", r.requests, r.window, g.interval)
            }
            PolicySpec::Alarm(a) => {
                let rules: Vec<String> = a
                    .rules
                    .iter()
                    .map(|r| format!("{} -> {} {}", r.alarm, r.adjustment_type.as_str(), r.adjustment))
                    .collect();
                format!("alarms: {}", rules.join(", "))
            }
        };
        println!("  {}: mode {:?}, {}..{} members, {policy}", g.id, g.mode, g.min, g.max);
    }
    Ok(ExitCode::SUCCESS)
}
