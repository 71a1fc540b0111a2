//! A clap-free stand-in for `flotilla workload`, for tests and for running a member by hand.
//!
//! Accepts the same flags the local provider passes to the real CLI, including its leading
//! `workload` subcommand word, so either binary can be a provider's `exe`:
//!
//! `flotilla-workload [workload] --name NAME [--vcpus N] [--listen ADDR] [--ready-file PATH]`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use flotilla_workload::WorkloadConfig;

const USAGE: &str =
    "usage: flotilla-workload [workload] --name NAME [--vcpus N] [--listen 127.0.0.1:0] [--ready-file PATH]";

fn parse(args: impl IntoIterator<Item = String>) -> Result<WorkloadConfig, String> {
    let mut cfg = WorkloadConfig {
        name: String::new(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        vcpus: 1,
        ready_file: None,
    };
    let mut args = args.into_iter().peekable();
    if args.peek().map(String::as_str) == Some("workload") {
        args.next();
    }
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--name" => cfg.name = value()?,
            "--vcpus" => {
                let v = value()?;
                cfg.vcpus = v.parse().map_err(|_| format!("--vcpus: expected a whole number, got {v:?}"))?;
            }
            "--listen" => {
                let v = value()?;
                cfg.listen = v.parse().map_err(|_| format!("--listen: expected IP:PORT, got {v:?}"))?;
            }
            "--ready-file" => cfg.ready_file = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if cfg.name.is_empty() {
        return Err(format!("--name is required\n{USAGE}"));
    }
    Ok(cfg)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = match parse(std::env::args().skip(1)) {
        Ok(cfg) => cfg,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "flotilla-workload {} starting (pid {}, listen {}, vcpus {})",
        cfg.name,
        std::process::id(),
        cfg.listen,
        cfg.vcpus
    );
    match flotilla_workload::run(cfg).await {
        Ok(()) => {
            eprintln!("flotilla-workload stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flotilla-workload: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_the_providers_command_line() {
        let cfg = parse(args("workload --name web_1 --vcpus 2 --listen 127.0.0.1:0 --ready-file /tmp/x.port")).unwrap();
        assert_eq!(cfg.name, "web_1");
        assert_eq!(cfg.vcpus, 2);
        assert_eq!(cfg.listen, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(cfg.ready_file, Some(PathBuf::from("/tmp/x.port")));
        let cfg = parse(args("--name=a --vcpus=3")).unwrap();
        assert_eq!((cfg.name.as_str(), cfg.vcpus, cfg.ready_file), ("a", 3, None));
    }

    #[test]
    fn refuses_bad_command_lines() {
        assert!(parse(args("")).unwrap_err().contains("--name"));
        assert!(parse(args("--name")).unwrap_err().contains("needs a value"));
        assert!(parse(args("--name a --vcpus x")).unwrap_err().contains("--vcpus"));
        assert!(parse(args("--name a --listen nowhere")).unwrap_err().contains("--listen"));
        assert!(parse(args("--name a --bogus")).unwrap_err().contains("--bogus"));
    }
}
