//! The seed's verbs on the real OpenStack lab, through the binary: `deploy` twice, `image golden`,
//! `cleanup` beside untagged resources, and the errors a user meets (exit status 2 for bad input,
//! nothing half-created). Runs as the `microstack-demo` member user unless a test says otherwise.
//! The lab's floating IPs are API data only: nothing here sends a packet to them.

#[path = "../../provider-openstack/tests/common/mod.rs"]
mod oscommon;
mod support;

use std::process::Output;

use flotilla_testkit::lab::Lab;
use flotilla_testkit::require_lab;
use oscommon::*;
use support::{text, Env};

/// `flotilla ARGS` with the lab's clouds.yaml.
fn flotilla(env: &Env, args: &[&str]) -> Output {
    env.cmd(args).env("OS_CLIENT_CONFIG_FILE", clouds_yaml()).env_remove("OS_CLOUD").output().expect("run flotilla")
}

fn ok(env: &Env, args: &[&str]) -> String {
    let out = flotilla(env, args);
    assert!(out.status.success(), "flotilla {args:?}: {}\n{}\n{}", out.status, text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// The deploy arguments of a test prefix, on its own network objects.
fn deploy_args(p: &str, pubkey: &str, net: &str) -> Vec<String> {
    [
        "deploy",
        "--os-cloud",
        DEMO,
        "--name",
        p,
        "--keypair",
        &format!("{p}-key"),
        "--pubkey-file",
        pubkey,
        "--network",
        net,
        "--cidr",
        "192.0.2.0/24",
        "--ssh-from",
        "198.51.100.7/32",
        "--security-group",
        &format!("{p}-sg"),
        "--no-snapshot",
        "--timeout",
        "120s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_twice_golden_image_and_cleanup_through_the_cli() {
    require_lab!(Lab::OpenStack);
    let env = Env::new();
    let cloud = connect(DEMO).await;
    let p = prefix("cli");
    let pubkey = pubkey_file(env.path(), KEY_1);
    let net = format!("{p}-net");
    let mut guard = Guard::new(&cloud, &p);
    guard.infra = Some(flotilla_provider_openstack::InfraNames {
        network: net.clone(),
        router: format!("{p}-router"),
        security_group: format!("{p}-sg"),
    });
    guard.keypair = Some(format!("{p}-key"));
    let args = deploy_args(&p, pubkey.to_str().unwrap(), &net);

    let t = tokio::time::Instant::now();
    let first = ok(&env, &strs(&args));
    let first_secs = t.elapsed().as_secs_f64();
    assert!(first.contains(&format!("{p}_1 is ACTIVE")), "{first}");
    assert!(first.contains(&format!("network {net}")) && first.contains("  created: "), "{first}");
    assert!(first.contains("ssh:   ssh -i ") && first.contains("cirros@"), "{first}");
    let t = tokio::time::Instant::now();
    let second = ok(&env, &strs(&args));
    let second_secs = t.elapsed().as_secs_f64();
    assert!(second.contains(&format!("{p}_2 is ACTIVE")), "{second}");
    let created = second.lines().find(|l| l.starts_with("  created: ")).unwrap_or_default();
    assert!(created.contains(&format!("server {p}_2")), "{second}");
    for again in ["network", "subnet", "router", "security group", "keypair"] {
        assert!(!created.contains(again), "the second deploy created a {again} again: {second}");
    }
    eprintln!("deploy through the CLI: first {first_secs:.1} s, second {second_secs:.1} s");
    // Every network object exists once.
    assert_eq!(cloud.neutron_list("networks", &[("name", &net)]).await.unwrap().len(), 1);
    assert_eq!(cloud.neutron_list("routers", &[("name", &format!("{p}-router"))]).await.unwrap().len(), 1);
    assert_eq!(cloud.our_servers(&p).await.unwrap().len(), 2);

    // Golden image from the first server: the server is ACTIVE again afterwards.
    let golden = format!("{p}-golden");
    let out = ok(&env, &["image", "golden", "--os-cloud", DEMO, "--from", &format!("{p}_1"), "--name", &golden]);
    assert!(out.contains(&format!("golden image {golden}")) && out.contains("is ACTIVE"), "{out}");
    let images = cloud.list_images(&[("name", &golden)]).await.unwrap();
    assert_eq!(images.len(), 1, "{out}");
    guard.extra_images.push(images[0].id.clone());
    assert_eq!(images[0].status, "active");
    assert_eq!(cloud.find_server(&format!("{p}_1")).await.unwrap().status, "ACTIVE");

    // Beside ours, untagged: a server named like ours and a free floating IP.
    let (stranger, stray_fip) = strangers(&cloud, &mut guard, &p, &net).await;

    // Without --yes and without a terminal, nothing is deleted (exit 2).
    let out = flotilla(&env, &["cleanup", &p, "--os-cloud", DEMO]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("server      {p}_1")), "{}", text(&out.stdout));
    assert!(!text(&out.stdout).contains(&format!("{p}_99")), "the untagged server is not in the plan");
    assert_eq!(cloud.our_servers(&p).await.unwrap().len(), 2);

    let t = tokio::time::Instant::now();
    let out = ok(&env, &["cleanup", &p, "--os-cloud", DEMO, "--yes"]);
    eprintln!("cleanup of 2 servers + 2 FIPs through the CLI: {:.1} s", t.elapsed().as_secs_f64());
    assert!(out.contains("deleted 2 server(s), 2 floating IP(s)"), "{out}");
    assert!(cloud.our_servers(&p).await.unwrap().is_empty());
    assert!(cloud.get_server(&stranger).await.unwrap().is_some_and(|s| !s.is_gone()), "untagged server untouched");
    assert_eq!(cloud.neutron_list("floatingips", &[("id", &stray_fip)]).await.unwrap().len(), 1, "untagged FIP kept");
    let out = ok(&env, &["cleanup", &p, "--os-cloud", DEMO, "--yes"]);
    assert!(out.contains("nothing to clean up"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_and_names_what_is_wrong() {
    require_lab!(Lab::OpenStack);
    let env = Env::new();
    let cloud = connect(DEMO).await;
    let p = prefix("clibad");
    let pubkey = pubkey_file(env.path(), KEY_1);
    let net = format!("{p}-net");
    let _guard = Guard::new(&cloud, &p);

    // Unknown cloud: exit 2, names it and lists the known ones.
    let out = flotilla(&env, &["cleanup", &p, "--os-cloud", "no-such-cloud", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("no-such-cloud") && err.contains(DEMO), "{err}");

    // Wrong password: exit 2, says so, names the user.
    let yaml = std::fs::read_to_string(clouds_yaml()).unwrap();
    let bad: serde_yaml::Value = {
        let mut v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        v["clouds"][DEMO]["auth"]["password"] = "wrong-password".into();
        v
    };
    let bad_file = env.file("clouds-bad.yaml", &serde_yaml::to_string(&bad).unwrap());
    let out = env
        .cmd(&["cleanup", &p, "--os-cloud", DEMO, "--yes"])
        .env("OS_CLIENT_CONFIG_FILE", &bad_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).to_lowercase().contains("password"), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("wrong-password"), "the password is never printed");

    // Unreachable Keystone: not the user's input (exit 1), names the URL.
    let mut down: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    down["clouds"][DEMO]["auth"]["auth_url"] = "http://127.0.0.1:9/v3".into();
    let down_file = env.file("clouds-down.yaml", &serde_yaml::to_string(&down).unwrap());
    let out = env
        .cmd(&["cleanup", &p, "--os-cloud", DEMO, "--yes"])
        .env("OS_CLIENT_CONFIG_FILE", &down_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("127.0.0.1:9"), "{}", text(&out.stderr));

    // A missing image: exit 2, names it, and nothing was created (not even the network).
    let mut args = deploy_args(&p, pubkey.to_str().unwrap(), &net);
    args.extend(["--image".to_string(), "no-such-image".to_string()]);
    let out = flotilla(&env, &strs(&args));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no-such-image"), "{}", text(&out.stderr));
    assert!(cloud.find_network(&net).await.unwrap().is_none(), "nothing half-created");
    assert!(cloud.our_servers(&p).await.unwrap().is_empty());

    // Flags checked before any call: a bad CIDR and a missing key file.
    let mut args = deploy_args(&p, "/nonexistent/key.pub", &net);
    let at = args.iter().position(|a| a == "--ssh-from").unwrap();
    args[at + 1] = "1.2.3.4".into();
    let out = flotilla(&env, &strs(&args));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--ssh-from") && err.contains("--pubkey-file"), "{err}");
    // OpenStack flags on the local provider are refused by name.
    let out = env.run(&["deploy", "--name", "x", "--keypair", "k"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--keypair: only with --provider openstack"), "{}", text(&out.stderr));
}

/// R6: the cloud's password never appears in what Flotilla prints, even with every log level on
/// (`RUST_LOG=trace`, HTTP clients included), whether Keystone takes it or refuses it, nor in
/// any file of the state directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_password_never_appears_even_at_trace_level() {
    require_lab!(Lab::OpenStack);
    let env = Env::new();
    let p = prefix("clisecret");
    let yaml = std::fs::read_to_string(clouds_yaml()).unwrap();
    let good: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let password = good["clouds"][DEMO]["auth"]["password"].as_str().expect("the lab's password").to_string();
    assert!(password.len() >= 6, "a password worth looking for");
    let wrong = "wrong-8c1d-never-to-be-seen";
    let mut bad = good.clone();
    bad["clouds"][DEMO]["auth"]["password"] = wrong.into();
    let bad_file = env.file("clouds-bad.yaml", &serde_yaml::to_string(&bad).unwrap());

    let run = |clouds: &std::path::Path| {
        let out = env
            .cmd(&["cleanup", &p, "--os-cloud", DEMO, "--yes"])
            .env("OS_CLIENT_CONFIG_FILE", clouds)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        (out.status.code(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
    };
    let (ok_code, ok_out) = run(&clouds_yaml());
    assert_eq!(ok_code, Some(0), "{ok_out}");
    assert!(ok_out.contains("TRACE") || ok_out.contains("DEBUG"), "the log level took effect");
    let (bad_code, bad_out) = run(&bad_file);
    assert_eq!(bad_code, Some(2), "{bad_out}");
    for (what, out) in [("a run Keystone accepted", &ok_out), ("a run it refused", &bad_out)] {
        assert!(!out.contains(&password), "the password appears in {what}");
        assert!(!out.contains(wrong), "the wrong password appears in {what}");
    }
    for f in support::files_under(&env.path().join("state")) {
        let body = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(!body.contains(&password) && !body.contains(wrong), "a password in {}", f.display());
    }
}
