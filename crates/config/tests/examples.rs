//! Every YAML file under `examples/`, at any depth, loads and validates; new examples are picked up
//! automatically.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_config::{load, Config};
use flotilla_model::{GroupSpec, MetricChoice, Mode, PolicySpec, RequestCountSpec, TargetMetric, TargetSpec, Victim};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Every YAML file under `examples/`, at any depth.
fn examples() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![examples_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
            let p = entry.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|ext| ext == "yaml" || ext == "yml") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// The token an example with an `api:` section reads (`tokens_env`), as its comment says to set.
fn api_tokens() {
    std::env::set_var("FLOTILLA_API_TOKENS", "admin example-admin-token-0123456789");
}

fn example(name: &str) -> Config {
    api_tokens();
    load(&examples_dir().join(name)).unwrap_or_else(|e| panic!("{name}:\n{e}"))
}

#[test]
fn every_example_is_valid() {
    api_tokens();
    let files = examples();
    assert!(files.len() >= 9, "expected at least the nine shipped examples, found {files:?}");
    let failures: Vec<String> =
        files.iter().filter_map(|f| load(f).err().map(|e| format!("{}:\n{e}", f.display()))).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_example_is_commented_for_users() {
    for f in examples() {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.lines().any(|l| l.trim_start().starts_with('#')), "{} has no comments", f.display());
    }
}

#[test]
fn the_seed_example_is_the_seed() {
    let config = example("seed-000-handover.yaml");
    // The seed's spec, versioned by its template (a file's members can be rolled; the built-in
    // example is unversioned).
    let mut want = GroupSpec::example("vm-test");
    assert!(!config.groups[0].spec.template_version.is_empty());
    want.template_version = config.groups[0].spec.template_version.clone();
    assert_eq!(config.specs(), vec![want]);
}

#[test]
fn the_demo_example_is_fast_handover() {
    let config = example("demo.yaml");
    assert_eq!(config.groups.len(), 1);
    let g = &config.groups[0].spec;
    assert_eq!(g.mode, Mode::Handover);
    assert_eq!((g.min, g.max), (1, 2));
    assert_eq!(g.interval, Duration::from_secs(1));
    assert_eq!(g.stale_after, Duration::from_secs(3));
    assert_eq!((g.cooldown_up, g.cooldown_down), (Duration::from_secs(0), Duration::from_secs(5)));
    let t = g.policy.threshold().expect("a threshold policy");
    assert_eq!((t.high, t.low), (80.0, 20.0));
    assert_eq!((t.min_up, t.min_down), (3, 3));
    assert_eq!(t.metric, MetricChoice::Max);
}

#[test]
fn the_scale_example_scales_by_two() {
    let config = example("scale-web.yaml");
    let g = &config.groups[0].spec;
    assert_eq!(g.mode, Mode::Scale);
    assert_eq!((g.min, g.max, g.increment), (2, 6, 2));
    assert_eq!(g.victim, Victim::LeastBusy);
    assert_eq!((g.cooldown_up, g.cooldown_down), (Duration::from_secs(30), Duration::from_secs(120)));
}

#[test]
fn the_target_example_tracks_50_rps_per_member() {
    let config = example("target-rps.yaml");
    let g = &config.groups[0].spec;
    assert_eq!(g.mode, Mode::Scale);
    assert_eq!((g.min, g.max), (1, 4));
    assert_eq!(
        g.policy,
        PolicySpec::TargetTracking(TargetSpec { metric: TargetMetric::Rps, target: 50.0, scale_in_samples: 3 })
    );
}

#[test]
fn the_seed_002_example_is_the_request_trigger() {
    let config = example("seed-002-requests.yaml");
    assert_eq!(config.groups.len(), 1);
    let g = &config.groups[0].spec;
    assert_eq!(g.mode, Mode::Scale);
    assert_eq!((g.min, g.max), (1, 2));
    assert_eq!(g.cooldown_up, Duration::from_secs(10));
    assert_eq!(g.instance.vcpus, 1);
    assert_eq!(g.policy, PolicySpec::RequestCount(RequestCountSpec { requests: 10, window: Duration::from_secs(60) }));
}

#[test]
fn the_openstack_examples_load_as_openstack_groups() {
    use flotilla_config::{ProviderConfig, ProviderTemplate};
    for (name, image) in
        [("openstack/seed-000-nova.yaml", "cirros"), ("openstack/seed-002-golden.yaml", "service-golden")]
    {
        let config = example(name);
        assert!(matches!(config.provider, ProviderConfig::OpenStack(_)), "{name}");
        let g = &config.groups[0].spec;
        match config.group(&g.id).and_then(|c| c.template.as_ref()) {
            Some(ProviderTemplate::OpenStack(t)) => assert_eq!(t.image, image, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        assert!(!g.template_version.is_empty(), "{name}: the template is versioned");
    }
}

#[test]
fn seed_003_is_a_group_scaled_by_two_alarms() {
    let c = example("openstack/seed-003-aodh.yaml");
    let g = &c.groups[0].spec;
    let names: Vec<&str> = g.alarms.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["cpu-high", "cpu-low"]);
    let PolicySpec::Alarm(a) = &g.policy else { panic!("{:?}", g.policy) };
    let rules: Vec<(&str, i32, u64)> =
        a.rules.iter().map(|r| (r.alarm.as_str(), r.adjustment, r.cooldown.as_secs())).collect();
    assert_eq!(rules, [("cpu-high", 1, 60), ("cpu-low", -1, 120)]);
}
