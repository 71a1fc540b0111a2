//! One module per verb. Each returns the process exit code or an error (`UsageError` → 2).

mod cleanup;
mod config_check;
mod control;
mod demo;
mod deploy;
mod lb;
mod load;
mod openstack;
mod run;
mod status;
mod watch;

use std::process::ExitCode;

use crate::cli::{Cli, Command, ConfigCommand, ImageCommand};

pub use demo::demo;

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let state_flag = cli.state_dir.as_deref();
    match cli.command {
        Command::Run(args) => run::run(state_flag, args).await,
        Command::Demo(args) => demo::demo(state_flag, args).await,
        Command::Watch(args) => watch::watch(state_flag, args).await,
        Command::Deploy(args) => deploy::deploy(state_flag, args).await,
        Command::Cleanup(args) => cleanup::cleanup(state_flag, args).await,
        Command::Image(ImageCommand::Golden(args)) => openstack::golden(args).await,
        Command::Load(args) => load::load(state_flag, args).await,
        Command::Status(args) => status::status(state_flag, args).await,
        Command::Group(cmd) => control::group(state_flag, cmd).await,
        Command::Member(cmd) => control::member(state_flag, cmd).await,
        Command::Config(ConfigCommand::Check { file }) => config_check::check(&file),
        Command::Lb(args) => lb::lb(args).await,
        Command::Workload(args) => {
            flotilla_workload::run(flotilla_workload::WorkloadConfig {
                name: args.name,
                listen: args.listen,
                vcpus: args.vcpus,
                ready_file: args.ready_file,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes a verb's output to stdout. A reader that stopped reading (`flotilla status | head`) is
/// not an error: the output is simply not wanted any more.
pub fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
