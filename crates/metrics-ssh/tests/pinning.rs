//! Host key pinning per instance against a real lab guest whose host key changes on every boot.

mod common;

use std::time::Duration;

use common::*;
use flotilla_metrics_ssh::SshSampler;
use flotilla_model::{ErrorKind, InstanceId, Metric};
use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;
use russh::keys::{HashAlg, PublicKey};

fn pinned_fingerprint(sampler: &SshSampler, id: &InstanceId) -> String {
    let text = std::fs::read_to_string(sampler.pin_path(id)).unwrap();
    PublicKey::from_openssh(text.trim()).unwrap().fingerprint(HashAlg::Sha256).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_is_pinned_per_instance_and_a_changed_key_is_refused() {
    require_lab!(Lab::Libvirt);
    // An RSA identity authorized for root and cirros through cloud-config, for the RSA login below.
    let keys = tempfile::tempdir().unwrap();
    let rsa_key = keys.path().join("id_rsa");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "flotilla-test", "-f"])
        .arg(&rsa_key)
        .output()
        .expect("ssh-keygen (openssh-client, installed by the lab's up.sh)");
    assert!(keygen.status.success(), "{}", String::from_utf8_lossy(&keygen.stderr));
    let rsa_pub = std::fs::read_to_string(rsa_key.with_extension("pub")).unwrap();
    let guest =
        Guest::boot_with_user_data("pin", &format!("#cloud-config\nssh_authorized_keys:\n  - {}\n", rsa_pub.trim()));
    let pins = tempfile::tempdir().unwrap();
    let sampler = SshSampler::new(settings(), pins.path())
        .unwrap()
        .with_reconnect_backoff(Duration::from_millis(100), Duration::from_millis(200));
    let g = group();
    let a = member("pin-a", &guest.ssh_address());

    // First connection pins; the second reading is a sample on the same session.
    let r = sampler.sample_report(&g, std::slice::from_ref(&a), now()).await;
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.first_readings, std::slice::from_ref(&a.id));
    let pin_path = sampler.pin_path(&a.id);
    assert_eq!(pin_path, pins.path().join("pin-a.pub"));
    let first_key = pinned_fingerprint(&sampler, &a.id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = sampler.sample_report(&g, std::slice::from_ref(&a), now()).await;
    assert_eq!(r.samples.len(), 1, "{r:?}");

    // Same instance id, same address, new boot: a new host key.
    guest.restart().await;
    let pin_before = std::fs::read(&pin_path).unwrap();
    let r = sampler.sample_report(&g, std::slice::from_ref(&a), now()).await;
    assert!(r.samples.is_empty() && r.first_readings.is_empty(), "{r:?}");
    assert_eq!(r.failures.len(), 1, "{r:?}");
    let (id, err) = &r.failures[0];
    assert_eq!(id, &a.id);
    assert_eq!(err.kind, ErrorKind::Conflict);
    let msg = err.to_string();
    assert!(msg.contains("instance `pin-a`"), "{msg}");
    assert!(msg.contains(&format!("expected {first_key}")), "{msg}");
    assert!(msg.contains("presented SHA256:"), "{msg}");
    assert_eq!(std::fs::read(&pin_path).unwrap(), pin_before, "the pin is never overwritten");
    eprintln!("changed key refused: {msg}");

    // Still refused on the next ticks (after the backoff), never silently accepted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = sampler.sample_report(&g, std::slice::from_ref(&a), now()).await;
    assert!(r.samples.is_empty() && r.failures.len() == 1, "{r:?}");
    assert_eq!(r.failures[0].1.kind, ErrorKind::Conflict);

    // A fresh instance id at the same address is pinned to the new key and sampled.
    let b = member("pin-b", &guest.ssh_address());
    let r = sampler.sample_report(&g, &[a.clone(), b.clone()], now()).await;
    assert_eq!(r.first_readings, std::slice::from_ref(&b.id), "{r:?}");
    assert_eq!(r.failures.len(), 1, "pin-a is still refused: {r:?}");
    let new_key = pinned_fingerprint(&sampler, &b.id);
    assert_ne!(new_key, first_key);
    assert!(r.failures[0].1.to_string().contains(&format!("presented {new_key}")), "{:?}", r.failures);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = sampler.sample_report(&g, std::slice::from_ref(&b), now()).await;
    assert_eq!(r.samples.len(), 1, "{r:?}");
    assert!(r.samples[0].get(Metric::Cpu).is_some());

    // forget() removes pin-a's pin; the id is then pinned anew.
    sampler.forget(&a.id).unwrap();
    assert!(!pin_path.exists());
    let r = sampler.sample_report(&g, &[a.clone(), b.clone()], now()).await;
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.first_readings, std::slice::from_ref(&a.id));
    assert_eq!(pinned_fingerprint(&sampler, &a.id), new_key);

    // An RSA identity (rsa-sha2 signatures, no `ssh-rsa` needed) as the unprivileged `cirros` user,
    // with its own pin directory: pinned on first use to the same host key.
    let mut rsa = settings();
    rsa.identity_file = rsa_key.clone();
    rsa.user = "cirros".into();
    let rsa_pins = tempfile::tempdir().unwrap();
    let rsa_sampler = SshSampler::new(rsa, rsa_pins.path()).unwrap();
    let c = member("pin-rsa", &guest.ssh_address());
    let r = rsa_sampler.sample_report(&g, std::slice::from_ref(&c), now()).await;
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.first_readings, std::slice::from_ref(&c.id));
    assert_eq!(pinned_fingerprint(&rsa_sampler, &c.id), new_key);
    let who = rsa_sampler.run_command(&g, &c, "id -un").await.unwrap();
    assert_eq!(String::from_utf8_lossy(&who.stdout).trim(), "cirros");
}
