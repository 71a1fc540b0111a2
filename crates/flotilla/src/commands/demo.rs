//! `flotilla demo`: the seed-000 scenario on local members, end to end, in about half a minute.
//! Requests flow through the group's balancer: one request in flight keeps the baseline at ~100%
//! CPU → one clone → the balancer splits the same load ~50/50 (no further action) → load drops to a
//! trickle → handover, with no failed request at any point.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use flotilla_controller::Shutdown;
use flotilla_loadgen::{Load, LoadSpec};
use flotilla_model::{GroupId, Store};

use crate::cli::{DemoArgs, DemoProvider};
use crate::{load, wiring};

/// The demo's configuration, also shipped as a documented example.
pub const DEMO_CONFIG: &str = include_str!("../../../../examples/demo.yaml");
/// The same scenario on libvirt guests of the lab.
pub const LIBVIRT_DEMO_CONFIG: &str = include_str!("../../../../examples/libvirt/demo.yaml");

/// What the libvirt demo needs from the lab, and the script that makes it.
const LAB_FILES: [&str; 4] = [
    "/tmp/libvirt-lab/build/base.qcow2",
    "/tmp/libvirt-lab/build/vmlinux",
    "/tmp/libvirt-lab/build/initrd.img",
    "/tmp/libvirt-lab/build/id_ed25519",
];
const LAB_UP: &str = "../shared/libvirt-lab/up.sh";

fn say(s: String) {
    println!("[demo] {s}");
}

pub async fn demo(state_flag: Option<&Path>, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mut config = match args.provider {
        DemoProvider::Local => crate::config::parse(DEMO_CONFIG, "examples/demo.yaml")?,
        DemoProvider::Libvirt => {
            crate::libvirt::require()?;
            ensure_lab().await?;
            crate::config::parse(LIBVIRT_DEMO_CONFIG, "examples/libvirt/demo.yaml")?
        }
    };
    for b in config.groups.iter_mut().filter_map(|g| g.balancer.as_mut()) {
        b.listen = args.listen;
    }
    let dir_name = match args.provider {
        DemoProvider::Local => "demo",
        DemoProvider::Libvirt => "demo-libvirt",
    };
    let state_dir = crate::state_dir::resolve(state_flag, None).join(dir_name);
    fresh_state(&state_dir, &config).await?;
    let group = config.groups[0].spec.id.clone();
    let built = wiring::build(&config, &state_dir).await?;
    say(format!("state in {}; group {group}: {}", state_dir.display(), describe(&config.groups[0].spec)));

    // The dashboard is the demo's extra: a default port someone else holds moves it, it does not
    // stop the demo. A port asked for with --api is kept or refused.
    let mut api_cfg = demo_api(args.api.unwrap_or(DEFAULT_API), &state_dir)?;
    let api = match super::run::start_api(&api_cfg, &built, None).await {
        Ok(api) => api,
        Err(e) if args.api.is_none() => {
            say(format!("{DEFAULT_API} is taken ({e:#}); the dashboard takes a free port"));
            api_cfg.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            super::run::start_api(&api_cfg, &built, None).await?
        }
        Err(e) => return Err(e),
    };
    say(format!(
        "dashboard: http://{}/dashboard/?window=2m (live; its controls take the admin token in {})",
        api.addr,
        state_dir.join(TOKEN_FILE).display()
    ));

    let shutdown = Shutdown::default();
    let loop_task =
        tokio::spawn(flotilla_controller::run(built.controller.clone(), shutdown.clone(), Duration::from_secs(10)));
    let started = tokio::time::Instant::now();

    let outcome = tokio::select! {
        r = scenario(&built, &group, &args) => r,
        _ = super::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    };

    let timeline = timeline(built.store.as_ref(), &group).await.unwrap_or_default();
    if outcome.is_ok() {
        say(format!("done in {:.1}s. Timeline:", started.elapsed().as_secs_f64()));
        print!("{timeline}");
    }
    if args.keep && outcome.is_ok() {
        say(format!(
            "--keep: the controller keeps running (Ctrl-C stops it; members stay until \
             `flotilla --state-dir {} cleanup {group} --yes`)",
            state_dir.display()
        ));
        super::shutdown_signal().await;
        shutdown.trigger();
        loop_task.await??;
    } else {
        shutdown.trigger();
        loop_task.await??;
        let stopped = super::run::stop_all(&built).await;
        built.lb.shutdown().await;
        stopped?;
        say("members stopped".into());
    }
    api.stop().await;
    outcome.map(|()| ExitCode::SUCCESS)
}

/// The demo's admin token, in its state directory (readable by its owner only).
const TOKEN_FILE: &str = "api-token";

/// Where the demo's dashboard listens unless told (or taken).
const DEFAULT_API: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8001);

/// The demo's API: anonymous reads on loopback (a newcomer opens the URL and watches), and a fresh
/// admin token for the controls, written to the state directory, never printed.
fn demo_api(listen: std::net::SocketAddr, state_dir: &Path) -> anyhow::Result<flotilla_config::ApiConfig> {
    if !listen.ip().is_loopback() {
        bail!("--api: the demo serves its dashboard on loopback only (got {listen})");
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for the demo's token: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = state_dir.join(TOKEN_FILE);
    crate::state_dir::write_private(&path, format!("{token}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let tokens = flotilla_listener::auth::Tokens::parse(&format!("admin {token}")).map_err(anyhow::Error::msg)?;
    Ok(flotilla_config::ApiConfig { listen, tokens, anonymous_read: true, tls: None })
}

fn describe(g: &flotilla_model::GroupSpec) -> String {
    match g.policy.threshold() {
        Some(t) => format!(
            "{:?} mode, high {} low {} for {}/{} samples every {:?}",
            g.mode, t.high, t.low, t.min_up, t.min_down, g.interval
        ),
        None => format!("{:?} mode, {} policy, every {:?}", g.mode, g.policy.kind(), g.interval),
    }
}

/// Removes what a previous demo left behind (the demo group's members and the state dir): an
/// operation it left pending is finished first, then its members go through the operations runner
/// like any other deletion.
async fn fresh_state(dir: &PathBuf, config: &crate::config::Config) -> anyhow::Result<()> {
    if dir.exists() {
        let provider = wiring::verb_provider(dir, Some(config)).await?;
        let built = wiring::runner(dir, Some(config), provider, config.specs()).await?;
        if built.claim.is_none() {
            // Another demo runs there: its members are not ours to remove.
            drop(built);
            crate::state_dir::claim_for_controller(dir).await?;
            anyhow::bail!("{} was in use by another flotilla a moment ago; try again", dir.display());
        }
        if let Err(e) = built.controller.recover().await {
            tracing::warn!(error = %e, "an operation of the previous demo could not be finished");
        }
        super::run::stop_all(&built).await?;
        drop(built);
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot reset {}", dir.display()))?;
    }
    crate::state_dir::create(dir)
}

/// The libvirt lab: runs its idempotent `up.sh` when its files are missing and the script is at
/// hand; otherwise says exactly what is missing.
async fn ensure_lab() -> anyhow::Result<()> {
    let missing: Vec<&str> = LAB_FILES.iter().copied().filter(|f| !Path::new(f).exists()).collect();
    let daemon_up = tokio::process::Command::new("virsh")
        .args(["-c", "qemu:///system", "version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if missing.is_empty() && daemon_up {
        return Ok(());
    }
    let what = if missing.is_empty() {
        "libvirtd is not answering on qemu:///system".to_string()
    } else {
        format!("missing {}", missing.join(", "))
    };
    if !Path::new(LAB_UP).exists() {
        bail!("the libvirt lab is not ready ({what}); run the lab's up.sh (../shared/libvirt-lab/up.sh) as root first");
    }
    say(format!("the libvirt lab is not ready ({what}); running {LAB_UP}"));
    let status = tokio::process::Command::new(LAB_UP).status().await.with_context(|| format!("cannot run {LAB_UP}"))?;
    if !status.success() {
        bail!("{LAB_UP} failed ({status}); see its output above");
    }
    Ok(())
}

async fn scenario(built: &wiring::Built, group: &GroupId, args: &DemoArgs) -> anyhow::Result<()> {
    let store = built.store.as_ref();
    let addr = built
        .listeners
        .get(group)
        .copied()
        .context("the demo group has no balancer listener (examples/demo.yaml needs a `balancer:` section)")?;
    let lb = built.lb.group(group).context("the demo group's balancer is not running")?;
    let serving = |n: usize| {
        let lb = lb.clone();
        move || {
            let lb = lb.clone();
            async move { Ok(lb.backends().iter().filter(|b| b.healthy && !b.draining).count() == n) }
        }
    };
    let pace = Pace::of(args.provider);
    wait_for(pace.first_boot, "the baseline to serve", serving(1)).await?;

    // One request in flight at a time, each burning 50 ms of a member's CPU: one core of demand,
    // the seed's `yes > /dev/null`, but as real requests through the balancer.
    let (work, boot) = (pace.work, pace.boot);
    say(format!("load: GET http://{addr}{work}?ms=50, one request in flight (~100% of one member's CPU)"));
    let heavy = Load::start(LoadSpec::closed(addr, format!("{work}?ms=50"), 1));
    wait_for(boot, "a clone to join the balancer", serving(2)).await?;
    let members = load::running_members(store, group).await?.1;
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    say(format!("clone joined; the balancer now splits the same load across {}", names.join(" and ")));

    say(format!("holding the split for {}s: the controller should take no action", args.split_secs));
    let before = heavy.snapshot().by_backend;
    let hold_until = tokio::time::Instant::now() + Duration::from_secs(args.split_secs);
    while tokio::time::Instant::now() < hold_until {
        let n = built.provider.list(Some(group)).await?.len();
        if n != 2 {
            bail!("the group changed to {n} member(s) during the split");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = heavy.snapshot().by_backend;
    let split: Vec<String> =
        after.iter().map(|(member, n)| format!("{member}={}", n - before.get(member).copied().unwrap_or(0))).collect();
    say(format!("requests per member during the split: {}", split.join(", ")));
    let heavy = heavy.stop().await;

    // Load drops to a trickle; the trickle keeps flowing through the handover, and none of it fails.
    say(format!("load drops to a trickle ({} requests/s of GET {work}?ms=1); waiting for the handover", pace.trickle));
    let trickle = Load::start(LoadSpec::open(addr, format!("{work}?ms=1"), 1, pace.trickle));
    let baseline = members[0].id.clone();
    let clone = members[1].id.clone();
    let handed = wait_for(boot, "the handover", || async {
        let members = built.provider.list(Some(group)).await?;
        let primary = store.primary(group).await?;
        Ok(members.len() == 1 && members[0].id == clone && primary.as_ref() == Some(&clone))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let trickle = trickle.stop().await;
    handed?;
    say(format!("handover complete: {baseline} drained and deleted, {clone} is the primary"));
    say(format!("heavy load:   {}", heavy.summary()));
    say(format!("trickle load: {}", trickle.summary()));
    let failed = heavy.failures + heavy.server_errors() + trickle.failures + trickle.server_errors();
    if failed > 0 {
        bail!("{failed} request(s) failed or got a 5xx while the group changed");
    }
    Ok(())
}

/// How the scenario runs on each provider: the guest's CGI answers at another path, a guest boots
/// in seconds rather than milliseconds, and an emulated guest's CPU is better left a lighter trickle.
struct Pace {
    work: &'static str,
    first_boot: Duration,
    boot: Duration,
    trickle: f64,
}

impl Pace {
    fn of(provider: DemoProvider) -> Pace {
        match provider {
            DemoProvider::Local => {
                Pace { work: "/work", first_boot: Duration::from_secs(30), boot: Duration::from_secs(90), trickle: 5.0 }
            }
            DemoProvider::Libvirt => Pace {
                work: "/cgi-bin/work",
                first_boot: Duration::from_secs(180),
                boot: Duration::from_secs(240),
                trickle: 2.0,
            },
        }
    }
}

async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The group's history, oldest first, with times relative to the first event.
pub async fn timeline(store: &dyn Store, group: &GroupId) -> anyhow::Result<String> {
    let mut events = store.events(Some(group), 1000).await?;
    events.reverse();
    let Some(first) = events.first().map(|e| e.at) else { return Ok(String::new()) };
    let mut out = String::new();
    for e in &events {
        out.push_str(&format!("  +{:>6.1}s  {:<11} {}\n", e.at.since(first).as_secs_f64(), e.kind.as_str(), e.message));
    }
    Ok(out)
}
