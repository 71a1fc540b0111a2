use std::process::ExitCode;

use clap::Parser;
use flotilla::cli::Cli;
use flotilla::{config::ConfigErrors, UsageError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    flotilla::logging::init(cli.log_format, cli.verbose);
    flotilla::limits::raise_open_files();
    // `flotilla lb --threads N` picks its own runtime size (benchmarks compare thread counts).
    let threads = match &cli.command {
        flotilla::cli::Command::Lb(args) => args.threads.max(1),
        _ => 0,
    };
    let built = match threads {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        0 => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    };
    let runtime = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(flotilla::commands::dispatch(cli)) {
        Ok(code) => code,
        Err(err) => {
            if let Some(errors) = err.downcast_ref::<ConfigErrors>() {
                eprintln!("{errors}");
                eprintln!("error: configuration has {} problem(s); nothing was started", errors.0.len());
                ExitCode::from(2)
            } else if err.downcast_ref::<UsageError>().is_some() || flotilla::is_bad_input(&err) {
                eprintln!("error: {err:#}");
                ExitCode::from(2)
            } else {
                eprintln!("error: {err:#}");
                ExitCode::from(1)
            }
        }
    }
}
