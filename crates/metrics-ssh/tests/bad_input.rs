//! Bad settings and unreachable members; no guest needed.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use flotilla_metrics_ssh::{SshSampler, SshSettings};
use flotilla_model::{ErrorKind, GroupId, Instance, InstanceState, MetricSource, Timestamp};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;

/// A throwaway ed25519 key made from a fixed seed (never used to log in anywhere).
fn write_test_key(path: &Path) {
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]));
    std::fs::write(path, key.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap();
    std::fs::write(path.with_extension("pub"), key.public_key().to_openssh().unwrap()).unwrap();
}

fn identity_errors(s: &SshSettings) -> Vec<String> {
    s.validate().into_iter().filter(|(f, _)| f == "identity_file").map(|(_, m)| m).collect()
}

#[test]
fn validate_names_identity_file_for_missing_and_non_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("id_ed25519");
    write_test_key(&good);
    assert!(SshSettings::new(&good).validate().is_empty(), "{:?}", SshSettings::new(&good).validate());

    let cases = [
        (dir.path().join("missing"), "does not exist"),
        (dir.path().to_path_buf(), "is not a regular file"),
        (good.with_extension("pub"), "is a public key"),
    ];
    for (path, expect) in cases {
        let errs = identity_errors(&SshSettings::new(&path));
        assert_eq!(errs.len(), 1, "{path:?}: {errs:?}");
        assert!(errs[0].contains(expect) && errs[0].contains(&path.display().to_string()), "{errs:?}");
    }
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, "hello, I am not a key\n").unwrap();
    assert!(identity_errors(&SshSettings::new(&garbage))[0].contains("is not a private key"));
    let broken = dir.path().join("broken");
    std::fs::write(&broken, "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n").unwrap();
    assert!(identity_errors(&SshSettings::new(&broken))[0].contains("is not a usable private key"));
    let binary = dir.path().join("binary");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x01]).unwrap();
    assert!(identity_errors(&SshSettings::new(&binary))[0].contains("is not a private key"));

    // new() refuses the same settings, naming the field.
    let e = SshSampler::new(SshSettings::new(dir.path().join("missing")), &dir.path().join("pins")).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(e.to_string().contains("identity_file"), "{e}");
    // A key that never leaves the process: the error never quotes file contents.
    let e = SshSampler::new(SshSettings::new(&broken), &dir.path().join("pins")).err().unwrap();
    assert!(!e.to_string().contains("AAAA"), "{e}");
}

/// Everything logged in this test binary.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Sink(sink.clone()))
            .init();
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn member(id: &str, ssh_address: Option<&str>) -> Instance {
    let mut m = Instance::new(id, &GroupId::new("bad"), Timestamp::ZERO);
    m.state = InstanceState::Running;
    if let Some(a) = ssh_address {
        m.tags.insert("ssh_address".into(), a.into());
    }
    m
}

#[tokio::test]
async fn unreachable_members_are_absent_and_logged_once_per_state() {
    let logs = logs();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    write_test_key(&key);
    let mut settings = SshSettings::new(&key);
    settings.connect_timeout = Duration::from_millis(300);
    let sampler = SshSampler::new(settings, &dir.path().join("pins"))
        .unwrap()
        .with_reconnect_backoff(Duration::from_millis(10), Duration::from_millis(20));

    // Refused: a port that was free a moment ago.
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    // Silent: accepts TCP but never says a word (a hung guest).
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let members = [
        member("refused", Some(&refused.to_string())),
        member("silent", Some(&silent_addr.to_string())),
        member("nowhere", None),
    ];
    let g = GroupId::new("bad");
    for round in 0..3 {
        let t = tokio::time::Instant::now();
        let r = sampler.sample_report(&g, &members, Timestamp::from_millis(1000 * (round + 1))).await;
        assert!(t.elapsed() < Duration::from_secs(2), "bounded by the connect timeout: {:?}", t.elapsed());
        assert!(r.samples.is_empty() && r.first_readings.is_empty());
        let failed: Vec<(&str, ErrorKind)> = r.failures.iter().map(|(id, e)| (id.as_str(), e.kind)).collect();
        assert_eq!(
            failed,
            [("refused", ErrorKind::Transient), ("silent", ErrorKind::Transient), ("nowhere", ErrorKind::Invalid)]
        );
        let msgs: Vec<String> = r.failures.iter().map(|(_, e)| e.to_string()).collect();
        assert!(msgs[0].contains(&format!("cannot reach {refused}")), "{msgs:?}");
        assert!(msgs[1].contains("took longer than 300ms"), "{msgs:?}");
        assert!(msgs[2].contains("no `ssh_address` tag and no address"), "{msgs:?}");
        // The seam itself never fails for unreachable members: they are just absent.
        assert!(sampler.sample(&g, &members, Timestamp::from_millis(5000)).await.unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(sampler.connections_opened(), 3, "the silent member's 3 TCP connections; refused ones never opened");

    // allow_ssh_rsa is loud about it.
    let mut legacy = SshSettings::new(&key);
    legacy.allow_ssh_rsa = true;
    SshSampler::new(legacy, &dir.path().join("pins")).unwrap();

    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    eprintln!("{text}");
    assert!(text.contains("WARN") && text.contains("allow_ssh_rsa is on"), "{text}");
    let warns: Vec<&str> = text.lines().filter(|l| l.contains("WARN") && l.contains("ssh sampling failed")).collect();
    assert_eq!(warns.len(), 3, "one warning per member for 6 failed ticks each:\n{text}");
    for id in ["refused", "silent", "nowhere"] {
        assert!(warns.iter().any(|l| l.contains(&format!("member={id}"))), "{id}: {warns:?}");
    }
    assert!(!text.contains("OPENSSH PRIVATE KEY"), "no key material in logs");

    // Dropping members from the list forgets them.
    assert_eq!(sampler.tracked(), 3);
    sampler.sample(&g, &members[..1], Timestamp::from_millis(9000)).await.unwrap();
    assert_eq!(sampler.tracked(), 1);
    hold.abort();
}
