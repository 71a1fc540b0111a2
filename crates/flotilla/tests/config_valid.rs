//! Valid configuration files become the expected model values, defaults applied.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use flotilla::config::{load, parse, Config, ProviderConfig, StoreConfig};
use flotilla_model::{Aggregation, GroupId, GroupSpec, InstanceSpec, MetricChoice, Mode, ThresholdSpec, Victim};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn a_full_file_round_trips_to_group_specs() {
    let yaml = "\
state_dir: /var/lib/flotilla
store:
  kind: sqlite
  path: state.db
  sample_window: 100
provider:
  kind: local
  start_timeout: 1m
groups:
  - name: web.front_1
    mode: scale
    min: 2
    max: 6
    increment: 2
    interval: 250ms
    stale_after: 2s
    cooldown_up: 1m 30s
    cooldown_down: 0s
    drain_timeout: 45s
    victim: least-busy
    policy:
      metric: cpu
      aggregation: max
      high: 75.5
      low: 0
      min_up: 1
      min_down: 10
    template:
      base_name: front
      clone_base: front-copy
      vcpus: 64
";
    let config = parse(yaml, "full.yaml").unwrap();
    let expected = Config {
        state_dir: Some(PathBuf::from("/var/lib/flotilla")),
        store: StoreConfig::Sqlite { path: PathBuf::from("state.db"), sample_window: 100 },
        provider: ProviderConfig::Local { start_timeout: secs(60) },
        groups: vec![GroupSpec {
            id: GroupId::new("web.front_1"),
            mode: Mode::Scale,
            min: 2,
            max: 6,
            increment: 2,
            cooldown_up: secs(90),
            cooldown_down: secs(0),
            interval: Duration::from_millis(250),
            stale_after: secs(2),
            threshold: ThresholdSpec { metric: MetricChoice::Cpu, high: 75.5, low: 0.0, min_up: 1, min_down: 10 },
            aggregation: Aggregation::Max,
            victim: Victim::LeastBusy,
            drain_timeout: secs(45),
            instance: InstanceSpec {
                base_name: "front".into(),
                clone_base: "front-copy".into(),
                vcpus: 64,
                settings: BTreeMap::new(),
            },
        }],
    };
    assert_eq!(config, expected);
    assert_eq!(config.store_path(), PathBuf::from("/var/lib/flotilla/state.db"));
}

#[test]
fn defaults_fill_everything_but_the_name() {
    let config = parse("groups:\n  - name: a\n  - name: b\n    mode: handover\n    interval: 2s\n", "d.yaml").unwrap();
    assert_eq!(config.state_dir, None);
    assert_eq!(config.store, StoreConfig::Sqlite { path: PathBuf::from("flotilla.db"), sample_window: 600 });
    assert_eq!(config.provider, ProviderConfig::Local { start_timeout: secs(20) });

    let a = &config.groups[0];
    let expected_a = GroupSpec {
        id: GroupId::new("a"),
        mode: Mode::Scale,
        min: 1,
        max: 4,
        increment: 1,
        cooldown_up: secs(30),
        cooldown_down: secs(30),
        interval: secs(5),
        stale_after: secs(15),
        threshold: ThresholdSpec { metric: MetricChoice::Max, high: 80.0, low: 20.0, min_up: 4, min_down: 4 },
        aggregation: Aggregation::Mean,
        victim: Victim::Oldest,
        drain_timeout: secs(30),
        instance: InstanceSpec {
            base_name: "a".into(),
            clone_base: "a_clone".into(),
            vcpus: 1,
            settings: BTreeMap::new(),
        },
    };
    assert_eq!(a, &expected_a);

    let b = &config.groups[1];
    assert_eq!((b.mode, b.max), (Mode::Handover, 2), "handover defaults to max 2");
    assert_eq!(b.stale_after, secs(6), "stale_after defaults to 3 x interval");
    assert_eq!((b.instance.base_name.as_str(), b.instance.clone_base.as_str()), ("b", "b_clone"));
}

#[test]
fn clone_base_follows_an_explicit_base_name() {
    let config = parse("groups:\n  - name: a\n    template: {base_name: vm}\n", "t.yaml").unwrap();
    assert_eq!(config.groups[0].instance.clone_base, "vm_clone");
}

#[test]
fn merge_keys_share_settings_between_groups() {
    let yaml = "\
groups:
  - &base
    name: a
    mode: handover
    interval: 2s
    policy: {high: 90, low: 10}
  - <<: *base
    name: b
";
    let config = parse(yaml, "t.yaml").unwrap();
    let (a, b) = (&config.groups[0], &config.groups[1]);
    assert_eq!(b.id, GroupId::new("b"));
    assert_eq!((b.mode, b.interval, b.threshold.high, b.threshold.low), (a.mode, a.interval, 90.0, 10.0));
    assert_eq!(b.instance.base_name, "b");
}

#[test]
fn empty_sections_mean_defaults() {
    let config = parse("store:\nprovider: ~\ngroups:\n  - name: a\n    stale_after: ~\n", "t.yaml").unwrap();
    assert_eq!(config.store, StoreConfig::Sqlite { path: PathBuf::from("flotilla.db"), sample_window: 600 });
    assert_eq!(config.groups[0].stale_after, secs(15));
}

#[test]
fn load_reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.yaml");
    std::fs::write(&path, "groups:\n  - name: a\n").unwrap();
    assert_eq!(load(&path).unwrap().groups[0].id, GroupId::new("a"));
}
