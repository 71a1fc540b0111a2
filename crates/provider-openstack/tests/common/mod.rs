//! Shared by the lab tests: start the lab if it is not answering, connect, unique prefixes, and a
//! guard that removes what a test made (even when it panics).
//!
//! The lab's floating IPs and networks are API data only: nothing here sends a packet to them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flotilla_provider_openstack::{Cloud, CloudConfig, DeployRequest, InfraNames, Service};
use serde_json::json;

pub const ADMIN: &str = "microstack";
pub const DEMO: &str = "microstack-demo";
pub const KEY_1: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPuVhD0PjihV+n9An1/rqWrVn0MpvHHOFacrsWx5NmM4 flotilla-test-1";
pub const KEY_2: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKSoaQZvJ/3mdhlfe9oobePnbRg/gHZs8ALhy5C+z6Uz flotilla-test-2";

pub fn lab_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/openstack-lab")
}

pub fn lab_home() -> PathBuf {
    std::env::var_os("LAB_HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp/openstack-lab"))
}

/// The clouds.yaml the lab writes (clouds `microstack` = admin, `microstack-demo` = member).
pub fn clouds_yaml() -> PathBuf {
    lab_home().join("clouds.yaml")
}

pub fn config(cloud: &str) -> CloudConfig {
    CloudConfig::load_from(&clouds_yaml(), cloud).expect("lab clouds.yaml")
}

pub async fn connect(cloud: &str) -> Cloud {
    Cloud::connect(config(cloud)).await.expect("connect to the lab")
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A prefix no other test (or run) uses: `ft<tag><pid><n>`.
pub fn prefix(tag: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 100_000;
    format!("ft-{tag}-{}{t}{n}", std::process::id() % 1000)
}

/// A public key file in a temp dir.
pub fn pubkey_file(dir: &Path, key: &str) -> PathBuf {
    let p = dir.join("lab-key.pub");
    std::fs::write(&p, format!("{key}\n")).unwrap();
    p
}

/// A deploy request on the test's own network objects, SSH/ICMP from a documentation address.
pub fn request(prefix: &str, pubkey: &Path) -> DeployRequest {
    let mut r = DeployRequest::new(prefix, format!("{prefix}-key"), pubkey);
    r.network = format!("{prefix}-net");
    r.security_group = format!("{prefix}-sg");
    r.cidr = "192.0.2.0/24".into();
    r.ssh_from = "198.51.100.7/32".into();
    r.snapshot = false;
    r.timeout = Duration::from_secs(120);
    r
}

/// Removes, on drop, everything a test may have made: our servers/FIPs/snapshots of the prefix,
/// the network objects, the keypair, plus resources the test made by hand (untagged ones).
pub struct Guard {
    pub cloud: Cloud,
    pub prefix: String,
    pub infra: Option<InfraNames>,
    pub keypair: Option<String>,
    pub extra_servers: Vec<String>,
    pub extra_fips: Vec<String>,
    pub extra_images: Vec<String>,
    /// Aodh alarm ids.
    pub extra_alarms: Vec<String>,
}

impl Guard {
    pub fn new(cloud: &Cloud, prefix: &str) -> Self {
        Guard {
            cloud: cloud.clone(),
            prefix: prefix.to_string(),
            infra: None,
            keypair: None,
            extra_servers: Vec::new(),
            extra_fips: Vec::new(),
            extra_images: Vec::new(),
            extra_alarms: Vec::new(),
        }
    }

    pub fn for_request(cloud: &Cloud, req: &DeployRequest) -> Self {
        let mut g = Guard::new(cloud, &req.name);
        g.infra = Some(InfraNames::from(req));
        g.keypair = Some(req.keypair.clone());
        g
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let cloud = self.cloud.clone();
        let prefix = self.prefix.clone();
        let infra = self.infra.clone();
        let keypair = self.keypair.clone();
        let servers = std::mem::take(&mut self.extra_servers);
        let fips = std::mem::take(&mut self.extra_fips);
        let images = std::mem::take(&mut self.extra_images);
        let alarms = std::mem::take(&mut self.extra_alarms);
        // A runtime of its own: Drop may run inside (or outside) the test's runtime.
        let t = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut problems = Vec::new();
                for a in &alarms {
                    if let Err(e) = cloud.delete(Service::Alarming, &format!("/alarms/{a}")).await {
                        problems.push(e.to_string());
                    }
                }
                for f in &fips {
                    if let Err(e) = cloud.delete(Service::Network, &format!("/floatingips/{f}")).await {
                        problems.push(e.to_string());
                    }
                }
                for s in &servers {
                    if let Err(e) = cloud.delete_server(s).await {
                        problems.push(e.to_string());
                    }
                }
                for s in &servers {
                    let _ = cloud.wait_server_gone(s, Duration::from_secs(60)).await;
                }
                if let Err(e) = cloud.cleanup(&prefix, true, &|_| {}).await {
                    problems.push(e.to_string());
                }
                for i in &images {
                    let _ = cloud.delete_image(i).await;
                }
                if let Some(k) = keypair {
                    let _ = cloud.delete(Service::Compute, &format!("/os-keypairs/{k}")).await;
                }
                if let Some(n) = infra {
                    if let Err(e) = cloud.delete_infra(&n).await {
                        problems.push(e.to_string());
                    }
                }
                if !problems.is_empty() {
                    eprintln!("cleanup of {prefix} had problems: {problems:?}");
                }
            });
        });
        let _ = t.join();
    }
}

/// Seconds as `1.23 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Restores a quota of the demo project on drop (Compute `instances`, Network `floatingip`).
pub struct QuotaGuard {
    admin: Cloud,
    project: String,
    service: Service,
    key: &'static str,
    value: i64,
}

impl QuotaGuard {
    fn path(service: Service, project: &str) -> String {
        match service {
            Service::Network => format!("/quotas/{project}"),
            _ => format!("/os-quota-sets/{project}"),
        }
    }

    fn body(service: Service, key: &str, value: i64) -> serde_json::Value {
        match service {
            Service::Network => json!({ "quota": { key: value } }),
            _ => json!({ "quota_set": { key: value } }),
        }
    }

    /// Sets `key` to `value`, remembering the old value for the drop.
    pub async fn lower(admin: &Cloud, project: &str, service: Service, key: &'static str, value: i64) -> QuotaGuard {
        let q = admin.get(service, &Self::path(service, project)).await.unwrap();
        let old = q["quota_set"][key].as_i64().or(q["quota"][key].as_i64()).unwrap();
        admin.put(service, &Self::path(service, project), Some(&Self::body(service, key, value))).await.unwrap();
        QuotaGuard { admin: admin.clone(), project: project.to_string(), service, key, value: old }
    }
}

impl Drop for QuotaGuard {
    fn drop(&mut self) {
        let (admin, project, service, key, n) =
            (self.admin.clone(), self.project.clone(), self.service, self.key, self.value);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let body = QuotaGuard::body(service, key, n);
                if let Err(e) = admin.put(service, &QuotaGuard::path(service, &project), Some(&body)).await {
                    eprintln!("could not restore the {key} quota of {project} to {n}: {e}");
                }
            })
        })
        .join()
        .unwrap();
    }
}

/// Made directly through the API without any mark, beside a test's own resources: a server named
/// `<prefix>_99` on `network` (the seed deleted every server "starting with <BASE>") and a free
/// floating IP (the seed deleted every DOWN floating IP). Both are handed to `guard` for removal;
/// returns their ids (server, floating IP).
pub async fn strangers(cloud: &Cloud, guard: &mut Guard, prefix: &str, network: &str) -> (String, String) {
    let net = cloud.find_network(network).await.unwrap().unwrap();
    let image = cloud.find_image("cirros").await.unwrap();
    let flavor = cloud.find_flavor("m1.tiny").await.unwrap();
    let server = cloud
        .create_server(&flotilla_provider_openstack::ServerCreate {
            name: format!("{prefix}_99"),
            image_id: image.id,
            flavor_id: flavor.id,
            network_ids: vec![net.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    guard.extra_servers.push(server.clone());
    let ext = cloud.external_network(None).await.unwrap();
    let r = cloud
        .post(Service::Network, "/floatingips", &json!({ "floatingip": { "floating_network_id": ext.id } }))
        .await
        .unwrap();
    let fip = r.body["floatingip"]["id"].as_str().unwrap().to_string();
    guard.extra_fips.push(fip.clone());
    (server, fip)
}
