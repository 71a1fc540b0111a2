//! The OpenStack provider: group members are Nova servers; plus the verbs around them (`deploy`,
//! `cleanup`, snapshots, golden images) — all over the documented REST APIs of Keystone v3,
//! Nova, Neutron and Glance.
//!
//! # Why `reqwest` + serde and not `openstack_sdk`
//! We use ~30 calls of four stable, documented APIs and need exact control over microversions,
//! error bodies (quota vs conflict), token re-issue and the call count: a thin typed client we own
//! does that, where `openstack_sdk` brings a large generated surface and its own auth/config stack.
//!
//! # Connecting
//! ```no_run
//! # async fn f() -> Result<(), flotilla_model::SeamError> {
//! use flotilla_provider_openstack::{Cloud, CloudConfig};
//! // `Some("microstack")`, else OS_CLOUD, else the OS_* variables of an openrc:
//! let cloud = Cloud::connect(CloudConfig::load(Some("microstack"))?).await?;
//! // or an explicit clouds.yaml: CloudConfig::load_from(path, "microstack")
//! println!("{} API calls so far", cloud.api_calls());
//! # Ok(()) }
//! ```
//! [`CloudConfig::load`] searches `$OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`,
//! `~/.config/openstack/clouds.yaml`, `/etc/openstack/clouds.yaml` (+ `secure.yaml`). Auth:
//! Keystone v3 password (project-scoped) or application credential. Endpoints come from the
//! catalog (interface `public` unless set, the cloud's region). The token is re-issued five
//! minutes before it expires and once on a 401. TLS is verified unless the cloud says
//! `verify: false` (a warning is logged once); `cacert` is trusted. The compute microversion is
//! negotiated ([`WANTED_COMPUTE_MICROVERSION`] at most; tags need 2.26). Passwords and tokens are
//! never logged (`Debug` of the config prints `***`).
//!
//! # What is ours
//! Everything Flotilla creates carries marks ([`marks`]): Nova servers the tags `flotilla` and
//! `flotilla:group=<group>` plus metadata `flotilla:managed` (`deploy`/`provider`),
//! `flotilla:group`, `flotilla:prefix`, `flotilla:instance`; floating IPs and network objects the
//! Neutron tag `flotilla` (+ group tag) and a `description` starting `flotilla:managed=`; images
//! the Glance tags and `flotilla:*` properties. Cleanup and the provider never touch a resource
//! without them. The deploy prefix and the group are the same thing: `deploy --name VM-test`
//! makes members of group `VM-test`, which `watch --server VM-test_1` can then grow.
//!
//! # The verbs (for `flotilla deploy / cleanup / image golden`)
//! * [`Cloud::deploy`]`(&DeployRequest, progress) -> DeployReport`: checks first (image, flavor,
//!   external network, keypair conflict, compute quota: a failure creates nothing), then network,
//!   subnet, router (gateway + interface), security group (ICMP + TCP 22 from `ssh_from` only),
//!   keypair, server `<name>_N` (next free N), floating IP (one of ours that is free, else a new
//!   one), optional snapshot with retention. `progress` receives [`Progress`] events for bars.
//! * [`Cloud::plan_cleanup`]`(prefix, wipe_snaps) -> CleanupPlan` (show it, ask), then
//!   [`Cloud::execute_cleanup`]; or [`Cloud::cleanup`] for both.
//! * [`Cloud::golden_image`]`(from_server, name, timeout, progress) -> GoldenReport`.
//! * [`Cloud::ensure_infra`] (the network objects only), [`Cloud::snapshot_server`],
//!   [`Cloud::prune_snapshots`], [`Cloud::delete_infra`],
//!   [`Cloud::template_of_server`] (an [`OpenStackTemplate`] cloned from a deployed server).
//!
//! # The provider
//! [`OpenStackProvider::new`]`(OpenStackSettings, BTreeMap<GroupId, OpenStackTemplate>)`; both
//! types deserialize from the YAML (`provider:` with `kind: openstack`;
//! `groups[i].template.openstack`) with `deny_unknown_fields` and have `validate() ->
//! Vec<(field, message)>`. Members are servers named by the instance id; `list` is one
//! `GET /servers/detail?tags=flotilla,flotilla:group=G`; `create` adopts an existing server of the
//! group with that instance id (a crash mid-create is retried without a duplicate), else creates
//! it, waits for ACTIVE (one list call per poll for all new members), attaches a floating IP in
//! `address: floating` mode, and deletes a member that failed to start. `delete` releases our
//! floating IPs of the member, deletes the server and waits until it is gone. Instance tags:
//! `server_id`, `fixed_ip`, `floating_ip`, `ssh_address` (`<ip>:22`), `vcpus`, `flavor`, `image`,
//! `status`; the address is `<ip>:<service_port>`.
//!
//! # Errors
//! Every call returns [`flotilla_model::SeamError`]. Kinds: bad credentials, unknown cloud,
//! missing image/flavor/network, a keypair with another key → `Invalid`; unreachable Keystone or
//! service, 5xx, 429 → `Transient`; quota (403/413, or 409, whose message names a quota; Nova's
//! "No valid host") → `Quota` (the controller pauses only that group); other 409 → `Conflict`;
//! 404 → `NotFound`. Messages name the request, the cloud and the thing that is wrong.

mod client;
mod config;
mod deploy;
mod diagnostics;
mod provider;
mod resources;
mod util;

pub use client::{enc, query, Cloud, Microversion, Reply, Service, WANTED_COMPUTE_MICROVERSION};
pub use config::{AuthMethod, CloudConfig, NamedRef};
pub use deploy::{
    check_group_name, CleanupPlan, CleanupReport, DeployReport, DeployRequest, GoldenReport, InfraNames, Progress,
    ProgressFn,
};
pub use diagnostics::{Diagnostics, DiagnosticsSource};
pub use provider::{AddressMode, OpenStackProvider, OpenStackSettings, OpenStackTemplate};
pub use resources::{
    fault_error, looks_like_id, marks, Fault, Flavor, Image, Limits, NeutronObject, Server, ServerAddress, ServerCreate,
};
pub use util::{canonical_cidr, parse_iso8601_ms, regex_escape};
