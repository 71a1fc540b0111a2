//! The OpenStack side of the seed's verbs: `deploy`, `cleanup` and `image golden` on Nova, with
//! progress bars while the cloud works. The provisioning logic lives in
//! `flotilla-provider-openstack`; this module only asks, shows and prints.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use flotilla_provider_openstack::{Cloud, DeployRequest, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{CleanupArgs, DeployArgs, GoldenArgs};
use crate::usage;

/// Connects to `--os-cloud` (else `OS_CLOUD`, else the `OS_*` variables): two API calls, so
/// bad credentials or an unknown cloud fail here, before anything is asked or created.
pub async fn connect(os_cloud: Option<&str>) -> anyhow::Result<Cloud> {
    Ok(Cloud::from_env(os_cloud).await?)
}

/// Spinners for the steps that wait on the cloud (a terminal only), and one plain line per
/// finished step either way, so a log shows what was created and what was reused.
struct Bars {
    multi: MultiProgress,
    open: Mutex<HashMap<String, ProgressBar>>,
    tty: bool,
}

impl Bars {
    fn new() -> Bars {
        let tty = std::io::stderr().is_terminal();
        let target = if tty { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Bars { multi: MultiProgress::with_draw_target(target), open: Mutex::new(HashMap::new()), tty }
    }

    fn on(&self, p: &Progress) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        match p {
            Progress::Step { .. } => {}
            Progress::Waiting { what, status, elapsed, timeout } => {
                let bar = open.entry(what.clone()).or_insert_with(|| {
                    let bar = self.multi.add(ProgressBar::new(timeout.as_secs().max(1)));
                    let style = ProgressStyle::with_template("{spinner} {prefix}: {msg} [{elapsed_precise}]")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner());
                    bar.set_style(style);
                    bar.set_prefix(what.clone());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                bar.set_position(elapsed.as_secs());
                bar.set_message(format!("{status} (waiting up to {}s)", timeout.as_secs()));
            }
            Progress::Done { what, outcome } => {
                if let Some(bar) = open.remove(what) {
                    bar.finish_and_clear();
                }
                let line = format!("  {what}: {outcome}");
                if self.tty {
                    let _ = self.multi.println(line);
                } else {
                    println!("{line}");
                }
            }
        }
    }

    fn clear(&self) {
        for (_, bar) in self.open.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            bar.finish_and_clear();
        }
    }
}

/// Options that only mean something on OpenStack, named when given to the local provider.
pub fn openstack_only_flags(args: &DeployArgs) -> Vec<&'static str> {
    let mut given = Vec::new();
    for (flag, set) in [
        ("--keypair", args.keypair.is_some()),
        ("--pubkey-file", args.pubkey_file.is_some()),
        ("--image", args.image.is_some()),
        ("--flavor", args.flavor.is_some()),
        ("--network", args.network.is_some()),
        ("--cidr", args.cidr.is_some()),
        ("--ssh-from", args.ssh_from.is_some()),
        ("--security-group", args.security_group.is_some()),
        ("--no-snapshot", args.no_snapshot),
        ("--retain", args.retain.is_some()),
        ("--timeout", args.timeout.is_some()),
    ] {
        if set {
            given.push(flag);
        }
    }
    given
}

/// The request `args` describe, with the seed's defaults for what they leave out.
fn deploy_request(args: &DeployArgs) -> anyhow::Result<DeployRequest> {
    let (Some(keypair), Some(pubkey)) = (&args.keypair, &args.pubkey_file) else {
        return usage("--provider openstack: deploy needs --keypair NAME and --pubkey-file PATH");
    };
    let mut req = DeployRequest::new(args.name.clone(), keypair.clone(), pubkey.clone());
    req.snapshot = !args.no_snapshot;
    if let Some(n) = args.retain {
        req.retain = n;
    }
    for (field, value) in [
        (&mut req.image, &args.image),
        (&mut req.flavor, &args.flavor),
        (&mut req.network, &args.network),
        (&mut req.cidr, &args.cidr),
        (&mut req.ssh_from, &args.ssh_from),
        (&mut req.security_group, &args.security_group),
    ] {
        if let Some(v) = value {
            *field = v.clone();
        }
    }
    if let Some(t) = args.timeout {
        req.timeout = t;
    }
    let problems = req.validate();
    if !problems.is_empty() {
        let lines: Vec<String> = problems.into_iter().map(|(f, m)| format!("--{}: {m}", f.replace('_', "-"))).collect();
        return usage(lines.join("\n"));
    }
    Ok(req)
}

pub async fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let req = deploy_request(&args)?;
    let cloud = connect(args.target.os_cloud.as_deref()).await?;
    println!("deploying {}_N on cloud {} ({})", req.name, cloud.config().name, cloud.config().who());
    let bars = Bars::new();
    let result = cloud.deploy(&req, &|p| bars.on(p)).await;
    bars.clear();
    let rep = result?;
    println!(
        "{} is ACTIVE: fixed {} floating {} ({} API calls, {:.1}s)",
        rep.server,
        rep.fixed_ip.as_deref().unwrap_or("-"),
        rep.floating_ip.as_deref().unwrap_or("-"),
        rep.api_calls,
        rep.elapsed.as_secs_f64()
    );
    if !rep.created.is_empty() {
        println!("  created: {}", rep.created.join(", "));
    }
    if !rep.reused.is_empty() {
        println!("  reused:  {}", rep.reused.join(", "));
    }
    if let Some((name, id)) = &rep.snapshot {
        println!("  snapshot: {name} ({id})");
    }
    if !rep.pruned_snapshots.is_empty() {
        println!("  pruned snapshots: {}", rep.pruned_snapshots.join(", "));
    }
    for cmd in &rep.ssh_commands {
        println!("  ssh:   {cmd}");
    }
    println!(
        "  watch: flotilla watch --provider openstack --server {} --high 80 --low 20 --min-up 4 --min-down 4 --metric max",
        rep.server
    );
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal; without one, refuses (the caller must pass `--yes`).
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return usage("refusing to delete without confirmation: pass --yes (stdin is not a terminal)");
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub async fn cleanup(args: CleanupArgs) -> anyhow::Result<ExitCode> {
    if let Err(m) = flotilla_provider_openstack::check_group_name(&args.prefix) {
        return usage(format!("PREFIX {m}"));
    }
    let cloud = connect(args.target.os_cloud.as_deref()).await?;
    let plan = cloud.plan_cleanup(&args.prefix, args.wipe_snaps).await?;
    if plan.is_empty() {
        println!(
            "nothing to clean up: no Flotilla server, floating IP{} of {} on cloud {}",
            if args.wipe_snaps { " or snapshot" } else { "" },
            args.prefix,
            cloud.config().name
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("will delete on cloud {} (only resources Flotilla made):", cloud.config().name);
    for (name, id) in &plan.servers {
        println!("  server      {name} ({id})");
    }
    for (addr, id) in &plan.floating_ips {
        println!("  floating IP {addr} ({id})");
    }
    for (name, id) in &plan.snapshots {
        println!("  snapshot    {name} ({id})");
    }
    if !args.yes && !confirm("delete them?")? {
        println!("nothing deleted");
        return Ok(ExitCode::SUCCESS);
    }
    let bars = Bars::new();
    let result = cloud.execute_cleanup(&plan, Duration::from_secs(300), &|p| bars.on(p)).await;
    bars.clear();
    let rep = result?;
    println!(
        "deleted {} server(s), {} floating IP(s), {} snapshot(s) ({} API calls, {:.1}s)",
        rep.deleted.servers.len(),
        rep.deleted.floating_ips.len(),
        rep.deleted.snapshots.len(),
        rep.api_calls,
        rep.elapsed.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn golden(args: GoldenArgs) -> anyhow::Result<ExitCode> {
    if args.name.trim().is_empty() {
        return usage("--name: must not be empty");
    }
    let cloud = connect(args.os_cloud.as_deref()).await?;
    let bars = Bars::new();
    let result = cloud.golden_image(&args.from, &args.name, args.timeout, &|p| bars.on(p)).await;
    bars.clear();
    let rep = result?;
    println!(
        "golden image {} ({}) {} from {}; {} is {} ({} API calls, {:.1}s)",
        rep.image_name,
        rep.image_id,
        if rep.reused { "already existed" } else { "created" },
        rep.server,
        rep.server,
        rep.server_status,
        rep.api_calls,
        rep.elapsed.as_secs_f64()
    );
    println!("  use it in a group: template: {{openstack: {{image: {}, flavor: ..., network: ...}}}}", rep.image_name);
    Ok(ExitCode::SUCCESS)
}
