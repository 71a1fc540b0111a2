//! The command line (clap). Verbs mirror the seed's scripts: `deploy`, `cleanup`, `watch`, `load`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about = "Autoscaler and load balancer for groups of VMs on private clouds")]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// More detail in the logs.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Where the store and member records live (default: $FLOTILLA_STATE_DIR, the config's
    /// `state_dir`, or ~/.local/state/flotilla).
    #[arg(long, global = true, env = "FLOTILLA_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller daemon for the groups in a config file.
    Run(RunArgs),
    /// The built-in demo: the seed's spike, 50/50 split and handover on local members.
    Demo(DemoArgs),
    /// Watch one member and scale it the seed's way (clone on high, hand over on low).
    Watch(WatchArgs),
    /// Create a baseline member `NAME_N` (next free N); on OpenStack with its network, router,
    /// security group, keypair, floating IP and snapshot, all idempotent.
    Deploy(DeployArgs),
    /// Delete Flotilla's own members whose names start with PREFIX (on OpenStack also their
    /// floating IPs, and with --wipe-snaps their snapshots).
    Cleanup(CleanupArgs),
    /// Images: `image golden --from SERVER --name NAME` (OpenStack).
    #[command(subcommand)]
    Image(ImageCommand),
    /// The seed's load generator: 100% on the baseline until a clone runs, then ~50/50.
    Load(LoadArgs),
    /// Groups, members, states, last metrics, recent events.
    Status(StatusArgs),
    /// Steer a group: pause, resume, dry-run, desired (through a running daemon's API; pause,
    /// resume and dry-run also with no daemon, in the store).
    #[command(subcommand)]
    Group(GroupCommand),
    /// Steer a member: protect, unprotect, drain, replace (drain and replace need a running daemon).
    #[command(subcommand)]
    Member(MemberCommand),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The embedded load balancer alone, in front of a fixed set of backends (benchmarks).
    Lb(LbArgs),
    /// The bundled member workload server (run by the local provider; not usually by hand).
    Workload(WorkloadArgs),
}

#[derive(Debug, Args)]
pub struct LbArgs {
    #[arg(long)]
    pub listen: SocketAddr,
    /// A backend address; repeat for each backend.
    #[arg(long = "backend", required = true)]
    pub backends: Vec<SocketAddr>,
    /// Worker threads (1 = a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// `http` or `tcp`.
    #[arg(long, default_value = "http")]
    pub mode: flotilla_lb::Mode,
    /// `least-outstanding`, `round-robin` or `weighted`.
    #[arg(long, default_value = "least-outstanding")]
    pub selection: flotilla_lb::Selection,
    /// Active health checks: `none` (the default, as HAProxy without `check`: every backend serves
    /// at once, passive ejection takes out a failing one and it is tried again a second later),
    /// `http` (GET `--health-path`) or `tcp` (a connect).
    #[arg(long, value_parser = ["none", "http", "tcp"])]
    pub health: Option<String>,
    /// The HTTP health-check path (implies `--health http`), e.g. /healthz.
    #[arg(long)]
    pub health_path: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The YAML config file.
    #[arg(short, long)]
    pub config: PathBuf,
    /// Delete the groups' members on shutdown (default: they keep running and are re-adopted).
    #[arg(long)]
    pub stop_members: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the controller and members running after the scenario (Ctrl-C ends it).
    #[arg(long)]
    pub keep: bool,
    /// Seconds to hold the 50/50 split before stopping the load.
    #[arg(long, default_value_t = 12)]
    pub split_secs: u64,
    /// Where the demo group's balancer listens.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Where the API and the live dashboard listen (loopback: the dashboard reads without a token;
    /// its controls take the admin token the demo writes to its state directory). Default
    /// 127.0.0.1:8001, or a free port if that one is taken.
    #[arg(long)]
    pub api: Option<SocketAddr>,
    /// Where the members run: `local` processes (no cloud needed) or `libvirt` guests on the lab
    /// of ../shared/libvirt-lab (set up if missing).
    #[arg(long, value_enum, default_value_t = DemoProvider::Local)]
    pub provider: DemoProvider,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoProvider {
    Local,
    Libvirt,
}

/// Where the verbs `deploy`, `cleanup` and `watch` find members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum VerbProvider {
    /// Local processes (no cloud needed).
    #[default]
    Local,
    /// Nova servers on an OpenStack cloud.
    Openstack,
    /// libvirt domains on the hosts of a config file's `provider:` section (needs --config).
    Libvirt,
}

/// `--provider` and the cloud it talks to.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    #[arg(long, value_enum, default_value_t = VerbProvider::Local)]
    pub provider: VerbProvider,
    /// The cloud in clouds.yaml (default: $OS_CLOUD, else the OS_* variables of an openrc).
    /// Implies --provider openstack.
    #[arg(long)]
    pub os_cloud: Option<String>,
    /// A Flotilla config file: the verb uses its provider (hosts, cloud, ...), its state_dir and the
    /// group's template (the group named like the deploy name). Needed by --provider libvirt.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
}

impl TargetArgs {
    /// The verb talks to Nova through its own flags (`deploy` makes network objects too).
    pub fn openstack(&self) -> bool {
        (self.provider == VerbProvider::Openstack || self.os_cloud.is_some()) && self.config.is_none()
    }

    /// The config file the verb's provider comes from, loaded and validated; `None` for the local
    /// default. `--provider libvirt` without one, or with a file of another provider kind, is bad
    /// input.
    pub fn load_config(&self) -> anyhow::Result<Option<crate::config::Config>> {
        let Some(path) = &self.config else {
            if self.provider == VerbProvider::Libvirt {
                return crate::usage("--provider libvirt: name the hosts and templates with --config FILE");
            }
            return Ok(None);
        };
        if self.os_cloud.is_some() {
            return crate::usage("--os-cloud and --config: give one (the config names its cloud)");
        }
        let config = crate::config::load(path)?;
        let kind = config.provider.kind();
        let asked = match self.provider {
            VerbProvider::Local => None,
            VerbProvider::Openstack => Some("openstack"),
            VerbProvider::Libvirt => Some("libvirt"),
        };
        if asked.is_some_and(|a| a != kind) {
            return crate::usage(format!(
                "--provider {}: {} configures the {kind} provider",
                asked.unwrap_or_default(),
                path.display()
            ));
        }
        Ok(Some(config))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricArg {
    Cpu,
    Mem,
    Max,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The member to monitor (e.g. VM-test_1, as printed by `flotilla deploy`).
    #[arg(long)]
    pub server: String,
    /// Base name for clones (`<clone>_N`); `legacy` or absent means `<server>_clone`.
    #[arg(long)]
    pub clone: Option<String>,
    #[arg(long, default_value_t = 80.0)]
    pub high: f64,
    #[arg(long, default_value_t = 20.0)]
    pub low: f64,
    #[arg(long, default_value_t = 4)]
    pub min_up: u32,
    #[arg(long, default_value_t = 4)]
    pub min_down: u32,
    /// Seconds between samples.
    #[arg(long, default_value_t = 5.0)]
    pub interval: f64,
    #[arg(long, value_enum, default_value_t = MetricArg::Max)]
    pub metric: MetricArg,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Where samples come from (repeatable): `local` /proc (the local default), `diagnostics`
    /// (Nova's hypervisor view, the OpenStack default), `ssh` (inside the guest: needs
    /// --ssh-key), `push` (HTTP pushes: needs --push-listen and $FLOTILLA_PUSH_TOKEN).
    #[arg(long = "source", value_enum)]
    pub sources: Vec<SourceArg>,
    /// OpenStack: which address of a member is used (and whether clones get a floating IP).
    #[arg(long, value_enum, default_value_t = AddressArg::Floating)]
    pub address: AddressArg,
    /// SSH sampling: the private key.
    #[arg(long)]
    pub ssh_key: Option<PathBuf>,
    /// SSH sampling: the login (default: cirros).
    #[arg(long, default_value = "cirros")]
    pub ssh_user: String,
    /// SSH sampling: offer legacy ssh-rsa signatures (old CirrOS images need them).
    #[arg(long)]
    pub ssh_allow_rsa: bool,
    /// Push source: where it listens for `POST /v1/groups/GROUP/samples` (127.0.0.1:PORT).
    #[arg(long)]
    pub push_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceArg {
    Local,
    Diagnostics,
    Ssh,
    Push,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AddressArg {
    Fixed,
    Floating,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Base name: the member is NAME_N.
    #[arg(long)]
    pub name: String,
    /// Local: vCPUs of the member (its CPU % is relative to this).
    #[arg(long, default_value_t = 1)]
    pub vcpus: u32,
    #[command(flatten)]
    pub target: TargetArgs,
    /// OpenStack: the keypair name (imported from --pubkey-file if missing).
    #[arg(long)]
    pub keypair: Option<String>,
    /// OpenStack: the OpenSSH public key to import.
    #[arg(long)]
    pub pubkey_file: Option<PathBuf>,
    /// OpenStack: image name or id [default: cirros].
    #[arg(long)]
    pub image: Option<String>,
    /// OpenStack: flavor name or id [default: m1.tiny].
    #[arg(long)]
    pub flavor: Option<String>,
    /// OpenStack: the tenant network, created if missing [default: lab-net].
    #[arg(long)]
    pub network: Option<String>,
    /// OpenStack: the subnet of a new network [default: 192.168.100.0/24].
    #[arg(long)]
    pub cidr: Option<String>,
    /// OpenStack: the only source allowed to SSH and ping [default: 10.20.20.1/32].
    #[arg(long)]
    pub ssh_from: Option<String>,
    /// OpenStack: the security group (ICMP and SSH from --ssh-from only) [default: sg-secure].
    #[arg(long)]
    pub security_group: Option<String>,
    /// OpenStack: do not snapshot the new server.
    #[arg(long)]
    pub no_snapshot: bool,
    /// OpenStack: snapshots of this name to keep (the newest) [default: 3].
    #[arg(long)]
    pub retain: Option<u32>,
    /// OpenStack: longest wait for ACTIVE, the floating IP and the snapshot.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    pub prefix: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// OpenStack: also delete the prefix's snapshots.
    #[arg(long)]
    pub wipe_snaps: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Stop SERVER, save it as image NAME, wait until the image is active, start SERVER again.
    Golden(GoldenArgs),
}

#[derive(Debug, Args)]
pub struct GoldenArgs {
    /// The server to capture (name or id).
    #[arg(long)]
    pub from: String,
    /// The image name.
    #[arg(long)]
    pub name: String,
    /// The cloud in clouds.yaml (default: $OS_CLOUD, else the OS_* variables).
    #[arg(long)]
    pub os_cloud: Option<String>,
    /// Longest wait for each step (stop, image active, start).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The group to load (default: the only group in the state dir).
    #[arg(long)]
    pub group: Option<String>,
    /// The config of the group's provider: its state_dir, and for guests the `metrics.ssh` key the
    /// load goes in with.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Send HTTP requests to this address (a group's balancer) instead of starting busy loops
    /// inside the members: `concurrency` requests in flight, each `GET --path`.
    #[arg(long)]
    pub through: Option<SocketAddr>,
    /// With --through: the request path (`/work?ms=50` burns 50 ms of a member's CPU).
    #[arg(long, default_value = "/work?ms=50")]
    pub path: String,
    /// With --through: requests in flight (closed loop), or workers when --rate is given.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// With --through: total requests per second (open loop) instead of back to back.
    #[arg(long)]
    pub rate: Option<f64>,
    /// With --through: how long to send (default: until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Stop all load on the group's members.
    #[arg(long)]
    pub stop: bool,
    /// How long to wait for the controller to add a clone.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Duty cycle on each member once the load is split.
    #[arg(long, default_value_t = 0.5)]
    pub split_duty: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// How the CLI reaches a running daemon.
#[derive(Debug, Clone, Default, Args)]
pub struct DaemonArgs {
    /// The daemon's API, e.g. http://127.0.0.1:8070 (default: the daemon running on this state
    /// directory, if it serves an API).
    #[arg(long = "api", env = "FLOTILLA_API")]
    pub api: Option<String>,
    /// A file (0600) holding the API token, alone or as a tokens-file line `admin <token>` (default:
    /// $FLOTILLA_API_TOKEN).
    #[arg(long, env = "FLOTILLA_API_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// A PEM certificate to trust for an https API beside the usual roots (a private CA, or the
    /// daemon's own self-signed certificate); verification is never turned off.
    #[arg(long, env = "FLOTILLA_API_CA")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Keep deciding, act on nothing (records once what it would do).
    Pause(GroupArg),
    Resume(GroupArg),
    /// Dry run on or off: decide and record what would be done, act on nothing.
    DryRun {
        group: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Resize the group to N members (within min..max; needs a running daemon).
    Desired {
        group: String,
        desired: u32,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
}

#[derive(Debug, Args)]
pub struct GroupArg {
    pub group: String,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Never pick this member as a scale-in victim.
    Protect(MemberArg),
    Unprotect(MemberArg),
    /// Drain the member and remove it (never below min; needs a running daemon).
    Drain(MemberArg),
    /// A new member first, then this one drained and removed (needs a running daemon).
    Replace(MemberArg),
}

#[derive(Debug, Args)]
pub struct MemberArg {
    pub group: String,
    pub member: String,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// Events to show per group.
    #[arg(long, default_value_t = 10)]
    pub events: usize,
    /// The config file the controller runs: with it, status also asks the provider (libvirt hosts
    /// up or down, members a down host still holds).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file and print every problem with its field path and line:column.
    Check { file: PathBuf },
}

#[derive(Debug, Args)]
pub struct WorkloadArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value_t = 1)]
    pub vcpus: u32,
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Written with the bound port once the server listens.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}
